"""Convolution engine "correlation": the data gradient as a convolution, without col2im.

For stride 1, no padding, dilation or groups, the gradient of the data

    dx[c, y, x] = sum_{o,p,q} W[o, c, p, q] dy[o, y - p, x - q]

is a valid convolution of dy, zero-padded by k - 1 on each side (a "full" correlation), with
the kernel turned by 180 degrees and its input and output channels swapped:
W_rot[c, o, p, q] = W[o, c, kh-1-p, kw-1-q]. So backward_gemm becomes im2col + GEMM, band by
band, like the forward; forward_gemm and weight_gemm stay the reference's.

Its im2col matrix has C_out * kh * kw rows where col2im's has C_in * kh * kw: it pays when
C_in > C_out (the U-Net's conv_u*b-c after a concat). On the CPU, with C_in <= C_out, col2im
is as fast and needs no padded copy of dy. On a GPU it pays with equal counts too: there the
col2im kernel, a gather with integer divisions, moves bytes at a third of a copy's rate and
im2col at 80% (docs/benchmarks.md).
"""
import numpy as np

from unetcore import backend
from unetcore.im2col import im2col
from unetcore.layer import register_engine

from .convolution import ConvolutionLayer, parsed_geometry


def unit_stride_unpadded(param, bottom_shapes):
    """2-d, stride 1, no padding, no dilation, one group, and not 1x1 (pointwise serves that)."""
    geom = parsed_geometry(param, bottom_shapes)
    return (geom is not None and geom.stride == (1, 1) and geom.pad == (0, 0)
            and geom.dilation == (1, 1) and param.convolution_param.group == 1
            and geom.kernel != (1, 1))


@register_engine
class CorrelationConvolution(ConvolutionLayer):
    engine = "correlation"
    priority = 2

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        return unit_stride_unpadded(param, bottom_shapes)

    @classmethod
    def pays(cls, param, bottom_shapes, xp):
        if not bottom_shapes or len(bottom_shapes[0]) != 4:
            return False
        c_in, c_out = bottom_shapes[0][1], param.convolution_param.num_output
        return c_in > c_out if xp is np else c_in >= c_out

    def turned_weights(self, w):
        """W_rot[c, (o, p, q)] = W[o, c, kh-1-p, kw-1-q]: the kernel turned by 180 degrees,
        input and output channels swapped, as a (C_in, C_out * kh * kw) matrix, from the
        weight matrices w (1, C_out, C_in * kh * kw)."""
        kernel = w[0].reshape(self.num_output, self.channels, *self.geom.kernel)
        return kernel[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(self.channels, -1)

    def backward_gemm(self, dy, w, dx):
        xp, (kh, kw), w_rot = self.xp, self.geom.kernel, self.turned_weights(w)
        dy_pad = xp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
        k, (h, wid) = w_rot.shape[1], dx.shape[1:]
        for r0, r1 in self.bands(h, k, wid):
            col = im2col(xp, dy_pad, self.geom, (wid,), r0, r1,
                         self.column_buffer(k, r1 - r0, wid))
            backend.matmul_into(xp, w_rot, col, dx[:, r0:r1].reshape(self.channels, -1))
