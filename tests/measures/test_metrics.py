"""The ISBI 2012 measures as the challenge computed them (Fiji): hand-made cases with known
answers, exact fractions of integer counts, and the fast warp and thinning checked against
plain pixel-by-pixel loops of Fiji's algorithms."""
import collections
import json
from fractions import Fraction

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from cases import REPO, SHARED
from unetcore.cli import main
from unetcore.errors import DataError
from unetcore.measures.isbi import (THRESHOLDS, WARPING_THRESHOLDS, differing_pixels, evaluate,
                              label_stack, probability_stack)
from unetcore.measures.topology import CROSS, RING, SIMPLE, splits_and_mergers, thin_membranes, warp

ISBI = SHARED / "data" / "isbi2012"


def one_cell(size=12):
    """An 8 x 8 cell inside a 2-pixel membrane frame, in a 12 x 12 image."""
    cells = np.zeros((size, size), bool)
    cells[2:-2, 2:-2] = True
    return cells


def split(cells, column=6):
    out = cells.copy()
    out[:, column] = False
    return out


def scores(prediction, truth):
    """The best of each measure for a binary prediction (every threshold binarizes it the
    same way), as {name: value}."""
    _, best = evaluate(np.asarray(prediction, np.float32)[None], np.asarray(truth)[None])
    return {name: value for name, (value, _) in best.items()}


def rand_error(tp, fp, fn):
    """1 - F of pair counts, as an exact fraction (precision 1 when fp = 0)."""
    precision = Fraction(1) if fp == 0 else Fraction(tp, tp + fp)
    recall = Fraction(1) if fn == 0 else Fraction(tp, tp + fn)
    return 1 - 2 * precision * recall / (precision + recall)


# ---- thresholds and the simple-point table -----------------------------------------------

def test_thresholds_are_fijis_accumulated_doubles():
    # for (th = 0.0; th <= 1.0; th += 0.1): 11 values, the 4th 0.30000000000000004 and the
    # last just below 1; the warping error stops at 0.9 (10 values)
    assert len(THRESHOLDS) == 11 and len(WARPING_THRESHOLDS) == 10
    assert THRESHOLDS[3] == 0.30000000000000004 and THRESHOLDS[-1] == 0.9999999999999999
    assert WARPING_THRESHOLDS == THRESHOLDS[:10]


def test_a_probability_of_one_is_still_a_cell_at_the_last_threshold():
    truth = one_cell()[None]
    rows, _ = evaluate(truth.astype(np.float32), truth)
    assert rows[-1]["threshold"] == 1.0 and rows[-1]["cell_fraction"] == 64 / 144
    assert rows[-1]["pixel_error"] == 0 and rows[-1]["warping_error"] is None


def test_simple_point_table():
    # 116 of the 256 neighbourhoods are simple: the count that a transcription of Fiji's
    # simple3d on its 3x3x3 patch gives
    assert SIMPLE.sum() == 116
    code = lambda *cells: sum(1 << RING.index(c) for c in cells)     # noqa: E731
    assert not SIMPLE[0]                                   # isolated: deleting an object
    assert not SIMPLE[255]                                 # interior: making a hole
    assert SIMPLE[code((-1, -1), (-1, 0), (-1, 1))]        # cells above only: a boundary
    assert not SIMPLE[code((-1, 0), (1, 0))]               # above and below only: a bridge
    assert not SIMPLE[code((-1, -1))]                      # a corner only: no edge contact


# ---- hand-made cases with known answers --------------------------------------------------

def test_one_split():
    truth = one_cell()                          # one 8 x 8 cell, 64 pixels
    prediction = split(truth)                   # a membrane column: parts of 32 and 24
    got = scores(prediction, truth)
    # pixels: TP 56, FP 0, FN 8, so F = 14/15
    assert got["pixel_error"] == pytest.approx(float(Fraction(1, 15)), rel=1e-12)
    # pairs (N^2, self-pairs): TP = 32^2 + 24^2 + 8 singletons, true pairs 64^2
    tp = 32 ** 2 + 24 ** 2 + 8
    assert got["rand_error"] == pytest.approx(float(rand_error(tp, 0, 64 ** 2 - tp)), rel=1e-12)
    # the warp erodes the column from the top (Fiji's column-major order at equal priority)
    # and must keep its last pixel, which would split the cell: one split pixel
    assert got["warping_error"] == 1 / 144
    # thinned: the column is a watershed line inside the cell, 8 single-pixel segments
    assert got["v_rand"] == pytest.approx(float(1 - rand_error(tp, 0, 64 ** 2 - tp)), rel=1e-12)


