"""Scoped settings (as Chainer's chainer.using_config, with Python's context variables).

engine: which implementation runs a layer type that has several (see unetcore.layer).
    "auto"       the fastest engine whose conditions hold (the default);
    "reference"  always the reference layer, the one docs/backprop.md derives;
    an engine's name ("flat", "tiled", ...): that engine where its conditions hold and the
                 reference elsewhere; the tests use this to check every engine.
A layer whose prototxt says `engine: CAFFE` runs the reference whatever this says.

A setting is a context variable, not a module global: `using_engine` changes it for the code
inside its `with` block only, and every thread starts with the default, so one thread's
choice never changes the layers another thread builds.

The environment variables unetcore reads are read here, and only here; unetcore writes none
of them (the `unetcore` command sets OPENBLAS_THREAD_TIMEOUT for its own process, see
unetcore.cli):
    UNETCORE_MAX_MEMORY     MiB one net may take (default: the machine's memory; memory.py)
    UNETCORE_ADAPT_THREADS  1: tune OpenBLAS's thread count while training (threads.py)
    UNETCORE_DEBUG          set: the command shows an internal error's traceback
    OPENBLAS_NUM_THREADS    the user's BLAS thread count, which unetcore then leaves alone
"""
import os
from contextlib import contextmanager
from contextvars import ContextVar

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


def blas_threads_chosen():
    """Whether the user set OPENBLAS_NUM_THREADS (then unetcore never changes the count)."""
    return bool(os.environ.get("OPENBLAS_NUM_THREADS"))
