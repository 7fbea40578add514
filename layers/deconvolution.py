"""Deconvolution (up-convolution, transposed convolution): Caffe's DeconvolutionLayer.

It is the adjoint of a Convolution with the same parameters: its forward is the
convolution's backward-to-data and its backward-to-data is the convolution's forward.
Shapes: x (N, C_in, H, W), W (C_in, C_out/group, kh, kw), y (N, C_out, H_out, W_out) with
H_out = stride (H - 1) + dilation (kh - 1) + 1 - 2 pad. The U-Net's 2x2 stride-2
up-convolution doubles H and W.

So it is wiring of the convolution's three products (layers/convolution.py), with the roles
of the two grids swapped: x lives on the convolution's output grid, y on its input grid.

    forward:   y  = backward_gemm(x):   y = col2im(W_g^T @ X_g)          (X_g: C_in/g x H*W)
    backward:  dx = forward_gemm(dy):   dX_g = W_g @ col(dy)_g
               dW = weight_gemm(dy, x): dW_g += X_g @ col(dy)_g^T        db = sum of dy
"""
from unetcore.layer import register

from unetcore.layers.convolution import ConvolutionLayer


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

    def forward_image(self, x, w, y):
        """y = the up-convolution of one image (the convolution's backward_gemm), bias
        added, max(y, 0) where rectify_top."""
        self.backward_gemm(x, w, y)
        self.finish(y)

    def backward(self, top, propagate_down, bottom):
        w = self.weight_matrices(self.blobs[0].data)
        dw = self.weight_matrices(self.blobs[0].diff) if self.param_propagate_down[0] else None
        for t, down, b in zip(top, propagate_down, bottom):
            for n in range(b.shape[0]):
                if dw is not None:
                    self.weight_gemm(t.diff[n], b.data[n], dw)
                if down:
                    self.forward_gemm(t.diff[n], w, b.diff[n])
            self.bias_backward(t.diff)
