"""Images and labels prepared as the Fiji U-Net plugin prepares them for a model
(TrainingSample.java, Tools.java), and the scores mapped back to the image's own pixels.

Images: converted to float, rescaled to the model's element size (linear on each axis:
bilinear in 2-d, trilinear in 3-d; mirrored past the last pixel, the new size rounded half
up as Java's Math.round), normalized per image by the model's normalization_type (a 3-d
model's image is the whole volume). An image's pixel size is its calibration; an
uncalibrated image counts as 1 um per pixel, as in ImageJ.

Labels (the plugin's label images, "labels are classes"): 0 = ignore, 1 = background,
2, 3, ... = the classes. Each class's 4-connected components are its instances. They become
the blobs of the model's HDF5Data layer (`training_blobs`): labels (class - 1 on the kept
foreground, 0 elsewhere), weights (0 ignored, 1 foreground, the border weights elsewhere)
and the sampling pdf of CreateDeformation (0 ignored, 1 foreground, the
foreground/background ratio elsewhere).
"""
import itertools
import math

import numpy as np
import tifffile
from scipy import ndimage

from unetcore.data.weightmap import nearest_two_distances
from unetcore.errors import DataError

NORMALIZATIONS = {0: "none", 1: "min/max to [0, 1]", 2: "zero mean, unit standard deviation",
                  3: "maximum norm 1"}
# Micrometres per unit, for the units ImageJ converts (Tools.getElementSizeUm); any other
# unit ("pixel", "inch", none) is taken as it is, so an uncalibrated image is 1 um per pixel.
MICROMETRES_PER_UNIT = {"m": 1e6, "meter": 1e6, "cm": 1e4, "centimeter": 1e4, "mm": 1e3,
                        "millimeter": 1e3, "nm": 1e-3, "nanometer": 1e-3, "pm": 1e-6,
                        "pikometer": 1e-6}


def java_round(x):
    """Java's Math.round: halves round up (Python's round rounds them to even)."""
    return math.floor(x + 0.5)


# ---------------------------------------------------------------- calibration


def tiff_element_size_um(path, n_dims=2):
    """The pixel size of a TIFF in um, ([z,] y, x), as ImageJ calibrates it on opening: the
    X/YResolution tags in ImageJ's unit (or in cm where the file says so), the z spacing
    from ImageJ's description. Uncalibrated axes are 1."""
    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            imagej = tif.imagej_metadata or {}
            unit = imagej.get("unit")
            if unit is None and "ResolutionUnit" in tags and tags["ResolutionUnit"].value == 3:
                unit = "cm"
            factor = MICROMETRES_PER_UNIT.get(str(unit), 1.0) if unit is not None else None
            sizes = [_pixel_size(tags, key) for key in ("YResolution", "XResolution")]
    except (OSError, tifffile.TiffFileError) as err:
        raise DataError(f"{path}: not a readable TIFF image: {err}") from None
    if factor is None:                      # no unit: the resolution is no pixel size
        sizes, factor = [1.0, 1.0], 1.0
    if n_dims == 3:
        sizes.insert(0, float(imagej.get("spacing", 1.0)))
    return tuple(s * factor for s in sizes)


def _pixel_size(tags, key):
    """One axis's pixel size from a resolution tag (pixels per unit), 1 where absent."""
    if key not in tags:
        return 1.0
    numerator, denominator = tags[key].value
    return denominator / numerator if numerator else 1.0


# ---------------------------------------------------------------- resampling


def rescaled_shape(shape, scale):
    """The plugin's size after rescaling by `scale`: n s rounded half up, per axis."""
    return tuple(java_round(n * s) for n, s in zip(shape, scale))


def rescale(image, scale):
    """(C, *spatial) resampled by `scale` per spatial axis, linearly on each (bilinear in
    2-d, trilinear in 3-d): output pixel y reads the input at y / s, mirrored past the last
    pixel (TrainingSample.rescaleXY, rescaleZ)."""
    if all(s == 1 for s in scale):
        return image.astype(np.float32)
    shape = rescaled_shape(image.shape[1:], scale)
    grid = np.meshgrid(*(np.arange(n) / s for n, s in zip(shape, scale)), indexing="ij")
    return np.stack([ndimage.map_coordinates(channel.astype(np.float64), grid, order=1,
                                             mode="mirror") for channel in image]
                    ).astype(np.float32)


def rescale_labels(labels, scale):
    """A label image (spatial) resampled by nearest neighbour, reading y / s rounded half up
    (the plugin's NEAREST), mirrored past the last pixel."""
    if all(s == 1 for s in scale):
        return labels
    shape = rescaled_shape(labels.shape, scale)
    index = [_mirrored(np.floor(np.arange(n) / s + 0.5).astype(int), size)
             for n, s, size in zip(shape, scale, labels.shape)]
    return labels[np.ix_(*index)]


