"""The ISBI 2012 EM-segmentation measures (Arganda-Carreras et al. 2015) and IoU.

Images are binary: True = cell (inside, 4-connected), False = membrane (8-connected), as the
challenge's label images (255 = cell). Segments are the 4-connected components of the cells.

pixel error    fraction of pixels whose class differs
Rand error     1 - F-score of the pair-counting precision and recall between the truth's
               segments and the prediction's, over the truth's cell pixels only
               ("foreground-restricted adapted Rand error")
warping error  Jain et al. 2010: warp the truth towards the prediction by flipping only
               *simple* pixels (flips that change no topology: no split, merge, hole or
               vanished object) until none is left; the pixels still different are topology
               errors. A boundary drawn a few pixels off costs nothing; a split or merge does.
"""
import collections

import numpy as np
from scipy import ndimage, sparse

CROSS = ndimage.generate_binary_structure(2, 1)        # 4-connectivity
SQUARE = np.ones((3, 3), bool)                          # 8-connectivity
NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def pixel_error(prediction, truth):
    return float(np.mean(np.asarray(prediction, bool) != np.asarray(truth, bool)))


def segments(cells):
    return ndimage.label(cells, structure=CROSS)[0]


def rand_error(prediction, truth):
    """Foreground-restricted adapted Rand error between binary cell masks."""
    true_segments, predicted_segments = segments(truth), segments(prediction)
    keep = true_segments > 0
    if not keep.any():
        return 0.0
    counts = sparse.coo_matrix((np.ones(keep.sum()), (true_segments[keep],
                                                      predicted_segments[keep]))).tocsr()
    pairs = lambda values: float(np.sum(values * (values - 1.0)))   # noqa: E731 (ordered pairs)
    both = pairs(counts.data)
    same_true = pairs(np.asarray(counts.sum(axis=1)).ravel())
    same_predicted = pairs(np.asarray(counts.sum(axis=0)).ravel())
    if both == 0:
        return 1.0 if same_true or same_predicted else 0.0
    precision, recall = both / same_predicted, both / same_true
    return 1.0 - 2 * precision * recall / (precision + recall)


def _is_simple(code):
    """Whether a pixel whose 8 neighbours are `code` (bit k = NEIGHBOURS[k] is a cell) can
    flip without changing topology: its cell neighbours form exactly one 4-component that
    touches it and its membrane neighbours exactly one 8-component (Bertrand's T4 = T8 = 1)."""
    cells = np.zeros((3, 3), bool)
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        cells[1 + dy, 1 + dx] = bool(code >> k & 1)
    membrane = ~cells
    membrane[1, 1] = False
    labels, _ = ndimage.label(cells, structure=CROSS)
    touching = {labels[1 + dy, 1 + dx] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))} - {0}
    return len(touching) == 1 and ndimage.label(membrane, structure=SQUARE)[1] == 1


SIMPLE = np.array([_is_simple(code) for code in range(256)])


def warp(truth, prediction):
    """The truth, warped towards the prediction by simple-pixel flips (Jain et al. 2010)."""
    frame = lambda a: np.pad(np.asarray(a, bool), 1)    # noqa: E731 (a fixed membrane frame)
    current, target = frame(truth), frame(prediction)
    queue = collections.deque(zip(*np.nonzero(current != target)))
    while queue:
        y, x = queue.popleft()
        if current[y, x] == target[y, x] or not (0 < y < current.shape[0] - 1
                                                  and 0 < x < current.shape[1] - 1):
            continue
        code = sum(1 << k for k, (dy, dx) in enumerate(NEIGHBOURS) if current[y + dy, x + dx])
        if SIMPLE[code]:
            current[y, x] = target[y, x]
            queue.extend((y + dy, x + dx) for dy, dx in NEIGHBOURS
                         if current[y + dy, x + dx] != target[y + dy, x + dx])
    return current[1:-1, 1:-1]


def warping_error(prediction, truth):
    return float(np.mean(warp(truth, prediction) != np.asarray(prediction, bool)))


def iou(prediction, truth, num_classes=2):
    """Intersection over union per class of two class-index images (nan if a class is absent)."""
    scores = []
    for c in range(num_classes):
        p, t = prediction == c, truth == c
        union = np.logical_or(p, t).sum()
        scores.append(float(np.logical_and(p, t).sum() / union) if union else float("nan"))
    return scores


THRESHOLDS = np.round(np.arange(0.0, 1.01, 0.1), 1)


def evaluate(cell_probabilities, truth, thresholds=THRESHOLDS):
    """The challenge protocol: each error at every threshold of the cell probability, and the
    best (lowest) per measure with its threshold. Inputs are stacks (slices, H, W)."""
    per_threshold = []
    for t in thresholds:
        prediction = cell_probabilities > t
        per_threshold.append({
            "threshold": float(t),
            "cell_fraction": float(np.mean(prediction)),
            "pixel_error": np.mean([pixel_error(p, g) for p, g in zip(prediction, truth)]),
            "rand_error": np.mean([rand_error(p, g) for p, g in zip(prediction, truth)]),
            "warping_error": np.mean([warping_error(p, g) for p, g in zip(prediction, truth)]),
        })
    best = {m: min(per_threshold, key=lambda r: r[m]) for m in
            ("pixel_error", "rand_error", "warping_error")}
    return per_threshold, {m: (float(r[m]), r["threshold"]) for m, r in best.items()}
