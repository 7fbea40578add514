"""Bands on all cores (unetcore/ops/parallel.py) and the ReLU folded into the convolution
(Net.fused_rectifiers): both change where and when the work runs, never the numbers."""
import threading
import types

import numpy as np
import pytest

from unetcore import config
from unetcore.formats.prototxt import parse
from unetcore.gradcheck import randomize_params
from unetcore.layers import convolution_winograd as winograd
from unetcore.models.unet import deploy_text
from unetcore.net import Net
from unetcore.ops import parallel

needs_openblas = pytest.mark.skipif(parallel.blas() is None,
                                    reason="NumPy's OpenBLAS not found: the bands run one by one")


@pytest.fixture
def two_blas_threads():
    """OpenBLAS at 2 threads (so 2 band workers) for the test, its count restored after."""
    library = parallel.blas()
    before = library.threads
    library.threads = 2
    yield library
    library.threads = before


@pytest.fixture
def workers(monkeypatch):
    """The band workers' count, set apart from OpenBLAS's: OpenBLAS stays at one thread, so
    every GEMM of a test sums alike whichever thread runs it (with some of OpenBLAS's kernels,
    Haswell's among them, a GEMM on two threads rounds some outputs otherwise than on one)."""
    library = parallel.blas()
    before = library.threads
    library.threads = 1
    count = types.SimpleNamespace(threads=2)
    monkeypatch.setattr(parallel, "blas", lambda: count)
    yield count
    library.threads = before


@needs_openblas
def test_every_band_runs_once_on_two_threads_with_a_one_thread_blas(two_blas_threads):
    met, seen, lock = threading.Barrier(2, timeout=30), [], threading.Lock()

    def work(band):
        if band < 2:
            met.wait()                  # the first two bands run at the same time
        with lock:
            seen.append((band, threading.get_ident(), two_blas_threads.threads))
    parallel.run_bands(work, range(6))
    assert sorted(band for band, _, _ in seen) == list(range(6))
    assert len({thread for _, thread, _ in seen}) == 2
    assert {threads for _, _, threads in seen} == {1}
    assert two_blas_threads.threads == 2


@needs_openblas
def test_a_failing_band_is_raised_once_every_band_has_ended(two_blas_threads):
    ended = []

    def work(band):
        if band == 1:
            raise ValueError("band 1 failed")
        ended.append(band)
    with pytest.raises(ValueError, match="band 1 failed"):
        parallel.run_bands(work, range(5))
    assert sorted(ended) == [0, 2, 3, 4]
    assert two_blas_threads.threads == 2


@needs_openblas
def test_the_bands_see_the_callers_settings(two_blas_threads):
    seen = []
    with config.using_sizes(chunk_edge=7):
        parallel.run_bands(lambda band: seen.append(config.sizes().chunk_edge), range(4))
    assert seen == [7] * 4


@needs_openblas
def test_a_second_region_runs_its_bands_in_its_own_thread(two_blas_threads):
    """While one thread's bands run on the workers, another thread's run one after another
    in that thread, and leave the thread count alone."""
    seen = []
    with parallel._region:               # as if another thread's region were running
        parallel.run_bands(lambda band: seen.append((threading.get_ident(),
                                                     two_blas_threads.threads)), range(3))
    assert seen == [(threading.get_ident(), 2)] * 3


def test_copy_in_channel_chunks_equals_the_plain_copy():
    src = np.random.default_rng(0).random((2, 13, 300, 301), dtype=np.float32)[:, :, 1:, 2:]
    dst = np.zeros(src.shape, np.float32)
    parallel.copy(dst, src)
    assert len(parallel.channel_chunks(dst)) > 1
    np.testing.assert_array_equal(dst, src)


def unet(channels, size, seed=0):
    """A 2-level U-Net whose convolutions run the flat (16 channels) or the Winograd
    engine (64 channels), with random weights and biases."""
    net = Net(parse(deploy_text(depth=2, channels=channels, size=size),
                    filename="unet.prototxt"), "TEST")
    randomize_params(net, np.random.default_rng(seed))
    return net


def every_blob(net, image):
    net.forward(data=image)
    return {name: blob.data.copy() for name, blob in net.blobs.items()}


@needs_openblas
@pytest.mark.parametrize("channels, engine", [(16, "flat"), (64, "winograd")])
def test_the_forward_on_two_threads_equals_the_one_thread_forward(channels, engine, workers):
    """Small bands (many per image) on two workers against one thread: every blob equal to
    float32 rounding (the sums are the same, in the same order)."""
    net = unet(channels, 124)
    assert engine in {layer.engine for layer in net.layers if layer.type == "Convolution"}
    assert "tiled" in {layer.engine for layer in net.layers if layer.type == "Pooling"}
    image = np.random.default_rng(1).random(net.blobs["data"].shape, dtype=np.float32)
    with config.using_sizes(parallel_band_bytes=2 ** 16):
        workers.threads = 1
        alone = every_blob(net, image)
        workers.threads = 2
        shared = every_blob(net, image)
    for name, data in alone.items():
        np.testing.assert_allclose(shared[name], data, rtol=1e-6, atol=1e-6, err_msg=name)