def test_one_merge():
    truth = split(one_cell())                   # cells of 32 and 24 pixels
    got = scores(one_cell(), truth)             # the prediction misses the membrane between
    assert got["pixel_error"] == pytest.approx(1 / 15, rel=1e-12)       # TP 56, FP 8, FN 0
    tp, predicted = 32 ** 2 + 24 ** 2, 56 ** 2
    assert got["rand_error"] == pytest.approx(float(rand_error(tp, predicted - tp, 0)),
                                              rel=1e-12)
    # no pixel of the line is simple (each touches both cells): 8 merger pixels
    assert got["warping_error"] == 8 / 144
    assert got["v_rand"] == pytest.approx(float(1 - rand_error(tp, predicted - tp, 0)),
                                          rel=1e-12)


def test_a_hole_is_no_warping_error():
    truth = one_cell()
    prediction = truth.copy()
    prediction[6, 6] = False                    # a hole in the cell: not simple, left over
    got = scores(prediction, truth)
    assert got["warping_error"] == 0            # a hole addition, not a split or merger
    assert got["pixel_error"] == pytest.approx(1 / 127, rel=1e-12)     # F = 126/127
    tp = 63 ** 2 + 1
    assert got["rand_error"] == pytest.approx(float(rand_error(tp, 0, 64 ** 2 - tp)), rel=1e-12)


def test_a_deleted_object_is_no_warping_error():
    truth = one_cell()
    truth[4:7, 4:7] = False
    truth[5, 5] = True                          # a one-pixel cell inside a membrane ring
    prediction = truth.copy()
    prediction[5, 5] = False                    # the prediction misses it
    assert scores(prediction, truth)["warping_error"] == 0


def test_predicted_membrane_inside_true_cells_is_single_pixel_segments():
    truth = split(one_cell())                   # cells A (32 px) and B (24 px)
    prediction = truth.copy()
    prediction[4, 3] = prediction[4, 8] = False     # one membrane pixel inside each
    got = scores(prediction, truth)
    # each is a segment of its own: no false pair at all. Counting the two as one "membrane
    # segment" (scikit-image's adapted_rand_error on label 0) would pair A with B.
    tp, true = 31 ** 2 + 23 ** 2 + 2, 32 ** 2 + 24 ** 2
    assert got["rand_error"] == pytest.approx(float(rand_error(tp, 0, true - tp)), rel=1e-12)
    assert float(rand_error(tp, 0, true - tp)) == pytest.approx(27 / 773, rel=1e-12)


def test_counts_are_pooled_over_slices():
    truth = np.stack([one_cell(), one_cell()])
    prediction = np.stack([one_cell(), np.zeros((12, 12), bool)])   # perfect, then empty
    _, best = evaluate(prediction.astype(np.float32), truth)
    # pooled: TP 64, FP 0, FN 64, F = 2/3; the mean of the slices' F would give 1/2
    assert best["pixel_error"][0] == pytest.approx(1 / 3, rel=1e-12)
    # pairs: slice 1 TP 4096; slice 2 TP 64 (single-pixel segments), FN 4032
    assert best["rand_error"][0] == pytest.approx(float(rand_error(4160, 0, 4032)), rel=1e-12)
    assert float(rand_error(4160, 0, 4032)) == pytest.approx(63 / 193, rel=1e-12)


def test_the_first_of_equal_values_wins_and_one_segment_has_no_information():
    truth = split(one_cell())[None]
    probabilities = np.full((1, 12, 12), 0.5, np.float32)     # every pixel one class
    rows, best = evaluate(probabilities, truth)
    assert [r["cell_fraction"] for r in rows] == [1.0] * 5 + [0.0] * 6
    assert best["pixel_error"] == (pytest.approx(1 - 112 / 200, rel=1e-12), 0.0)
    # all cell: the membrane between the cells stays, 12 merger pixels; no cell: the cells
    # shrink to one pixel each, object deletions, which do not count
    assert rows[0]["warping_error"] > 0 and best["warping_error"] == (0.0, 0.5)
    assert best["v_info"] == (0.0, 0.0)          # H(prediction) = 0 at every threshold


