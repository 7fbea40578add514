"""The ISBI measures on hand-made cases with known answers."""
import numpy as np
import pytest

from unetcore.metrics import (SIMPLE, evaluate, iou, pixel_error, rand_error, warp,
                              warping_error)


def one_cell(size=12):
    cells = np.zeros((size, size), bool)
    cells[2:-2, 2:-2] = True
    return cells


def split(cells, column=6):
    out = cells.copy()
    out[:, column] = False
    return out


def test_simple_pixel_table():
    assert SIMPLE.sum() > 0
    assert not SIMPLE[0]                     # an isolated pixel: flipping it deletes an object
    assert not SIMPLE[255]                   # an interior pixel: flipping it makes a hole
    assert SIMPLE[0b00000111]                # cell neighbours only above: a boundary pixel
    assert not SIMPLE[0b01000010]            # cells above and below only: a bridge


def test_perfect_prediction():
    cells = one_cell()
    assert pixel_error(cells, cells) == 0
    assert rand_error(cells, cells) == 0
    assert warping_error(cells, cells) == 0


def test_shifted_boundary_costs_pixels_but_no_topology():
    truth = one_cell()
    shifted = np.zeros_like(truth)
    shifted[2:-2, 3:-1] = True
    assert pixel_error(shifted, truth) == pytest.approx(16 / 144)
    assert warping_error(shifted, truth) == 0
    np.testing.assert_array_equal(warp(truth, shifted), shifted)
    assert rand_error(shifted, truth) > 0    # pair counting sees the shift


def test_split_is_a_topology_error_with_known_rand_error():
    truth = one_cell()                        # one 8x8 cell, n = 64
    prediction = split(truth)                 # halves of 32 and 24 (cols 2-5, 7-9), 8 px line
    assert warping_error(prediction, truth) >= 1 / 144
    # one truth segment; prediction columns: membrane 8 px, left 32, right 24.
    n, parts = 64, np.array([8, 32, 24])
    recall = (parts * (parts - 1)).sum() / (n * (n - 1))
    assert rand_error(prediction, truth) == pytest.approx(1 - 2 * recall / (1 + recall))


def test_merge_is_a_topology_error():
    truth = split(one_cell())
    merged = one_cell()
    # Every pixel of the 8-px dividing line touches both cells, so none is simple: the warp
    # keeps the whole line, and the error counts its 8 pixels.
    assert warping_error(merged, truth) == pytest.approx(8 / 144)
    assert rand_error(merged, truth) > 0.1


def test_iou_per_class():
    truth = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(iou(np.array([0, 1, 1, 1]), truth), [1 / 2, 2 / 3])


def test_best_over_thresholds():
    truth = one_cell()[None]
    probabilities = truth * 0.75 + 0.1        # cells 0.85, membrane 0.1
    rows, best = evaluate(probabilities, truth)
    assert [r["threshold"] for r in rows] == pytest.approx(np.arange(0, 1.01, 0.1))
    assert best["pixel_error"] == (0.0, 0.1)
    assert best["rand_error"][0] == 0 and best["warping_error"][0] == 0
    assert rows[-1]["pixel_error"] == pytest.approx(64 / 144)      # t = 1: nothing is a cell
    assert rows[-1]["cell_fraction"] == 0 and rows[0]["cell_fraction"] == 1
    assert rows[5]["cell_fraction"] == pytest.approx(64 / 144)


def test_a_one_class_segmentation_can_have_the_best_warping_error():
    # One cell with a membrane at its edge; the net predicts it with three holes. Calling every
    # pixel cell (threshold 0.0) only grows the cell by simple points, which the warping
    # forgives, so it wins the warping error: `unetcore test` says so beside the number.
    truth = np.ones((1, 12, 12), bool)
    truth[0, :, 11] = False
    probabilities = truth * 0.8 + 0.1
    probabilities[0, [3, 5, 8], [3, 7, 4]] = 0.05
    rows, best = evaluate(probabilities, truth)
    value, threshold = best["warping_error"]
    assert (value, threshold) == (0.0, 0.0) and rows[0]["cell_fraction"] == 1
    assert rows[5]["warping_error"] == pytest.approx(3 / 144)
