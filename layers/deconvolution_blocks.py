"""Deconvolution engine "blocks": stride equal to the kernel, no padding or dilation (the
U-Net's 2x2 stride-2 up-convolution, and its 3-d forms 2x2x2 and 1x2x2).

Then every input pixel writes its own kernel-sized block of the output and no two blocks
overlap, so the col2im of the forward (the convolution's backward_gemm) is a copy, one per
kernel tap onto a strided grid of the output. In 2-d:

    y[c, kh i + p, kw j + q] = col[(c, p, q), (i, j)],     col = W^T @ X

and in 3-d the same with a third pair of indices (kd o + r for slice o and tap r).
"""
import itertools
import math

from unetcore.layer import register_engine

from unetcore.layers.conditions import parsed_geometry
from unetcore.layers.deconvolution import DeconvolutionLayer


@register_engine
class BlockDeconvolution(DeconvolutionLayer):
    engine = "blocks"
    priority = 0

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        geom = parsed_geometry(param, bottom_shapes, dimensions=(1, 2, 3))
        return (geom is not None and geom.stride == geom.kernel and not any(geom.pad)
                and set(geom.dilation) == {1})

    def backward_gemm(self, dy, w, dx):
        """For the deconvolution's forward: dy is its input x, dx its output y."""
        xp, k, m = self.xp, w.shape[2], w.shape[1]
        in_rows, *in_rest = dy.shape[1:]
        inner = math.prod(in_rest)
        for r0, r1 in self.bands(in_rows, k, inner):
            col = self.column_buffer(k * self.group, r1 - r0, inner)
            for g in range(self.group):
                xp.matmul(w[g].T, dy[g * m:(g + 1) * m, r0:r1].reshape(m, -1),
                          out=col[g * k:(g + 1) * k])
            self.place_blocks(col, dx, r0, r1)

    def place_blocks(self, col, y, r0, r1):
        """y[c, k0 i0 + p0, k1 i1 + p1, ...] = col[(c, p0, p1, ...), (i0, i1, ...)] for input
        rows i0 in [r0, r1): for each tap (p0, p1, ...) of the kernel, one copy into the
        strided grid y[:, p0::k0, p1::k1, ...] (one copy of everything, through a transposed
        view, steps kw elements at a time and was 2.5 to 7 times slower)."""
        kernel, channels = self.geom.kernel, y.shape[0]
        inputs = (r1 - r0,) + tuple(n // k for n, k in zip(y.shape[2:], kernel[1:]))
        band = y[:, r0 * kernel[0]:r1 * kernel[0]]
        taps = col.reshape((channels, math.prod(kernel)) + inputs)
        for t, tap in enumerate(itertools.product(*map(range, kernel))):
            grid = tuple(slice(p, None, k) for p, k in zip(tap, kernel))
            band[(slice(None),) + grid] = taps[:, t]
