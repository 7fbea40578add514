"""Convolution engine "pointwise": a 1x1 kernel (1x1x1 in 3-d), stride 1, no padding, one group.

Then im2col is the identity: the column matrix of an image is the image itself, viewed as
(channels, pixels). The three products of layers/convolution.py become plain matrix products
of views, with no copy and no workspace:

    Y = W @ X        dX = W^T @ dY        dW += dY @ X^T          (X: C_in x H*W)

The U-Net's last layer (64 channels to 2 class scores) is one.
"""
from unetcore.layer import register_engine

from unetcore.layers.conditions import parsed_geometry
from unetcore.layers.convolution import ConvolutionLayer


@register_engine
class PointwiseConvolution(ConvolutionLayer):
    engine = "pointwise"
    priority = 0

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        geom = parsed_geometry(param, bottom_shapes, dimensions=(1, 2, 3))
        return (geom is not None and set(geom.kernel) == {1} and set(geom.stride) == {1}
                and not any(geom.pad) and param.convolution_param.group == 1)

    def forward_gemm(self, x, w, y):
        self.xp.matmul(w[0], x.reshape(x.shape[0], -1), out=y.reshape(y.shape[0], -1))

    def backward_gemm(self, dy, w, dx):
        self.xp.matmul(w[0].T, dy.reshape(dy.shape[0], -1), out=dx.reshape(dx.shape[0], -1))

    def weight_gemm(self, x, dy, dw):
        dw[0] += self.xp.matmul(dy.reshape(dy.shape[0], -1), x.reshape(x.shape[0], -1).T)
