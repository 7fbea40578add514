"""The Fiji U-Net plugin's model files (.modeldef.h5), read and written as the plugin
(ModelDefinition.java) and caffe_unet (tools/caffe_unet.cpp, tiled_predict.cpp) do.

A .modeldef.h5 holds:
    /.unet-ident                       the model's id (fine-tuning appends "-<job id>")
    /model_prototxt, /solver_prototxt  the TRAIN net in caffe_unet's prototxt, and its solver
    /unet_param/name, description, input_blob_name, [input_dataset_name = "data"]
    /unet_param/padding                "mirror" or "zero"
    /unet_param/normalization_type     0 none, 1 min/max, 2 zero mean / unit std, 3 max norm 1
    /unet_param/element_size_um        the pixel size the model works at, ([z,] y, x)
    /unet_param/downsampleFactor, padInput, padOutput
                                       the tile rule, one value or one per axis: output tile =
                                       downsampleFactor k + padOutput, input tile = output
                                       tile + padInput - padOutput
    /unet_param/mapInputNumPxGPUMemMB  (optional) input pixels (row 0) per GPU MB (row 1)
    /unet_param/diskRadiusPx           (optional) the detection disk radius, default 2
    /unet_param/classNames             (optional) "Background", then the classes
    /unet_param/pixelwise_loss_weights/{borderWeightFactor, borderWeightSigmaPx,
                                        foregroundBackgroundRatio, sigma1Px}   (optional)

Strings are fixed-length (ascii or utf-8) or variable-length, scalars or 1-element arrays;
classNames is an array of them. The plugin writes with JHDF5, which may add a group
/__DATA_TYPES__ of named types; it is not part of the model.

The model's prototxt is its TRAIN net: its image blob (input_blob_name) comes from
TRAIN-only data layers. caffe_unet's TEST net is that text behind an Input layer named after
input_blob_name (`test_net_text`), and so is ours.
"""
import math
from dataclasses import dataclass, field, replace

import h5py
import numpy as np

from unetcore.errors import DataError
from unetcore.formats.weights import atomic_h5, open_h5

REQUIRED = ("/.unet-ident", "/model_prototxt", "/solver_prototxt", "/unet_param/name",
            "/unet_param/description", "/unet_param/input_blob_name", "/unet_param/padding",
            "/unet_param/normalization_type", "/unet_param/element_size_um",
            "/unet_param/downsampleFactor", "/unet_param/padInput", "/unet_param/padOutput")
PADDINGS = ("mirror", "zero")

# The plugin's loss-weight parameters, in pixels at the model's element size, and its
# defaults: ModelDefinition reads all four keys or, if one is missing, takes all four defaults.
LOSS_WEIGHT_DEFAULTS = {"borderWeightFactor": 50.0, "borderWeightSigmaPx": 6.0,
                        "foregroundBackgroundRatio": 0.1, "sigma1Px": 10.0}
# LMB's own model files (2d_cell_net_v0) give the two widths in micrometres instead; so did
# the plugin before 2018-09 (borderWeightSigmaUm). Pixels = micrometres / element size.
MICROMETRE_KEYS = {"borderWeightSigmaPx": ("borderWeightSigma_um", "borderWeightSigmaUm"),
                   "sigma1Px": ("sigma1_um",)}


