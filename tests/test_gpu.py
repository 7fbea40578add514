"""The GPU backend: the CUDA sources compile (with nvcc, wherever it is), and where CuPy sees a
GPU, every layer and the whole small U-Net give the CPU's numbers without host copies."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from unetcore.gradcheck import randomize_params

KERNELS = sorted((Path(__file__).resolve().parent.parent / "unetcore" / "kernels").glob("*.cu"))


def _cupy_with_device():
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


cupy = _cupy_with_device()
needs_gpu = pytest.mark.skipif(cupy is None, reason="no CUDA device visible to CuPy")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles_for_sm90(source, tmp_path):
    result = subprocess.run(["nvcc", "-arch=sm_90", "-std=c++14", "-c", str(source), "-o",
                             str(tmp_path / "k.o")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_kernel_source_is_found():
    assert {p.name for p in KERNELS} == {"im2col.cu", "pooling.cu", "softmax_loss.cu"}


def _pair(model, dtype, seed=0):
    from unetcore.net import Net
    cpu = Net(model, "TRAIN", dtype=dtype, seed=seed)
    gpu = Net(model, "TRAIN", dtype=dtype, gpu=0, seed=seed)
    randomize_params(cpu, np.random.default_rng(seed))
    for name, blobs in cpu.params.items():
        for a, b in zip(gpu.params[name], blobs):
            a.data[...] = cupy.asarray(b.data)
    return cpu, gpu


@needs_gpu
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_small_unet_cpu_gpu_parity(dtype, rtol):
    cpu, gpu = _pair("prototxt/unet-small-train.prototxt", dtype)
    for layer in cpu.layers + gpu.layers:
        if layer.type == "Dropout":
            layer.phase = "TEST"                  # the two backends draw different masks
    rng = np.random.default_rng(1)
    inputs = {"data": rng.random((1, 1, 60, 60)), "label": rng.integers(0, 2, (1, 1, 20, 20)),
              "weights": 1 + rng.random((1, 1, 20, 20))}
    cpu.forward(**inputs)
    gpu.forward(**inputs)
    cpu.backward()
    gpu.backward()
    for name, blob in cpu.blobs.items():
        np.testing.assert_allclose(cupy.asnumpy(gpu.blobs[name].data), blob.data, rtol=rtol,
                                   atol=rtol, err_msg=name)
    for name, blobs in cpu.params.items():
        for a, b in zip(gpu.params[name], blobs):
            np.testing.assert_allclose(cupy.asnumpy(a.diff), b.diff, rtol=rtol, atol=rtol,
                                       err_msg=name)


@needs_gpu
def test_no_array_copies_between_host_and_device(monkeypatch):
    """Forward and backward of the small U-Net copy no arrays between host and device
    (scalar reads of the loss aside): every such copy goes through one of these functions."""
    import unetcore.backend
    _, gpu = _pair("prototxt/unet-small-train.prototxt", np.float32)
    rng = np.random.default_rng(0)
    gpu.set_inputs({"data": rng.random((1, 1, 60, 60)), "label": rng.integers(0, 2, (1, 1, 20, 20)),
                    "weights": np.ones((1, 1, 20, 20))})
    copies = []

    def counting(name, function, from_host):
        def wrapper(value, *args, **kwargs):
            if not from_host or isinstance(value, np.ndarray):
                copies.append(name)
            return function(value, *args, **kwargs)
        return wrapper
    for name, from_host in (("asarray", True), ("array", True), ("asnumpy", False)):
        monkeypatch.setattr(cupy, name, counting(name, getattr(cupy, name), from_host))
    monkeypatch.setattr(unetcore.backend, "to_numpy",
                        counting("to_numpy", unetcore.backend.to_numpy, False))
    gpu.forward_layers()
    gpu.backward()
    assert copies == []
