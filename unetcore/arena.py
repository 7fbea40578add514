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
3. Later passes hand out zeroed views of the arena at the planned offsets. If the sequence
   ever changes (a new input size), they fall back to step 1 and plan again.
"""
import numpy as np


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

    def take(self, shape):
        """A zeroed array of `shape`."""
        size = int(np.prod(shape, dtype=np.int64))
        index = len(self.takes)
        planned = self.plan is not None and index < len(self.plan) and self.plan[index][0] == size
        if self.plan is not None and not planned:
            self.plan = self.arena = None     # the sequence changed: plan again
        if planned:
            offset = self.plan[index][1]
            view = self.arena[offset:offset + size].reshape(shape)
            view.fill(0)
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
