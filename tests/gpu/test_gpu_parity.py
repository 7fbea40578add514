"""CPU against GPU, layer by layer, on hypothesis-drawn shapes and parameters.

Each case builds the same layer twice, on NumPy and on CuPy, from the same seed (so with the
same parameters), runs forward on the same inputs and backward on the same top gradients,
and compares every top, bottom gradient and parameter gradient: to 1e-10 in float64 and
1e-5 in float32, relative to the largest value of each array. Then the small and the full
U-Net take 5 SGD steps on both backends and must end with the same weights.
Skipped where CuPy sees no CUDA device.
"""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from cases import (conv_params, conv_text, cupy_with_device, nd_conv_case, nd_conv_text,
                   nd_pool_text, needs_gpu)
from unetcore import config
from unetcore.backend import to_numpy
from unetcore.blob import Blob
from unetcore.errors import NetError
from unetcore.layer import layer_class
from unetcore.formats.prototxt import Message, parse

cupy = cupy_with_device()
pytestmark = needs_gpu

PRECISIONS = [(np.float64, 1e-10), (np.float32, 1e-5)]
precisions = st.sampled_from(PRECISIONS)


def run_layer(xp, text, inputs, dtype, down=None, phase="TRAIN", tops=1):
    """{name: host array} of a layer's tops and, if `down` is given, of its bottom
    gradients (where down[i]) and parameter gradients after one backward."""
    param = parse(text, "LayerParameter")
    cls = layer_class(param, [np.shape(a) for a in inputs], xp)     # each device's engine
    layer = cls(param, phase, dtype, xp, np.random.default_rng(0))
    bottom = []
    for array in inputs:
        blob = Blob(np.shape(array), dtype, xp)
        blob.data[...] = xp.asarray(array)
        bottom.append(blob)
    top = [Blob((), dtype, xp) for _ in range(tops)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    arrays = {f"top {i}": to_numpy(t.data).copy() for i, t in enumerate(top)}
    if down is None:
        return arrays
    rng = np.random.default_rng(1)
    for t in top:
        t.diff[...] = xp.asarray(rng.standard_normal(t.shape))
    layer.backward(top, down, bottom)
    arrays.update({f"bottom {i} diff": to_numpy(b.diff)
                   for i, (b, d) in enumerate(zip(bottom, down)) if d})
    arrays.update({f"param {i} diff": to_numpy(b.diff) for i, b in enumerate(layer.blobs)})
    return arrays


def assert_close(expected, actual, tolerance, what=""):
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale,
                               err_msg=what)


def assert_same_on_both(text, inputs, precision, down=None, phase="TRAIN", tops=1):
    dtype, tolerance = precision
    try:
        on_cpu = run_layer(np, text, inputs, dtype, down, phase, tops)
    except NetError:
        assume(False)                   # a shape the layer refuses: not a parity question
    on_gpu = run_layer(cupy, text, inputs, dtype, down, phase, tops)
    assert on_gpu.keys() == on_cpu.keys()
    for name, expected in on_cpu.items():
        assert_close(expected, on_gpu[name], tolerance, name)


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------- convolutions
@given(conv_params, st.sampled_from(["Convolution", "Deconvolution"]), precisions)
def test_convolution_and_deconvolution(p, kind, precision):
    text = conv_text(kind, p["cout"] * p["group"], (p["kh"], p["kw"]), (p["sh"], p["sw"]),
                     (p["ph"], p["pw"]), p["dilation"], p["group"], p["bias"])
    x = normal(p["n"], p["cin"] * p["group"], p["h"], p["w"])
    assert_same_on_both(text, [x], precision, down=[True])


@pytest.mark.parametrize("cin,cout,kernel,size", [
    (16, 8, (3, 3), (12, 11)),       # the CPU's flat im2col
    (24, 32, (3, 2), (9, 14)),       # flat, rectangular kernel
    (6, 3, (3, 3), (10, 10)),        # the CPU's dx by correlation (C_in > C_out)
    (4, 4, (1, 1), (7, 9))])         # pointwise
