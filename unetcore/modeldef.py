"""The Fiji U-Net plugin's model files: a .modeldef.h5 (the net and how to feed it) beside a
.caffemodel.h5 (the weights, in Caffe's HDF5 layout, which Net.copy_from reads).

A .modeldef.h5 holds, as the plugin writes and reads it (ModelDefinition.java):
    /.unet-ident                       model id (string)
    /model_prototxt, /solver_prototxt  the net in caffe_unet's prototxt, and its solver
    /unet_param/name, description, input_blob_name, [input_dataset_name]
    /unet_param/padding                "mirror", "zero" or "noPadding"
    /unet_param/normalization_type     0 none, 1 min/max, 2 zero mean / unit std, 3 max norm 1
    /unet_param/element_size_um        the pixel size the model was trained at, (y, x)
    /unet_param/downsampleFactor, padInput, padOutput
                                       tile geometry: output tile = downsampleFactor k + padOutput,
                                       input tile = output tile + padInput - padOutput
    /unet_param/pixelwise_loss_weights/{borderWeightFactor, borderWeightSigmaUm,
                                        foregroundBackgroundRatio, sigma1_um}   (optional)
    /unet_param/classNames                                                      (optional)

The plugin prepares an image for such a model (Tools.convertToUnetFormat) by converting it to
float, rescaling it bilinearly to the model's element size, and normalizing each image by
normalization_type; then it segments by overlap-tile. `prepare_image` does the same.
For fine-tuning it turns each label image into the blobs of the model's HDF5Data layer
(Tools.addLabelsAndWeightsToBlobs); `training_blobs` does the same.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .data.weightmap import instances_of, nearest_two_distances
from .errors import DataError
from .snapshot import open_h5

REQUIRED = ("/.unet-ident", "/model_prototxt", "/solver_prototxt", "/unet_param/name",
            "/unet_param/description", "/unet_param/input_blob_name", "/unet_param/padding",
            "/unet_param/normalization_type", "/unet_param/element_size_um",
            "/unet_param/downsampleFactor", "/unet_param/padInput", "/unet_param/padOutput")
LOSS_WEIGHTS = {"borderWeightFactor": 50.0, "borderWeightSigmaUm": 3.0,
                "foregroundBackgroundRatio": 0.1, "sigma1_um": 5.0}     # the plugin's defaults
NORMALIZATIONS = {0: "none", 1: "min/max to [0, 1]", 2: "zero mean, unit standard deviation",
                  3: "maximum norm 1"}


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
    loss_weights: dict = field(default_factory=dict)
    class_names: list = field(default_factory=list)

    def input_tile(self, output_tile):
        """The input tile edge for an output tile edge (per axis, as the plugin)."""
        return tuple(o + i - p for o, i, p in zip(output_tile, self.pad_input, self.pad_output))

    def default_tile(self):
        """The plugin's default tile: the smallest valid output tile plus 10 pooling steps."""
        smallest = [p % d if p < 0 else p for p, d in zip(self.pad_output, self.downsample_factor)]
        return self.input_tile([s + 10 * d for s, d in zip(smallest, self.downsample_factor)])


def _text(value):
    """An HDF5 string (bytes, str, or a one-element array of them) as str."""
    value = value[()] if hasattr(value, "shape") else value
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _axes(values, dims=2):
    """A per-axis tuple from a scalar or a vector (the plugin stores either)."""
    values = np.atleast_1d(np.asarray(values)).tolist()
    return tuple(values * dims if len(values) == 1 else values)


def read_modeldef(path):
    """A ModelDefinition from a .modeldef.h5; a missing key names the file and the key."""
    with open_h5(path, "model definition") as f:
        missing = [key for key in REQUIRED if key not in f]
        if missing:
            raise DataError(f"{path}: not a U-Net model definition: it has no '{missing[0]}'")
        param = f["unet_param"]
        element_size = _axes(param["element_size_um"][()])
        if len(element_size) != 2:
            raise DataError(f"{path}: element_size_um has {len(element_size)} axes; unetcore "
                            "runs 2-d models only for now")
        weights = param.get("pixelwise_loss_weights", {})
        return ModelDefinition(
            path=str(path), ident=_text(f["/.unet-ident"]), name=_text(param["name"]),
            description=_text(param["description"]),
            input_blob_name=_text(param["input_blob_name"]),
            model_prototxt=_text(f["/model_prototxt"]),
            solver_prototxt=_text(f["/solver_prototxt"]), padding=_text(param["padding"]),
            normalization_type=int(np.asarray(param["normalization_type"][()]).reshape(-1)[0]),
            element_size_um=element_size,
            downsample_factor=_axes(param["downsampleFactor"][()]),
            pad_input=_axes(param["padInput"][()]), pad_output=_axes(param["padOutput"][()]),
            loss_weights={k: float(weights[k][()]) if k in weights else v
                          for k, v in LOSS_WEIGHTS.items()},
            class_names=[_text(n) for n in param["classNames"][()]]
            if "classNames" in param else [])


