"""ReLU: y = max(x, 0) + negative_slope * min(x, 0); may run in place (top == bottom).

Backward: dx = dy where x > 0, negative_slope * dy elsewhere. In place, the bottom
already holds y, and y > 0 exactly where x > 0 when negative_slope >= 0, so the same rule
applies; a negative slope makes y > 0 where x < 0, so such a ReLU is refused in place.
"""
from unetcore.backend import rectify
from unetcore.layer import Layer, register


@register
class ReLULayer(Layer):
    type = "ReLU"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        self.slope = self.param.relu_param.negative_slope

    def reshape(self, bottom, top):
        if top[0] is bottom[0] and self.slope < 0:
            raise self.error(f"negative_slope {self.slope:g} in place (top = bottom) would give "
                             "a wrong gradient: backward reads the sign of x from y, and a "
                             "negative slope flips it; give the layer a top of its own")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x, y = bottom[0].data, top[0].data
        if self.slope == 0:
            rectify(self.xp, x, y)                 # y = max(x, 0)
        else:
            y[...] = self.xp.where(x > 0, x, x * self.dtype.type(self.slope))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        positive = bottom[0].data > 0
        dy, dx = top[0].diff, bottom[0].diff
        if self.slope == 0:
            self.xp.multiply(dy, positive, out=dx)
        else:
            dx[...] = self.xp.where(positive, dy, dy * self.dtype.type(self.slope))
