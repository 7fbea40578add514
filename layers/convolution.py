"""Convolution: y = W * x + b, by im2col + GEMM (Caffe's ConvolutionLayer, engine CAFFE).

Shapes: x (N, C_in, H, W), W (C_out, C_in/group, kh, kw), b (C_out,), y (N, C_out, H_out, W_out)
with H_out = (H + 2 pad - (dilation (kh - 1) + 1)) / stride + 1, rounded down. The layer is
N-d, as Caffe's: on (N, C, D, H, W) volumes the kernel is kd x kh x kw (kernel_size given
once, or once per axis: `kernel_size: 1 kernel_size: 3 kernel_size: 3` is caffe_unet's
anisotropic 1x3x3), and everything below holds with "pixel" read as "voxel".

Forward, per image and group g:      Y_g = W_g @ col(x)_g                    (W_g: C_out/g x K)
Backward (chain rule on that product):
    dW_g += dY_g @ col(x)_g^T        dx = col2im(W_g^T @ dY_g)        db += sum over n, h, w of dY

These are the three products of Caffe's base_conv_layer, named once here: forward_gemm,
backward_gemm and weight_gemm. Deconvolution, the adjoint, is the same three wired the
other way round (layers/deconvolution.py).

The im2col matrix is built in bands of output rows (slices along the first spatial axis)
inside one workspace shared by all layers, so its size stays under
config.sizes().workspace_bytes whatever the image.

The definition itself, the direct sum one output pixel at a time, is direct_convolution
below, with its chain rule direct_convolution_backward: slow, plain, and the oracle the tests
hold every engine to (as CS231n's layers.py beside its fast_layers.py).

This is the reference engine: the one path that docs/backprop.md derives. Faster engines for
special cases live beside it, each in its own file, and override some of the three products:
convolution_pointwise.py (1x1), convolution_correlation.py (dx without col2im),
convolution_flat.py (stride 1 with few channels, on the CPU), convolution_winograd.py (3x3,
2-d) and convolution_slices.py (1 x kh x kw on volumes, slice by slice through a 2-d
engine). unetcore.layer picks one; docs/3d.md says which run on volumes.
"""
import itertools
import math

import numpy as np

from unetcore import backend, config
from unetcore.ops.im2col import col2im_add, geometry_from_param, im2col, pad_image
from unetcore.ops.parallel import run_bands
from unetcore.layer import Layer, register


def row_bands(rows, bytes_per_row, limit=None):
    """Split `rows` output rows into bands whose im2col matrix fits `limit` bytes
    (by default the workspace limit)."""
    limit = config.sizes().workspace_bytes if limit is None else limit
    per_band = max(1, limit // max(1, bytes_per_row))
    return [(r, min(rows, r + per_band)) for r in range(0, rows, per_band)]


def batch_images(bottom, top):
    """(x, y) for every image of the batch: each bottom's image with its top's."""
    return [(x, y) for b, t in zip(bottom, top) for x, y in zip(b.data, t.data)]


def for_each_image(xp, work, images):
    """work(image) for each image of a batch: on the CPU, the images on all cores at once
    (unetcore/ops/parallel.py; one image runs alone, on all of BLAS's threads)."""
    if xp is np:
        run_bands(work, images)
    else:
        for image in images:
            work(image)


# ---- the definition: the direct sum, one output pixel at a time
def direct_convolution(x, w, b, geom):
    """The convolution by its definition, one output pixel at a time, in any number of
    spatial axes: x (N, C, *spatial), w (C_out, C/group, *kernel), b (C_out,) or None, geom a
    ConvGeometry. In 2-d (docs/backprop.md, Convolution),

        y[n, o, i, j] = b[o] + sum_{c,p,q} w[o, c, p, q] x[n, c, i*s + p*d - pad, j*s + q*d - pad]

    with x zero outside the image, and c running over the input channels of o's group."""
    x_pad = padded_batch(x, geom.pad)
    out_size = geom.output_size(*x.shape[2:])
    y = backend.array_module(x).zeros((x.shape[0], w.shape[0], *out_size), x.dtype)
    summed = tuple(range(1, x.ndim))                  # the axes (c, *kernel) of a patch
    for o in range(w.shape[0]):
        for pixel in itertools.product(*map(range, out_size)):
            patch = x_pad[(slice(None), group_inputs(o, w, x.shape[1])) + window(pixel, geom)]
            y[(slice(None), o) + pixel] = (w[o] * patch).sum(axis=summed)
    if b is not None:
        y += b.reshape((1, -1) + (1,) * len(out_size))
    return y


def direct_convolution_backward(x, w, dy, geom):
    """(dx, dw, db) of direct_convolution, by the chain rule on each of its terms: the term
    w[o, c, t] x[n, c, i*s + t*d - pad] of y[n, o, i] (t a kernel tap, i an output pixel) gives

        dw[o, c, t] += dy[n, o, i] x[n, c, i*s + t*d - pad]
        dx[n, c, i*s + t*d - pad] += dy[n, o, i] w[o, c, t]      db[o] += dy[n, o, i]"""
    xp = backend.array_module(x)
    x_pad = padded_batch(x, geom.pad)
    dx_pad, dw = xp.zeros_like(x_pad), xp.zeros_like(w)
    for o in range(w.shape[0]):
        for pixel in itertools.product(*map(range, dy.shape[2:])):
            patch = (slice(None), group_inputs(o, w, x.shape[1])) + window(pixel, geom)
            dy_pixel = dy[(slice(None), o) + pixel].reshape((-1,) + (1,) * (x.ndim - 1))
            dw[o] += (dy_pixel * x_pad[patch]).sum(axis=0)
            dx_pad[patch] += dy_pixel * w[o]
    image = tuple(slice(p, p + n) for p, n in zip(geom.pad, x.shape[2:]))
    return dx_pad[(slice(None), slice(None)) + image], dw, dy.sum(axis=(0, *range(2, dy.ndim)))


def padded_batch(x, pad):
    """x (N, C, *spatial) with `pad` zeros on both sides of each spatial axis."""
    return backend.array_module(x).pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad))


