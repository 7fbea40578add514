"""F1 (caffe_unet's F1Layer): per foreground class, the F1 score of finding the labelled
objects: how well the predicted objects match them one to one. The Fiji U-Net plugin adds two
to the fine-tuning net's TEST phase when it is given validation images: F1_detection
(EUCLIDEAN, threshold 3 pixels) and F1_segmentation (the defaults: IOU, threshold 0.5).

Bottoms as IoU's (layers/iou.py): scores with the classes on the axis, labels, optionally
weights; a pixel counts unless its label is loss_param.ignore_label or its weight is 0. For
every sample (each index before the class axis):

1. Objects. The labelled objects are the connected components of one label among the pixels
   that count, background left out; the predicted objects those of one predicted class (the
   argmax), background left out, over all pixels. Neighbours share a face (4-connected in
   2-d, 6-connected in 3-d), as in caffe_unet's connectedComponentLabeling.
2. The distance of each labelled object to each predicted object, by f1_param.distance_mode:
   IOU        1 - the intersection over union of their pixel sets;
   EUCLIDEAN  the distance in pixels between the labelled object's centre (the mean of its
              pixel positions) and the predicted object's centre, where each of its pixels
              weighs the softmax probability of the predicted class there.
3. Matching. The objects with some partner within distance_threshold are the candidates; the
   Hungarian method pairs candidates one to one with the least total distance, across
   classes; a pair farther apart than the threshold is no match, and a match of labelled and
   predicted objects of the same class is a true positive of that class.

The counts are summed over the samples: TP_c, predictions P_c, objects O_c; the top holds the
C - 1 values F1_c = 2 prec rec / (prec + rec) with prec = TP_c / P_c, rec = TP_c / O_c (0 when
undefined). Each forward logs the counts, as caffe_unet does; the plugin sums them over a test
pass and computes F1 from the sums (FinetuneJob.parseCaffeOutputString):

        <name> - Per class true positive count: t_1 t_2 ...
        <name> - Per class prediction count: p_1 p_2 ...
        <name> - Per class object count: o_1 o_2 ...

Where caffe_unet's code departs from what its header documents, this follows the
documentation: its code keeps Hungarian pairs beyond the threshold (the header: "the threshold
is applied to remove matches with distance exceeding the given threshold"), and it leaves out
of O_c the objects of a sample with no predicted object (and out of P_c the predictions of a
sample with no labelled object), which inflates recall (precision). It reads the class axis
from iou_param; this reads f1_param's (both default to 1, and the plugin sets neither). The
Hungarian method's choice among pairings of equal total distance may differ from caffe_unet's.
There is no backward (as caffe_unet's: NOT_IMPLEMENTED).
"""
import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from unetcore.backend import to_numpy
from unetcore.layer import Layer, register

from unetcore.layers.iou import class_axis, counted_labels, foreground_classes, log_counts, predicted_classes


def objects(classes, include, background):
    """(an image of object numbers, 0 = none and 1.. the objects; the class of each object):
    the face-connected components of each class on the `include` pixels."""
    face_neighbours = ndimage.generate_binary_structure(classes.ndim, 1)
    numbers = np.zeros(classes.shape, np.int64)
    object_classes = []
    for c in np.unique(classes[include]):
        if c == background:
            continue
        components, count = ndimage.label(include & (classes == c), face_neighbours)
        numbers[components > 0] = components[components > 0] + len(object_classes)
        object_classes += [int(c)] * count
    return numbers, np.array(object_classes, np.int64)


def iou_distances(labelled, predicted, n_labelled, n_predicted):
    """(labelled, predicted) 1 - IoU of every pair of objects' pixel sets."""
    pairs = np.bincount((labelled * (n_predicted + 1) + predicted).ravel(),
                        minlength=(n_labelled + 1) * (n_predicted + 1))
    overlap = pairs.reshape(n_labelled + 1, n_predicted + 1).astype(np.float64)
    sizes_labelled, sizes_predicted = overlap.sum(axis=1)[1:], overlap.sum(axis=0)[1:]
    intersection = overlap[1:, 1:]
    union = sizes_labelled[:, None] + sizes_predicted[None, :] - intersection
    return 1.0 - intersection / union


