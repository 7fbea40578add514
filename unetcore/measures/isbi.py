"""The ISBI 2012 measures, as the challenge computed them, and IoU.

The challenge scored a map of cell probabilities (1 = cell, the labels' 255) against binary
labels with Fiji's Trainable_Segmentation metrics (Arganda-Carreras et al. 2015, Front.
Neuroanat. 9:142; classes PixelError, RandError, WarpingError, VariationOfInformation,
ClassificationStatistics and Metrics, read for this module; no code is taken from them).
Cells are the 4-connected components of the cell pixels, in the truth and in the thresholded
prediction; a pixel is cell when p > threshold.

The U-Net paper's Table 1 (leaderboard of 2015):
pixel error    1 - the best F-score of the cell pixels; TP, FP and FN summed over slices
Rand error     1 - the best F-score of the foreground-restricted Rand index: only the truth's
               cell pixels count, and each pixel the prediction calls membrane is a segment of
               its own; pair counts (N^2 form, self-pairs included) summed over slices
warping error  the fewest pixels left as splits or mergers after the simple-point warp of
               the truth towards the prediction (unetcore.measures.topology), over all pixels
The leaderboard since late 2015, higher is better:
V_Rand         foreground-restricted Rand F-score after the prediction's membranes are thinned
               to 1-pixel lines by a watershed (the lines are single-pixel segments)
V_Info         the same with mutual information: I(S;T) / ((H(S) + H(T)) / 2)
               both computed per slice, then averaged over slices

Each is the best over Fiji's thresholds, 0.0 to 1.0 in steps of 0.1 (0.0 to 0.9 for the
warping error). The fraction of pixels whose class differs from the truth is given beside
them under its own name: it is not the challenge's pixel error.
"""
import json
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unetcore.errors import DataError
from unetcore.measures.topology import SLICEWISE, splits_and_mergers, thin_membranes, warp

MEASURES = ("pixel_error", "rand_error", "warping_error", "v_rand", "v_info")
TITLES = {"pixel_error": "pixel error", "rand_error": "Rand error",
          "warping_error": "warping error", "v_rand": "V_Rand", "v_info": "V_Info"}
BEST_NAMES = dict(TITLES, rand_error="rand error")        # `best rand error:`, as before
BATCH_PIXELS = 1 << 22                    # images warped or thinned together, at most


def fiji_thresholds(last):
    """Fiji's thresholds: for (th = 0.0; th <= last; th += 0.1) in doubles, so 0.3 is
    0.30000000000000004 and "1.0" is 0.9999999999999999 (a probability of exactly 1 is still
    a cell there)."""
    thresholds, threshold = [], 0.0
    while threshold <= last:
        thresholds.append(threshold)
        threshold += 0.1
    return thresholds


THRESHOLDS = fiji_thresholds(1.0)                         # pixel, Rand, V_Rand, V_Info
WARPING_THRESHOLDS = fiji_thresholds(0.9)                 # WarpingError.getMinimumSplits...


