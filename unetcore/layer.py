"""The Layer base class and the registry of layer types (Caffe's layer interface).

A layer type registers its Caffe type name with ``@register``. The net calls, in order,
``setup(bottom, top)`` once, then ``reshape`` + ``forward`` on every pass and
``backward(top, propagate_down, bottom)`` when gradients are needed.
``bottom`` and ``top`` are lists of Blob. Backward *writes* bottom diffs and
*accumulates* into parameter diffs, exactly as in Caffe.

A type may have faster *engines* beside its reference class (Caffe's layer_factory.cpp picks
CAFFE or CUDNN the same way): subclasses registered with ``@register_engine``, each with a
name, a priority (lower is faster) and two classmethods of (param, bottom_shapes, xp):
``can_run``, whether it computes this layer at all, and ``pays``, whether it is faster than
the reference here. ``layer_class`` picks one, as unetcore.config.engine() asks. The registry
is filled by importing unetcore.layers (unetcore/__init__ does).
"""
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from unetcore import config
from unetcore.blob import Blob
from unetcore.errors import NetError, closest_name
from unetcore.fillers import fill
from unetcore.memory import require_bytes

LAYER_TYPES = {}    # Caffe type name -> the reference class
ENGINES = {}        # Caffe type name -> its engine classes, fastest first

_deferred_draws = ContextVar("unetcore_deferred_draws", default=None)


@contextmanager
def draws_deferred():
    """Inside the `with` block a parameter blob is made with its shape only: the block yields
    a list that gets (blob, draw) for each, draw() filling it. Called in order, the draws give
    the values drawn at once (each layer draws from its own generator), so a net can weigh
    all its parameters before it draws any (a net too large for memory is refused in a
    moment, not after minutes of drawing)."""
    deferred = []
    token = _deferred_draws.set(deferred)
    try:
        yield deferred
    finally:
        _deferred_draws.reset(token)


def register(cls):
    """Class decorator: make `cls` the reference implementation of the Caffe type `cls.type`."""
    LAYER_TYPES[cls.type] = cls
    return cls


def register_engine(cls):
    """Class decorator: add `cls` as an engine of the Caffe type `cls.type`. Each engine of a
    type has a priority of its own, so the order of the choice never depends on imports."""
    engines = ENGINES.setdefault(cls.type, [])
    taken = {engine.priority: engine.engine for engine in engines}
    if cls.engine in taken.values():
        raise NetError(f"engine '{cls.engine}' of {cls.type} is registered twice: import the "
                       "layers as unetcore.layers, not as a top-level package 'layers'")
    if cls.priority in taken:
        raise NetError(f"engine '{cls.engine}' of {cls.type} has priority {cls.priority}, "
                       f"which engine '{taken[cls.priority]}' has already")
    engines.append(cls)
    engines.sort(key=lambda engine: engine.priority)
    return cls


def engine_names():
    return ["auto", "reference"] + sorted({cls.engine for classes in ENGINES.values()
                                           for cls in classes})


def check_layer_type(layer_param):
    """Refuse an unknown layer type with the known type it most resembles, case aside
    ('Relu': did you mean 'ReLU'?)."""
    if layer_param.type in LAYER_TYPES:
        return
    close = closest_name(layer_param.type, LAYER_TYPES, cutoff=0.7)
    hint = f"did you mean '{close}'? " if close else ""
    raise NetError(f"layer '{layer_param.name}' ({layer_param.location()}) has unknown type "
                   f"'{layer_param.type}'; {hint}known types: {', '.join(sorted(LAYER_TYPES))}")


def layer_class(layer_param, bottom_shapes=(), xp=np):
    """The class that runs this layer on bottoms of `bottom_shapes` on device `xp`. With
    engine "auto", the fastest engine of its type that can run it and pays; with an engine's
    name, that engine wherever it can run; else, and with "reference", the reference."""
    check_layer_type(layer_param)
    reference = LAYER_TYPES[layer_param.type]
    wanted = wanted_engine(layer_param, reference)
    for cls in ENGINES.get(layer_param.type, ()):
        if not cls.can_run(layer_param, bottom_shapes, xp):
            continue
        if wanted == cls.engine or (wanted == "auto" and cls.pays(layer_param, bottom_shapes, xp)):
            return cls
    return reference


