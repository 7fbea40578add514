"""Image and label stacks in TIFF files (the ISBI 2012 layout: one multi-page TIFF each)."""
import logging
from pathlib import Path

import numpy as np
import tifffile

from unetcore.errors import DataError
from unetcore.logs import log


def read_tiff(path, what="image"):
    """A TIFF file's array, with one clear error when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such {what} file")
    try:
        array = tifffile.imread(path)
    except Exception as err:                      # tifffile raises many kinds on corrupt files
        raise DataError(f"{path}: not a readable TIFF {what} stack: {err}") from None
    if array.size == 0:
        raise DataError(f"{path}: holds no {what} pixels (shape {array.shape})")
    if np.iscomplexobj(array):
        raise DataError(f"{path}: holds complex {what} values ({array.dtype}); give real values "
                        "(the magnitude or one part), as dropping the imaginary part would be "
                        "a silent guess")
    return array


def read_stack(path, what="image"):
    """A TIFF as a (slices, height, width) array; a 2-d image becomes one slice."""
    stack = read_tiff(path, what)
    if stack.ndim == 3 and stack.shape[-1] in (3, 4) and min(stack.shape[:2]) > 4:
        raise DataError(f"{path}: shape {stack.shape} looks like one RGB(A) image, not a stack "
                        f"of grey {what} slices; convert it to grey first")
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise DataError(f"{path}: a {what} stack must be 2-d or 3-d (slices, height, width) grey "
                        f"values; this one has shape {stack.shape}")
    return stack


# Bit depths that cameras and microscopes write; unsigned data are scaled by the smallest
# that holds their largest value, unless the user gives one.
BIT_DEPTHS = (8, 10, 12, 14, 16, 32)


def normalize_grey(stack, scale=0.0, mean=0.0, path="the image stack", bits=None):
    """Grey values for the net:
    - (v - mean) * scale when scale is given;
    - unsigned integers: v / (2^bits - 1), with `bits` given, else the smallest common bit
      depth that holds the largest value (12-bit data in uint16 are 12-bit: 4095 is white),
      said in a one-line note when it is not the type's own width;
    - signed integers and floats: (v - min) / (max - min), with a note for signed integers.
    Non-finite results are refused."""
    check_bits(stack.dtype, bits, scale, path)
    if scale:
        with np.errstate(over="ignore", invalid="ignore"):    # refused below, in one line
            grey = ((stack.astype(np.float32) - mean) * scale).astype(np.float32)
    elif np.issubdtype(stack.dtype, np.unsignedinteger):
        grey = stack.astype(np.float32) / (2.0 ** bit_depth(stack, bits, path) - 1)
    elif np.issubdtype(stack.dtype, np.integer):
        log(f"{path}: signed {stack.dtype} grey values, scaled from their range "
            f"{int(stack.min())}..{int(stack.max())} to [0, 1]", logging.WARNING)
        grey = _min_max(stack.astype(np.float32))
    else:
        grey = _min_max(stack) if np.isfinite(stack).all() else stack
    if not np.isfinite(grey).all():
        raise DataError(f"{path}: holds {int((~np.isfinite(grey)).sum())} NaN or infinite grey "
                        "values (after --scale / --mean, if given); fix or mask them before "
                        "training or segmenting")
    return grey


def check_bits(dtype, bits, scale, path):
    """Refuse a --bits that would be ignored (with --scale, or on signed or float values) or
    that is wider than the values' type."""
    if not bits:
        return
    if scale:
        raise DataError("--bits and --scale exclude each other: --scale sets the grey values "
                        "as (v - mean) * scale")
    if not np.issubdtype(dtype, np.unsignedinteger):
        raise DataError(f"{path}: --bits is for unsigned integer images; this one holds {dtype} "
                        "values, scaled from their range")
    if not 1 <= bits <= np.dtype(dtype).itemsize * 8:
        raise DataError(f"{path}: --bits {bits} is not a bit depth of its {dtype} values "
                        f"(1..{np.dtype(dtype).itemsize * 8})")


def bit_depth(stack, bits, path):
    """`bits` if it holds the stack's values (else a DataError); without it, the smallest of
    BIT_DEPTHS that holds them, with a note when that is less than the type's width."""
    width = stack.dtype.itemsize * 8
    if bits:
        if stack.max() >= 2 ** bits:
            raise DataError(f"{path}: --bits {bits} does not hold its {stack.dtype} values "
                            f"(largest {int(stack.max())})")
        return bits
    depth = next(b for b in BIT_DEPTHS if stack.max() < 2 ** b or b >= width)
    if depth < width:
        log(f"{path}: {stack.dtype} grey values up to {int(stack.max())}, scaled as "
            f"{depth}-bit data ({2 ** depth - 1} is white); give --bits to say otherwise",
            logging.WARNING)
    return depth


def _min_max(values):
    low, high = float(values.min()), float(values.max())
    return ((values - low) / (high - low if high > low else 1.0)).astype(np.float32)


def to_classes(labels, num_classes, path="labels"):
    """Class indices 0..num_classes-1. ISBI masks (0 = membrane, 255 = cell) map to 0 and 1.
    Labels must be integers, or floats with integer values."""
    values = np.unique(whole_labels(labels, path))
    if num_classes == 2 and set(values.tolist()) <= {0, 255}:
        return (labels == 255).astype(np.uint8)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise DataError(f"{path}: label values {bad[:5].tolist()} are outside the classes "
                        f"0..{num_classes - 1} (num_classes: {num_classes}); binary masks may "
                        "use 0 and 255")
    return labels.astype(np.uint8)


def whole_labels(labels, path="labels"):
    """`labels`, refused if any value is not a whole number: a label image holds classes or
    instances, and a fraction would be truncated to another label."""
    if np.issubdtype(labels.dtype, np.floating):
        values = np.unique(labels)
        fractional = values[~np.isfinite(values) | (values != np.round(values))]
        if fractional.size:
            raise DataError(f"{path}: label values must be whole class numbers, found "
                            f"{fractional[:3].tolist()}; a label image holds classes, not "
                            "probabilities")
    return labels


def check_same_shape(images, other, image_path, other_path, what):
    if images.shape != other.shape:
        raise DataError(f"{other_path}: the {what} stack has shape {other.shape} (slices, height, "
                        f"width) but the images in {image_path} have {images.shape}; "
                        f"they must match slice for slice")
