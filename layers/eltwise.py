"""Eltwise (Caffe's EltwiseLayer): elementwise SUM (with coefficients), PROD or MAX.

SUM:  y = sum_i c_i x_i             dx_i = c_i dy
PROD: y = prod_i x_i                dx_i = dy * prod_{j != i} x_j
MAX:  y = max_i x_i                 dx_i = dy where x_i was the (first) maximum, else 0
"""
from unetcore.layer import Layer, register


@register
class EltwiseLayer(Layer):
    type = "Eltwise"
    min_bottoms = 2
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.param.eltwise_param
        self.op = p.operation
        self.coeff = list(p.coeff) or [1.0] * len(bottom)
        if len(self.coeff) != len(bottom):
            raise self.error(f"eltwise_param gives {len(self.coeff)} coeff for {len(bottom)} bottoms")
        if p.coeff and self.op != "SUM":
            raise self.error("coeff applies to the SUM operation only")

    def reshape(self, bottom, top):
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != bottom[0].shape:
                raise self.error(f"bottom '{self.bottom_name(i)}' has shape {b.shape}, the first {bottom[0].shape}")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        xs = [b.data for b in bottom]
        y = top[0].data
        if self.op == "SUM":
            y[...] = sum(self.dtype.type(c) * x for c, x in zip(self.coeff, xs))
        elif self.op == "PROD":
            y[...] = xs[0]
            for x in xs[1:]:
                y *= x
        else:
            self.winner = self.xp.stack(xs).argmax(axis=0)
            y[...] = self.xp.stack(xs).max(axis=0)

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff
        for i, (b, down) in enumerate(zip(bottom, propagate_down)):
            if not down:
                continue
            if self.op == "SUM":
                b.diff[...] = self.dtype.type(self.coeff[i]) * dy
            elif self.op == "PROD":
                others = self.xp.ones_like(dy)
                for j, other in enumerate(bottom):
                    if j != i:
                        others *= other.data
                b.diff[...] = dy * others
            else:
                b.diff[...] = dy * (self.winner == i)
