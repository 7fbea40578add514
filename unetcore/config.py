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
"""
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
