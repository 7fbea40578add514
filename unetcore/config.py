"""Scoped settings (as Chainer's chainer.using_config, with Python's context variables).

engine: which implementation runs a layer type that has several (see unetcore.layer).
    "auto"       the fastest engine whose conditions hold (the default);
    "reference"  always the reference layer, the one docs/backprop.md derives;
    an engine's name ("flat", "tiled", ...): that engine where its conditions hold and the
                 reference elsewhere; the tests use this to check every engine.
A layer whose prototxt says `engine: CAFFE` runs the reference whatever this says.

sizes: the bounds of work buffers and jobs (Sizes below; `using_sizes` changes them).

A setting is a context variable, not a module global: `using_engine` changes it for the code
inside its `with` block only, and every thread starts with the default, so one thread's
choice never changes the layers another thread builds.

The environment variables unetcore reads are read here, and only here; unetcore writes none
of them (the `unetcore` command sets OPENBLAS_THREAD_TIMEOUT for its own process, see
unetcore.cli):
    UNETCORE_MAX_MEMORY     MiB one net may take (default: the machine's memory; memory.py)
    UNETCORE_ADAPT_THREADS  1: tune OpenBLAS's thread count while training (threads.py)
    UNETCORE_DEBUG          set: the command shows an internal error's traceback
    UNETCORE_RUNTIME        what runs the Fiji backend's forward passes (numpy, onnxruntime;
                            `unetcore fiji-backend --runtime` writes it into the scripts)
    OPENBLAS_NUM_THREADS    the user's BLAS thread count, which unetcore then leaves alone
"""
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace

DEFAULT_ENGINE = "auto"
_engine = ContextVar("unetcore_engine", default=DEFAULT_ENGINE)


def engine():
    """The engine asked for here (in this thread and `with` block)."""
    return _engine.get()


def set_engine(name):
    """Ask for engine `name` from now on in this thread (the CLI's --engine)."""
    _engine.set(name)


@contextmanager
def using_engine(name):
    """Build the layers made inside the `with` block with engine `name`."""
    token = _engine.set(name)
    try:
        yield
    finally:
        _engine.reset(token)


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """The sizes that bound work buffers and jobs; none changes a result, only its speed and
    memory (the tests shrink them to reach the code paths that large images take)."""
    # Bytes one im2col band may take; Convolution splits its output rows into bands under it.
    workspace_bytes: int = 128 * 2 ** 20
    # Bytes of one flat im2col band (stride-1 convolutions with few channels on the CPU):
    # small enough that the band is still in the cache when the GEMM reads it.
    cache_band_bytes: int = 8 * 2 ** 20
    # Bytes of one Winograd band's four tile buffers (tiles, transforms, products, outputs).
    winograd_band_bytes: int = 32 * 2 ** 20
    # Bytes of one band of a forward that runs its bands on all cores at once
    # (unetcore/ops/parallel.py): many per core, each mostly in the cache while its GEMM
    # reads it (the flat engine's forward measured 12% faster than at 16 MiB).
    parallel_band_bytes: int = 4 * 2 ** 20
    # A chunked volume's chunk edge aims at this many output pixels in y and x: large enough
    # that the context read around a chunk costs little, small enough for many workers...
    chunk_edge: int = 1024
    # ... and at this many slices in z for a 3-d net, whose tiles are a few slices deep.
    chunk_slices: int = 64
    # How long to wait for a dask scheduler that does not answer.
    scheduler_timeout: str = "20s"


_sizes = ContextVar("unetcore_sizes", default=Sizes())


def sizes():
    """The Sizes in force here (in this thread and `with` block)."""
    return _sizes.get()


@contextmanager
def using_sizes(**changes):
    """Inside the `with` block, the Sizes with `changes` (field=value) applied."""
    unknown = set(changes) - {f.name for f in fields(Sizes)}
    if unknown:
        raise TypeError(f"no size named {', '.join(sorted(unknown))}")
    token = _sizes.set(replace(_sizes.get(), **changes))
    try:
        yield
    finally:
        _sizes.reset(token)


# ---------------------------------------------------------------- the environment

MAX_MEMORY_VARIABLE = "UNETCORE_MAX_MEMORY"


def max_memory_setting():
    """UNETCORE_MAX_MEMORY as the user wrote it (MiB), or None when unset or empty."""
    return os.environ.get(MAX_MEMORY_VARIABLE) or None


def adapt_threads():
    """Whether UNETCORE_ADAPT_THREADS=1 asks to tune OpenBLAS's thread count."""
    return os.environ.get("UNETCORE_ADAPT_THREADS") == "1"


def debug():
    """Whether UNETCORE_DEBUG asks for tracebacks of internal errors."""
    return bool(os.environ.get("UNETCORE_DEBUG"))


def backend_runtime():
    """UNETCORE_RUNTIME: the runtime of the Fiji backend's tiled_predict (default numpy)."""
    return os.environ.get("UNETCORE_RUNTIME") or "numpy"


def blas_threads_chosen():
    """Whether the user set OPENBLAS_NUM_THREADS (then unetcore never changes the count)."""
    return bool(os.environ.get("OPENBLAS_NUM_THREADS"))