@pytest.mark.parametrize("precision", PRECISIONS, ids=["float64", "float32"])
@pytest.mark.parametrize("band_bytes", [None, 2048], ids=["one band", "many bands"])
def test_convolution_cpu_fast_paths_against_the_gpu(cin, cout, kernel, size, precision,
                                                    band_bytes, monkeypatch):
    limits = dict(workspace_bytes=band_bytes, cache_band_bytes=band_bytes) if band_bytes else {}
    with config.using_sizes(**limits):
        assert_same_on_both(conv_text(num_output=cout, kernel=kernel), [normal(2, cin, *size)],
                            precision, down=[True])


@pytest.mark.parametrize("kernel,size", [((3, 3), (13, 12)), ((3, 2), (9, 14))])
@pytest.mark.parametrize("precision", [(np.float64, 1e-10), (np.float32, 1e-4)],
                         ids=["float64", "float32"])
def test_winograd_engine_on_the_gpu_against_the_cpu_reference(kernel, size, precision):
    """The Winograd engine's code runs unchanged on CuPy; the CPU's reference is the oracle
    (float32 to 1e-4: Winograd's own rounding, docs/winograd.md)."""
    dtype, tolerance = precision
    text, inputs = conv_text(num_output=8, kernel=kernel), [normal(2, 16, *size)]
    with config.using_engine("reference"):
        on_cpu = run_layer(np, text, inputs, dtype, down=[True])
    with config.using_engine("winograd"):
        on_gpu = run_layer(cupy, text, inputs, dtype, down=[True])
    for name, expected in on_cpu.items():
        assert_close(expected, on_gpu[name], tolerance, name)


# ---------------------------------------------------------------- pooling
def pool_text(method, kernel, stride, pad):
    return (f'name: "p" type: "Pooling" pooling_param {{ pool: {method} kernel_size: {kernel} '
            f'stride: {stride} pad: {pad} }}')


@given(nd_conv_case(max_size=5), st.sampled_from(["Convolution", "Deconvolution"]), precisions)
def test_nd_convolution_and_deconvolution(c, kind, precision):
    """1-d and 3-d: the strided im2col/col2im on CuPy (the CUDA kernels are 2-d), and the
    pointwise and blocks engines where they run."""
    text = nd_conv_text(kind, c["cout"] * c["group"], c["kernel"], c["stride"], c["pad"],
                        c["dilation"], c["group"], c["bias"])
    x = normal(c["n"], c["cin"] * c["group"], *c["size"])
    assert_same_on_both(text, [x], precision, down=[True])


@given(st.sampled_from(["MAX", "AVE"]), st.sampled_from([(1, 2, 2), (2, 2, 2), (3, 1, 2)]),
       st.integers(0, 1), st.sampled_from([(4, 6, 7), (3, 5, 5)]), precisions)
def test_nd_pooling(method, kernel, pad, size, precision):
    stride = tuple(max(1, k - 1) for k in kernel)
    pads = tuple(min(pad, k - 1) for k in kernel)
    x = normal(2, 2, *size)
    assert_same_on_both(nd_pool_text(method, kernel, stride, pads), [x], precision,
                        down=[True])


@given(st.sampled_from(["MAX", "AVE"]), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2),
       st.integers(1, 9), st.integers(1, 9), st.integers(1, 2), precisions)
def test_pooling(method, kernel, stride, pad, h, w, n, precision):
    assume(pad < kernel)
    assert_same_on_both(pool_text(method, kernel, stride, pad), [normal(n, 3, h, w)], precision,
                        down=[True])


@pytest.mark.parametrize("precision", PRECISIONS, ids=["float64", "float32"])
def test_max_pooling_2x2_with_ties_takes_the_first_maximum_on_both(precision):
    """The CPU's tiled tournament and the GPU kernel must pick the same winner of a tie."""
    x = np.random.default_rng(3).integers(0, 3, (2, 4, 10, 12)).astype(float)
    assert_same_on_both(pool_text("MAX", 2, 2, 0), [x], precision, down=[True])


# ---------------------------------------------------------------- pointwise layers
@given(st.floats(0, 0.5), precisions)
def test_relu(slope, precision):
    assert_same_on_both(f'name: "r" type: "ReLU" relu_param {{ negative_slope: {slope} }}',
                        [normal(2, 3, 5, 4)], precision, down=[True])