def rescale(image, scale, order=1):
    """(C, H, W) resampled by `scale` (y, x) to round(H sy) x round(W sx), reading output
    pixel (y, x) at (y / sy, x / sx), mirrored past the last pixel (the plugin's rescaleXY):
    bilinearly for images, by nearest neighbour (order 0) for labels."""
    if scale == (1.0, 1.0):
        return image
    height, width = (int(round(n * s)) for n, s in zip(image.shape[-2:], scale))
    rows, cols = np.meshgrid(np.arange(height) / scale[0], np.arange(width) / scale[1],
                             indexing="ij")
    return np.stack([ndimage.map_coordinates(channel, [rows, cols], order=order, mode="mirror")
                     for channel in image]).astype(np.float32)


def normalize(image, kind):
    """One (C, H, W) image normalized as the plugin's normalization_type says."""
    image = image.astype(np.float32)
    if kind == 0:
        return image
    if kind == 1:
        low, high = float(image.min()), float(image.max())
        return (image - low) / (high - low if high > low else 1.0)
    if kind == 2:
        centred = image - image.mean(dtype=np.float64)
        std = float(np.sqrt((centred.astype(np.float64) ** 2).mean()))
        return centred / (std if std > 0 else 1.0)
    if kind == 3:
        norm = float(np.sqrt((image.astype(np.float64) ** 2).sum(axis=0)).max())
        return image / (norm if norm > 0 else 1.0)
    raise DataError(f"normalization_type {kind} is not one of "
                    f"{', '.join(f'{k} ({v})' for k, v in NORMALIZATIONS.items())}")


def prepare_image(image, model, element_size_um=None):
    """A (C, H, W) float image as the plugin feeds it to `model`: rescaled from
    element_size_um (the image's pixel size, (y, x); None: the model's own) to the model's,
    then normalized."""
    if element_size_um is not None:
        scale = tuple(float(a) / float(b) for a, b in zip(element_size_um,
                                                          model.element_size_um))
        image = rescale(image, scale)
    return normalize(image, model.normalization_type)


# The pixels that precede a pixel in scan order: a touching instance there makes it a gap.
PRECEDING = ((-1, -1), (-1, 0), (-1, 1), (0, -1))


def separated_instances(labels, num_classes=2):
    """(instance images, one per foreground class; gaps). With 2 classes, `labels` is a binary
    mask (its connected components are the instances) or an instance label image (0
    background, k instance k); with more, a class per pixel whose connected components are
    the instances. Gaps are the pixels of an instance that touch another instance of the same
    class in scan order: the plugin labels them background, so touching objects stay apart."""
    if num_classes == 2:
        per_class = [instances_of(labels)]
    else:
        per_class = [ndimage.label(labels == c, structure=np.ones((3, 3)))[0]
                     for c in range(1, num_classes)]
    gaps = np.zeros(labels.shape, bool)
    for instances in per_class:
        padded = np.pad(instances, 1)
        for dy, dx in PRECEDING:
            neighbour = padded[1 + dy:1 + dy + labels.shape[0], 1 + dx:1 + dx + labels.shape[1]]
            gaps |= (instances > 0) & (neighbour > 0) & (neighbour != instances)
    return per_class, gaps


def training_blobs(labels, model):
    """(labels, weights, pdf) of one label image (see separated_instances), as the plugin
    makes them: the kept foreground has its class label, weight 1 and sampling density 1;
    background (and gap) pixels have label 0, density foregroundBackgroundRatio r, and weight

        r + sum over classes of [ w_b exp(-(d1 + d2)^2 / (2 s_b^2)) + (1 - r) exp(-d1^2 / (2 s1^2)) ]

    with d1, d2 the distances (in um, at the model's element size) to the nearest and second
    nearest instance of the class, w_b = borderWeightFactor, s_b = borderWeightSigmaUm and
    s1 = sigma1_um."""
    p = model.loss_weights
    ratio = p["foregroundBackgroundRatio"]
    num_classes = max(len(model.class_names), 2)
    per_class, gaps = separated_instances(labels, num_classes)
    classes = (labels > 0).astype(int) if num_classes == 2 else labels
    foreground = (classes > 0) & ~gaps
    extra = np.zeros(labels.shape)
    for components in per_class:
        d1, d2 = nearest_two_distances(components, sampling=model.element_size_um)
        extra += p["borderWeightFactor"] * np.exp(-(d1 + d2) ** 2 /
                                                   (2 * p["borderWeightSigmaUm"] ** 2))
        extra += (1 - ratio) * np.exp(-d1 ** 2 / (2 * p["sigma1_um"] ** 2))
    weights = np.where(foreground, 1.0, ratio + extra)
    pdf = np.where(foreground, 1.0, ratio)
    return (np.where(foreground, classes, 0).astype(np.float32), weights.astype(np.float32),
            pdf.astype(np.float32))
