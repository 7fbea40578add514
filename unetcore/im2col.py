"""im2col and col2im: convolution as one matrix product.

For an image x of shape (C, H, W) and a kh x kw kernel, im2col builds the matrix
``col`` of shape (C*kh*kw, H_out*W_out) whose column (i, j) holds the input patch
under output pixel (i, j):

    col[(c, p, q), (i, j)] = x[c, i*s_h - pad_h + p*d_h, j*s_w - pad_w + q*d_w]

Then a convolution is ``y = W @ col`` with W reshaped to (C_out, C*kh*kw).
col2im is its adjoint: it adds every column back onto the patch it came from,
which is exactly the gradient of im2col (used by Convolution backward and by
Deconvolution forward).

Both work on a band of output rows [row0, row1) so a caller can bound the size of
``col``; both use strided views and a single copy, and run unchanged on CuPy.

For a stride-1 convolution on the CPU there is a cheaper layout, the *flat* im2col. Index
the output on the input's grid, pixel (i, j) at i*W + j of the flattened image, with W the
input width. Then the patch element (c, p, q) of output pixel i*W + j is the input element
c at i*W + j + (p*W + q): every row of ``col`` is one contiguous slice of the flattened
image, shifted by the tap's offset p*W + q. The columns j >= W_out of each output row
wrap around into the next image row; they are computed and thrown away, (kw - 1) of every
W columns. Built for a few output rows at a time, such a band stays in the CPU's cache.
"""
from dataclasses import dataclass

import numpy as np

from . import gpu
from .backend import on_gpu


@dataclass(frozen=True)
class ConvGeometry:
    kernel: tuple    # (kh, kw)
    stride: tuple
    pad: tuple
    dilation: tuple

    def output_size(self, height, width):
        """Caffe's (and everyone's) convolution output size, rounded down."""
        return tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                     for size, k, s, p, d in zip((height, width), self.kernel, self.stride,
                                                 self.pad, self.dilation))

    def deconv_output_size(self, height, width):
        """Deconvolution output size: the input size of the convolution it reverses."""
        return tuple(s * (size - 1) + d * (k - 1) + 1 - 2 * p
                     for size, k, s, p, d in zip((height, width), self.kernel, self.stride,
                                                 self.pad, self.dilation))


def spatial_pair(values, what, error):
    """One value per spatial axis of a 2-d layer from a repeated field: 1 value for both, or 2.
    `error` makes the exception (the layer's error, which names it)."""
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return tuple(values)
    raise error(f"{what} gives {len(values)} values: {len(values)} spatial axes, but "
                "unetcore's layers are 2-d for now; give 1 value, or 2 (height, width)")


def geometry_from_param(conv_param, error):
    """Kernel, stride, pad and dilation of a ConvolutionParameter, with Caffe's rules;
    `error` makes the exception for a bad field (the layer's error, which names it)."""
    def pair(values, h, w, default, what):
        if conv_param.has(h) or conv_param.has(w):
            if values:
                raise error(f"give either {what} or {h}/{w}, not both")
            return (getattr(conv_param, h), getattr(conv_param, w))
        if not values:
            return (default, default)
        return spatial_pair(values, what, error)

    kernel = pair(conv_param.kernel_size, "kernel_h", "kernel_w", None, "kernel_size")
    if None in kernel:
        raise error("convolution_param needs kernel_size (or kernel_h and kernel_w)")
    stride = pair(conv_param.stride, "stride_h", "stride_w", 1, "stride")
    pad = pair(conv_param.pad, "pad_h", "pad_w", 0, "pad")
    dilation = pair(conv_param.dilation, "dilation_h", "dilation_w", 1, "dilation")
    for name, values, low in (("kernel_size", kernel, 1), ("stride", stride, 1),
                              ("pad", pad, 0), ("dilation", dilation, 1)):
        if min(values) < low:
            raise error(f"{name} must be >= {low}, got {values}")
    return ConvGeometry(kernel, stride, pad, dilation)


