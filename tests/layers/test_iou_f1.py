"""caffe_unet's IoU and F1 layers on hand-made cases whose counts are known exactly: what they
compute, which pixels count, how F1 forms and matches objects, and the log lines the Fiji
plugin parses."""
import numpy as np
import pytest

from cases import make_layer, run_forward
from unetcore.errors import NetError

# labels and predicted classes of one 3 x 4 image with classes 0 (background), 1, 2
LABELS = np.array([[0, 1, 1, 2],
                   [0, 1, 2, 2],
                   [0, 0, 0, 2]])
PREDICTED = np.array([[0, 1, 2, 2],
                      [1, 1, 2, 2],
                      [0, 0, 0, 0]])


def scores_of(predicted, classes):
    """(1, classes, *spatial) scores whose argmax is `predicted`."""
    return np.moveaxis(np.eye(classes)[predicted], -1, 0)[None]




def iou(text, *bottoms):
    return run_forward(make_layer(f'name: "IoU" type: "IoU" {text}'), *bottoms)[0]


def f1(text, *bottoms):
    return run_forward(make_layer(f'name: "F1" type: "F1" {text}'), *bottoms)[0]


# ---------------------------------------------------------------- IoU


def test_iou_per_foreground_class_and_its_log_lines(logged):
    # class 1: labelled 3, predicted 3, both 2 -> 2 / 4; class 2: 4, 4, 3 -> 3 / 5
    values = iou("", scores_of(PREDICTED, 3), LABELS[None, None])
    assert values.shape == (2,)
    np.testing.assert_allclose(values, [2 / 4, 3 / 5])
    assert logged == ["    IoU - Per class intersection: 2 3", "    IoU - Per class union: 4 5"]


def test_iou_skips_pixels_of_weight_0_and_of_the_ignore_label(logged):
    weights = np.ones(LABELS.shape)
    weights[2, 3] = 0                               # a labelled 2 predicted 0: out of class 2
    np.testing.assert_allclose(iou("", scores_of(PREDICTED, 3), LABELS[None, None],
                                   weights[None, None]), [2 / 4, 3 / 4])
    logged.clear()
    iou("loss_param { ignore_label: 2 }", scores_of(PREDICTED, 3), LABELS[None, None])
    # without the labelled 2s, only the 1 predicted 2 at (0, 2) is left of class 2
    assert logged == ["    IoU - Per class intersection: 2 0", "    IoU - Per class union: 4 1"]


def test_iou_background_label_and_ties(logged):
    iou("iou_param { background_label: 1 }", scores_of(PREDICTED, 3), LABELS[None, None])
    # classes 0 and 2: class 0 labelled 5, predicted 5, both 4 -> 4 / 6
    assert logged[0] == "    IoU - Per class intersection: 4 3"
    logged.clear()
    even = np.zeros((1, 2, 1, 3))                   # equal scores: the first class, 0
    np.testing.assert_allclose(iou("", even, np.array([[[[1, 1, 0]]]])), [0.0])
    assert logged == ["    IoU - Per class intersection: 0", "    IoU - Per class union: 2"]


def test_iou_refuses_labels_outside_the_classes_where_they_count():
    labels = LABELS.copy()
    labels[0, 0] = 3
    with pytest.raises(NetError, match="label 3 is not one of the 3 classes"):
        iou("", scores_of(PREDICTED, 3), labels[None, None])
    weights = np.ones(LABELS.shape)
    weights[0, 0] = 0                               # where it does not count, it is not read
    iou("", scores_of(PREDICTED, 3), labels[None, None], weights[None, None])
    with pytest.raises(NetError, match="labels blob has 11 values, expected 12"):
        iou("", scores_of(PREDICTED, 3), np.zeros(11))


# ---------------------------------------------------------------- F1, segmentation (IoU)


def test_f1_segmentation_matches_objects_whose_iou_is_at_least_one_half(logged):
    labels, predicted = np.zeros((6, 6), int), np.zeros((6, 6), int)
    labels[0:2, 0:2] = 1                            # object A, 4 pixels
    labels[3, 0:4] = 1                              # object B, 4 pixels
    predicted[0:2, 0:3] = 1                         # 6 pixels: IoU with A 4 / 6, a match
    predicted[3, 3:6] = 1                           # 3 pixels: IoU with B 1 / 6, none
    predicted[5, 5] = 1                             # a third prediction, on nothing
    values = f1("", scores_of(predicted, 2), labels[None, None])
    # precision 1/3, recall 1/2: F1 = 2 (1/6) / (5/6) = 0.4
    np.testing.assert_allclose(values, [0.4], rtol=1e-6)
    assert logged == ["    F1 - Per class true positive count: 1",
                      "    F1 - Per class prediction count: 3",
                      "    F1 - Per class object count: 2"]


