"""The cases the tests share, one module instead of test modules importing one another: paths,
layer builders and oracles, engine x device cases, the small U-Net's solver, caffe_unet's nets
and Fiji model files in the plugin's layout."""
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import strategies as st

import unetcore
from unetcore import config
from unetcore.backend import to_numpy
from unetcore.blob import Blob
from unetcore.formats.prototxt import parse
from unetcore.gradcheck import check_gradients, layer_from_text
from unetcore.layer import ENGINES
from unetcore.models import unet3d
from unetcore.models.unet import output_size

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"            # real ISBI slices and weights (see its README)
SHARED = REPO.parent / "shared"                # the project's shared data; a user's clone has none


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


# ---------------------------------------------------------------- 2-d layers
def conv_text(kind="Convolution", num_output=2, kernel=(3, 3), stride=(1, 1), pad=(0, 0),
              dilation=1, group=1, bias=True):
    return f'''name: "c" type: "{kind}" convolution_param {{ num_output: {num_output}
      kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} stride_w: {stride[1]}
      pad_h: {pad[0]} pad_w: {pad[1]} dilation: {dilation} group: {group} bias_term: {str(bias).lower()}
      weight_filler {{ type: "gaussian" }} bias_filler {{ type: "gaussian" }} }}'''


conv_params = st.fixed_dictionaries({
    "n": st.integers(1, 2), "group": st.integers(1, 2), "cin": st.integers(1, 2),
    "cout": st.integers(1, 2), "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "sh": st.integers(1, 2), "sw": st.integers(1, 2), "ph": st.integers(0, 2), "pw": st.integers(0, 2),
    "dilation": st.integers(1, 2), "h": st.integers(1, 7), "w": st.integers(1, 7),
    "bias": st.booleans()})


def forward_and_backward(layer, x, dy):
    """(y, dx, dW) of one layer on x and the top gradient dy, as NumPy arrays, on the layer's
    device."""
    bottom, top = blobs_of(x, xp=layer.xp), blobs_of(np.zeros(1), xp=layer.xp)
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    top[0].diff[...] = layer.xp.asarray(dy)
    layer.backward(top, [True], bottom)
    return to_numpy(top[0].data), to_numpy(bottom[0].diff), to_numpy(layer.blobs[0].diff)


# ---------------------------------------------------------------- N-d layers
def repeated(field, values):
    return " ".join(f"{field}: {v}" for v in values)


def nd_conv_text(kind, num_output, kernel, stride, pad, dilation, group=1, bias=True):
    return (f'name: "c" type: "{kind}" convolution_param {{ num_output: {num_output} '
            f'{repeated("kernel_size", kernel)} {repeated("stride", stride)} '
            f'{repeated("pad", pad)} {repeated("dilation", dilation)} group: {group} '
            f'bias_term: {str(bias).lower()} weight_filler {{ type: "gaussian" }} '
            'bias_filler { type: "gaussian" } }')


@st.composite
def nd_conv_case(draw, max_size=5):
    """Parameters of an N-d convolution: 1 or 3 spatial axes, each axis its own kernel,
    stride, padding and dilation (caffe_unet's 1x3x3 is among them)."""
    axes = draw(st.sampled_from([1, 3]))
    per_axis = lambda low, high: tuple(draw(st.integers(low, high)) for _ in range(axes))  # noqa: E731
    case = dict(axes=axes, kernel=per_axis(1, 3), stride=per_axis(1, 2), pad=per_axis(0, 1),
                dilation=per_axis(1, 2), group=draw(st.integers(1, 2)),
                cin=draw(st.integers(1, 2)), cout=draw(st.integers(1, 2)),
                n=draw(st.integers(1, 2)), bias=draw(st.booleans()))
    case["size"] = tuple(draw(st.integers(1, max_size)) for _ in range(axes))
    return case


def nd_pool_text(method, kernel, stride, pad):
    return (f'name: "p" type: "Pooling" pooling_param {{ pool: {method} '
            f'{repeated("kernel_size", kernel)} {repeated("stride", stride)} '
            f'{repeated("pad", pad)} }}')


# ---------------------------------------------------------------- the small U-Net
def small_unet_solver(tmp_path, extra=""):
    text = (f'net: "prototxt/unet-small-train.prototxt" base_lr: 0.05 momentum: 0.9 '
            f'random_seed: 1 snapshot_prefix: "{tmp_path}/small" {extra}')
    solver = unetcore.get_solver(parse(text, "SolverParameter"))
    rng = np.random.default_rng(0)
    image = rng.random((1, 1, 60, 60))
    label = (image[:, :, 20:40, 20:40] > 0.5).astype(float)
    solver.net.set_inputs(dict(data=image, label=label, weights=np.ones_like(label)))
    return solver


def weights_of(solver):
    return [b.data.copy() for b in solver.net.learnable_params]


# ---------------------------------------------------------------- caffe_unet's nets
PARAMS = "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }"


