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

The loop is here; the stop at the first NaN or Inf and its report are in non_finite.py,
snapshot and resume in solver_state.py.

As in pycaffe, a solver is built from its prototxt either by get_solver(path), of the type
the file names, or by the class of a type, SGDSolver(path), AdamSolver(path), ..., which
wins over the file's type field.
"""
import math
import signal
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from unetcore import backend
from unetcore.errors import SolverError
from unetcore.files import require_writable_folder
from unetcore.logs import log
from unetcore.net import TEST, TRAIN, Net, chosen_gpu
from unetcore.formats.prototxt import Message, parse_file
from unetcore.threads import thread_tuner

from unetcore.solvers.lr_policies import learning_rate
from unetcore.solvers.non_finite import gradients_finite, non_finite_report
from unetcore.solvers.solver_state import restore_state, write_snapshot

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
    """Trains the net of a solver prototxt (a path or a parsed SolverParameter). `gpu` is a
    CUDA device number; left out, the one unetcore.set_mode_gpu / set_device chose, else
    the CPU."""
    type = None
    history_sets = 1                      # Adam and AdaDelta keep two buffers per parameter

    def __init__(self, param, gpu=None, dtype=np.float32):
        self.param = param = load_solver_param(param)
        if param.iter_size < 1:
            raise SolverError(f"{param.location()}: iter_size must be >= 1, got {param.iter_size}")
        self.gpu = gpu = chosen_gpu(gpu)
        self.xp = backend.xp_for(gpu)
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
        require_writable_folder(prefix.parent, f"snapshot_prefix '{prefix}'")

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
        """Make the test net compute with the train net's parameters, layer by layer name."""
        test_net.share_with(self.net)

    # ------------------------------------------------------------------ the loop
    def solve(self, resume=None):
        check_fields(self.param)
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
        if not math.isfinite(loss) or not gradients_finite(self.net):
            raise SolverError(non_finite_report(self, loss))
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
    def snapshot(self):
        """Write weights and solver state, each atomically (solvers/solver_state.py)."""
        return write_snapshot(self)

    def restore(self, path):
        """Resume from a solver state: iteration, history, weights and random state."""
        restore_state(self, path)


def check_fields(p):
    """Refuse, before the first iteration, solver fields that would train wrongly or fail
    later: each with its range and the reason."""
    rules = [
        (p.max_iter > 0, f"max_iter must be > 0 (the iterations to train), got {p.max_iter}"),
        (all(n > 0 for n in p.test_iter), f"test_iter must be > 0 (the batches of each test), "
                                          f"got {list(p.test_iter)}"),
        (0 <= p.momentum < 1, f"momentum must be in [0, 1) (the share of the last step "
                              f"kept; 1 or more diverges), got {p.momentum:g}"),
        (0 <= p.momentum2 < 1, f"momentum2 must be in [0, 1), got {p.momentum2:g}"),
        (p.weight_decay >= 0, f"weight_decay must be >= 0 (a negative decay grows the "
                              f"weights), got {p.weight_decay:g}"),
        (p.base_lr >= 0, f"base_lr must be >= 0, got {p.base_lr:g}")]
    for holds, message in rules:
        if not holds:
            raise SolverError(f"{p.location()}: {message}")
    learning_rate(p, 0)             # an unknown lr_policy, or one without its fields


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
