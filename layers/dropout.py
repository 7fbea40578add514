"""Dropout (Caffe's DropoutLayer, "inverted" dropout); may run in place.

TRAIN: keep each unit with probability 1 - p, y = x * mask / (1 - p), dx = dy * mask / (1 - p).
TEST:  y = x (the scaling at train time keeps the expected value unchanged).
"""
from unetcore.layer import Layer, register


@register
class DropoutLayer(Layer):
    type = "Dropout"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.param.dropout_param
        self.ratio = p.dropout_ratio
        if not 0 <= self.ratio < 1:
            raise self.error(f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.scale = 1.0 / (1.0 - self.ratio) if p.scale_train else 1.0

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x, y = bottom[0].data, top[0].data
        if self.phase != "TRAIN":
            if y is not x:
                y[...] = x
            return
        keep = self.uniform(x.shape) >= self.ratio
        self.mask = keep.astype(self.dtype) * self.dtype.type(self.scale)
        self.xp.multiply(x, self.mask, out=y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = top[0].diff, bottom[0].diff
        if self.phase == "TRAIN":
            self.xp.multiply(dy, self.mask, out=dx)
        elif dx is not dy:
            dx[...] = dy