def f_score(tp, fp, fn):
    """Fiji's ClassificationStatistics: no false positives is precision 1, no false
    negatives recall 1, and F = 0 when both are 0."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def differing_pixels(cells, truth):
    """The fraction of pixels whose class differs from the truth's (not the challenge's pixel
    error, which is 1 - F of the cell pixels)."""
    return float(np.mean(np.asarray(cells, bool) != np.asarray(truth, bool)))


def pixel_counts(cells, truth):
    """TP, FP, FN of the cell class over a whole stack (PixelError.getPrecisionRecallStats)."""
    return (int(np.count_nonzero(cells & truth)), int(np.count_nonzero(cells & ~truth)),
            int(np.count_nonzero(~cells & truth)))


@dataclass
class Overlaps:
    """The contingency table of one slice, restricted to the truth's cells: the sizes a_i of
    the truth's segments, the sizes b_j of the predicted segments (j >= 1) inside them, the
    overlaps n_ij (i, j >= 1), and the number n_0 of truth-cell pixels that the prediction
    puts in no segment (predicted membrane, or a watershed line)."""
    truth_sizes: np.ndarray
    predicted_sizes: np.ndarray
    overlaps: np.ndarray
    unassigned: int

    @classmethod
    def of(cls, truth_segments, segments):
        inside = truth_segments > 0
        i, j = compact(truth_segments[inside]), compact(segments[inside])
        columns = int(j.max()) + 1
        table = counts_of(i * columns + j, (int(i.max()) + 1) * columns).reshape(-1, columns)
        return cls(nonzero(table.sum(axis=1)), nonzero(table[:, 1:].sum(axis=0)),
                   nonzero(table[:, 1:].ravel()), int(table[:, 0].sum()))


def compact(labels):
    """Labels renumbered from 1 up, 0 kept (a slice of a stack's labelling uses one run of
    labels, so its table stays small)."""
    positive = labels > 0
    low = int(labels[positive].min()) if positive.any() else 1
    return np.where(positive, labels.astype(np.int64) - low + 1, 0)


def counts_of(keys, size):
    """How often each key 0..size-1 occurs (a bincount, or a sort when size is large)."""
    if size <= 1 << 24:
        return np.bincount(keys, minlength=size)
    values, counts = np.unique(keys, return_counts=True)
    table = np.zeros(size, np.int64)
    table[values] = counts
    return table


def nonzero(counts):
    return counts[counts > 0].astype(np.int64)


def rand_counts(overlap):
    """TP, FP, FN of the foreground-restricted Rand index in Fiji's N^2 form
    (RandError.getForegroundRestrictedRandIndexStatsN2): TP = sum n_ij^2 + n_0, true pairs
    sum a_i^2, predicted pairs sum b_j^2 + n_0. A truth-cell pixel in no predicted segment is
    a segment of its own: it pairs with itself only."""
    tp = int(np.sum(overlap.overlaps ** 2)) + overlap.unassigned
    predicted = int(np.sum(overlap.predicted_sizes ** 2)) + overlap.unassigned
    true = int(np.sum(overlap.truth_sizes ** 2))
    return tp, predicted - tp, true - tp


def information_score(overlap):
    """Fiji's V_Info for one slice (VariationOfInformation.foregroundRestrictedFscore): the
    F-score of I/H(truth) and I/H(prediction) on the truth's cells, pixels in no predicted
    segment being segments of one pixel; 0 when the prediction's entropy is 0, or the
    truth's. NaN (as in Fiji) when the mutual information is 0 and neither entropy is."""
    n = float(overlap.truth_sizes.sum())
    entropy = lambda c: -float(np.sum(c / n * np.log(c / n)))    # noqa: E731
    singles = overlap.unassigned / n * np.log(n)   # n_0 segments of mass 1/n
    h_truth = entropy(overlap.truth_sizes)
    h_prediction = entropy(overlap.predicted_sizes) + singles
    mutual = h_truth + h_prediction - (entropy(overlap.overlaps) + singles)
    if h_prediction == 0:
        precision, recall = 1.0, 0.0
    elif h_truth == 0:
        precision, recall = 0.0, 1.0
    else:
        precision, recall = mutual / h_truth, mutual / h_prediction
    with np.errstate(invalid="ignore"):
        return float(np.float64(2 * precision * recall) / np.float64(precision + recall))


def segment(cells):
    """4-connected components of each slice (labels unique over the stack)."""
    return ndimage.label(cells, SLICEWISE)[0]