def centres(numbers, count, pixel_weights):
    """(count, n_dims) the weighted mean pixel position of each object."""
    positions = np.indices(numbers.shape).reshape(numbers.ndim, -1).astype(np.float64)
    flat = numbers.ravel()
    mass = np.bincount(flat, pixel_weights, minlength=count + 1)[1:]
    return np.stack([np.bincount(flat, pixel_weights * p, minlength=count + 1)[1:] / mass
                     for p in positions], axis=1)


def centre_distances(labelled, predicted, n_labelled, n_predicted, probability):
    """(labelled, predicted) the distances in pixels between the objects' centres: labelled
    ones unweighted, predicted ones weighted by the predicted class's probability."""
    a = centres(labelled, n_labelled, np.ones(labelled.size))
    b = centres(predicted, n_predicted, probability.ravel().astype(np.float64))
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


def winning_probability(scores):
    """(*spatial) the softmax probability of the highest-scoring class, 1 / sum exp(s - max)."""
    return 1.0 / np.exp(scores - scores.max(axis=0)).sum(axis=0)


def matched_classes(distances, truth_classes, guess_classes, threshold):
    """The classes of the true positives: Hungarian pairs of candidates within the
    threshold whose classes agree."""
    near = distances <= threshold
    rows, columns = near.any(axis=1), near.any(axis=0)
    if not rows.any():
        return np.zeros(0, np.int64)
    candidates = distances[np.ix_(rows, columns)]
    r, c = linear_sum_assignment(candidates)
    kept = candidates[r, c] <= threshold
    truth, guess = truth_classes[rows][r[kept]], guess_classes[columns][c[kept]]
    return truth[truth == guess]


@register
class F1Layer(Layer):
    type = "F1"
    min_bottoms = 2
    max_bottoms = 3
    exact_tops = 1

    def reshape(self, bottom, top):
        self.axis, self.outer, self.inner = class_axis(self, bottom, self.param.f1_param.axis)
        self.spatial = bottom[0].shape[self.axis + 1:]
        if not self.spatial:
            raise self.error("the scores have no spatial axes after the class axis; objects "
                             "need at least one")
        top[0].reshape((bottom[0].shape[self.axis] - 1,))

    def forward(self, bottom, top):
        p = self.param.f1_param
        classes = bottom[0].shape[self.axis]
        foreground = foreground_classes(self, classes, p.background_label)
        index = {c: k for k, c in enumerate(foreground)}
        labels, counts = counted_labels(self, bottom, self.outer, self.inner, classes)
        scores = to_numpy(bottom[0].data).reshape(self.outer, classes, *self.spatial)
        predicted = predicted_classes(scores, self.outer, self.inner)
        tp, n_predicted, n_objects = (np.zeros(len(foreground), np.int64) for _ in range(3))
        for i in range(self.outer):
            truth, truth_classes = objects(labels[i].reshape(self.spatial),
                                           counts[i].reshape(self.spatial), p.background_label)
            guess, guess_classes = objects(predicted[i].reshape(self.spatial),
                                           np.ones(self.spatial, bool), p.background_label)
            np.add.at(n_objects, [index[c] for c in truth_classes], 1)
            np.add.at(n_predicted, [index[c] for c in guess_classes], 1)
            if not len(truth_classes) or not len(guess_classes):
                continue
            if p.distance_mode == "IOU":
                distances = iou_distances(truth, guess, len(truth_classes), len(guess_classes))
            else:
                distances = centre_distances(truth, guess, len(truth_classes),
                                             len(guess_classes), winning_probability(scores[i]))
            for c in matched_classes(distances, truth_classes, guess_classes,
                                     p.distance_threshold):
                tp[index[c]] += 1
        top[0].data[...] = self.xp.asarray(f1_scores(tp, n_predicted, n_objects),
                                           dtype=self.dtype)
        log_counts(self, "true positive count", tp)
        log_counts(self, "prediction count", n_predicted)
        log_counts(self, "object count", n_objects)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("F1 has no gradient; it must not be on a backward path")


def f1_scores(tp, n_predicted, n_objects):
    """2 prec rec / (prec + rec) per class, 0 where a ratio is undefined."""
    precision = np.divide(tp, n_predicted, out=np.zeros(len(tp)), where=n_predicted > 0)
    recall = np.divide(tp, n_objects, out=np.zeros(len(tp)), where=n_objects > 0)
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros(len(tp)), where=total > 0)