def wanted_engine(layer_param, reference):
    """config.engine(), unless the layer's own `engine` field asks for CAFFE (the reference).
    DEFAULT and CUDNN leave the choice to config.engine()."""
    asked = config.engine()
    if asked not in engine_names():
        raise NetError(f"unknown engine '{asked}'; known: {', '.join(engine_names())}")
    field = reference.engine_param
    if field and getattr(layer_param, field).engine == "CAFFE":
        return "reference"
    return asked


class Layer:
    type = None
    engine = "reference"            # an engine subclass names itself
    engine_param = None             # the field whose `engine` may ask for the reference

    @classmethod
    def pays(cls, param, bottom_shapes, xp):
        """Whether this engine beats the reference on these bottoms (for engine "auto")."""
        return True
    # Blob-count rules, as Caffe's ExactNumBottomBlobs() and friends; None = no rule.
    exact_bottoms = min_bottoms = max_bottoms = None
    exact_tops = min_tops = max_tops = None
    is_loss = False                 # a loss layer's first top gets loss_weight 1 by default
    # False where no backward follows the forward: the Net clears it for the layers it never
    # runs backward through (a deploy net's), so that forward may skip what only backward reads.
    backward_wanted = True
    # True where forward sets every element of every top (the Net then hands the tops out
    # without zeroing them first, where a memory plan serves them).
    overwrites_tops = False

    def __init__(self, param, phase="TRAIN", dtype=np.float32, xp=np, rng=None):
        self.param = param
        self.name = param.name
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.xp = xp
        self.rng = rng if rng is not None else np.random.default_rng()
        self.blobs = []             # learnable parameters (Blob), filled by setup
        self.net_blobs = {}         # the net's blobs so far, by name (Caffe's parent_net())

    # ---- the interface a layer implements
    def setup(self, bottom, top):
        """Read parameters and create self.blobs; called once."""

    def reshape(self, bottom, top):
        raise NotImplementedError

    def forward(self, bottom, top):
        raise NotImplementedError

    def backward(self, top, propagate_down, bottom):
        """Gradients of the bottoms (where propagate_down) and of self.blobs."""

    def allow_force_backward(self, bottom_index):
        return True

    # ---- helpers
    def bottom_name(self, i):
        """The prototxt name of bottom i (or 'bottom[i]' for a layer built alone)."""
        names = self.param.bottom
        return names[i] if i < len(names) else f"bottom[{i}]"

    def error(self, message):
        return NetError(f"layer '{self.name}' ({self.type}, {self.param.location()}): {message}")

    def check_blob_counts(self, bottom, top):
        for what, blobs, exact, low, high in (
                ("bottom", bottom, self.exact_bottoms, self.min_bottoms, self.max_bottoms),
                ("top", top, self.exact_tops, self.min_tops, self.max_tops)):
            n = len(blobs)
            if exact is not None and n != exact:
                raise self.error(f"takes {exact} {what} blob(s), got {n}")
            if low is not None and n < low:
                raise self.error(f"takes at least {low} {what} blob(s), got {n}")
            if high is not None and n > high:
                raise self.error(f"takes at most {high} {what} blob(s), got {n}")

    def uniform(self, shape):
        """Uniform [0, 1) samples drawn where the layer's arrays live (no host copy on a GPU)."""
        if self.xp is np:
            return self.rng.random(shape, dtype=self.dtype)
        return self.xp.random.random(shape, dtype=self.dtype)

    def make_param_blob(self, shape, filler):
        """A parameter blob of `shape` with values drawn from `filler`, now or, inside
        draws_deferred, when the net that builds it has weighed all its parameters."""
        require_bytes(int(np.prod(shape, dtype=np.float64)) * self.dtype.itemsize,
                      f"the parameter blob {tuple(shape)} of layer '{self.name}'")
        blob = Blob(shape, self.dtype, self.xp)
        deferred = _deferred_draws.get()
        if deferred is None:
            self.fill_param_blob(blob, filler)
        else:
            deferred.append((blob, lambda: self.fill_param_blob(blob, filler)))
        return blob

    def fill_param_blob(self, blob, filler):
        shape = blob.shape
        try:
            values = fill(filler, shape, self.rng, self.dtype)
        except (ZeroDivisionError, ValueError) as err:
            raise self.error(f"cannot fill a parameter blob of shape {tuple(shape)} with the "
                             f"'{filler.type}' filler: {err}") from None
        blob.data[...] = self.xp.asarray(values)
