"""Softmax along `axis` (Caffe's SoftmaxLayer).

y_k = exp(x_k - max x) / sum_j exp(x_j - max x)       (subtracting the max changes nothing
                                                      mathematically and avoids overflow)
Backward (Jacobian dy_k/dx_i = y_k (delta_ki - y_i)):  dx = y * (dy - sum_k dy_k y_k)
"""
from unetcore.layer import Layer, register


def softmax(xp, x, axis):
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


@register
class SoftmaxLayer(Layer):
    type = "Softmax"
    exact_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom, top):
        ndim = len(bottom[0].shape)
        axis = self.param.softmax_param.axis
        self.axis = axis + ndim if axis < 0 else axis
        if not 0 <= self.axis < ndim:
            raise self.error(f"axis {axis} is out of range for shape {bottom[0].shape}")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = softmax(self.xp, bottom[0].data, self.axis)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y, dy = top[0].data, top[0].diff
            bottom[0].diff[...] = y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))