def conv(name, bottom, top, outputs, kernel=3, kind="Convolution", stride=""):
    return (f"layer {{ bottom: '{bottom}' top: '{top}' name: '{name}' type: '{kind}' {PARAMS} "
            f"convolution_param {{ num_output: {outputs} pad: 0 kernel_size: {kernel} {stride}"
            f"weight_filler {{ type: 'msra' }} }} }}\n")


def leaky(blob):
    return (f"layer {{ bottom: '{blob}' top: '{blob}' name: 'relu_{blob}' type: 'ReLU' "
            f"relu_param {{ negative_slope: 0.1 }} }}\n")


def cell_net(tile, depth=4, channels=64, h5_list="input_files.txt"):
    """A 2-d cell net in caffe_unet's style: training data from HDF5 (data, labels, weights,
    and weights2, the pdf of tile centres), deformed and grey-value augmented in the net."""
    out = output_size(tile, depth)
    text = ["name: 'cell_net'\n",
            f"layer {{ top: 'data' top: 'labels' top: 'weights' top: 'weights2' name: 'loaddata' "
            f"type: 'HDF5Data' hdf5_data_param {{ source: '{h5_list}' batch_size: 1 "
            f"shuffle: false }} include: {{ phase: TRAIN }} }}\n",
            f"layer {{ bottom: 'weights2' top: 'def' name: 'create_deformation' "
            f"type: 'CreateDeformation' create_deformation_param {{ batch_size: 1 ny: {tile} "
            f"nx: {tile} ncomponents: 2 random_elastic_grid_spacing {{ v: 150 v: 150 }} "
            f"random_elastic_deform_magnitude {{ v: 10 v: 10 }} random_offset_range_from_pdf: "
            f"true random_mirror_flag {{ v: 1 v: 1 }} random_rotate_from {{ v: 0 }} "
            f"random_rotate_to {{ v: 360 }} }} include: {{ phase: TRAIN }} }}\n",
            "layer { bottom: 'data' bottom: 'def' top: 'd0a' name: 'def_data-d0a' "
            "type: 'ApplyDeformation' apply_deformation_param { interpolation: 'linear' "
            "extrapolation: 'mirror' } include: { phase: TRAIN } }\n",
            "layer { bottom: 'd0a' top: 'd0a' name: 'val_aug-d0a' type: 'ValueAugmentation' "
            "value_augmentation_param { black_from: -0.05 black_to: 0.05 slope_min: 0.8 "
            "slope_max: 1.2 white_from: 0.95 white_to: 1.05 n_control_point_insertions: 2 } "
            "include: { phase: TRAIN } }\n",
            f"layer {{ top: 'd0a' name: 'input' type: 'Input' input_param {{ shape {{ dim: 1 "
            f"dim: 1 dim: {tile} dim: {tile} }} }} include: {{ phase: TEST }} }}\n",
            "layer { bottom: 'd0a' top: 'd0a_n' name: 'trafo_d0a' type: 'ValueTransformation' "
            "value_transformation_param { offset { v: -0.5 } scale { v: 2 } } }\n"]
    bottom = "d0a_n"
    for level in range(depth + 1):
        width = channels * 2 ** level
        text += [conv(f"conv_d{level}a-b", bottom, f"d{level}b", width), leaky(f"d{level}b"),
                 conv(f"conv_d{level}b-c", f"d{level}b", f"d{level}c", width),
                 leaky(f"d{level}c")]
        if level < depth:
            bottom = f"d{level + 1}a"
            text.append(f"layer {{ bottom: 'd{level}c' top: '{bottom}' name: 'pool_d{level}c' "
                        f"type: 'Pooling' pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}\n")
    below = f"d{depth}c"
    for level in reversed(range(depth)):
        width = channels * 2 ** level
        text += [conv(f"upconv_{below}_u{level}a", below, f"u{level}a", width, 2,
                      "Deconvolution", "stride: 2 "), leaky(f"u{level}a"),
                 f"layer {{ bottom: 'u{level}a' bottom: 'd{level}c' top: 'u{level}b' "
                 f"name: 'concat_d{level}c_u{level}a-b' type: 'Concat' }}\n",
                 conv(f"conv_u{level}b-c", f"u{level}b", f"u{level}c", width), leaky(f"u{level}c"),
                 conv(f"conv_u{level}c-d", f"u{level}c", f"u{level}d", width), leaky(f"u{level}d")]
        below = f"u{level}d"
    text += [conv("conv_u0d-score", "u0d", "score", 2, 1),
             "layer { bottom: 'labels' bottom: 'def' top: 'labelcrop' name: 'def_label-crop' "
             "type: 'ApplyDeformation' apply_deformation_param { interpolation: 'nearest' "
             "extrapolation: 'mirror' output_shape_from: 'score' } include: { phase: TRAIN } }\n",
             "layer { bottom: 'weights' bottom: 'def' top: 'weightcrop' name: 'def_weight-crop' "
             "type: 'ApplyDeformation' apply_deformation_param { interpolation: 'linear' "
             "extrapolation: 'mirror' output_shape_from: 'score' } include: { phase: TRAIN } }\n",
             "layer { bottom: 'score' bottom: 'labelcrop' bottom: 'weightcrop' top: 'loss' "
             "name: 'loss' type: 'SoftmaxWithLoss' include: { phase: TRAIN } }\n"]
    assert out > 0
    return "".join(text)