def _mirrored(index, size):
    """Indices past the last pixel reflected about it (no repeated edge pixel)."""
    return np.where(index > size - 1, 2 * (size - 1) - index, index).clip(0, size - 1)


def resample_to(scores, shape, scale):
    """Scores (C, *model grid) read back at the image's own pixels (`shape`): image pixel y
    at y s of the model grid, bilinearly (the inverse of `rescale`)."""
    if all(s == 1 for s in scale):
        return scores
    grid = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, scale)), indexing="ij")
    return np.stack([ndimage.map_coordinates(channel, grid, order=1, mode="nearest")
                     for channel in scores]).astype(np.float32)


# ---------------------------------------------------------------- values


def normalize(image, kind):
    """One image (C, *spatial) normalized as the plugin's normalization_type says, over all
    its channels and slices (TrainingSample.normalizeValues): (image - offset) / divisor,
    normalization_of's. A constant image is left unscaled (the plugin would divide by zero)."""
    image = image.astype(np.float32)
    offset, divisor = normalization_of(image, kind)
    return image if kind == 0 else (image - offset) / divisor


def normalization_of(image, kind):
    """(offset, divisor) of the plugin's normalization of a float32 image (C, *spatial):
    0 none (0, 1); 1 min/max (min, max - min); 2 zero mean, unit standard deviation (mean,
    std); 3 the largest pixel vector's norm over the channels to 1 (0, that norm). A chunked
    volume computes them per slice and applies them to each chunk (inference.chunked)."""
    if kind == 0:
        return 0.0, 1.0
    if kind == 1:
        low, high = float(image.min()), float(image.max())
        return low, (high - low if high > low else 1.0)
    if kind == 2:
        mean = image.mean(dtype=np.float64)
        std = float(np.sqrt(((image - mean).astype(np.float64) ** 2).mean()))
        return mean, (std if std > 0 else 1.0)
    if kind == 3:
        norm = float(np.sqrt((image.astype(np.float64) ** 2).sum(axis=0)).max())
        return 0.0, (norm if norm > 0 else 1.0)
    raise DataError(f"normalization_type {kind} is not one of "
                    f"{', '.join(f'{k} ({v})' for k, v in NORMALIZATIONS.items())}")


def scale_to_model(element_size_um, model):
    """The rescaling factor per axis from an image's pixel size to the model's."""
    if len(element_size_um) != model.n_dims:
        raise DataError(f"the pixel size {element_size_um} has {len(element_size_um)} axes; "
                        f"the model is {model.n_dims}-d")
    return tuple(float(a) / float(b) for a, b in zip(element_size_um, model.element_size_um))


def prepare_image(image, model, element_size_um):
    """A (C, *spatial) image as the plugin feeds it to `model`: float, rescaled from its pixel
    size to the model's, normalized."""
    return normalize(rescale(image, scale_to_model(element_size_um, model)),
                     model.normalization_type)


# ---------------------------------------------------------------- labels


def instances_per_class(labels, num_classes, labels_are_classes=True):
    """(class labels: 0 ignore, 1 background, 2.. classes; one instance image per foreground
    class). Labels are classes: each class's 4-connected components (the plugin's
    SIMPLE_NEIGHBORHOOD). Otherwise every value from 2 up is an instance of one foreground
    class."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.min() < 0:
        raise DataError(f"label {labels.min()} is negative; labels are 0 (ignore), "
                        "1 (background), 2.. (classes)")
    if not labels_are_classes:
        instances = np.where(labels > 1, labels, 0)
        return np.minimum(labels, 2), [instances]
    if labels.max() > num_classes:
        raise DataError(f"label {labels.max()} is class {labels.max() - 1}, but the model has "
                        f"{num_classes - 1} foreground class(es); labels are 0 (ignore), "
                        "1 (background), 2.. (classes), as the Fiji plugin's")
    cross = ndimage.generate_binary_structure(labels.ndim, 1)
    return labels, [ndimage.label(labels == c, structure=cross)[0]
                    for c in range(2, num_classes + 1)]


def preceding_offsets(n_dims):
    """The neighbours that precede a pixel in scan order (2-d: upper left, up, upper right,
    left; 3-d: those 4 and the 9 of the slice before), as the plugin's gap test reads them."""
    return [o for o in itertools.product((-1, 0, 1), repeat=n_dims) if o < (0,) * n_dims]


def gaps_of(instances):
    """Pixels of an instance with another instance of the same class among their preceding
    neighbours: the plugin labels them background, so that touching objects stay apart."""
    padded = np.pad(instances, 1)
    gaps = np.zeros(instances.shape, bool)
    for offset in preceding_offsets(instances.ndim):
        neighbour = padded[tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset,
                                                                         instances.shape))]
        gaps |= (instances > 0) & (neighbour > 0) & (neighbour != instances)
    return gaps


