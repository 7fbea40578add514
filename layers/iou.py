"""IoU (caffe_unet's IoULayer): per foreground class, the intersection over union of the
predicted segmentation (the argmax of the scores) and the labels. The Fiji U-Net plugin adds
it to the fine-tuning net's TEST phase when it is given validation images.

Bottoms: scores (N, C, *spatial) with the classes on iou_param.axis, labels (one per pixel:
0 .. C - 1), and optionally per-pixel weights. A pixel counts unless its label is
loss_param.ignore_label or its weight is 0 (the weights only say which pixels count). The
predicted class is the first of the highest scores (caffe_unet keeps a later class only if
it scores strictly higher). For each foreground class c (every class but
iou_param.background_label, in ascending order), over the pixels that count:

    intersection_c = #(label = c and predicted = c),   union_c = #(label = c or predicted = c)
    IoU_c = intersection_c / union_c                  (0 when union_c = 0)

Top: the C - 1 values IoU_c. Each forward logs the counts, as caffe_unet does; the plugin
sums them over a test pass and divides (FinetuneJob.parseCaffeOutputString):

        <name> - Per class intersection: i_1 i_2 ...
        <name> - Per class union: u_1 u_2 ...

caffe_unet streams the counts as floats (6 significant digits); here they are exact integers.
There is no backward (as caffe_unet's: NOT_IMPLEMENTED).
"""
import numpy as np

from unetcore.backend import to_numpy
from unetcore.layer import Layer, register
from unetcore.logs import log


def class_axis(layer, bottom, axis):
    """(the class axis, the count of samples before it, the count of pixels after it) of
    the scores, after caffe_unet's Reshape checks: one label (and weight) per pixel."""
    shape = bottom[0].shape
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape):
        raise layer.error(f"axis {axis} is not an axis of the scores {shape}")
    outer, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1:]))
    for blob, what in zip(bottom[1:], ("labels", "weights")):
        if blob.count != outer * inner:
            raise layer.error(f"the {what} blob has {blob.count} values, expected "
                              f"{outer * inner} (one per pixel of the scores {shape})")
    if shape[axis] < 2:
        raise layer.error(f"the scores have {shape[axis]} class(es); a background and at "
                          "least one foreground class are needed")
    return axis, outer, inner


def foreground_classes(layer, classes, background):
    """The foreground classes in caffe_unet's order (ascending, background left out)."""
    if not 0 <= background < classes:
        raise layer.error(f"background_label {background} is not one of the {classes} "
                          "classes")
    return [c for c in range(classes) if c != background]


def predicted_classes(scores, outer, inner):
    """(outer, inner): the first class of the highest score at each pixel."""
    return scores.reshape(outer, -1, inner).argmax(axis=1)


def counted_labels(layer, bottom, outer, inner, classes):
    """(labels, counts), each (outer, inner): the labels as integers (caffe_unet's cast), and
    whether each pixel counts (not ignore_label, weight not 0). A label outside the classes
    on a pixel that counts is an error."""
    labels = to_numpy(bottom[1].data).reshape(outer, inner).astype(np.int64)
    counts = np.ones(labels.shape, bool)
    loss = layer.param.loss_param
    if loss.has("ignore_label"):
        counts &= labels != loss.ignore_label
    if len(bottom) > 2:
        counts &= to_numpy(bottom[2].data).reshape(outer, inner) != 0
    outside = counts & ((labels < 0) | (labels >= classes))
    if outside.any():
        raise layer.error(f"label {labels[outside][0]} is not one of the {classes} classes "
                          f"(0 .. {classes - 1}) of the scores")
    return labels, counts


def log_counts(layer, what, counts):
    """One of caffe_unet's '    <layer> - Per class <what>: a b ...' lines."""
    log(f"    {layer.name} - Per class {what}: {' '.join(str(int(n)) for n in counts)}")


@register
class IoULayer(Layer):
    type = "IoU"
    min_bottoms = 2
    max_bottoms = 3
    exact_tops = 1

    def reshape(self, bottom, top):
        self.axis, self.outer, self.inner = class_axis(self, bottom,
                                                       self.param.iou_param.axis)
        top[0].reshape((bottom[0].shape[self.axis] - 1,))

    def forward(self, bottom, top):
        classes = bottom[0].shape[self.axis]
        foreground = foreground_classes(self, classes, self.param.iou_param.background_label)
        labels, counts = counted_labels(self, bottom, self.outer, self.inner, classes)
        predicted = predicted_classes(to_numpy(bottom[0].data), self.outer,
                                      self.inner)[counts]
        labels = labels[counts]
        intersection = [int(np.sum((labels == c) & (predicted == c))) for c in foreground]
        union = [int(np.sum((labels == c) | (predicted == c))) for c in foreground]
        top[0].data[...] = self.xp.asarray([i / u if u else 0.0
                                            for i, u in zip(intersection, union)],
                                           dtype=self.dtype)
        log_counts(self, "intersection", intersection)
        log_counts(self, "union", union)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("IoU has no gradient; it must not be on a backward path")