@given(precisions)
def test_dropout_at_test_time(precision):
    assert_same_on_both('name: "d" type: "Dropout"', [normal(2, 3, 4, 4)], precision,
                        down=[True], phase="TEST")


def test_dropout_at_train_time_on_the_gpu_keeps_and_scales_one_mask():
    """The GPU draws its own mask: check what it must satisfy instead of the CPU's numbers."""
    arrays = run_layer(cupy, 'name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.25 }',
                       [1 + np.abs(normal(4, 8, 16, 16))], np.float64, down=[True])
    x, y = 1 + np.abs(normal(4, 8, 16, 16)), arrays["top 0"]
    kept = y != 0
    assert kept.mean() == pytest.approx(0.75, abs=0.02)
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-12)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(arrays["bottom 0 diff"], np.where(kept, dy / 0.75, 0), rtol=1e-12)


@given(st.integers(0, 3), st.integers(0, 3), st.integers(1, 4), st.integers(1, 4), precisions)
def test_crop(oy, ox, h, w, precision):
    text = f'name: "c" type: "Crop" crop_param {{ axis: 2 offset: {oy} offset: {ox} }}'
    assert_same_on_both(text, [normal(2, 3, 7, 7), np.zeros((2, 3, h, w))], precision,
                        down=[True, False])


@given(st.integers(1, 3), st.integers(0, 4), st.integers(0, 3), st.sampled_from([0, 1]),
       precisions)
def test_concat_with_caffe_unet_center_crop(c, extra_h, extra_w, axis, precision):
    a = normal(2, c, 3, 4)
    b = normal(2 if axis == 1 else 3, 2, 3 + extra_h, 4 + extra_w, seed=1)
    text = f'name: "cat" type: "Concat" concat_param {{ axis: {axis} }}'
    assert_same_on_both(text, [a, b], precision, down=[True, True])


@given(st.sampled_from([1, -1, 0]), precisions)
def test_softmax(axis, precision):
    assert_same_on_both(f'name: "s" type: "Softmax" softmax_param {{ axis: {axis} }}',
                        [3 * normal(2, 3, 4, 5)], precision, down=[True])


@given(st.integers(2, 4), st.booleans(), st.booleans(),
       st.sampled_from(["FULL", "VALID", "BATCH_SIZE", "NONE"]), st.integers(1, 2), precisions)
def test_softmax_with_loss(classes, weighted, ignore, normalization, n, precision):
    rng = np.random.default_rng(2)
    bottoms = [3 * rng.standard_normal((n, classes, 5, 6)),
               rng.integers(0, classes, (n, 1, 5, 6)).astype(float)]
    if weighted:
        bottoms.append(1 + 9 * rng.random((n, 1, 5, 6)))
    extra = f"normalization: {normalization}" + (" ignore_label: 1" if ignore else "")
    text = f'name: "loss" type: "SoftmaxWithLoss" loss_param {{ {extra} }}'
    assert_same_on_both(text, bottoms, precision, down=[True] + [False] * (len(bottoms) - 1),
                        tops=2)


@given(st.sampled_from(["SUM", "PROD", "MAX"]), st.integers(2, 3), precisions)
def test_eltwise(operation, count, precision):
    coeff = " ".join(f"coeff: {c}" for c in (0.5, -2, 3)[:count]) if operation == "SUM" else ""
    text = f'name: "e" type: "Eltwise" eltwise_param {{ operation: {operation} {coeff} }}'
    assert_same_on_both(text, [normal(2, 3, 4, 5, seed=i) for i in range(count)], precision,
                        down=[True] * count)


@given(st.integers(1, 3), st.booleans(), precisions)
def test_accuracy(top_k, ignore, precision):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, (2, 1, 5, 5)).astype(float)
    extra = f"top_k: {top_k}" + (" ignore_label: 2" if ignore else "")
    assert_same_on_both(f'name: "a" type: "Accuracy" accuracy_param {{ {extra} }}',
                        [normal(2, 4, 5, 5), labels], precision)


@given(st.integers(1, 3), precisions)
def test_split(count, precision):
    assert_same_on_both('name: "s" type: "Split"', [normal(2, 3, 4, 4)], precision, down=[True],
                        tops=count)


