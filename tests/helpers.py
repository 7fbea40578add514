"""Shared test helpers: build one layer from prototxt text, run the gradient checker on it."""
import numpy as np
import pytest

from unetcore import config
from unetcore.blob import Blob
from unetcore.gradcheck import check_gradients, layer_from_text
from unetcore.layer import ENGINES


def make_layer(text, phase="TRAIN", dtype=np.float64, seed=0, shapes=(), engine=None, xp=np):
    """The layer of `text` for bottoms of `shapes` on device `xp`; with `engine`, that engine
    (which must be able to run it) instead of the one engine "auto" would pick. An engine
    that runs on the CPU only skips the test on a GPU."""
    if engine is None:
        return layer_from_text(text, phase, dtype, seed, shapes, xp)
    with config.using_engine(engine):
        layer = layer_from_text(text, phase, dtype, seed, shapes, xp)
    if layer.engine != engine and xp is not np:
        pytest.skip(f"engine '{engine}' does not run on a GPU")
    assert layer.engine == engine, f"engine '{engine}' cannot run this layer: {text}"
    return layer


def engine_device_cases(*layer_types, exclude=()):
    """pytest params (engine, device) for every engine of these layer types, taken from the
    registry, and the reference, each on the CPU and on a GPU (Chainer's
    inject_backend_tests); the GPU's skip cleanly where CuPy sees no device. `exclude` names
    engines that a test's cases cannot exercise (a volumes-only engine in a 2-d test)."""
    engines = ["reference"] + sorted({cls.engine for kind in layer_types
                                      for cls in ENGINES.get(kind, ())} - set(exclude))
    return [pytest.param(engine, device, id=f"{engine}-{device}",
                         marks=needs_gpu if device == "gpu" else ())
            for engine in engines for device in ("cpu", "gpu")]


def device_module(device):
    """The array module of a device of engine_device_cases: NumPy or CuPy."""
    return np if device == "cpu" else cupy_with_device()


def blobs_of(*arrays, dtype=np.float64, xp=np):
    blobs = []
    for a in arrays:
        b = Blob(np.shape(a), dtype, xp)
        b.data[...] = xp.asarray(a)
        blobs.append(b)
    return blobs


def run_forward(layer, *arrays, tops=1):
    """The tops' data after setup, reshape and forward on these bottoms, on the layer's
    device."""
    bottom = blobs_of(*arrays, dtype=layer.dtype, xp=layer.xp)
    top = [Blob((), layer.dtype, layer.xp) for _ in range(tops)]
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
