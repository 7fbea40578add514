"""Deconvolution (up-convolution, transposed convolution): Caffe's DeconvolutionLayer.

It is the adjoint of a Convolution with the same parameters: its forward is the
convolution's backward-to-data and its backward-to-data is the convolution's forward.
Shapes: x (N, C_in, H, W), W (C_in, C_out/group, kh, kw), y (N, C_out, H_out, W_out) with
H_out = stride (H - 1) + dilation (kh - 1) + 1 - 2 pad. The U-Net's 2x2 stride-2
up-convolution doubles H and W.

Forward, per image and group g:      y = col2im(W_g^T @ X_g)              (X_g: C_in/g x H*W)
Backward:
    dW_g += X_g @ col(dy)_g^T        dX_g = W_g @ col(dy)_g         db += sum over n, h, w of dy
"""
from unetcore.im2col import col2im_add, im2col, pad_image
from unetcore.layer import register

from .convolution import ConvolutionLayer, row_bands


@register
class DeconvolutionLayer(ConvolutionLayer):
    type = "Deconvolution"

    def weight_shape(self):
        return (self.channels, self.num_output // self.group, *self.geom.kernel)

    def output_shape(self, shape):
        return self.geom.deconv_output_size(*shape[2:])

    def weight_matrices(self, array):
        """The weight as (group, C_in/group, C_out/group * kh * kw)."""
        return array.reshape(self.group, self.channels // self.group, -1)

    def forward_one(self, x, y):
        xp, w = self.xp, self.weight_matrices(self.blobs[0].data)
        c_in, k = w.shape[1], w.shape[2]
        (ph, pw), (in_h, in_w), (out_h, out_w) = self.geom.pad, x.shape[2:], y.shape[2:]
        for n in range(x.shape[0]):
            y_pad = None if self.tiles_output else \
                xp.zeros((self.num_output, out_h + 2 * ph, out_w + 2 * pw), self.dtype)
            for r0, r1 in row_bands(in_h, k * self.group * in_w * self.dtype.itemsize):
                col = self.column_buffer(k * self.group, r1 - r0, in_w)
                for g in range(self.group):
                    x_g = x[n, g * c_in:(g + 1) * c_in, r0:r1].reshape(c_in, -1)
                    xp.matmul(w[g].T, x_g, out=col[g * k:(g + 1) * k])
                if self.tiles_output:
                    self.place_blocks(col, y[n], r0, r1)
                else:
                    col2im_add(col, y_pad, self.geom, in_w, r0, r1)
            if not self.tiles_output:
                y[n] = y_pad[:, ph:ph + out_h, pw:pw + out_w]
        self.add_bias(y)

    @property
    def tiles_output(self):
        """stride == kernel, no padding or dilation (the U-Net's 2x2 stride-2 up-convolution):
        every input pixel writes its own kh x kw block of the output and no blocks overlap."""
        g = self.geom
        return g.stride == g.kernel and g.pad == (0, 0) and g.dilation == (1, 1)

    def place_blocks(self, col, y, r0, r1):
        """y[c, kh i + p, kw j + q] = col[(c, p, q), (i, j)] for input rows [r0, r1): one copy."""
        (kh, kw), rows, width = self.geom.kernel, r1 - r0, y.shape[2] // self.geom.kernel[1]
        blocks = y[:, r0 * kh:r1 * kh].reshape(self.num_output, rows, kh, width, kw)
        blocks[...] = col.reshape(self.num_output, kh, kw, rows, width).transpose(0, 3, 1, 4, 2)

    def backward_one(self, dy, bottom, down):
        xp, x = self.xp, bottom.data
        w = self.weight_matrices(self.blobs[0].data)
        dw = self.weight_matrices(self.blobs[0].diff) if self.param_propagate_down[0] else None
        c_in, k = w.shape[1], w.shape[2]
        in_h, in_w = x.shape[2:]
        for n in range(x.shape[0]):
            dy_pad = pad_image(xp, dy[n], self.geom.pad)
            for r0, r1 in row_bands(in_h, k * self.group * in_w * self.dtype.itemsize):
                col = im2col(xp, dy_pad, self.geom, in_w,
                             r0, r1, self.column_buffer(k * self.group, r1 - r0, in_w))
                for g in range(self.group):
                    channels = slice(g * c_in, (g + 1) * c_in)
                    col_g = col[g * k:(g + 1) * k]
                    if dw is not None:
                        x_g = xp.ascontiguousarray(x[n, channels, r0:r1]).reshape(c_in, -1)
                        dw[g] += xp.matmul(x_g, col_g.T)
                    if down:
                        dx_g = bottom.diff[n, channels, r0:r1]
                        dx_g[...] = xp.matmul(w[g], col_g).reshape(dx_g.shape)
