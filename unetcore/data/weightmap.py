"""The U-Net loss weight map (Ronneberger et al. 2015, eq. 2):

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

w_c balances the class frequencies; d1 and d2 are the distances to the border of the nearest
and the second nearest cell. The second term is large only in narrow gaps between two cells,
so the net learns the thin background borders that separate touching cells.

The distances are needed only where d1 + d2 is small enough for the term to count: beyond
reach(w0, sigma) the term is below NEGLIGIBLE, far below float32's resolution of the class
weights (>= 1 on background), so each cell's distance transform is computed only in its
bounding box grown by that reach. A pixel outside every box but one gets d2 = inf and the
term 0 instead of a value below NEGLIGIBLE; everywhere else d1 and d2 are exact.
"""
import math

import numpy as np
from scipy import ndimage

# The border term below which it is left out: a billionth of the smallest background weight.
NEGLIGIBLE = 1e-9


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


def reach(w0, sigma):
    """The d1 + d2 beyond which w0 exp(-(d1 + d2)^2 / (2 sigma^2)) < NEGLIGIBLE."""
    return sigma * math.sqrt(2.0 * math.log(max(w0, NEGLIGIBLE) / NEGLIGIBLE))


def nearest_two_distances(instances, sampling=None, within=math.inf):
    """d1, d2: distance of each pixel to the nearest and second-nearest instance, in pixels,
    or in the units of `sampling` (the pixel size per axis); exact where at most `within`,
    inf where there is no such instance (and possibly where the distance exceeds `within`)."""
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    spacing = np.ones(instances.ndim) if sampling is None else np.asarray(sampling, float)
    numbered = numbered_from_one(instances)
    for index, box in enumerate(ndimage.find_objects(numbered), start=1):
        window = grown(box, spacing, within, instances.shape)
        d = ndimage.distance_transform_edt(numbered[window] != index, sampling=sampling)
        near1, near2 = d1[window], d2[window]                  # views: updated in place
        near2[...] = np.minimum(near2, np.maximum(near1, d))   # the new second of (d1, d2, d)
        near1[...] = np.minimum(near1, d)
    return d1, d2


def numbered_from_one(instances):
    """The instances renumbered 1, 2, ... (0 stays background), as find_objects wants them."""
    values, inverse = np.unique(instances, return_inverse=True)
    cells = values != 0
    return (np.cumsum(cells) * cells)[inverse].reshape(instances.shape)


def grown(box, spacing, distance, shape):
    """A bounding box (slices) grown by `distance` (in the units of `spacing`) on every side,
    within the image."""
    if math.isinf(distance):
        return tuple(slice(0, n) for n in shape)
    return tuple(slice(max(0, b.start - pad), min(n, b.stop + pad)) for b, n, pad in
                 zip(box, shape, np.ceil(distance / spacing).astype(int)))


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
        d1, d2 = nearest_two_distances(instances, element_size, reach(w0, sigma))
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma ** 2))
        weights = weights + np.where(instances == 0, border, 0.0)
    return weights.astype(np.float32)


def weight_stack(labels, w0=10.0, sigma=5.0, num_classes=2, progress=None):
    """The weight map of every slice; `progress(1)` is called after each."""
    maps = []
    for labels_2d in labels:
        maps.append(weight_map(labels_2d, w0, sigma, num_classes))
        if progress:
            progress(1)
    return np.stack(maps)