def pad_image(xp, x, pad):
    """x (C, H, W) with zero padding, or x itself when there is none."""
    ph, pw = pad
    if ph == 0 and pw == 0:
        return x
    return xp.pad(x, ((0, 0), (ph, ph), (pw, pw)))


def patch_view(xp, x_padded, geom, out_width, row0, row1):
    """A (C, kh, kw, row1-row0, out_width) strided view of the patches of output rows [row0, row1)."""
    (kh, kw), (sh, sw), (dh, dw) = geom.kernel, geom.stride, geom.dilation
    sc, sy, sx = x_padded.strides
    start = x_padded[:, row0 * sh:, :]
    return xp.lib.stride_tricks.as_strided(
        start, shape=(x_padded.shape[0], kh, kw, row1 - row0, out_width),
        strides=(sc, sy * dh, sx * dw, sy * sh, sx * sw))


def input_band(x_padded, geom, row0, row1):
    """The rows of the padded input that output rows [row0, row1) read."""
    (kh, _), (sh, _), (dh, _) = geom.kernel, geom.stride, geom.dilation
    return x_padded[:, row0 * sh:(row1 - 1) * sh + (kh - 1) * dh + 1, :]


def im2col(xp, x_padded, geom, out_width, row0, row1, out):
    """Write the columns of output rows [row0, row1) into `out` (C*kh*kw, rows*out_width)."""
    if on_gpu(x_padded):
        return im2col_gpu(x_padded, geom, out_width, row0, row1, out)
    return im2col_cpu(x_padded, geom, out_width, row0, row1, out)


def im2col_cpu(x_padded, geom, out_width, row0, row1, out):
    view = patch_view(np, x_padded, geom, out_width, row0, row1)
    out.reshape(view.shape)[...] = view
    return out


def im2col_gpu(x_padded, geom, out_width, row0, row1, out):
    """kernels/im2col.cu: one thread per column element."""
    gpu.im2col(input_band(x_padded, geom, row0, row1), geom, row1 - row0, out_width, out)
    return out


def tap_offsets(kernel, width):
    """The flat offsets p*width + q of the taps (p, q) of a kernel, in im2col's row order."""
    kh, kw = kernel
    return [p * width + q for p in range(kh) for q in range(kw)]


def im2col_flat(x_flat, offsets, start, count, out):
    """Flat im2col: out[(c, t), j] = x_flat[c, start + offsets[t] + j] for j < count.

    x_flat is (C, H*W); `out` has C * len(offsets) rows. Each (c, t) row is one slice copy."""
    channels, taps = x_flat.shape[0], len(offsets)
    col = out.reshape(channels, taps, -1)
    for t, offset in enumerate(offsets):
        col[:, t, :count] = x_flat[:, start + offset:start + offset + count]
    return out[:, :count]


def col2im_add(col, dx_padded, geom, out_width, row0, row1):
    """dx_padded += the adjoint of im2col for output rows [row0, row1) (overlaps are summed)."""
    if on_gpu(dx_padded):
        return col2im_add_gpu(col, dx_padded, geom, out_width, row0, row1)
    return col2im_add_cpu(col, dx_padded, geom, out_width, row0, row1)


def col2im_add_cpu(col, dx_padded, geom, out_width, row0, row1):
    (kh, kw), (sh, sw), (dh, dw) = geom.kernel, geom.stride, geom.dilation
    rows = row1 - row0
    col = col.reshape(dx_padded.shape[0], kh, kw, rows, out_width)
    for p in range(kh):
        y0 = row0 * sh + p * dh
        for q in range(kw):
            x0 = q * dw
            dx_padded[:, y0:y0 + sh * (rows - 1) + 1:sh,
                      x0:x0 + sw * (out_width - 1) + 1:sw] += col[:, p, q]
    return dx_padded


def col2im_add_gpu(col, dx_padded, geom, out_width, row0, row1):
    """kernels/im2col.cu: one thread per input element, gathering its columns."""
    gpu.col2im_add(col, geom, row1 - row0, out_width, input_band(dx_padded, geom, row0, row1))
    return dx_padded