@dataclass
class ModelDefinition:
    path: str
    ident: str
    name: str
    description: str
    input_blob_name: str
    model_prototxt: str
    solver_prototxt: str
    padding: str
    normalization_type: int
    element_size_um: tuple
    downsample_factor: tuple
    pad_input: tuple
    pad_output: tuple
    input_dataset_name: str = "data"
    memory_map: np.ndarray = None
    disk_radius_px: int = 2
    loss_weights: dict = field(default_factory=lambda: dict(LOSS_WEIGHT_DEFAULTS))
    loss_weights_from: str = "the plugin's defaults"
    class_names: list = field(default_factory=list)

    @property
    def n_dims(self):
        return len(self.element_size_um)

    def input_tile(self, output_tile):
        """The input tile for an output tile, per axis (ModelDefinition.getInputTileShape)."""
        return tuple(o + i - p for o, i, p in zip(output_tile, self.pad_input, self.pad_output))

    def output_tile(self, input_tile):
        """The output tile of an input tile, per axis (ModelDefinition.getOutputTileShape)."""
        return tuple(i - p + o for i, p, o in zip(input_tile, self.pad_input, self.pad_output))

    def min_output_tile(self):
        """The smallest valid output tile: padOutput plus pooling steps until not negative
        (the plugin's _minOutTileShape)."""
        return tuple(p + d * max(0, math.ceil(-p / d))
                     for p, d in zip(self.pad_output, self.downsample_factor))

    def segmentation_tile(self):
        """The plugin's default segmentation tile (an input tile): the smallest output tile
        plus 10 pooling steps."""
        return self.input_tile([m + 10 * d for m, d in zip(self.min_output_tile(),
                                                          self.downsample_factor)])

    def finetuning_tile(self):
        """The plugin's default fine-tuning tile (an input tile: CreateDeformation's ny, nx):
        the smallest input tile plus 10 pooling steps. 348 for 2d_cell_net_v0."""
        smallest = self.input_tile(self.min_output_tile())
        return tuple(s + 10 * d for s, d in zip(smallest, self.downsample_factor))

    def check_tile(self):
        """caffe_unet check_model_and_weights_h5's input shape, per axis:
        (1 - trunc(padOutput / downsampleFactor)) downsampleFactor + padInput."""
        return tuple((1 - int(p / d)) * d + i for p, d, i in
                     zip(self.pad_output, self.downsample_factor, self.pad_input))

    def num_classes(self):
        """The number of output classes the model names (classNames), else 2."""
        return len(self.class_names) if self.class_names else 2


# ---------------------------------------------------------------- HDF5 values