def test_the_fraction_of_differing_pixels_is_its_own_measure():
    truth = one_cell()
    assert differing_pixels(split(truth), truth) == 8 / 144
    assert scores(split(truth), truth)["pixel_error"] != 8 / 144


# ---- Fiji's sequential loops, pixel by pixel, as oracles for the fast ones ----------------

def warp_loop(truth, target, priority):
    """WarpingError.simplePointWarp2d as a plain loop: passes over the differing pixels in
    order of priority (largest first, ties column-major), flipping the simple ones."""
    state, goal = np.pad(truth, 1), np.pad(target, 1)
    order = np.pad(priority, 1)
    while True:
        differing = [(x, y) for x in range(1, state.shape[1] - 1)
                     for y in range(1, state.shape[0] - 1) if state[y, x] != goal[y, x]]
        differing.sort(key=lambda p: -order[p[1], p[0]])
        flipped = 0
        for x, y in differing:
            if SIMPLE[sum(int(state[y + dy, x + dx]) << k for k, (dy, dx) in enumerate(RING))]:
                state[y, x] = not state[y, x]
                flipped += 1
        if not flipped:
            return state[1:-1, 1:-1]


def splits_and_mergers_loop(warped, target):
    """WarpingError.classifyMismatches2d, relabelling the whole image for each split test."""
    objects = ndimage.label(warped, CROSS)[0]
    height, width = warped.shape

    def around(labels, y, x):
        return {labels[y + dy, x + dx] for dy, dx in RING
                if 0 <= y + dy < height and 0 <= x + dx < width}
    count = 0
    for y, x in zip(*np.nonzero(warped != target)):
        labels = around(objects, y, x)
        if len(labels) == 2 and objects[y, x]:
            without = warped.copy()
            without[y, x] = False
            count += len(around(ndimage.label(without, CROSS)[0], y, x)) > 2
        elif len(labels) != 1 and len(labels) != 2:
            count += 1
    return count


def flooding_loop(cells):
    """WatershedTransform2D.apply on cells = 0, membrane = 255, 4-connected, as a FIFO."""
    height, width = cells.shape
    labels = np.where(cells, ndimage.label(cells, CROSS)[0], -2)     # -2: membrane, unseen
    queued = np.zeros(cells.shape, bool)
    inside = lambda y, x: 0 <= y < height and 0 <= x < width       # noqa: E731
    steps = ((0, -1), (-1, 0), (0, 1), (1, 0))                      # left, up, right, down
    fifo = collections.deque()
    for x in range(width):
        for y in range(height):
            if not cells[y, x] and any(inside(y + dy, x + dx) and cells[y + dy, x + dx]
                                       for dy, dx in steps):
                fifo.append((y, x))
                queued[y, x] = True
    while fifo:
        y, x = fifo.popleft()
        state, line_first = -3, False                               # -3: queued
        for dy, dx in steps:
            v, u = y + dy, x + dx
            if not inside(v, u):
                continue
            seen = labels[v, u]
            if seen > 0 and (state == -3 or (state == 0 and line_first)):
                state = seen
            elif seen > 0 and state > 0 and state != seen:
                state, line_first = 0, False
            elif seen == 0 and state == -3:
                state, line_first = 0, True
            elif seen == -2 and not queued[v, u]:
                queued[v, u] = True
                fifo.append((v, u))
        labels[y, x] = state
        queued[y, x] = False
    labels[labels == -2] = labels.max() + 1                         # an image without cells
    return labels


def same_partition(a, b):
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return (np.array_equal(a == 0, b == 0) and len(pairs) == len({p for p, _ in pairs})
            == len({q for _, q in pairs}))


@st.composite
def images(draw, size=st.integers(3, 11)):
    """A random truth (smoothed noise), and a probability map near it or binary."""
    height, width = draw(size), draw(size)
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    truth = ndimage.gaussian_filter(rng.random((height, width)), draw(st.floats(0.6, 2))) > 0.5
    if draw(st.booleans()):
        p = ndimage.gaussian_filter(truth * 1.0, 1) + rng.normal(0, 0.3, truth.shape)
    else:
        p = (rng.random(truth.shape) < 0.5) * 1.0
    return truth, np.clip(p, 0, 1).astype(np.float32), draw(st.sampled_from(WARPING_THRESHOLDS))


