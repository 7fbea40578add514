"""Settings of the whole process (as Chainer's chainer.config).

engine: which implementation runs a layer type that has several (see unetcore.layer).
    "auto"       the fastest engine whose conditions hold (the default);
    "reference"  always the reference layer, the one docs/backprop.md derives;
    an engine's name ("flat", "tiled", ...): that engine where its conditions hold and the
                 reference elsewhere; the tests use this to check every engine.
A layer whose prototxt says `engine: CAFFE` runs the reference whatever this says.
"""
from contextlib import contextmanager

engine = "auto"


@contextmanager
def using_engine(name):
    """Build the layers made inside the `with` block with engine `name`."""
    global engine
    saved, engine = engine, name
    try:
        yield
    finally:
        engine = saved