def _decode(value):
    """One HDF5 string element as str: fixed-length strings arrive as bytes (ascii or utf-8,
    NUL-padded), variable-length ones as bytes or str."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(type(value).__name__)
    return value.rstrip("\0")


def _dataset(node, where):
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{where}: is a group, not a value")
    return node[()]


def read_text(node, where):
    """A string dataset (a scalar, or an array of one string) as str."""
    value = _dataset(node, where)
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise DataError(f"{where}: holds {value.size} values; one string was expected")
        value = value.reshape(-1)[0]
    try:
        return _decode(value)
    except (TypeError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: is not a string ({err})") from None


def read_texts(node, where):
    """A string dataset as a list of str: an array of strings, or a single one."""
    values = np.atleast_1d(_dataset(node, where)).reshape(-1)
    try:
        return [_decode(v) for v in values]
    except (TypeError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: is not an array of strings ({err})") from None


def read_ints(node, where):
    """An integer dataset (a scalar, or an array) as a tuple of int."""
    values = np.atleast_1d(np.asarray(_dataset(node, where))).reshape(-1)
    if values.size == 0 or not (np.issubdtype(values.dtype, np.integer)
                                or np.all(np.mod(values, 1) == 0)):
        raise DataError(f"{where}: holds {values.tolist()}; whole numbers were expected")
    return tuple(int(v) for v in values)


def read_floats(node, where):
    values = np.atleast_1d(np.asarray(_dataset(node, where))).reshape(-1)
    if values.size == 0 or not np.issubdtype(values.dtype, np.number):
        raise DataError(f"{where}: holds {values.tolist()}; numbers were expected")
    return tuple(float(v) for v in values)


def _per_axis(values, n_dims, where):
    """One value per spatial axis from one (for all axes) or n_dims values (as the plugin
    and caffe_unet widen scalar parameters)."""
    if len(values) == 1:
        return values * n_dims
    if len(values) != n_dims:
        raise DataError(f"{where}: has {len(values)} values for a {n_dims}-d model")
    return values


# ---------------------------------------------------------------- reading


def read_modeldef(path):
    """A ModelDefinition from a .modeldef.h5; a missing or malformed key names the file and
    the key."""
    with open_h5(path, "model definition") as f:
        missing = [key for key in REQUIRED if key not in f]
        if missing:
            raise DataError(f"{path}: not a U-Net model definition: it has no '{missing[0]}'")
        param = f["unet_param"]

        def where(key):
            return f"{path}:{key}"

        element_size = read_floats(param["element_size_um"], where("/unet_param/element_size_um"))
        if len(element_size) not in (2, 3):
            raise DataError(f"{where('/unet_param/element_size_um')}: has {len(element_size)} "
                            "values; a model is 2-d (y, x) or 3-d (z, y, x)")
        n_dims = len(element_size)
        geometry = {key: _per_axis(read_ints(param[key], where(f"/unet_param/{key}")), n_dims,
                                   where(f"/unet_param/{key}"))
                    for key in ("downsampleFactor", "padInput", "padOutput")}
        if min(geometry["downsampleFactor"]) < 1:
            raise DataError(f"{where('/unet_param/downsampleFactor')}: must be positive")
        loss_weights, weights_from = _loss_weights(param, element_size, where)
        model = ModelDefinition(
            path=str(path), ident=read_text(f["/.unet-ident"], where("/.unet-ident")),
            name=read_text(param["name"], where("/unet_param/name")),
            description=read_text(param["description"], where("/unet_param/description")),
            input_blob_name=read_text(param["input_blob_name"],
                                      where("/unet_param/input_blob_name")),
            model_prototxt=read_text(f["/model_prototxt"], where("/model_prototxt")),
            solver_prototxt=read_text(f["/solver_prototxt"], where("/solver_prototxt")),
            padding=read_text(param["padding"], where("/unet_param/padding")),
            normalization_type=read_ints(param["normalization_type"],
                                         where("/unet_param/normalization_type"))[0],
            element_size_um=element_size, downsample_factor=geometry["downsampleFactor"],
            pad_input=geometry["padInput"], pad_output=geometry["padOutput"],
            loss_weights=loss_weights, loss_weights_from=weights_from)
        if "input_dataset_name" in param:
            model.input_dataset_name = read_text(param["input_dataset_name"],
                                                 where("/unet_param/input_dataset_name"))
        if "mapInputNumPxGPUMemMB" in param:
            model.memory_map = _memory_map(param["mapInputNumPxGPUMemMB"],
                                           where("/unet_param/mapInputNumPxGPUMemMB"))
        if "diskRadiusPx" in param:
            model.disk_radius_px = read_ints(param["diskRadiusPx"],
                                             where("/unet_param/diskRadiusPx"))[0]
        if "classNames" in param:
            model.class_names = read_texts(param["classNames"], where("/unet_param/classNames"))
    return model


def _memory_map(node, where):
    table = np.asarray(_dataset(node, where))
    if table.ndim != 2 or table.shape[0] != 2:
        raise DataError(f"{where}: has shape {table.shape}; 2 rows (input pixels, GPU MB) "
                        "were expected")
    return table.astype(np.int64)


def _loss_weights(param, element_size, where):
    """(the four loss-weight parameters in pixels, where they came from): the plugin's
    pixel keys; else LMB's micrometre keys converted at the model's pixel size (the x axis);
    else, when any is missing, all four of the plugin's defaults (as the plugin does)."""
    group = param.get("pixelwise_loss_weights")
    if not isinstance(group, h5py.Group):
        return dict(LOSS_WEIGHT_DEFAULTS), "the plugin's defaults"

    def value(key):
        return read_floats(group[key], where(f"/unet_param/pixelwise_loss_weights/{key}"))[0]

    if all(key in group for key in LOSS_WEIGHT_DEFAULTS):
        return {key: value(key) for key in LOSS_WEIGHT_DEFAULTS}, "pixels"
    converted = {}
    for key in LOSS_WEIGHT_DEFAULTS:
        if key in group:
            converted[key] = value(key)
        for um_key in MICROMETRE_KEYS.get(key, ()):
            if key not in converted and um_key in group:
                converted[key] = value(um_key) / element_size[-1]
    if len(converted) == len(LOSS_WEIGHT_DEFAULTS):
        return converted, f"micrometres at {element_size[-1]:g} um per pixel"
    return dict(LOSS_WEIGHT_DEFAULTS), "the plugin's defaults"


