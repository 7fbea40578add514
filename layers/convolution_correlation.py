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
im2col at 80% (docs/benchmarks.md). The engine is N-d: on volumes the kernel turns on all
three axes and dy is padded on all three.
"""
import math

import numpy as np

from unetcore import backend
from unetcore.ops.im2col import im2col
from unetcore.layer import register_engine

from unetcore.layers.conditions import unit_stride_unpadded
from unetcore.layers.convolution import ConvolutionLayer


@register_engine
class CorrelationConvolution(ConvolutionLayer):
    engine = "correlation"
    priority = 4        # the last resort: only its data gradient is faster

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        return unit_stride_unpadded(param, bottom_shapes, dimensions=(1, 2, 3))

    @classmethod
    def pays(cls, param, bottom_shapes, xp):
        if not bottom_shapes:
            return False
        c_in, c_out = bottom_shapes[0][1], param.convolution_param.num_output
        return c_in > c_out if xp is np else c_in >= c_out

    def turned_weights(self, w):
        """W_rot[c, (o, p, q)] = W[o, c, kd-1-o, kh-1-p, kw-1-q] (in 2-d without o): the
        kernel turned by 180 degrees on every axis, input and output channels swapped, as a
        (C_in, C_out * prod(kernel)) matrix, from the weight matrices w (1, C_out, K)."""
        kernel = w[0].reshape(self.num_output, self.channels, *self.geom.kernel)
        turned = kernel[(slice(None), slice(None)) + (slice(None, None, -1),) * self.axes]
        return turned.swapaxes(0, 1).reshape(self.channels, -1)

    def backward_gemm(self, dy, w, dx):
        """dx = the valid correlation of dy, padded by k - 1 on each side of every axis, with
        the turned kernel: im2col of the padded dy and one GEMM, band by band."""
        xp, w_rot = self.xp, self.turned_weights(w)
        dy_pad = xp.pad(dy, ((0, 0),) + tuple((k - 1, k - 1) for k in self.geom.kernel))
        k, (rows, *rest) = w_rot.shape[1], dx.shape[1:]
        inner = math.prod(rest)
        for r0, r1 in self.bands(rows, k, inner):
            col = im2col(xp, dy_pad, self.geom, rest, r0, r1,
                         self.column_buffer(k, r1 - r0, inner))
            backend.matmul_into(xp, w_rot, col, dx[:, r0:r1].reshape(self.channels, -1))