@given(st.integers(1, 3), precisions)
def test_value_transformation(channels, precision):
    values = " ".join(f"v: {v}" for v in (0.5, -2, 3)[:channels])
    text = (f'name: "vt" type: "ValueTransformation" value_transformation_param {{ '
            f'offset {{ {values} }} scale {{ v: 1.5 }} }}')
    assert_same_on_both(text, [normal(2, channels, 4, 5)], precision, down=[True])


@given(st.integers(0, 3), precisions)
def test_value_augmentation(insertions, precision):
    """The curves are drawn on the host, so both backends apply the same ones."""
    text = ('name: "va" type: "ValueAugmentation" value_augmentation_param { '
            f'black_from: 0 black_to: 0.1 white_from: 0.9 white_to: 1 '
            f'n_control_point_insertions: {insertions} }}')
    assert_same_on_both(text, [np.random.default_rng(0).random((2, 2, 5, 6))], precision)


# ---------------------------------------------------------------- data layers
def tiff_text(folder, tile, label, deformation):
    return (f'name: "data" type: "TiffData" tiff_data_param {{ image: "{folder}/volume.tif" '
            f'label: "{folder}/labels.tif" tile_size: {tile} label_size: {label} batch_size: 2 '
            f'w0: 10 sigma: 5 }} {deformation}')


@pytest.fixture(scope="module")
def stack_folder(tmp_path_factory):
    import tifffile

    from unetcore.data.synth import synth_stack
    folder = tmp_path_factory.mktemp("stack")
    images, labels = synth_stack(3, 64, seed=0, cell_size=16)
    tifffile.imwrite(folder / "volume.tif", images, photometric="minisblack")
    tifffile.imwrite(folder / "labels.tif", labels, photometric="minisblack")
    return folder


@pytest.mark.parametrize("deformation", [
    "",
    "create_deformation_param { deform_std: 10 grid_points: 3 random_mirror_flag { v: 1 v: 1 } "
    "random_rotate_from { v: 0 } random_rotate_to { v: 360 } } "
    "value_augmentation_param { black_from: -0.1 black_to: 0.1 white_from: 0.9 white_to: 1.1 }",
    "create_deformation_param { random_elastic_grid_spacing { v: 12 v: 12 } "
    "random_elastic_deform_magnitude { v: 3 v: 3 } random_offset_from { v: -2 v: -2 } "
    "random_offset_to { v: 2 v: 2 } }"],
    ids=["plain", "paper", "caffe_unet"])
@pytest.mark.parametrize("precision", PRECISIONS, ids=["float64", "float32"])
def test_tiff_data_samples_the_same_tiles_on_the_gpu(stack_folder, deformation, precision):
    """The stacks live on the GPU and are sampled there (cupyx.scipy.ndimage); the random
    draws come from the same host generator, so the tiles are the CPU's."""
    dtype, tolerance = precision
    text = tiff_text(stack_folder, 60, 20, deformation)
    layers = []
    for xp in (np, cupy):
        param = parse(text, "LayerParameter")
        layer = layer_class(param, [], xp)(param, "TRAIN", dtype, xp, np.random.default_rng(7))
        top = [Blob((), dtype, xp) for _ in range(3)]
        layer.setup([], top)
        layer.reshape([], top)
        layers.append((layer, top))
    for _ in range(3):
        tops = []
        for layer, top in layers:
            layer.forward([], top)
            tops.append([to_numpy(t.data) for t in top])
        for name, cpu, gpu in zip(("data", "label", "weights"), *tops):
            # interpolated grey values in [0, 1]: float32 interpolation rounds at 1e-6
            assert_close(cpu, gpu, max(tolerance, 1e-6 if name == "data" else tolerance), name)


