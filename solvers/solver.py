"""The training loop: Caffe's Solver (Step, ApplyUpdate, TestAll, Snapshot, Restore).

One iteration (Solver::Step):
    clear the parameter diffs
    test every test_interval iterations (and at iteration 0 if test_initialization)
    forward + backward iter_size times, gradients accumulate; loss = mean of the losses
    ApplyUpdate: lr from the policy, clip_gradients, then for each parameter blob
        Normalize   diff /= iter_size
        Regularize  diff += weight_decay * decay_mult * (W  for L2 | sign(W) for L1)
        ComputeUpdateValue (the subclass: SGD, Adam, ...), with lr * lr_mult
        W -= diff
    snapshot every `snapshot` iterations, or when a signal asks for one
"""
import json
import math
import os
import signal
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from unetcore import backend
from unetcore.errors import SolverError
from unetcore.logs import log
from unetcore.net import TEST, TRAIN, Net
from unetcore.prototxt import Message, parse_file
from unetcore.caffemodel import encode_solverstate
from unetcore.threads import thread_tuner
from unetcore.snapshot import (atomic_file, atomic_h5, read_state, save_binary_weights,
                               save_weights, weight_layers)

from .lr_policies import learning_rate

SOLVERS = {}

# The deprecated solver_type enum of old prototxts -> the type name (Caffe's SolverTypeUpgrade).
LEGACY_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def register(cls):
    SOLVERS[cls.type] = cls
    return cls


def load_solver_param(solver):
    if isinstance(solver, Message):
        return solver
    return parse_file(solver, "SolverParameter")


def get_solver(solver, gpu=None, dtype=np.float32, **overrides):
    """A Solver from a solver prototxt (path or parsed), of the type it names; its nets
    compute in `dtype` (float32, as Caffe; float64 for gradient and parity checks)."""
    param = load_solver_param(solver)
    for field, value in overrides.items():
        if value is not None:
            param.set(field, value)
    name = LEGACY_TYPES[param.solver_type] if param.has("solver_type") else param.type
    by_lower = {t.lower(): cls for t, cls in SOLVERS.items()}
    if name.lower() not in by_lower:
        raise SolverError(f"{param.location()}: unknown solver type '{name}'; known: "
                          f"{', '.join(SOLVERS)}")
    return by_lower[name.lower()](param, gpu=gpu, dtype=dtype)