def test_a_folded_relu_gives_what_the_relu_layer_gives():
    net = unet(16, 124, seed=3)
    fused = dict(net.fused_rectifiers)
    conv = [i for i in fused if net.layers[i].type == "Convolution"]
    assert conv and any(net.layers[i].type == "Deconvolution" for i in fused)
    assert all(net.layers[j].type == "ReLU" for j in fused.values())
    image = np.random.default_rng(2).random(net.blobs["data"].shape, dtype=np.float32)
    folded = every_blob(net, image)
    net.fused_rectifiers = {}
    as_written = every_blob(net, image)
    for name, data in as_written.items():
        np.testing.assert_allclose(folded[name], data, rtol=1e-6, atol=1e-6, err_msg=name)


def test_a_forward_that_ends_at_the_convolution_leaves_its_top_unrectified():
    net = unet(16, 124, seed=3)
    i = next(iter(net.fused_rectifiers))
    conv, relu = net.layer_names[i], net.layer_names[i + 1]
    image = np.random.default_rng(2).random(net.blobs["data"].shape, dtype=np.float32)
    top = net.specs[i].tops[0]
    before_relu = net.forward(data=image, end=conv)[top].copy()
    assert (before_relu < 0).any()
    after = net.forward(start=relu, end=relu)[top]
    np.testing.assert_array_equal(after, np.maximum(before_relu, 0))


@needs_openblas
def test_a_batch_on_two_threads_equals_each_image_alone(workers):
    """The images of a batch share the cores (the net's engines: im2col, flat, Winograd,
    block up-convolution, pointwise); each image's scores equal its own forward."""
    net = unet(16, 124, seed=4)
    engines = {layer.engine for layer in net.layers if "onvolution" in layer.type}
    assert engines == {"reference", "flat", "winograd", "blocks", "pointwise"}
    images = np.random.default_rng(5).random((3, 1, 124, 124), dtype=np.float32)
    output = net.outputs[0]
    alone = [net.forward(data=image[None])[output].copy() for image in images]
    net.blobs["data"].reshape(images.shape)
    net.reshape()
    together = net.forward(data=images)[output]
    for got, expected in zip(together, alone):
        np.testing.assert_allclose(got, expected[0], rtol=1e-6, atol=1e-6)


@needs_openblas
@pytest.mark.parametrize("c_in, c_out, size, band_bytes", [(128, 128, 70, 2 ** 20),
                                                           (96, 160, 37, 2 ** 18)])
def test_a_wider_winograd_layer_runs_in_two_phases_with_the_same_sums_on_any_count(
        c_in, c_out, size, band_bytes, workers):
    """Above PARALLEL_MAX_KERNEL the forward shares each band out in two phases (the input
    tiles by parts of the tile rows, then the products and output tiles by blocks of output
    channels): on two workers and on one the same sums, bit for bit; and forward_gemm's
    bands one after another, bias and ReLU after, within twice Winograd's float32 error
    (equal with OpenBLAS's SkylakeX kernel; its Haswell kernel rounds some products otherwise
    where a GEMM's columns are cut elsewhere, and F(4, 3)'s output transform magnifies that)."""
    text = (f'name: "wide" input: "data" input_shape {{ dim: 2 dim: {c_in} dim: {size} '
            f'dim: {size} }} layer {{ name: "conv" type: "Convolution" bottom: "data" '
            f'top: "y" convolution_param {{ num_output: {c_out} kernel_size: 3 }} }} '
            'layer { name: "relu" type: "ReLU" bottom: "y" top: "y" }')
    net = Net(parse(text), "TEST")
    randomize_params(net, np.random.default_rng(6))
    conv = net.layers[net.layer_names.index("conv")]
    assert conv.engine == "winograd"
    assert winograd.PARALLEL_MAX_KERNEL < c_in * c_out <= winograd.PHASES_MAX_KERNEL
    x = np.random.default_rng(7).standard_normal(net.blobs["data"].shape).astype(np.float32)
    with config.using_sizes(winograd_band_bytes=band_bytes):
        assert len(conv.tile_bands(net.blobs["y"].shape[2:], c_in, c_out)) > 1
        workers.threads = 1
        alone = net.forward(data=x)["y"].copy()
        workers.threads = 2
        shared = net.forward(data=x)["y"].copy()
        one_by_one = np.empty_like(shared)
        w = conv.weight_matrices(conv.blobs[0].data)
        for image, y in zip(x, one_by_one):
            conv.forward_gemm(image, w, y)
    np.testing.assert_array_equal(shared, alone)
    one_by_one = np.maximum(one_by_one + conv.blobs[1].data[:, None, None], 0)
    error = np.abs(shared - one_by_one).max() / np.abs(one_by_one).max()
    assert error < 2e-5             # each within F(4, 3)'s float32 bound of 1e-5 (test_layers)