def test_f1_objects_are_face_connected_and_exclude_pixels_that_do_not_count(logged):
    labels = np.zeros((4, 5), int)
    labels[0, 0] = labels[1, 1] = 1                 # touching at a corner only: two objects
    labels[3, 0:5] = 1                              # one row ...
    weights = np.ones(labels.shape)
    weights[3, 2] = 0                               # ... cut in two where it does not count
    f1("", scores_of(np.zeros_like(labels), 2), labels[None, None], weights[None, None])
    assert logged[1:] == ["    F1 - Per class prediction count: 0",
                          "    F1 - Per class object count: 4"]


def test_f1_counts_every_samples_objects_and_predictions(logged):
    """A sample with objects but no prediction still counts its objects (caffe_unet's code
    skips them, which its header does not say and which inflates recall)."""
    labels = np.zeros((2, 1, 3, 3), int)
    labels[:, 0, 1, 1] = 1
    predicted = np.zeros((2, 3, 3), int)
    predicted[0, 1, 1] = 1                          # sample 0 found, sample 1 not
    scores = np.concatenate([scores_of(p, 2) for p in predicted])
    np.testing.assert_allclose(f1("", scores, labels), [2 * 0.5 / 1.5], rtol=1e-6)
    assert logged == ["    F1 - Per class true positive count: 1",
                      "    F1 - Per class prediction count: 1",
                      "    F1 - Per class object count: 2"]


def test_f1_matches_across_classes_and_counts_only_agreeing_classes(logged):
    labels, predicted = np.zeros((3, 3), int), np.zeros((3, 3), int)
    labels[1, 1], predicted[1, 1] = 1, 2            # found, as the wrong class
    np.testing.assert_allclose(f1("", scores_of(predicted, 3), labels[None, None]), [0, 0])
    assert logged == ["    F1 - Per class true positive count: 0 0",
                      "    F1 - Per class prediction count: 0 1",
                      "    F1 - Per class object count: 1 0"]


# ---------------------------------------------------------------- F1, detection (Euclidean)


def test_f1_detection_uses_the_probability_weighted_centre_of_a_prediction(logged):
    """Prediction: pixels x = 0 and 1 of class 1 at probabilities 0.6 and 0.9, centre
    x = 0.9 / 1.5 = 0.6; the object at x = 3 is 2.4 away (the unweighted centre: 2.5)."""
    scores = np.zeros((1, 2, 1, 5))
    scores[0, 1] = [np.log(1.5), np.log(9.0), -5, -5, -5]
    labels = np.array([[[[0, 0, 0, 1, 0]]]])
    text = "f1_param {{ distance_mode: EUCLIDEAN distance_threshold: {} }}"
    np.testing.assert_allclose(f1(text.format(2.45), scores, labels), [1.0])
    np.testing.assert_allclose(f1(text.format(2.35), scores, labels), [0.0])


def test_f1_drops_a_hungarian_pair_beyond_the_threshold(logged):
    """Objects A (0, 2), B (2, 0); predictions P (0, 2), Q (0, 5). The least total distance
    pairs A-P (0) and B-Q (5.39 > 3) over A-Q (3) and B-P (2.83): B-Q is no match."""
    labels, predicted = np.zeros((3, 6), int), np.zeros((3, 6), int)
    labels[0, 2] = labels[2, 0] = 1
    predicted[0, 2] = predicted[0, 5] = 1
    f1("f1_param { distance_mode: EUCLIDEAN distance_threshold: 3 }",
       scores_of(predicted, 2), labels[None, None])
    assert logged[0] == "    F1 - Per class true positive count: 1"


def test_f1_has_no_gradient_and_needs_spatial_axes():
    layer = make_layer('name: "F1" type: "F1"')
    with pytest.raises(NetError, match="F1 has no gradient"):
        layer.backward([], [True], [])
    with pytest.raises(NetError, match="no spatial axes"):
        f1("", np.zeros((3, 2)), np.zeros(3))