# ---------------------------------------------------------------- writing


def _fixed_string(text):
    """A fixed-length utf-8 string, as JHDF5 writes the plugin's strings."""
    data = text.encode("utf-8")
    return np.array(data, dtype=h5py.string_dtype("utf-8", max(len(data), 1)))


def write_modeldef(model, path):
    """Write `model` as the plugin's ModelDefinition.save does (atomically)."""
    with atomic_h5(path) as f:
        for key, text in (("/.unet-ident", model.ident), ("/model_prototxt", model.model_prototxt),
                          ("/solver_prototxt", model.solver_prototxt),
                          ("/unet_param/name", model.name),
                          ("/unet_param/description", model.description),
                          ("/unet_param/input_blob_name", model.input_blob_name),
                          ("/unet_param/input_dataset_name", model.input_dataset_name),
                          ("/unet_param/padding", model.padding)):
            f[key] = _fixed_string(text)
        f["/unet_param/normalization_type"] = np.int32(model.normalization_type)
        f["/unet_param/element_size_um"] = np.asarray(model.element_size_um, np.float64)
        f["/unet_param/downsampleFactor"] = np.asarray(model.downsample_factor, np.int32)
        f["/unet_param/padInput"] = np.asarray(model.pad_input, np.int32)
        f["/unet_param/padOutput"] = np.asarray(model.pad_output, np.int32)
        for key, value in model.loss_weights.items():
            f[f"/unet_param/pixelwise_loss_weights/{key}"] = np.float32(value)
        f["/unet_param/diskRadiusPx"] = np.int32(model.disk_radius_px)
        if model.class_names:
            longest = max(len(n.encode("utf-8")) for n in model.class_names)
            f["/unet_param/classNames"] = np.array(
                [n.encode("utf-8") for n in model.class_names],
                dtype=h5py.string_dtype("utf-8", max(longest, 1)))
        if model.memory_map is not None:
            f["/unet_param/mapInputNumPxGPUMemMB"] = np.asarray(model.memory_map, np.int32)
    return replace(model, path=str(path))


# ---------------------------------------------------------------- nets


def caffe_unet_net_param(model, channels, input_shape):
    """caffe_unet's TEST net: the model's prototxt behind an Input layer named after
    input_blob_name, of shape (1, channels, *input_shape). (caffe_unet prepends the layer's
    text; we prepend the parsed layer, so that errors keep the prototxt's own lines.)"""
    from unetcore.formats.prototxt import Message, parse
    dims = " ".join(f"dim: {n}" for n in (1, channels, *input_shape))
    name = model.input_blob_name
    net = Message("NetParameter").set("layer", parse(
        f'name: "{name}" type: "Input" top: "{name}" input_param {{ shape: {{ {dims} }} }}',
        "LayerParameter", "caffe_unet's Input layer"))
    for key, value in parse(model.model_prototxt, "NetParameter",
                            f"{model.path}:/model_prototxt").fields():
        for item in value if isinstance(value, list) else [value]:
            net.set(key, item)
    return net


def caffe_unet_net(model, channels, input_shape, gpu=None):
    """The model's TEST net (caffe_unet's) at an input of (1, channels, *input_shape)."""
    from unetcore.net import Net
    return Net(caffe_unet_net_param(model, channels, input_shape), "TEST", gpu=gpu)