@given(images())
def test_the_warp_is_fijis_sequential_loop(case):
    truth, p, th = case
    target = p.astype(np.float64) > th
    priority = np.abs(p.astype(np.float64) - th).astype(np.float32)
    warped = warp(truth[None], target[None], priority[None])[0]
    np.testing.assert_array_equal(warped, warp_loop(truth, target, priority))
    assert splits_and_mergers(warped[None], target[None])[0] == \
        splits_and_mergers_loop(warped, target)


@given(st.lists(images(st.integers(6, 16)), min_size=2, max_size=4))
def test_the_split_test_on_many_images_at_once_is_fijis(cases):
    truths = [t for t, _, _ in cases]
    shape = min(t.shape[0] for t in truths), min(t.shape[1] for t in truths)
    truth = np.stack([t[:shape[0], :shape[1]] for t in truths])
    target = np.stack([p[:shape[0], :shape[1]] > 0.5 for _, p, _ in cases])
    priority = np.abs(np.stack([p[:shape[0], :shape[1]] for _, p, _ in cases]) - 0.5)
    warped = warp(truth, target, priority.astype(np.float32))
    for k in range(len(cases)):
        np.testing.assert_array_equal(warped[k], warp_loop(truth[k], target[k], priority[k]))
        assert splits_and_mergers(warped[k:k + 1], target[k:k + 1])[0] == \
            splits_and_mergers_loop(warped[k], target[k])


@given(images())
def test_the_thinning_is_fijis_flooding(case):
    _, p, th = case
    cells = p > th
    assert same_partition(thin_membranes(cells[None])[0], flooding_loop(cells))


# ---- properties ----------------------------------------------------------------------------

@st.composite
def cell_grids(draw):
    """Rectangular cells at least 3 pixels wide, with 1-pixel membranes between them."""
    widths = draw(st.lists(st.integers(3, 10), min_size=1, max_size=4))
    heights = draw(st.lists(st.integers(3, 10), min_size=2, max_size=4))
    cells = np.ones((sum(heights) + len(heights) - 1, sum(widths) + len(widths) - 1), bool)
    cells[:, np.cumsum(np.array(widths[:-1], int) + 1) - 1] = False
    cells[np.cumsum(np.array(heights[:-1], int) + 1) - 1, :] = False
    return cells


@given(cell_grids())
def test_a_perfect_map_scores_zero_errors_and_full_scores(truth):
    got = scores(truth, truth)
    assert got["pixel_error"] == got["rand_error"] == got["warping_error"] == 0
    assert got["v_rand"] == 1 and got["v_info"] == pytest.approx(1, abs=1e-12)


@given(cell_grids())
def test_membranes_one_pixel_thicker_move_boundaries_not_topology(truth):
    # Every membrane one pixel thicker on each side: each rim pixel is a differing pixel, but
    # the warp absorbs them (no split, no merger) and the thinning puts the lines back in
    # the membranes' middle, so the leaderboard's V_Rand and V_Info stay perfect.
    thicker = ~ndimage.binary_dilation(~truth, CROSS)
    rim = np.count_nonzero(truth & ~thicker)
    got = scores(thicker, truth)
    assert differing_pixels(thicker, truth) == rim / truth.size
    assert got["warping_error"] == 0
    assert got["v_rand"] == 1 and got["v_info"] == pytest.approx(1, abs=1e-12)
    # Table 1's Rand error counts each rim pixel as a segment of its own
    cells, count = ndimage.label(truth, CROSS)
    sizes = np.bincount(cells.ravel())[1:]
    rims = np.bincount(cells[truth & ~thicker], minlength=count + 1)[1:]
    tp = int(np.sum((sizes - rims) ** 2)) + rim
    expected = rand_error(tp, 0, int(np.sum(sizes ** 2)) - tp)
    assert got["rand_error"] == pytest.approx(float(expected), rel=1e-12)


# ---- the ISBI 2012 labels (../shared/data/isbi2012, when present) ------------------------

