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

Everything here is N-d: a 3-d convolution (kernel kd x kh x kw on (C, D, H, W) volumes, as
caffe_unet's im2col_nd) has rows (c, o, p, q) and one column per output voxel, and the same
code builds it; the "rows" of the output are then its slices along the first spatial axis.
"""
import itertools
import math
from dataclasses import dataclass


from unetcore.ops import cuda
from unetcore.backend import on_gpu


@dataclass(frozen=True)
class ConvGeometry:
    """One value per spatial axis: (kh, kw) in 2-d, (kd, kh, kw) in 3-d."""
    kernel: tuple
    stride: tuple
    pad: tuple
    dilation: tuple

    def output_size(self, *sizes):
        """Caffe's (and everyone's) convolution output size per axis, rounded down."""
        return tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                     for size, k, s, p, d in zip(sizes, self.kernel, self.stride,
                                                 self.pad, self.dilation))

    def deconv_output_size(self, *sizes):
        """Deconvolution output size per axis: the input size of the convolution it reverses."""
        return tuple(s * (size - 1) + d * (k - 1) + 1 - 2 * p
                     for size, k, s, p, d in zip(sizes, self.kernel, self.stride,
                                                 self.pad, self.dilation))


def spatial_values(values, axes, what, error):
    """One value per spatial axis from a repeated field (Caffe's rule): 1 value for every
    axis, or one per axis. `error` makes the exception (the layer's error, which names it)."""
    if len(values) == 1:
        return tuple(values) * axes
    if len(values) == axes:
        return tuple(values)
    raise error(f"{what} gives {len(values)} values for {axes} spatial axes; give 1 value, "
                f"or one per spatial axis ({axes})")


def axis_values(param, field, h, w, default, error, axes=2, kind="layers", either_or=True):
    """One value per spatial axis of a geometry field of `param`, with Caffe's rules: the
    _h/_w pair (2-d only, both given), the repeated field's 1 value or one per axis, or
    `default` on every axis. With `either_or`, the field and the pair together are refused
    (Caffe's convolution does; `kind` names the layers in the message)."""
    if param.has(h) or param.has(w):
        if axes != 2:
            raise error(f"{h}/{w} are for 2-d {kind}; this one has {axes} spatial axes: "
                        f"give {field} once, or once per axis")
        if either_or and getattr(param, field):
            raise error(f"give either {field} or {h}/{w}, not both")
        pair = (getattr(param, h), getattr(param, w))
        if None in pair:
            raise error(f"give both {h} and {w} (or {field} alone)")
        return pair
    given = getattr(param, field)
    return spatial_values(given, axes, field, error) if given else (default,) * axes


def geometry_from_param(conv_param, error, axes=2):
    """Kernel, stride, pad and dilation of a ConvolutionParameter for `axes` spatial axes,
    with Caffe's rules; `error` makes the exception for a bad field."""
    def values(field, h, w, default):
        return axis_values(conv_param, field, h, w, default, error, axes)

    kernel = values("kernel_size", "kernel_h", "kernel_w", None)
    if None in kernel:
        raise error("convolution_param needs kernel_size (or kernel_h and kernel_w)")
    stride = values("stride", "stride_h", "stride_w", 1)
    pad = values("pad", "pad_h", "pad_w", 0)
    dilation = values("dilation", "dilation_h", "dilation_w", 1)
    for name, given, low in (("kernel_size", kernel, 1), ("stride", stride, 1),
                             ("pad", pad, 0), ("dilation", dilation, 1)):
        if min(given) < low:
            raise error(f"{name} must be >= {low}, got {given}")
    return ConvGeometry(kernel, stride, pad, dilation)


def pad_image(xp, x, pad):
    """x (C, *spatial) with zero padding, or x itself when there is none."""
    if not any(pad):
        return x
    return xp.pad(x, ((0, 0),) + tuple((p, p) for p in pad))


def patch_view(xp, x_padded, geom, out_rest, row0, row1):
    """A (C, *kernel, row1-row0, *out_rest) strided view of the patches of output rows
    [row0, row1): out_rest are the output's sizes on the axes after the first. In 2-d that
    is (C, kh, kw, rows, W_out); one step along a kernel axis moves `dilation` pixels, one
    step along an output axis moves `stride` pixels."""
    channel_stride, *axis_strides = x_padded.strides
    start = x_padded[:, row0 * geom.stride[0]:]
    kernel_steps = tuple(s * d for s, d in zip(axis_strides, geom.dilation))
    output_steps = tuple(s * st for s, st in zip(axis_strides, geom.stride))
    return xp.lib.stride_tricks.as_strided(
        start, shape=(x_padded.shape[0], *geom.kernel, row1 - row0, *out_rest),
        strides=(channel_stride, *kernel_steps, *output_steps))


def input_band(x_padded, geom, row0, row1):
    """The rows of the padded input that output rows [row0, row1) read."""
    k, s, d = geom.kernel[0], geom.stride[0], geom.dilation[0]
    return x_padded[:, row0 * s:(row1 - 1) * s + (k - 1) * d + 1]


def im2col(xp, x_padded, geom, out_rest, row0, row1, out):
    """Write the columns of output rows [row0, row1) into `out`
    (C * prod(kernel), (row1 - row0) * prod(out_rest))."""
    if on_gpu(x_padded) and len(geom.kernel) == 2:
        return im2col_gpu(x_padded, geom, out_rest, row0, row1, out)
    return im2col_strided(xp, x_padded, geom, out_rest, row0, row1, out)


def im2col_strided(xp, x_padded, geom, out_rest, row0, row1, out):
    """The strided view, copied once: the reference, on either device and in any dimension."""
    view = patch_view(xp, x_padded, geom, out_rest, row0, row1)
    out.reshape(view.shape)[...] = view
    return out


def im2col_gpu(x_padded, geom, out_rest, row0, row1, out):
    """ops/im2col.cu (2-d): one thread per column element."""
    cuda.im2col(input_band(x_padded, geom, row0, row1), geom, row1 - row0, out_rest[0], out)
    return out


def tap_offsets(kernel, shape):
    """The flat offsets of a kernel's taps in an image of spatial `shape`, in im2col's row
    order: p*W + q for the taps (p, q) in 2-d, o*H*W + p*W + q for (o, p, q) in 3-d."""
    strides = [math.prod(shape[axis + 1:]) for axis in range(len(shape))]
    return [sum(t * s for t, s in zip(tap, strides))
            for tap in itertools.product(*map(range, kernel))]


def im2col_flat(x_flat, offsets, start, count, out):
    """Flat im2col: out[(c, t), j] = x_flat[c, start + offsets[t] + j] for j < count.

    x_flat is (C, H*W); `out` has C * len(offsets) rows. Each (c, t) row is one slice copy."""
    channels, taps = x_flat.shape[0], len(offsets)
    col = out.reshape(channels, taps, -1)
    for t, offset in enumerate(offsets):
        col[:, t, :count] = x_flat[:, start + offset:start + offset + count]
    return out[:, :count]


def col2im_add(col, dx_padded, geom, out_rest, row0, row1):
    """dx_padded += the adjoint of im2col for output rows [row0, row1) (overlaps are summed)."""
    if on_gpu(dx_padded) and len(geom.kernel) == 2:
        return col2im_add_gpu(col, dx_padded, geom, out_rest, row0, row1)
    return col2im_add_strided(col, dx_padded, geom, out_rest, row0, row1)


def col2im_add_strided(col, dx_padded, geom, out_rest, row0, row1):
    """For every kernel tap, add its slice of col onto the strided region of dx that the tap
    read: the reference, on either device and in any dimension. Within one tap no two
    columns read the same pixel, so each += is a plain addition."""
    out_shape = (row1 - row0, *out_rest)
    col = col.reshape(dx_padded.shape[0], *geom.kernel, *out_shape)
    first = (row0 * geom.stride[0],) + (0,) * (len(out_shape) - 1)
    for tap in itertools.product(*map(range, geom.kernel)):
        region = tuple(slice(f + t * d, f + t * d + s * (n - 1) + 1, s) for f, t, d, s, n
                       in zip(first, tap, geom.dilation, geom.stride, out_shape))
        dx_padded[(slice(None),) + region] += col[(slice(None),) + tap]
    return dx_padded


def col2im_add_gpu(col, dx_padded, geom, out_rest, row0, row1):
    """ops/im2col.cu (2-d): one thread per input element, gathering its columns."""
    cuda.col2im_add(col, geom, row1 - row0, out_rest[0], input_band(dx_padded, geom, row0, row1))
    return dx_padded
