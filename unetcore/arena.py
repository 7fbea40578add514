"""A memory plan for arrays that live only during part of a pass.

While training, each intermediate gradient is needed from the moment backward first writes
it until its producer's backward has read it; then it can go (Net.release_diffs). In a
forward-only net, each activation is needed until its last reader has run
(Net.release_activations). Freeing such arrays and allocating them again every pass costs
page faults (about 0.3 s per U-Net training step). A pass runs the same sequence every time,
so we plan it once instead:

1. The first pass allocates normally and records, for every array, its size and the
   interval (first take, give back) in which it is alive.
2. The plan gives each array an offset in one arena, so that arrays alive at the same time
   never overlap: greedy by size, largest first, each at the lowest offset free over its
   interval (the offset calculation of TensorFlow Lite's memory planner).
3. Later passes hand out zeroed views of the arena at the planned offsets (not zeroed for
   the tops of a layer that sets every element of them: Layer.overwrites_tops). If the
   sequence ever changes (a new input size), they fall back to step 1 and plan again.

A MemoryPlan puts this into a net from outside: it adds hooks to the net's loops that free
the arrays, and gives each blob an Allocator that takes them from the arenas.
"""
import numpy as np

from unetcore.ops import parallel


class Arena:
    def __init__(self, xp, dtype):
        self.xp, self.dtype = xp, np.dtype(dtype)
        self.plan = None           # [(size, offset)] per take, in order, once planned
        self.arena = None
        self._start()

    def _start(self):
        self.takes, self.lives = [], []       # size per take; [take time, give time]
        self.clock = 0
        self.lent = {}                        # id(view) -> take index

    def take(self, shape, zeroed=True):
        """An array of `shape`, zeroed unless its writer sets every element of it."""
        size = int(np.prod(shape, dtype=np.int64))
        index = len(self.takes)
        planned = self.plan is not None and index < len(self.plan) and self.plan[index][0] == size
        if self.plan is not None and not planned:
            self.plan = self.arena = None     # the sequence changed: plan again
        if planned:
            offset = self.plan[index][1]
            view = self.arena[offset:offset + size].reshape(shape)
            if zeroed:
                parallel.fill_zeros(view)
        else:
            view = self.xp.zeros(shape, dtype=self.dtype)
        self.takes.append(size)
        self.lives.append([self.clock, None])
        self.lent[id(view)] = index
        self.clock += 1
        return view

    def give(self, view):
        index = self.lent.pop(id(view), None)
        if index is not None:
            self.lives[index][1] = self.clock
            self.clock += 1

    def end_pass(self):
        """Call when the pass is done: plan from what was recorded, if not planned yet."""
        if self.plan is None or len(self.plan) != len(self.takes):
            self._make_plan()
        self._start()

    def _make_plan(self):
        ends = [give if give is not None else self.clock for _, give in self.lives]
        placed = []                                     # (offset, size, start, end)
        offsets = [0] * len(self.takes)
        for i in sorted(range(len(self.takes)), key=lambda i: -self.takes[i]):
            start, end, size = self.lives[i][0], ends[i], self.takes[i]
            busy = sorted((o, o + s) for o, s, a, b in placed if a < end and start < b)
            offset = 0
            for low, high in busy:                      # the lowest gap that fits
                if offset + size <= low:
                    break
                offset = max(offset, high)
            offsets[i] = offset
            placed.append((offset, size, start, end))
        total = max((o + s for o, s, _, _ in placed), default=0)
        self.arena = self.xp.empty(total, dtype=self.dtype)
        self.plan = list(zip(self.takes, offsets))

    @property
    def nbytes(self):
        return 0 if self.arena is None else self.arena.nbytes


class Allocator:
    """Where one blob's arrays come from: an Arena for its data and one for its diff where
    a memory plan gives them, else a fresh zeroed array each time."""

    def __init__(self, xp, dtype, data=None, diff=None):
        self.xp, self.dtype = xp, np.dtype(dtype)
        self.arenas = {"data": data, "diff": diff}

    def take(self, shape, kind, zeroed=True):
        arena = self.arenas[kind]
        if arena is None:
            return self.xp.zeros(shape, dtype=self.dtype)
        return arena.take(shape, zeroed)

    def give(self, array, kind):
        arena = self.arenas[kind]
        if arena is not None:
            arena.give(array)


class MemoryPlan:
    """Frees a net's arrays during a pass, through the net's hooks, and serves them from
    planned arenas, through its blobs' allocators.

    release_diffs: backward frees each intermediate gradient once its producer has read it.
    release_activations: forward frees each activation after its last reader (forward-only
    use); inputs, outputs and the tops of data layers are kept."""

    def __init__(self, net):
        self.net = net
        self.diff_arena = self.data_arena = None
        self.last_reads = None                 # per layer: the activations it reads last
        net.after_forward.append(self.after_forward)
        net.end_forward.append(self.end_forward)
        net.after_backward.append(self.after_backward)
        net.end_backward.append(self.end_backward)

    def release_diffs(self, on):
        self.diff_arena = Arena(self.net.xp, self.net.dtype) if on else None
        for blob in self.net.blobs.values():
            blob.release_diff()
        self.assign_allocators()

    def release_activations(self, on):
        self.data_arena = Arena(self.net.xp, self.net.dtype) if on else None
        self.last_reads = self.plan_activation_release() if on else None
        for blob in self.released_activations():
            blob.release_data()
        self.assign_allocators()

    def released_activations(self):
        return {id(b): b for step in self.last_reads or [] for b in step}.values()

    def assign_allocators(self):
        released = {id(b) for b in self.released_activations()}
        for blob in self.net.blobs.values():
            data = self.data_arena if id(blob) in released else None
            blob.allocator = Allocator(self.net.xp, self.net.dtype, data, self.diff_arena)

    def plan_activation_release(self):
        """For each layer, the activations it is the last to read (Split tops and in-place
        layers share their bottom's array, so the array's owner is what is planned)."""
        net = self.net
        keep = {id(net.blobs[name].owner) for name in net.outputs + net.inputs}
        keep |= {id(t.owner) for spec, top in zip(net.specs, net.top_vecs)
                 if not spec.bottoms for t in top}
        last = {}
        for i, bottom in enumerate(net.bottom_vecs):
            for blob in bottom:
                last[id(blob.owner)] = (i, blob.owner)
        plan = [[] for _ in net.layers]
        for key, (i, blob) in last.items():
            if key not in keep:
                plan[i].append(blob)
        return plan

    # ---- the net's hooks
    def after_forward(self, i):
        if self.data_arena is not None:
            for blob in self.last_reads[i]:
                blob.release_data()

    def end_forward(self):
        if self.data_arena is not None:
            self.data_arena.end_pass()

    def after_backward(self, i):
        """After layer i's backward nobody reads its tops' gradients again (in-place tops are
        its bottoms too, and their gradient is still needed below)."""
        if self.diff_arena is not None:
            spec = self.net.specs[i]
            for name, blob in zip(spec.tops, self.net.top_vecs[i]):
                if name not in spec.bottoms:
                    blob.release_diff()

    def end_backward(self):
        if self.diff_arena is not None:
            self.diff_arena.end_pass()
