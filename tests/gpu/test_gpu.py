"""The GPU backend: the CUDA sources compile (with nvcc, wherever it is), and where CuPy sees a
GPU, every layer and the whole small U-Net give the CPU's numbers without host copies."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cases import REPO, cupy_with_device, needs_gpu
from unetcore.gradcheck import randomize_params

KERNELS = sorted((REPO / "unetcore" / "ops").glob("*.cu"))


cupy = cupy_with_device()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles_for_sm90(source, tmp_path):
    result = subprocess.run(["nvcc", "-arch=sm_90", "-std=c++14", "-c", str(source), "-o",
                             str(tmp_path / "k.o")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_kernel_source_is_found():
    assert {p.name for p in KERNELS} == {"im2col.cu", "pooling.cu", "sgd_update.cu", "softmax_loss.cu"}


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


def count_host_copies(monkeypatch):
    """A list that records (function, bytes) for every array copy between host and device
    from now on: every such copy in unetcore goes through one of these functions."""
    import unetcore.backend
    copies = []

    def counting(name, function, from_host):
        def wrapper(value, *args, **kwargs):
            if isinstance(value, np.ndarray) == from_host:
                copies.append((name, int(value.nbytes)))
            return function(value, *args, **kwargs)
        return wrapper
    for name, from_host in (("asarray", True), ("array", True), ("asnumpy", False)):
        monkeypatch.setattr(cupy, name, counting(name, getattr(cupy, name), from_host))
    monkeypatch.setattr(unetcore.backend, "to_numpy",
                        counting("to_numpy", unetcore.backend.to_numpy, False))
    return copies


@needs_gpu
def test_no_array_copies_between_host_and_device(monkeypatch):
    """Forward and backward of the small U-Net copy no arrays between host and device
    (scalar reads of the loss aside)."""
    _, gpu = _pair("prototxt/unet-small-train.prototxt", np.float32)
    rng = np.random.default_rng(0)
    gpu.set_inputs({"data": rng.random((1, 1, 60, 60)), "label": rng.integers(0, 2, (1, 1, 20, 20)),
                    "weights": np.ones((1, 1, 20, 20))})
    copies = count_host_copies(monkeypatch)
    gpu.forward_layers()
    gpu.backward()
    assert copies == []


def small_unet_on_tiff_data(folder):
    """unet-small-train.prototxt with a TiffData layer (elastic deformation) for its inputs."""
    text = Path("prototxt/unet-small-train.prototxt").read_text()
    return 'name: "unet-small" layer { name: "data" type: "TiffData" top: "data" top: "label" ' \
        f'top: "weights" tiff_data_param {{ image: "{folder}/volume.tif" label: ' \
        f'"{folder}/labels.tif" tile_size: 60 label_size: 20 w0: 10 sigma: 5 }} ' \
        'create_deformation_param { deform_std: 10 grid_points: 3 random_mirror_flag { v: 1 ' \
        'v: 1 } random_rotate_from { v: 0 } random_rotate_to { v: 360 } } } ' + \
        text[text.index('layer {\n  name: "conv_d0a-b"'):]


@needs_gpu
def test_a_training_step_sends_only_the_random_draws_and_reads_only_scalars(tmp_path,
                                                                            monkeypatch):
    """A GPU training step on TiffData: the stacks went to the device at setup, and tiles are
    cut, deformed and weighted there. Per step the host sends only the random elastic grid
    (2 x 3 x 3 float64: 144 bytes) and reads back only scalars (the loss, the label check,
    the finiteness check), never an array."""
    import tifffile

    from unetcore.data.synth import synth_stack
    from unetcore.formats.prototxt import Message, parse
    from unetcore.solvers import get_solver
    images, labels = synth_stack(2, 64, seed=0, cell_size=16)
    tifffile.imwrite(tmp_path / "volume.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    param = Message("SolverParameter")
    param.set("net_param", parse(small_unet_on_tiff_data(tmp_path), "NetParameter"))
    for field, value in (("base_lr", 0.001), ("momentum", 0.99), ("random_seed", 0)):
        param.set(field, value)
    solver = get_solver(param, gpu=0)
    solver.step(1)                             # compiles the kernels
    copies = count_host_copies(monkeypatch)
    solver.step(3)
    assert [c for c in copies if c[0] in ("asnumpy", "to_numpy")] == []
    assert copies == [("asarray", 144)] * 3
