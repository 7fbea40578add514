"""The U-Net loss weight map (Ronneberger et al. 2015, eq. 2):

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

w_c balances the class frequencies; d1 and d2 are the distances to the border of the nearest
and the second nearest cell. The second term is large only in narrow gaps between two cells,
so the net learns the thin background borders that separate touching cells.
"""
import numpy as np
from scipy import ndimage


def class_balance(classes, num_classes=2):
    """w_c: weight n_max / n_c for class c, so the most frequent class has weight 1."""
    counts = np.bincount(classes.ravel(), minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.max() / np.maximum(counts, 1), 0.0)
    return weights[classes]


def instances_of(labels):
    """Instance labels: a binary mask's connected components, or the instances as given."""
    if labels.max() <= 1 or set(np.unique(labels).tolist()) <= {0, 255}:
        instances, _ = ndimage.label(labels > 0)
        return instances
    return labels.astype(np.int64)


def nearest_two_distances(instances, sampling=None):
    """d1, d2: distance of each pixel to the nearest and second-nearest instance (inf if none),
    in pixels, or in the units of `sampling` (the pixel size per axis)."""
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    for index in np.unique(instances):
        if index == 0:
            continue
        d = ndimage.distance_transform_edt(instances != index, sampling=sampling)
        d2 = np.minimum(d2, np.maximum(d1, d))      # the new second-smallest of (d1, d2, d)
        d1 = np.minimum(d1, d)
    return d1, d2


def weight_map(labels, w0=10.0, sigma=5.0, num_classes=2, element_size=None):
    """The weight map of one label image (instances, or a binary mask of cells): 2-d, or a
    3-d volume, whose distances d1, d2 are then measured in voxels scaled by
    `element_size` (one spacing per axis, e.g. (3, 1, 1) where z is 3 times coarser), so
    sigma stays in xy pixels.

    The border term is added on background pixels only: inside a cell d1 = 0, and the term
    would weight up every cell pixel near a neighbouring cell (whole small cells, the rims of
    large ones); it is meant for the background gaps between cells.
    """
    labels = np.asarray(labels)
    instances = instances_of(labels)
    classes = (instances > 0).astype(np.int64) if num_classes == 2 else labels.astype(np.int64)
    weights = class_balance(classes, num_classes)
    if w0:
        d1, d2 = nearest_two_distances(instances, element_size)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma ** 2))
        weights = weights + np.where(instances == 0, border, 0.0)
    return weights.astype(np.float32)


def weight_stack(labels, w0=10.0, sigma=5.0, num_classes=2):
    return np.stack([weight_map(s, w0, sigma, num_classes) for s in labels])
