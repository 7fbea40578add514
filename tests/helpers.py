"""Shared test helpers: build one layer from prototxt text, run the gradient checker on it."""
import numpy as np
import pytest

from unetcore import config
from unetcore.blob import Blob
from unetcore.gradcheck import check_gradients, layer_from_text


def make_layer(text, phase="TRAIN", dtype=np.float64, seed=0, shapes=(), engine=None):
    """The layer of `text` for bottoms of `shapes`; with `engine`, that engine (which must
    be able to run it) instead of the one engine "auto" would pick."""
    if engine is None:
        return layer_from_text(text, phase, dtype, seed, shapes)
    with config.using_engine(engine):
        layer = layer_from_text(text, phase, dtype, seed, shapes)
    assert layer.engine == engine, f"engine '{engine}' cannot run this layer: {text}"
    return layer


def blobs_of(*arrays, dtype=np.float64):
    blobs = []
    for a in arrays:
        b = Blob(np.shape(a), dtype)
        b.data[...] = a
        blobs.append(b)
    return blobs


def run_forward(layer, *arrays, tops=1):
    bottom = blobs_of(*arrays, dtype=layer.dtype)
    top = [Blob((), layer.dtype) for _ in range(tops)]
    layer.check_blob_counts(bottom, top)
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    return [t.data for t in top]


def assert_gradients(layer, *arrays, tops=1, check_bottoms=None, max_checks=None):
    results = check_gradients(layer, *arrays, tops=tops, check_bottoms=check_bottoms,
                              max_checks=max_checks)
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert results, "nothing was checked"
    return results


def cupy_with_device():
    """CuPy, where it is installed and sees a CUDA device; else None."""
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


needs_gpu = pytest.mark.skipif(cupy_with_device() is None, reason="no CUDA device visible to CuPy")