# ---------------------------------------------------------------- Fiji model files
def fixed(text):
    """A fixed-length utf-8 string, as JHDF5 writes them."""
    data = text.encode()
    return np.array(data, dtype=h5py.string_dtype("utf-8", len(data)))


# A depth-2 cell net in the plugin's layout: its TRAIN net, whose image blob 'd0a' only
# A depth-2 cell net in the plugin's layout: its TRAIN net, whose image blob 'd0a' only
# TRAIN layers produce (cell_net's TEST Input layer dropped: caffe_unet adds its own).
MODEL_TEXT = "".join(line for line in cell_net(44, depth=2, channels=2).splitlines(True)
                     if "type: 'Input'" not in line)


LMB_MODEL = SHARED / "data" / "fiji-models" / "2d_cell_net_v0.modeldef.h5"


needs_lmb_model = pytest.mark.skipif(not LMB_MODEL.exists(),
                                     reason="../shared/data/fiji-models is not here")


def write_plugin_modeldef(path, element_size=(0.5, 0.5), padding="mirror", normalization=1,
                          loss_weights=None, class_names=("Background", "cell")):
    """A .modeldef.h5 as the plugin's ModelDefinition.save writes it."""
    weights = loss_weights or {"borderWeightFactor": 50, "borderWeightSigmaPx": 6,
                               "foregroundBackgroundRatio": 0.1, "sigma1Px": 10}
    with h5py.File(path, "w") as f:
        for key, text in (("/.unet-ident", "test-cell-net"), ("/model_prototxt", MODEL_TEXT),
                          ("/solver_prototxt", "base_lr: 0.00001 momentum: 0.9 "
                                               "momentum2: 0.999 lr_policy: 'fixed' "
                                               "max_iter: 600000 display: 1 type: 'Adam'"),
                          ("/unet_param/name", "test cell net"),
                          ("/unet_param/description", "depth 2, für Tests"),
                          ("/unet_param/input_blob_name", "d0a"),
                          ("/unet_param/input_dataset_name", "data"),
                          ("/unet_param/padding", padding)):
            f[key] = fixed(text)
        f["/unet_param/normalization_type"] = np.int32(normalization)
        f["/unet_param/element_size_um"] = np.array(element_size, np.float64)
        f["/unet_param/downsampleFactor"] = np.int32([4])
        f["/unet_param/padInput"] = np.int32([20])
        f["/unet_param/padOutput"] = np.int32([-20])
        for key, value in weights.items():
            f[f"/unet_param/pixelwise_loss_weights/{key}"] = np.float32(value)
        f["/unet_param/diskRadiusPx"] = np.int32(2)
        if class_names:
            f["/unet_param/classNames"] = np.array([n.encode() for n in class_names],
                                                   dtype=h5py.string_dtype("utf-8", 10))
        f["/__DATA_TYPES__/String_VariableLength"] = h5py.string_dtype()   # JHDF5's
    return path


# A 3-d net in caffe_unet's style (unetcore.models.unet3d), kept tiny: depth 2, 2 channels, a
# first level that convolves 1x3x3 and pools 1x2x2. Its image blob 'd0a' comes only from TRAIN
# layers (HDF5Data, CreateDeformation, ApplyDeformation). Its tile rule per axis (z, y, x), read
# off the net with `unetcore shapes` (tests/fiji/test_modeldef_3d.py checks it): the input
# tiles are 2k + 12 in z and 4k + 28 in y and x, their outputs 2k - 4 and 4k - 12 (18x44x44 ->
# 2x4x4, the smallest).
MODEL_3D_TEXT = unet3d.train_text("test-volume-net", (18, 44, 44), depth=2, channels=2,
                                  flat_levels=1, source="input_files.txt")
MODEL_3D_GEOMETRY = {"downsampleFactor": (2, 4, 4), "padInput": (12, 28, 28),
                     "padOutput": (-4, -12, -12)}


def write_plugin_modeldef_3d(path, element_size=(1.0, 0.5, 0.5), padding="mirror",
                             normalization=1):
    """A 3-d .modeldef.h5 as the plugin's ModelDefinition.save writes it: element_size_um
    and the tile rule with one value per axis (z, y, x)."""
    write_plugin_modeldef(path, element_size, padding, normalization)
    with h5py.File(path, "a") as f:
        for key, text in (("/.unet-ident", "test-volume-net"),
                          ("/model_prototxt", MODEL_3D_TEXT),
                          ("/unet_param/name", "test volume net"),
                          ("/unet_param/description", "3-d, depth 2, für Tests")):
            del f[key]
            f[key] = fixed(text)
        for key, values in MODEL_3D_GEOMETRY.items():
            del f[f"/unet_param/{key}"]
            f[f"/unet_param/{key}"] = np.int32(values)
    return path