def batches(thresholds, shape):
    """(threshold indices, slice indices) of every (threshold, slice) image of a stack of
    `shape`, in batches of at most BATCH_PIXELS pixels (warped or thinned together)."""
    slices, height, width = shape
    t, s = np.divmod(np.arange(len(thresholds) * slices), slices)
    step = max(1, BATCH_PIXELS // ((height + 2) * (width + 2)))
    for start in range(0, t.size, step):
        yield t[start:start + step], s[start:start + step]


def warping_errors(probabilities, truth, thresholds):
    """Split and merger pixels over all pixels, at each threshold
    (WarpingError.getMetricValue with MERGE + SPLIT, clustered by type, radius -1)."""
    errors = np.zeros((len(thresholds), len(truth)))
    for t, s in batches(thresholds, truth.shape):
        th = np.array(thresholds)[t][:, None, None]
        cells = probabilities[s] > th
        priority = np.abs(probabilities[s] - th).astype(np.float32)
        errors[t, s] = splits_and_mergers(warp(truth[s], cells, priority), cells)
    return errors.sum(axis=1) / truth.size


def thinned_scores(probabilities, truth_segments, thresholds):
    """V_Rand and V_Info after thinning, each the mean over slices, at each threshold
    (RandError.getMaximalVRandAfterThinning with per-slice averages,
    VariationOfInformation.getMaximalVInfoAfterThinning)."""
    v_rand = np.zeros((len(thresholds), len(truth_segments)))
    v_info = np.zeros_like(v_rand)
    for t, s in batches(thresholds, truth_segments.shape):
        thinned = thin_membranes(probabilities[s] > np.array(thresholds)[t][:, None, None])
        for k, (ti, si) in enumerate(zip(t, s)):
            overlap = Overlaps.of(truth_segments[si], thinned[k])
            v_rand[ti, si] = f_score(*rand_counts(overlap))
            v_info[ti, si] = information_score(overlap)
    return v_rand.mean(axis=1), v_info.mean(axis=1)


def evaluate(cell_probabilities, truth):
    """Every measure at every threshold of a (slices, H, W) map of cell probabilities against
    boolean labels (True = cell; every slice with some cell), and the best of each.
    Returns (rows, best): one dict per threshold, with its threshold (rounded, for display),
    the five MEASURES (warping_error None at 1.0, where the challenge did not compute it),
    differing_pixels and cell_fraction; and {measure: (value, threshold)}."""
    probabilities = np.asarray(cell_probabilities, np.float32).astype(np.float64)
    truth = np.asarray(truth, bool)
    truth_segments = segment(truth)
    pixel_f, rand_f, rows = [], [], []
    for th in THRESHOLDS:
        cells = probabilities > th
        segments = segment(cells)
        rand = np.sum([rand_counts(Overlaps.of(t, p)) for t, p in zip(truth_segments, segments)],
                      axis=0)
        pixel_f.append(f_score(*pixel_counts(cells, truth)))
        rand_f.append(f_score(*(int(c) for c in rand)))
        rows.append({"threshold": round(th, 1), "pixel_error": 1 - pixel_f[-1],
                     "rand_error": 1 - rand_f[-1], "warping_error": None,
                     "cell_fraction": float(cells.mean()),
                     "differing_pixels": differing_pixels(cells, truth)})
    warping = warping_errors(probabilities, truth, WARPING_THRESHOLDS)
    v_rand, v_info = thinned_scores(probabilities, truth_segments, THRESHOLDS)
    for k, row in enumerate(rows):
        row["warping_error"] = float(warping[k]) if k < len(warping) else None
        row["v_rand"], row["v_info"] = float(v_rand[k]), float(v_info[k])
    (pixel, at_pixel), (rand, at_rand) = (best_of(rows, f, 0.0, np.greater)
                                          for f in (pixel_f, rand_f))
    return rows, {"pixel_error": (1 - pixel, at_pixel), "rand_error": (1 - rand, at_rand),
                  "warping_error": best_of(rows, warping, np.inf, np.less),
                  "v_rand": best_of(rows, v_rand, 0.0, np.greater),
                  "v_info": best_of(rows, v_info, 0.0, np.greater)}


def best_of(rows, values, start, better):
    """(best value, its row's threshold) as Fiji's threshold loops keep it: starting from
    `start` (F = 0, or the largest double for the warping error) at the first threshold,
    replaced only by a strictly better value, so the first of equals wins and NaN never
    does. The errors 1 - F are chosen on F, as Fiji does."""
    best, index = start, 0
    for k, value in enumerate(values):
        if better(value, best):
            best, index = value, k
    return float(best), rows[index]["threshold"]


def table_lines(rows):
    """The per-threshold table that `unetcore test` and `unetcore score` print."""
    lines = [f"{'threshold':>9} {'pixel error':>12} {'Rand error':>11} {'warping error':>14} "
             f"{'V_Rand':>9} {'V_Info':>9} {'differing pixels':>17}"]
    for r in rows:
        warping = "-" if r["warping_error"] is None else f"{r['warping_error']:.6f}"
        lines.append(f"{r['threshold']:>9.1f} {r['pixel_error']:>12.6f} {r['rand_error']:>11.6f} "
                     f"{warping:>14} {r['v_rand']:>9.6f} {r['v_info']:>9.6f} "
                     f"{r['differing_pixels']:>17.6f}")
    return lines


def best_lines(rows, best):
    """One line per measure with its best value and threshold, and a note where that best
    comes from a one-class segmentation (every pixel cell, or none)."""
    cell_fraction = {r["threshold"]: r["cell_fraction"] for r in rows}
    lines = []
    for name, (value, threshold) in best.items():
        lines.append(f"best {BEST_NAMES[name]}: {value:.6f} "
                     f"(threshold {threshold:.1f})")
        if cell_fraction[threshold] in (0.0, 1.0):
            lines.append(f"note: at threshold {threshold:.1f} every pixel is "
                         f"{'cell' if cell_fraction[threshold] else 'membrane'}; this "
                         f"{TITLES[name]} is an empty segmentation's, not the net's")
    return lines


def best_json(best):
    """{"pixel_error": {"value": v, "threshold": t}, ...} as one line of JSON."""
    return json.dumps({name: {"value": value, "threshold": threshold}
                       for name, (value, threshold) in best.items()})


def iou(prediction, truth, num_classes=2):
    """Intersection over union per class of two class-index images (nan if a class is absent)."""
    scores = []
    for c in range(num_classes):
        p, t = prediction == c, truth == c
        union = np.logical_or(p, t).sum()
        scores.append(float(np.logical_and(p, t).sum() / union) if union else float("nan"))
    return scores


# ---- inputs of `unetcore score` --------------------------------------------------------------

def probability_stack(stack, path):
    """A (slices, H, W) float32 map of cell probabilities from a TIFF's array: 2-d, 3-d, or
    (slices, 2, H, W) as `unetcore segment --probabilities` writes it (channel 1 = cell)."""
    stack = np.asarray(stack)
    if stack.ndim == 4 and stack.shape[1] == 2:
        stack = stack[:, 1]
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise DataError(f"{path}: a map of cell probabilities is (slices, height, width), or "
                        f"(slices, 2, height, width) with cell in channel 1; this one has shape "
                        f"{stack.shape}")
    if not (np.issubdtype(stack.dtype, np.number) or stack.dtype == bool):
        raise DataError(f"{path}: holds {stack.dtype} values, not probabilities")
    values = stack.astype(np.float32)
    if np.isnan(values).any():
        raise DataError(f"{path}: {int(np.isnan(values).sum())} of its values are NaN; a "
                        "cell probability is a number in [0, 1]")
    if values.size and (values.min() < 0 or values.max() > 1):
        raise DataError(f"{path}: values from {values.min():g} to {values.max():g}; cell "
                        "probabilities lie in [0, 1] (1 = cell)")
    return values


def label_stack(stack, path):
    """Boolean labels (True = cell) from 255/0, 1/0 or boolean label slices."""
    stack = np.asarray(stack)
    values = set(np.unique(stack).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        shown = sorted(values - {0, 1, 255})[:5] or sorted(values)
        raise DataError(f"{path}: labels must be binary, 255 (or 1) = cell and 0 = membrane; "
                        f"found the values {shown}")
    truth = stack > 0
    empty = [k for k, cells in enumerate(truth) if not cells.any()]
    if empty:
        raise DataError(f"{path}: label slice {empty[0]} has no cell pixels; the measures "
                        "count pairs and information of the cells")
    return truth


def report_lines(cell_probabilities, truth, as_json=False):
    """The ISBI 2012 measures of a probability map as `unetcore score` prints them: the table
    at every threshold and the best of each, or (as_json) only the best, as one JSON object."""
    rows, best = evaluate(cell_probabilities, truth)
    return [best_json(best)] if as_json else table_lines(rows) + best_lines(rows, best)