@pytest.mark.skipif(not ISBI.exists(), reason="../shared/data/isbi2012 is not here")
def test_isbi_labels_score_as_a_perfect_map_and_thicker_membranes_as_boundary_errors():
    truth = tifffile.imread(ISBI / "train-labels.tif")[20:22, :256, :256] > 0
    _, best = evaluate(truth.astype(np.float32), truth)
    assert [best[m][0] for m in ("pixel_error", "rand_error", "warping_error")] == [0, 0, 0]
    assert best["v_rand"][0] == 1 and best["v_info"][0] == pytest.approx(1, abs=1e-12)
    thicker = np.stack([~ndimage.binary_dilation(~t, CROSS) for t in truth])
    rows, best = evaluate(thicker.astype(np.float32), truth)
    # 1 - F of the cells is smaller than the fraction of differing pixels when cells cover
    # more than half the image (ISBI: about 78%)
    assert best["pixel_error"][0] < rows[5]["differing_pixels"]


# ---- inputs and the command ----------------------------------------------------------------

def test_inputs_are_refused_in_one_clear_line():
    with pytest.raises(DataError, match="NaN"):
        probability_stack(np.full((1, 4, 4), np.nan, np.float32), "p.tif")
    with pytest.raises(DataError, match=r"values from 0 to 255"):
        probability_stack(np.array([[[0, 255]]], np.uint8), "p.tif")
    with pytest.raises(DataError, match="shape"):
        probability_stack(np.zeros((2, 3, 4, 4), np.float32), "p.tif")
    with pytest.raises(DataError, match="binary"):
        label_stack(np.array([[[0, 128, 255]]], np.uint8), "l.tif")
    with pytest.raises(DataError, match="slice 1 has no cell"):
        label_stack(np.stack([one_cell(), np.zeros((12, 12), bool)]).astype(np.uint8) * 255,
                    "l.tif")
    assert probability_stack(np.ones((2, 2, 3, 3)), "p.tif").shape == (2, 3, 3)   # channel 1
    assert label_stack(np.array([[[0, 1]]]), "l.tif").tolist() == [[[False, True]]]


def test_score_command_prints_the_table_and_json(tmp_path):
    truth = split(one_cell())
    tifffile.imwrite(tmp_path / "labels.tif", (truth * 255).astype(np.uint8)[None])
    tifffile.imwrite(tmp_path / "p.tif", one_cell().astype(np.float32)[None])
    runner = CliRunner()
    out = runner.invoke(main, ["score", str(tmp_path / "p.tif"), str(tmp_path / "labels.tif"),
                               "--json"])
    assert out.exit_code == 0, out.output
    best = json.loads(out.output)
    assert set(best) == {"pixel_error", "rand_error", "warping_error", "v_rand", "v_info"}
    assert best["warping_error"] == {"value": 8 / 144, "threshold": 0.0}
    table = runner.invoke(main, ["score", str(tmp_path / "p.tif"), str(tmp_path / "labels.tif")])
    assert table.exit_code == 0 and "best warping error: 0.055556 (threshold 0.0)" in table.output
    assert len(table.output.splitlines()) == 1 + 11 + 5        # header, thresholds, bests
    tifffile.imwrite(tmp_path / "wide.tif", np.zeros((1, 12, 13), np.float32))
    wrong = runner.invoke(main, ["score", str(tmp_path / "wide.tif"),
                                 str(tmp_path / "labels.tif")])
    assert wrong.exit_code == 1 and wrong.output.count("\n") == 1
    assert wrong.output.startswith("unetcore: error: ") and "shape" in wrong.output


def test_test_command_json_is_the_same_object(tmp_path):
    from unetcore import Net
    deploy = str(REPO / "prototxt" / "unet-small-deploy.prototxt")
    net = Net(deploy, "TEST")
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = 0                  # p = 0.5 everywhere
    net.save(str(tmp_path / "zero.caffemodel.h5"))
    labels = np.full((1, 24, 24), 255, np.uint8)
    labels[0, :, 12] = 0
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "images.tif", np.zeros((1, 24, 24), np.uint8))
    out = CliRunner().invoke(main, ["test", str(tmp_path / "images.tif"),
                                    str(tmp_path / "labels.tif"), "--model", deploy,
                                    "--weights", str(tmp_path / "zero.caffemodel.h5"), "--json"])
    assert out.exit_code == 0, out.output
    best = json.loads(out.stdout)
    assert list(best) == ["pixel_error", "rand_error", "warping_error", "v_rand", "v_info"]
    assert best["warping_error"] == {"value": 0.0, "threshold": 0.5}   # cells shrink away