class Solver:
    type = None
    history_sets = 1                      # Adam and AdaDelta keep two buffers per parameter

    def __init__(self, param, gpu=None, dtype=np.float32):
        self.param = param
        if param.iter_size < 1:
            raise SolverError(f"{param.location()}: iter_size must be >= 1, got {param.iter_size}")
        self.xp = backend.xp_for(gpu)
        self.gpu = gpu
        self.dtype = np.dtype(dtype)
        seed = param.random_seed if param.random_seed >= 0 else None
        self.rng = np.random.default_rng(seed)
        self.net = self._train_net()
        self._check_snapshot_prefix()
        self.net.release_diffs = True
        self.test_nets = self._test_nets()
        self.history = [[self.xp.zeros(p.shape, p.dtype) for p in self.net.learnable_params]
                        for _ in range(self.history_sets)]
        self.iter = 0
        self.requested_action = None     # set by a signal handler: "snapshot" or "stop"
        self.stopped_early = False
        self.callbacks = []              # called with the solver after every iteration
        self.tuner = thread_tuner() if self.xp is np else None   # opt-in: unetcore.threads
        self.smoothed_loss = 0.0
        self.last_snapshot = None        # the newest snapshot whose weights gave a finite step
        self.unproven_snapshot = None    # a snapshot whose weights have not been stepped from yet

    def _check_snapshot_prefix(self):
        """Refuse, before training, a snapshot prefix that snapshots could not be written to
        (found at the first snapshot, it would lose the training before it)."""
        prefix = Path(self.param.snapshot_prefix or self.net.name)
        if prefix.is_dir():
            raise SolverError(f"snapshot_prefix '{prefix}' is a directory; give a file-name "
                              f"prefix in it, such as '{prefix / self.net.name}'")
        try:
            prefix.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SolverError(f"snapshot_prefix '{prefix}': cannot create its folder: "
                              f"{err.strerror}") from None
        if not os.access(prefix.parent, os.W_OK):
            raise SolverError(f"snapshot_prefix '{prefix}': its folder is not writable")

    # ------------------------------------------------------------------ nets
    def _net_seed(self):
        return int(self.rng.integers(2 ** 63)) if self.param.random_seed >= 0 else None

    def _make_net(self, source, phase, state=None):
        if isinstance(source, str):
            source = self._resolve(source)
        kwargs = {}
        if state is not None:
            kwargs = dict(level=state.level, stages=tuple(state.stage))
            phase = state.phase if state.has("phase") else phase
        return Net(source, phase, dtype=self.dtype, gpu=self.gpu, seed=self._net_seed(),
                   **kwargs)

    def _resolve(self, path):
        """A net path as Caffe reads it (from the working directory), else beside the solver."""
        if Path(path).exists() or self.param.source_file is None:
            return path
        beside = Path(self.param.source_file).parent / path
        return str(beside) if beside.exists() else path

    def _train_net(self):
        p = self.param
        given = [f for f in ("net", "net_param", "train_net", "train_net_param") if p.has(f)]
        if len(given) != 1:
            raise SolverError(f"{p.location()}: a solver names its train net by exactly one of "
                              f"net, net_param, train_net, train_net_param; found "
                              f"{', '.join(given) or 'none'}")
        state = p.train_state if p.has("train_state") else None
        return self._make_net(getattr(p, given[0]), TRAIN, state)

    def _test_nets(self):
        p = self.param
        sources = list(p.test_net_param) + list(p.test_net)
        if not sources and p.test_iter:
            sources = [p.net_param if p.has("net_param") else p.net] if \
                (p.has("net") or p.has("net_param")) else []
        if len(p.test_iter) != len(sources):
            raise SolverError(f"{p.location()}: {len(sources)} test net(s) but {len(p.test_iter)} "
                              "test_iter value(s); give one test_iter per test net")
        if sources and p.test_interval <= 0:
            raise SolverError(f"{p.location()}: test nets need test_interval > 0")
        nets = []
        for k, source in enumerate(sources):
            state = p.test_state[k] if k < len(p.test_state) else None
            net = self._make_net(source, TEST, state)
            self.share_weights(net)
            nets.append(net)
        return nets

    def share_weights(self, test_net):
        """Point the test net's parameter blobs at the train net's, layer by layer name."""
        train = {layer.name: layer for layer in self.net.layers}
        for layer in test_net.layers:
            source = train.get(layer.name)
            if source is None or not layer.blobs:
                continue
            for i, blob in enumerate(layer.blobs):
                if source.blobs[i].shape != blob.shape:
                    raise SolverError(f"layer '{layer.name}' blob {i} has shape {blob.shape} in "
                                      f"the test net but {source.blobs[i].shape} in the train net")
                layer.blobs[i] = source.blobs[i]

    # ------------------------------------------------------------------ the loop
    def solve(self, resume=None):
        log(f"Solving {self.net.name}")
        log(f"Learning Rate Policy: {self.param.lr_policy}")
        if resume is not None:
            self.restore(resume)
        self.step(self.param.max_iter - self.iter)
        p = self.param
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot):
            self.snapshot()
        if self.stopped_early:
            log("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            self.net.forward_layers()
            log(f"Iteration {self.iter}, loss = {self.net.loss:g}")
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log("Optimization Done.")

    def step(self, iters):
        p = self.param
        start, stop = self.iter, self.iter + iters
        losses = deque(maxlen=max(p.average_loss, 1))
        tick, tick_iter = time.perf_counter(), self.iter
        while self.iter < stop:
            self.net.clear_param_diffs()
            if p.test_interval and self.iter % p.test_interval == 0 and \
                    (self.iter > 0 or p.test_initialization):
                self.test_all()
            if self.tuner:
                self.tuner.before_step()
            loss = sum(self._forward_backward() for _ in range(p.iter_size)) / p.iter_size
            if self.unproven_snapshot:   # its weights just gave a finite loss and gradient
                self.last_snapshot, self.unproven_snapshot = self.unproven_snapshot, None
            self._smooth(losses, loss, start)
            if p.display and self.iter % p.display == 0:
                now = time.perf_counter()
                rate = (self.iter - tick_iter) / max(now - tick, 1e-9)
                log(f"Iteration {self.iter} ({rate:g} iter/s, {now - tick:g}s/{p.display} iters), "
                    f"loss = {self.smoothed_loss:g}")
                tick, tick_iter = now, self.iter
                self._log_outputs(self.net, "Train", scores=None)
            self.apply_update()
            if self.tuner:
                self.tuner.after_step()
            self.iter += 1
            for callback in self.callbacks:
                callback(self)
            action, self.requested_action = self.requested_action, None
            if (p.snapshot and self.iter % p.snapshot == 0) or action == "snapshot":
                self.snapshot()
            if action == "stop":
                self.stopped_early = True
                break

    def _forward_backward(self):
        loss = self.net.forward_layers()
        self.net.backward()
        if not math.isfinite(loss) or not self._gradients_finite():
            raise SolverError(self._non_finite_report(loss))
        return loss

    def _smooth(self, losses, loss, start):
        """Caffe's UpdateSmoothedLoss: the mean of the last average_loss losses."""
        if len(losses) < losses.maxlen:
            self.smoothed_loss = (self.smoothed_loss * len(losses) + loss) / (len(losses) + 1)
            losses.append(loss)
        else:
            oldest = losses[0]
            self.smoothed_loss += (loss - oldest) / losses.maxlen
            losses.append(loss)

    # ------------------------------------------------------------------ NaN / Inf
    def _gradients_finite(self):
        """A sum is NaN or Inf when any term is: one reduction per blob, summed in float64
        where the arrays live, and one scalar read (on a GPU, one wait for the device)."""
        total = sum(b.diff.sum(dtype=np.float64) for b in self.net.learnable_params)
        return math.isfinite(float(total))

    def _non_finite_report(self, loss):
        """Name the first layer whose output (forward) or gradient (backward) is not finite."""
        net = self.net
        where = "no layer output; check the input data"
        for layer, spec, top in zip(net.layers, net.specs, net.top_vecs):
            bad = [n for n, b in zip(spec.tops, top) if not self.xp.isfinite(b.data).all()]
            if bad:
                where = f"forward: top '{bad[0]}' of layer '{layer.name}' ({layer.type})"
                break
        else:
            for i in reversed(range(len(net.layers))):
                layer = net.layers[i]
                blobs = [(f"parameter blob {k}", b) for k, b in enumerate(layer.blobs)] + \
                    [(f"bottom '{n}'", b) for n, b, need in zip(
                        net.specs[i].bottoms, net.bottom_vecs[i], net.bottom_need_backward[i])
                     if need]
                bad = [what for what, b in blobs          # (released gradients were finite)
                       if b.has_diff and not self.xp.isfinite(b.diff).all()]
                if bad:
                    where = f"backward: gradient of {bad[0]} of layer '{layer.name}' ({layer.type})"
                    break
        if self.unproven_snapshot and not self._holds_current_weights(self.unproven_snapshot[0]):
            self.last_snapshot = self.unproven_snapshot     # its weights were changed since
        kept = f"the last good snapshot is {self.last_snapshot[0]}" if self.last_snapshot else \
            "no snapshot whose weights gave a finite step was written"
        if self.unproven_snapshot and self.last_snapshot != self.unproven_snapshot:
            kept += (f"; {self.unproven_snapshot[0]} holds the weights that gave this "
                     "non-finite value")
        return (f"iteration {self.iter}: loss = {loss:g}, training stopped at the first non-finite "
                f"value, in the {where}. Nothing was saved ({kept}). Lower base_lr, set "
                "clip_gradients, or check the data for NaN.")

    def _holds_current_weights(self, path):
        """Whether the weights file holds exactly the net's current weights."""
        saved = {name: arrays for name, arrays, _ in weight_layers(path)}
        return all(name in saved and all(np.array_equal(a, backend.to_numpy(b.data))
                                         for a, b in zip(saved[name], blobs))
                   for name, blobs in self.net.params.items())

    # ------------------------------------------------------------------ update
    def apply_update(self):
        p = self.param
        rate = learning_rate(p, self.iter)
        if p.display and self.iter % p.display == 0:
            log(f"Iteration {self.iter}, lr = {rate:g}")
        self.clip_gradients()
        self.update_params(rate)

    def update_params(self, rate):
        """Caffe's Normalize, Regularize and ComputeUpdateValue for every blob, then
        Net::Update: W <- W - diff."""
        params = self.net.learnable_params
        for i, blob in enumerate(params):
            self.normalize(blob)
            self.regularize(i, blob)
            self.compute_update(i, blob, rate * self.net.lr_mults[i])
        for blob in params:
            blob.data -= blob.diff

    def clip_gradients(self):
        limit = self.param.clip_gradients
        if limit < 0:
            return
        norm = math.sqrt(sum(float((b.diff.astype(np.float64) ** 2).sum())
                             for b in self.net.learnable_params))
        if norm > limit:
            scale = limit / norm
            log(f"Gradient clipping: scaling down gradients (L2 norm {norm:g} > {limit:g}) "
                f"by scale factor {scale:g}")
            for b in self.net.learnable_params:
                b.diff *= self.dtype.type(scale)

    def normalize(self, blob):
        if self.param.iter_size > 1:
            blob.diff *= self.dtype.type(1.0 / self.param.iter_size)

    def regularize(self, i, blob):
        decay = self.param.weight_decay * self.net.decay_mults[i]
        if not decay:
            return
        kind = self.param.regularization_type
        if kind == "L2":
            blob.diff += self.dtype.type(decay) * blob.data
        elif kind == "L1":
            blob.diff += self.dtype.type(decay) * self.xp.sign(blob.data)
        else:
            raise SolverError(f"unknown regularization_type '{kind}'; use L1 or L2")

    def compute_update(self, i, blob, rate):
        """Turn blob.diff (the regularized gradient) into the step subtracted from the weights."""
        raise NotImplementedError

    # ------------------------------------------------------------------ testing
    def test_all(self):
        for k, net in enumerate(self.test_nets):
            log(f"Iteration {self.iter}, Testing net (#{k})")
            scores, loss = None, 0.0
            for _ in range(self.param.test_iter[k]):
                loss += net.forward_layers()
                values = [backend.to_numpy(net.blobs[n].data).ravel() for n in net.outputs]
                scores = values if scores is None else [s + v for s, v in zip(scores, values)]
            n = self.param.test_iter[k]
            if self.param.test_compute_loss:
                log(f"Test loss: {loss / n:g}")
            self._log_outputs(net, "Test", [s / n for s in scores or []])

    def _log_outputs(self, net, phase, scores):
        """Caffe's '    Train net output #k: name = v (* w = w*v loss)' lines."""
        weights = {}
        for spec in net.specs:
            weights.update(zip(spec.tops, spec.loss_weights))
        if scores is None:
            scores = [backend.to_numpy(net.blobs[n].data).ravel() for n in net.outputs]
        index = 0
        for name, values in zip(net.outputs, scores):
            for value in values:
                w = weights.get(name, 0.0)
                extra = f" (* {w:g} = {w * value:g} loss)" if w else ""
                log(f"    {phase} net output #{index}: {name} = {value:g}{extra}")
                index += 1

    # ------------------------------------------------------------------ snapshots
    def snapshot_paths(self):
        prefix = self.param.snapshot_prefix or self.net.name
        stem = f"{prefix}_iter_{self.iter}"
        if self.param.snapshot_format == "BINARYPROTO":
            return Path(stem + ".caffemodel"), Path(stem + ".solverstate")
        return Path(stem + ".caffemodel.h5"), Path(stem + ".solverstate.h5")

    def snapshot(self):
        """Write weights and solver state (each atomically): HDF5, unetcore's default and
        caffe_unet's, or with snapshot_format: BINARYPROTO Caffe's binary protobuf."""
        model, state = self.snapshot_paths()
        history = [backend.to_numpy(h) for per_set in self.history for h in per_set]  # Caffe's layout
        rng_states = json.dumps(self._rng_states())
        if self.param.snapshot_format == "BINARYPROTO":
            log(f"Snapshotting to binary proto file {model}")
            save_binary_weights(self.net, model)
            log(f"Snapshotting solver state to binary proto file {state}")
            with atomic_file(state) as f:
                f.write(encode_solverstate(self.iter, str(model), history,
                                           self._current_step(), rng_states))
        else:
            log(f"Snapshotting to HDF5 file {model}")
            save_weights(self.net, model)
            log(f"Snapshotting solver state to HDF5 file {state}")
            with atomic_h5(state) as f:
                f["iter"] = self.iter
                f["learned_net"] = str(model)
                f["current_step"] = self._current_step()
                group = f.create_group("history")
                for i, h in enumerate(history):
                    group.create_dataset(str(i), data=h)
                f.attrs["rng_states"] = rng_states
        self.unproven_snapshot = (model, state)
        return model, state

    def _current_step(self):
        p = self.param
        if p.lr_policy == "step" and p.stepsize > 0:
            return self.iter // p.stepsize
        return sum(1 for v in p.stepvalue if self.iter >= v)

    def _rng_states(self):
        """Every random generator that shapes the run, so a resumed run is bit-identical."""
        states = {"solver": self.rng.bit_generator.state}
        states.update((key, layer.rng.bit_generator.state) for key, layer in self._layers())
        return states

    def _layers(self):
        """("train/<layer>" or "test<k>/<layer>", layer) for every layer of every net."""
        nets = [("train", self.net)] + [(f"test{k}", n) for k, n in enumerate(self.test_nets)]
        return [(f"{tag}/{layer.name}", layer) for tag, net in nets for layer in net.layers]

    def restore(self, path):
        """Resume from a solver state (HDF5 or binary): iteration, history, weights and
        random state."""
        log(f"Restoring previous solver status from {path}")
        state = read_state(path)
        self.iter = state["iter"]
        self._restore_history(state["history"], path)
        model = Path(state["learned_net"])
        if not model.exists():
            model = Path(path).parent / model.name
        self.net.copy_from(model)
        self._restore_rngs(json.loads(state["rng_states"]) if state["rng_states"] else {})

    def _restore_history(self, saved, path):
        flat = [h for per_set in self.history for h in per_set]
        if len(saved) != len(flat):
            raise SolverError(f"{path}: holds {len(saved)} history blobs, this {self.type} solver "
                              f"on this net needs {len(flat)}; was it written for another net "
                              "or solver type?")
        for i, (values, h) in enumerate(zip(saved, flat)):
            if values.shape != h.shape:
                raise SolverError(f"{path}: history blob {i} has shape {values.shape}, the net's "
                                  f"parameter has {h.shape}")
            h[...] = self.xp.asarray(values)

    def _restore_rngs(self, states):
        if "solver" in states:
            self.rng.bit_generator.state = states["solver"]
        for key, layer in self._layers():
            if key in states:
                layer.rng.bit_generator.state = states[key]


@contextmanager
def signal_actions(solver, sigint="stop", sighup="snapshot"):
    """Caffe's --sigint_effect / --sighup_effect: a signal asks the loop, between iterations,
    to "stop" (snapshot, then end), "snapshot" (and go on), or nothing ("none")."""
    def handler(action):
        def on_signal(signum, frame):
            solver.requested_action = action
        return on_signal

    installed = {}
    for name, action in (("SIGINT", sigint), ("SIGHUP", sighup)):
        if action != "none" and hasattr(signal, name):
            number = getattr(signal, name)
            installed[number] = signal.signal(number, handler(action))
    try:
        yield solver
    finally:
        for number, previous in installed.items():
            signal.signal(number, previous)
