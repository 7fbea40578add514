"""Accuracy (Caffe's AccuracyLayer): the fraction of pixels whose label is among the
top_k scores, ignoring ignore_label. It has no backward (it is not differentiable)."""
import numpy as np

from unetcore.layer import Layer, register


@register
class AccuracyLayer(Layer):
    type = "Accuracy"
    exact_bottoms = 2
    exact_tops = 1

    def reshape(self, bottom, top):
        p = self.param.accuracy_param
        shape = bottom[0].shape
        self.axis = p.axis + len(shape) if p.axis < 0 else p.axis
        self.outer = int(np.prod(shape[:self.axis]))
        self.inner = int(np.prod(shape[self.axis + 1:]))
        if bottom[1].count != self.outer * self.inner:
            raise self.error(f"label blob has {bottom[1].count} values, expected "
                             f"{self.outer * self.inner} (one per pixel of {shape})")
        if p.top_k > shape[self.axis]:
            raise self.error(f"top_k {p.top_k} is larger than the {shape[self.axis]} classes")
        top[0].reshape(())

    def forward(self, bottom, top):
        xp, p = self.xp, self.param.accuracy_param
        classes = bottom[0].shape[self.axis]
        scores = bottom[0].data.reshape(self.outer, classes, self.inner)
        labels = bottom[1].data.reshape(self.outer, 1, self.inner).astype(xp.int64)
        valid = labels[:, 0] != p.ignore_label if p.has("ignore_label") else \
            xp.ones(labels[:, 0].shape, dtype=bool)
        true_score = xp.take_along_axis(scores, xp.clip(labels, 0, classes - 1), axis=1)
        better = (scores > true_score).sum(axis=1)          # classes that beat the label
        correct = (better < p.top_k) & valid
        top[0].data[...] = correct.sum() / max(1, int(valid.sum()))

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("Accuracy has no gradient; it must not be on a backward path")