def training_blobs(labels, model, scale=None, labels_are_classes=True):
    """(labels, weights, pdf), float32, of one label image at the model's grid (rescaled by
    `scale` first, by nearest neighbour), as TrainingSample.addLabelsAndWeightsToBlobs makes
    them. Background and gap pixels weigh

        r + sum over classes of [ w_b exp(-(d1 + d2)^2 / (2 s_b^2)) + (1 - r) exp(-d1^2 / (2 s_1^2)) ]

    with d1, d2 the distances in pixels to the class's nearest and second nearest instance,
    r = foregroundBackgroundRatio, w_b = borderWeightFactor, s_b = borderWeightSigmaPx and
    s_1 = sigma1Px."""
    classes, per_class = instances_per_class(labels, model.num_classes(), labels_are_classes)
    if scale is not None:
        classes = rescale_labels(classes, scale)
        per_class = [rescale_labels(instances, scale) for instances in per_class]
    p = model.loss_weights
    ratio = p["foregroundBackgroundRatio"]
    foreground = np.zeros(classes.shape, bool)
    extra = np.zeros(classes.shape)
    for c, instances in enumerate(per_class, start=2):
        foreground |= (classes == c) & ~gaps_of(instances)
        d1, d2 = nearest_two_distances(instances)
        extra += p["borderWeightFactor"] * np.exp(-(d1 + d2) ** 2 /
                                                   (2 * p["borderWeightSigmaPx"] ** 2))
        extra += (1 - ratio) * np.exp(-d1 ** 2 / (2 * p["sigma1Px"] ** 2))
    ignored = classes == 0
    weights = np.where(foreground, 1.0, np.where(ignored, 0.0, ratio + extra))
    pdf = np.where(foreground, 1.0, np.where(ignored, 0.0, ratio))
    return (np.where(foreground, classes - 1, 0).astype(np.float32), weights.astype(np.float32),
            pdf.astype(np.float32))


def read_model_images(path, model, element_size=None, z_spacing=None):
    """The images of a TIFF as the Fiji plugin reads them for `model`, float, and their
    pixel size in um (image_element_size). For a 2-d model each slice is an image (C, H, W)
    (an RGB image has a channel per colour); for a 3-d model the stack is one grey volume
    (1, Z, Y, X). Refused before any rescaling if their copies at the model's pixel size
    would not fit in memory."""
    from unetcore.data.stacks import read_stack, read_tiff
    from unetcore.inference.tiling import as_channel_images
    if model.n_dims == 3:
        images = [read_stack(path, "image").astype(np.float32)[None]]
    else:
        stack = read_tiff(path, "image").astype(np.float32)
        if stack.ndim == 3 and stack.shape[-1] in (3, 4) and min(stack.shape[:2]) > 4:
            images = [np.moveaxis(stack, -1, 0)]
        else:
            images = list(as_channel_images(stack, 1, path))
    size = image_element_size(path, model, element_size, z_spacing)
    require_rescaling_memory(images, size, model, path)
    return images, size


def image_element_size(path, model, element_size=None, z_spacing=None):
    """The pixel size in um, ([z,] y, x), of the TIFF at `path` for `model`: its calibration
    (tiff_element_size_um: ImageJ's, 1 um where uncalibrated), with y and x from
    `element_size` and, for a 3-d model, z from `z_spacing` where they are given. Each axis
    keeps its own source, so that a stack calibrated in z alone takes its in-plane size from
    `element_size` and its z spacing from the file."""
    if z_spacing is not None and model.n_dims != 3:
        raise DataError(f"--z-spacing {z_spacing:g}: {model.path} is a 2-d model; a z spacing "
                        "is for 3-d models")
    size = tiff_element_size_um(path, model.n_dims)
    if element_size:
        size = size[:-2] + tuple(float(e) for e in element_size)
    if z_spacing is not None:
        size = (float(z_spacing),) + size[1:]
    return size


def require_rescaling_memory(images, size, model, path):
    """Refuse, before any allocation, images whose copies rescaled to the model's pixel size
    would not fit in memory (float32, with the plugin's padding and scores at most doubling
    it)."""
    from unetcore.memory import require_bytes
    scale = scale_to_model(size, model)
    pixels = sum(image.shape[0] * math.prod(math.ceil(n * s) for n, s in
                                            zip(image.shape[1:], scale)) for image in images)
    require_bytes(2 * 4 * pixels, f"{path} rescaled from {' x '.join(f'{e:g}' for e in size)} "
                                  f"um pixels to the model's")