@pytest.mark.parametrize("interpolation", ["linear", "cubic", "nearest"])
@pytest.mark.parametrize("extrapolation", ["mirror", "zero"])
@pytest.mark.parametrize("precision", PRECISIONS, ids=["float64", "float32"])
def test_create_and_apply_deformation(interpolation, extrapolation, precision):
    create = ('name: "def" type: "CreateDeformation" create_deformation_param { batch_size: 2 '
              'ny: 12 nx: 12 ncomponents: 2 random_elastic_grid_spacing { v: 4 v: 5 } '
              'random_elastic_deform_magnitude { v: 2 v: 3 } random_mirror_flag { v: 1 v: 1 } '
              'random_rotate_from { v: 0 } random_rotate_to { v: 360 } '
              'random_offset_from { v: -3 v: 0 } random_offset_to { v: 3 v: 1 } }')
    maps = run_layer(np, create, [], precision[0])["top 0"]
    assert_close(maps, run_layer(cupy, create, [], precision[0])["top 0"], precision[1], "map")
    apply = (f'name: "apply" type: "ApplyDeformation" apply_deformation_param {{ '
             f'interpolation: "{interpolation}" extrapolation: "{extrapolation}" }}')
    # shift the positions off the half-pixel ties of nearest-neighbour rounding
    assert_same_on_both(apply, [normal(2, 2, 14, 14), np.round(maps, 1) + 0.03], precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_3d_create_and_apply_deformation(precision):
    """caffe_unet's 3-d map (B-spline in z, y, x, three rotation angles, voxel_relsize_z)
    and its resampling of a volume: the same random draws on the host, the same field and
    the same volume on both devices."""
    create = ('name: "def" type: "CreateDeformation" create_deformation_param { batch_size: 1 '
              'nz: 6 ny: 10 nx: 12 ncomponents: 3 voxel_relsize_z: 2 '
              'random_elastic_grid_spacing { v: 3 v: 4 v: 4 } '
              'random_elastic_deform_magnitude { v: 1 v: 2 v: 2 } '
              'random_rotate_from { v: 0 v: -10 v: -10 } random_rotate_to { v: 360 v: 10 v: 10 } '
              'random_mirror_flag { v: 1 v: 1 v: 1 } }')
    field = run_layer(np, create, [], precision[0])["top 0"]
    assert_close(field, run_layer(cupy, create, [], precision[0])["top 0"], precision[1])
    apply = ('name: "apply" type: "ApplyDeformation" apply_deformation_param { '
             'interpolation: "linear" extrapolation: "mirror" }')
    volume = normal(1, 2, 8, 12, 14)
    assert_same_on_both(apply, [volume, field], precision)


# ---------------------------------------------------------------- whole nets
def five_sgd_steps(xp_gpu, model, size, label_size, dtype):
    """Weights and losses after 5 SGD steps (momentum 0.99, weight decay) on fixed inputs."""
    from unetcore.solvers import get_solver
    param = Message("SolverParameter")
    for field, value in (("net", model), ("base_lr", 0.01), ("momentum", 0.99),
                         ("weight_decay", 0.0005), ("random_seed", 0)):
        param.set(field, value)
    solver = get_solver(param, gpu=xp_gpu, dtype=dtype)
    for layer in solver.net.layers:
        if layer.type == "Dropout":
            layer.phase = "TEST"         # the two backends draw different dropout masks
    rng = np.random.default_rng(1)
    solver.net.set_inputs({"data": rng.random((1, 1, size, size)),
                           "label": rng.integers(0, 2, (1, 1, label_size, label_size)),
                           "weights": 1 + 9 * rng.random((1, 1, label_size, label_size))})
    losses = []
    solver.callbacks.append(lambda s: losses.append(s.net.loss))
    solver.step(5)
    weights = {f"{name} {i}": to_numpy(b.data) for name, blobs in solver.net.params.items()
               for i, b in enumerate(blobs)}
    return losses, weights


@pytest.mark.parametrize("model,size,label_size", [
    ("prototxt/unet-small-train.prototxt", 60, 20),
    ("prototxt/unet-train-inputs.prototxt", 188, 4)], ids=["small", "full"])
@pytest.mark.parametrize("precision", [(np.float64, 1e-9), (np.float32, 1e-4)],
                         ids=["float64", "float32"])
def test_unet_after_five_sgd_steps(model, size, label_size, precision):
    dtype, tolerance = precision
    cpu_losses, cpu_weights = five_sgd_steps(None, model, size, label_size, dtype)
    gpu_losses, gpu_weights = five_sgd_steps(0, model, size, label_size, dtype)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=tolerance)
    for name, expected in cpu_weights.items():
        assert_close(expected, gpu_weights[name], tolerance, name)
