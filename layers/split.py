"""Split: hands one blob to several consumers (inserted by the net, as in Caffe).

Forward: every top shares the bottom's data (no copy).
Backward: a blob used k times gets the sum of the k gradients, dx = sum_i dy_i
(the multivariate chain rule).
"""
from unetcore.layer import Layer, register


@register
class SplitLayer(Layer):
    type = "Split"
    exact_bottoms = 1
    min_tops = 1

    def reshape(self, bottom, top):
        for t in top:
            t.share_data(bottom[0])

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dx = bottom[0].diff
            if len(top) == 1:
                dx[...] = top[0].diff
                return
            self.xp.add(top[0].diff, top[1].diff, out=dx)     # one pass for the usual two
            for t in top[2:]:
                dx += t.diff
