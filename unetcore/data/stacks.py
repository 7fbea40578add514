"""Image and label stacks in TIFF files (the ISBI 2012 layout: one multi-page TIFF each)."""
from pathlib import Path

import numpy as np
import tifffile

from unetcore.errors import DataError


def read_tiff(path, what="image"):
    """A TIFF file's array, with one clear error when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such {what} file")
    try:
        return tifffile.imread(path)
    except Exception as err:                      # tifffile raises many kinds on corrupt files
        raise DataError(f"{path}: not a readable TIFF {what} stack: {err}") from None


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


def normalize_grey(stack, scale=0.0, mean=0.0, path="the image stack"):
    """(v - mean) * scale when scale is given; otherwise integer types map [0, max] to [0, 1]
    and float stacks are min-max normalised."""
    if scale:
        return ((stack.astype(np.float32) - mean) * scale).astype(np.float32)
    if np.issubdtype(stack.dtype, np.floating) and not np.isfinite(stack).all():
        raise DataError(f"{path}: holds {int((~np.isfinite(stack)).sum())} NaN or "
                        "infinite grey values; fix or mask them before training or segmenting")
    if np.issubdtype(stack.dtype, np.integer):
        return stack.astype(np.float32) / np.iinfo(stack.dtype).max
    low, high = float(stack.min()), float(stack.max())
    return ((stack - low) / (high - low if high > low else 1.0)).astype(np.float32)


def to_classes(labels, num_classes, path="labels"):
    """Class indices 0..num_classes-1. ISBI masks (0 = membrane, 255 = cell) map to 0 and 1."""
    values = np.unique(labels)
    if num_classes == 2 and set(values.tolist()) <= {0, 255}:
        return (labels == 255).astype(np.uint8)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise DataError(f"{path}: label values {bad[:5].tolist()} are outside the classes "
                        f"0..{num_classes - 1} (num_classes: {num_classes}); binary masks may "
                        "use 0 and 255")
    return labels.astype(np.uint8)


def check_same_shape(images, other, image_path, other_path, what):
    if images.shape != other.shape:
        raise DataError(f"{other_path}: the {what} stack has shape {other.shape} (slices, height, "
                        f"width) but the images in {image_path} have {images.shape}; "
                        f"they must match slice for slice")
