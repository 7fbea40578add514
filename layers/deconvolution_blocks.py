"""Deconvolution engine "blocks": stride equal to the kernel, no padding or dilation (the
U-Net's 2x2 stride-2 up-convolution).

Then every input pixel writes its own kh x kw block of the output and no two blocks overlap,
so the col2im of the forward (the convolution's backward_gemm) is a single reshaping copy:

    y[c, kh i + p, kw j + q] = col[(c, p, q), (i, j)],     col = W^T @ X
"""
from unetcore.layer import register_engine

from .convolution import parsed_geometry
from .deconvolution import DeconvolutionLayer


@register_engine
class BlockDeconvolution(DeconvolutionLayer):
    engine = "blocks"
    priority = 0

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        geom = parsed_geometry(param)
        return (geom is not None and geom.stride == geom.kernel and geom.pad == (0, 0)
                and geom.dilation == (1, 1))

    def backward_gemm(self, dy, w, dx):
        """For the deconvolution's forward: dy is its input x, dx its output y."""
        xp, k, m = self.xp, w.shape[2], w.shape[1]
        in_h, in_w = dy.shape[1:]
        for r0, r1 in self.bands(in_h, k, in_w):
            col = self.column_buffer(k * self.group, r1 - r0, in_w)
            for g in range(self.group):
                xp.matmul(w[g].T, dy[g * m:(g + 1) * m, r0:r1].reshape(m, -1),
                          out=col[g * k:(g + 1) * k])
            self.place_blocks(col, dx, r0, r1)

    def place_blocks(self, col, y, r0, r1):
        """y[c, kh i + p, kw j + q] = col[(c, p, q), (i, j)] for input rows [r0, r1): one copy."""
        (kh, kw), rows, width = self.geom.kernel, r1 - r0, y.shape[2] // self.geom.kernel[1]
        channels = y.shape[0]
        blocks = y[:, r0 * kh:r1 * kh].reshape(channels, rows, kh, width, kw)
        blocks[...] = col.reshape(channels, kh, kw, rows, width).transpose(0, 3, 1, 4, 2)