def group_inputs(o, w, channels):
    """The input channels that output channel o reads: those of its group."""
    per_group = w.shape[0] // (channels // w.shape[1])     # output channels per group
    g = o // per_group
    return slice(g * w.shape[1], (g + 1) * w.shape[1])


def window(pixel, geom):
    """The slices of the padded input that output `pixel` reads: along each axis
    i*s, i*s + d, ..., i*s + (k - 1)*d."""
    return tuple(slice(i * s, i * s + (k - 1) * d + 1, d) for i, k, s, d
                 in zip(pixel, geom.kernel, geom.stride, geom.dilation))


@register
class ConvolutionLayer(Layer):
    type = "Convolution"
    overwrites_tops = True
    engine_param = "convolution_param"
    min_bottoms = 1
    min_tops = 1

    def setup(self, bottom, top):
        p = self.param.convolution_param
        if len(bottom) != len(top):
            raise self.error(f"takes as many tops as bottoms, got {len(bottom)} and {len(top)}")
        if p.axis != 1:
            raise self.error("only axis 1 (N, C, H, W blobs) is supported")
        self.axes = len(bottom[0].shape) - 2
        if self.axes < 1:
            raise self.error(f"needs a bottom (N, C, *spatial) with at least one spatial axis, "
                             f"got shape {bottom[0].shape}")
        self.geom = geometry_from_param(p, self.error, self.axes)
        self.num_output, self.group = p.num_output, p.group
        if self.num_output < 1:
            raise self.error("convolution_param needs num_output >= 1")
        self.channels = bottom[0].shape[1]
        for what, n in (("input channels", self.channels), ("num_output", self.num_output)):
            if self.group < 1 or n % self.group:
                raise self.error(f"{what} ({n}) must be divisible by group ({self.group})")
        self.blobs = [self.make_param_blob(self.weight_shape(), p.weight_filler)]
        if p.bias_term:
            self.blobs.append(self.make_param_blob((self.num_output,), p.bias_filler))
        self.param_propagate_down = [True] * len(self.blobs)

    def weight_shape(self):
        return (self.num_output, self.channels // self.group, *self.geom.kernel)

    def output_shape(self, shape):
        return self.geom.output_size(*shape[2:])

    def reshape(self, bottom, top):
        for b, t in zip(bottom, top):
            if len(b.shape) != 2 + self.axes or b.shape[1] != self.channels:
                raise self.error(f"bottom '{self.bottom_name(0)}' must have shape (N, "
                                 f"{self.channels}) + {self.axes} spatial axes, got {b.shape}")
            out = self.output_shape(b.shape)
            if min(out) < 1:
                raise self.error(f"input {'x'.join(map(str, b.shape[2:]))} is smaller than the "
                                 f"kernel {self.geom.kernel} (with pad {self.geom.pad})")
            t.reshape((b.shape[0], self.num_output, *out))

    # Set by the Net for a forward whose next layer is an in-place ReLU on this top
    # (Net.fused_rectifiers): the layer writes max(y, 0), and that ReLU's forward is skipped.
    rectify_top = False

    # ---- forward and backward: the three products, image by image
    def forward(self, bottom, top):
        w = self.weight_matrices(self.blobs[0].data)
        for_each_image(self.xp, lambda image: self.forward_image(image[0], w, image[1]),
                       batch_images(bottom, top))

    def forward_image(self, x, w, y):
        """y = W * x + b for one image (then max(y, 0) where rectify_top). The flat and
        Winograd engines override forward instead: they fold the bias and the ReLU into the
        pass that writes each band, and share the bands of the whole batch out to the cores."""
        self.forward_gemm(x, w, y)
        self.finish(y)

    def finish(self, y, channel_axis=0, channels=slice(None)):
        """y += b, then y = max(y, 0) where rectify_top, in place; y holds the output
        `channels` along `channel_axis`."""
        if len(self.blobs) > 1:
            shape = [1] * y.ndim
            shape[channel_axis] = -1
            y += self.blobs[1].data[channels].reshape(shape)
        if self.rectify_top:
            backend.rectify(self.xp, y, y)

    def backward(self, top, propagate_down, bottom):
        w = self.weight_matrices(self.blobs[0].data)
        dw = self.weight_matrices(self.blobs[0].diff) if self.param_propagate_down[0] else None
        for t, down, b in zip(top, propagate_down, bottom):
            for n in range(b.shape[0]):
                self.backward_image(b.data[n], t.diff[n], w, dw, b.diff[n] if down else None)
            self.bias_backward(t.diff)

    def backward_image(self, x, dy, w, dw, dx):
        """The backward products for one image: dW += weight_gemm, dx = backward_gemm; dw or
        dx is None where that gradient is not wanted."""
        if dw is not None:
            self.weight_gemm(x, dy, dw)
        if dx is not None:
            self.backward_gemm(dy, w, dx)

    def weight_matrices(self, array):
        """The weight as (group, C_out/group, K), K = C_in/group * prod(kernel)."""
        return array.reshape(self.group, self.num_output // self.group, -1)

    def forward_gemm(self, x, w, y):
        """y = W @ col(x) for one image: x (C, *spatial) on the input grid, y on the output
        grid, w (group, M, K) with K = C/group * prod(kernel)."""
        k, m = w.shape[2], w.shape[1]
        for r0, r1, col in self.column_bands(x, k, y.shape[1:]):
            for g in range(self.group):      # rows r0:r1 of each channel: a strided view
                y_g = y[g * m:(g + 1) * m, r0:r1].reshape(m, -1)
                backend.matmul_into(self.xp, w[g], col[g * k:(g + 1) * k], y_g)

    def backward_gemm(self, dy, w, dx):
        """dx = col2im(W^T @ dy) for one image: dy (M*group, *out) on the output grid,
        dx (C, *spatial) on the input grid, written (not accumulated)."""
        xp, k, m, pad = self.xp, w.shape[2], w.shape[1], self.geom.pad
        out_rows, *out_rest = dy.shape[1:]
        if not any(pad):                    # col2im accumulates: start from zeros
            dx_pad = dx
            dx_pad[...] = 0
        else:
            dx_pad = xp.zeros((dx.shape[0],) + tuple(n + 2 * p for n, p in
                                                     zip(dx.shape[1:], pad)), dx.dtype)
        for r0, r1 in self.bands(out_rows, k, math.prod(out_rest)):
            col = self.column_buffer(k * self.group, r1 - r0, math.prod(out_rest))
            for g in range(self.group):
                dy_g = dy[g * m:(g + 1) * m, r0:r1].reshape(m, -1)
                xp.matmul(w[g].T, dy_g, out=col[g * k:(g + 1) * k])
            col2im_add(col, dx_pad, self.geom, out_rest, r0, r1)
        if dx_pad is not dx:
            dx[...] = dx_pad[(slice(None),) + tuple(slice(p, p + n) for n, p in
                                                    zip(dx.shape[1:], pad))]

    def weight_gemm(self, x, dy, dw):
        """dW += dy @ col(x)^T for one image: x on the input grid, dy on the output grid,
        dw (group, M, K)."""
        k, m = dw.shape[2], dw.shape[1]
        for r0, r1, col in self.column_bands(x, k, dy.shape[1:]):
            for g in range(self.group):
                dy_g = dy[g * m:(g + 1) * m, r0:r1].reshape(m, -1)
                dw[g] += self.xp.matmul(dy_g, col[g * k:(g + 1) * k].T)

    def column_bands(self, x, k, out_shape):
        """(r0, r1, col) for each band of output rows: col = im2col(x) for those rows, with
        K = k rows per group, in the shared workspace."""
        out_rows, *out_rest = out_shape
        inner, x_pad = math.prod(out_rest), pad_image(self.xp, x, self.geom.pad)
        for r0, r1 in self.bands(out_rows, k, inner):
            yield r0, r1, im2col(self.xp, x_pad, self.geom, out_rest, r0, r1,
                                 self.column_buffer(k * self.group, r1 - r0, inner))

    # ---- the bias's gradient, and the shared workspace
    def bias_backward(self, dy):
        if len(self.blobs) > 1 and self.param_propagate_down[1]:
            self.blobs[1].diff += dy.sum(axis=(0, *range(2, dy.ndim)))

    def bands(self, out_rows, k, inner):
        """Bands of output rows (of `inner` outputs each) whose im2col matrix (k * group rows)
        fits the workspace."""
        return row_bands(out_rows, k * self.group * inner * self.dtype.itemsize)

    def column_buffer(self, k_rows, band_rows, width):
        return backend.workspace(self.xp, self.dtype, k_rows * band_rows * width) \
            .reshape(k_rows, band_rows * width)
