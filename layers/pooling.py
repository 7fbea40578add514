"""Pooling, MAX and AVE, with Caffe's output size (Caffe's PoolingLayer).

Output size (round_mode CEIL, Caffe's default; PyTorch rounds down):
    H_out = ceil((H + 2 pad - kernel) / stride) + 1, minus 1 if the last window would
    start inside the bottom padding ((H_out - 1) stride >= H + pad), so it starts in the image.

MAX:  y = max over the window; backward routes dy to the argmax (the first maximum in
      scan order, as Caffe): dx[argmax] += dy. An optional second top holds the argmax
      as the flat index h * W + w, as Caffe's mask top.
AVE:  y = sum over the window / pool_size, where pool_size counts the window clipped to
      the padded image (Caffe's rule); backward spreads dy / pool_size over the window.

N-d, as caffe_unet's PoolingLayer: on (N, C, D, H, W) volumes the window is kd x kh x kw
(kernel_size once, or once per axis: caffe_unet's 3-d EM nets pool 1x2x2 where z is coarse),
the output size rule holds per axis, and the mask holds the flat index (d H + h) W + w.

This is the reference engine, and its maths is here: `windows` (every window of the image,
read through a strided view), max_pool_forward and max_pool_backward, in any number of
spatial axes, on either device. On a GPU with a 2-d kernel the layer calls their CUDA twins instead
(unetcore/ops/pooling.py). layers/pooling_tiled.py is a faster engine for windows that tile
the image, as the U-Net's 2x2 stride-2 windows do.
"""
import functools
import itertools
import math

import numpy as np

from unetcore.backend import array_module, on_gpu
from unetcore.ops.im2col import axis_values
from unetcore.layer import Layer, register
from unetcore.ops.pooling import max_pool_backward_gpu, max_pool_forward_gpu


def pooled_size(size, kernel, stride, pad, ceil_mode=True):
    rounding = math.ceil if ceil_mode else math.floor
    out = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def window_fields(p, error, axes=2):
    """(kernel, stride, pad) of a PoolingParameter; kernel is None with global_pooling."""
    def values(field, h, w, default):    # the field and the pair both given: the pair wins
        return axis_values(p, field, h, w, default, error, axes, "pooling", either_or=False)

    kernel = None if p.global_pooling else values("kernel_size", "kernel_h", "kernel_w", None)
    return kernel, values("stride", "stride_h", "stride_w", 1), values("pad", "pad_h", "pad_w", 0)


# ---- the MAX maths, in any number of spatial axes, on either device
def windows(xp, x, kernel, stride, pad, out_size, fill):
    """The windows of x as an (N, C, *out_size, prod(kernel)) array, reading `fill` outside
    the image."""
    need = tuple((out - 1) * s + k for out, s, k in zip(out_size, stride, kernel))
    spatial = x.shape[2:]
    if not any(pad) and all(n <= size for n, size in zip(need, spatial)):
        padded = x
    else:
        padded = xp.full(x.shape[:2] + tuple(max(n, size + p) for n, size, p
                                             in zip(need, spatial, pad)), fill, dtype=x.dtype)
        padded[(slice(None), slice(None)) + tuple(slice(p, p + size) for p, size
                                                  in zip(pad, spatial))] = x
    s = padded.strides
    view = xp.lib.stride_tricks.as_strided(
        padded, shape=x.shape[:2] + tuple(out_size) + tuple(kernel),
        strides=s[:2] + tuple(a * st for a, st in zip(s[2:], stride)) + s[2:])
    return view.reshape(x.shape[:2] + tuple(out_size) + (-1,))


def max_pool_forward(x, y, kernel, stride, pad):
    """y = max over each window of x (padding reads -inf, so it never wins); returns the
    argmax, the flat index in the image of the first maximum in scan order (Caffe's)."""
    xp = array_module(x)
    win = windows(xp, x, kernel, stride, pad, y.shape[2:], -np.inf)
    arg = win.argmax(axis=-1)
    y[...] = xp.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return flat_positions(xp, xp.unravel_index(arg, kernel), stride, pad, x.shape[2:])


def flat_positions(xp, offsets, stride, pad, spatial):
    """The flat index in the image (of spatial size `spatial`) of each window's chosen
    element, given its offset in the window along each axis (arrays on the output grid):
    per axis the window's start, out index * stride - pad, plus the offset, then flattened
    as (d * H + h) * W + w."""
    flat = 0
    for axis, (offset, s, p, size) in enumerate(zip(offsets, stride, pad, spatial)):
        shape = [1] * offset.ndim
        shape[2 + axis] = offset.shape[2 + axis]
        start = xp.arange(offset.shape[2 + axis]).reshape(shape) * s - p
        flat = flat * size + start + offset
    return flat


def max_pool_backward(dy, argmax, dx, kernel, stride, pad):
    """dx = 0, then dx[argmax] += dy: the max is the identity of its argmax, so each dy goes
    there, and an input that wins several windows gets the sum of their dy."""
    xp = array_module(dx)
    planes = dx.shape[0] * dx.shape[1]
    plane_size = dx.size // max(planes, 1)
    plane = xp.arange(planes).reshape(dx.shape[:2] + (1,) * (dx.ndim - 2)) * plane_size
    index = (plane + argmax).ravel()
    if all(s >= k for s, k in zip(stride, kernel)):
        dx[...] = 0                      # windows do not overlap: each input gets at most one dy
        dx.reshape(-1)[index] = dy.ravel()
    else:
        dx[...] = xp.bincount(index, weights=dy.ravel(), minlength=dx.size).reshape(dx.shape)


@register
class PoolingLayer(Layer):
    type = "Pooling"
    overwrites_tops = True
    engine_param = "pooling_param"
    exact_bottoms = 1
    min_tops = 1
    max_tops = 2

    def setup(self, bottom, top):
        p = self.param.pooling_param
        self.method = p.pool
        if self.method == "STOCHASTIC":
            raise self.error("STOCHASTIC pooling is not implemented; use MAX or AVE")
        if len(top) == 2 and self.method != "MAX":
            raise self.error("only MAX pooling has a second (mask) top")
        self.global_pooling = p.global_pooling
        self.axes = len(bottom[0].shape) - 2
        if self.axes < 1:
            raise self.error(f"needs a bottom (N, C, *spatial) with at least one spatial axis, "
                             f"got shape {bottom[0].shape}")
        self.kernel, self.stride, self.pad = window_fields(p, self.error, self.axes)
        if not self.global_pooling and None in self.kernel:
            raise self.error("pooling_param needs kernel_size (or kernel_h and kernel_w)")
        for name, values, low in (("kernel", self.kernel or (1,), 1),
                                  ("stride", self.stride, 1), ("pad", self.pad, 0)):
            if min(values) < low:
                raise self.error(f"pooling {name} must be >= {low}, got {values}")
        self.ceil_mode = p.round_mode == "CEIL"

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 2 + self.axes:
            raise self.error(f"needs a bottom with {self.axes} spatial axes, as when it was set "
                             f"up, got shape {shape}")
        self.bottom_size = shape[2:]
        if self.global_pooling:
            self.kernel = shape[2:]
            self.stride, self.pad = (1,) * self.axes, (0,) * self.axes
        for k, p in zip(self.kernel, self.pad):
            if p >= k:
                raise self.error(f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        self.out_size = tuple(pooled_size(s, k, st, p, self.ceil_mode) for s, k, st, p
                              in zip(shape[2:], self.kernel, self.stride, self.pad))
        for out, size, k, st, p in zip(self.out_size, shape[2:], self.kernel, self.stride, self.pad):
            if (out - 1) * st - p >= size:
                raise self.error(f"the last window starts past the {size}-pixel input (stride {st} "
                                 f"> kernel {k}): it would pool nothing; use stride <= kernel")
        if min(self.out_size) < 1:
            raise self.error(f"input {'x'.join(map(str, shape[2:]))} is smaller than the kernel "
                             f"{self.kernel}")
        for t in top:
            t.reshape(shape[:2] + self.out_size)

    def forward(self, bottom, top):
        x = bottom[0].data
        if self.method == "MAX":
            self.forward_max(x, top)
        else:
            win = windows(self.xp, x, self.kernel, self.stride, self.pad, self.out_size, 0)
            top[0].data[...] = win.sum(axis=-1) / self.pool_sizes()

    def on_cuda(self, array):
        """Whether the CUDA twins run: on a GPU, with a 2-d kernel."""
        return on_gpu(array) and self.axes == 2

    def forward_max(self, x, top):
        forward = max_pool_forward_gpu if self.on_cuda(x) else max_pool_forward
        self.argmax = forward(x, top[0].data, self.kernel, self.stride, self.pad)
        if len(top) == 2:
            top[1].data[...] = self.argmax

    def pool_sizes(self):
        """The window sizes on the output grid, clipped to the padded image (Caffe's AVE
        divisor): the outer product of the clipped window lengths along each axis."""
        lengths = []
        for out, size, k, s, p in zip(self.out_size, self.bottom_size, self.kernel, self.stride,
                                      self.pad):
            start = np.arange(out) * s - p
            lengths.append(np.minimum(start + k, size + p) - start)
        return self.xp.asarray(functools.reduce(np.multiply.outer, lengths), dtype=self.dtype)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = top[0].diff, bottom[0].diff
        if self.method == "MAX":
            self.backward_max(dy, dx)
        else:
            self.backward_ave(dy, dx)

    def backward_max(self, dy, dx):
        backward = max_pool_backward_gpu if self.on_cuda(dy) else max_pool_backward
        backward(dy, self.argmax, dx, self.kernel, self.stride, self.pad)

    def backward_ave(self, dy, dx):
        """Each window tap adds its share dy / pool_size onto the strided grid it read."""
        share = dy / self.pool_sizes()
        padded = self.xp.zeros(dx.shape[:2] + tuple(
            (out - 1) * s + k + size for out, s, k, size
            in zip(self.out_size, self.stride, self.kernel, dx.shape[2:])), dtype=dx.dtype)
        for tap in itertools.product(*map(range, self.kernel)):
            region = tuple(slice(t, t + s * (out - 1) + 1, s)
                           for t, s, out in zip(tap, self.stride, self.out_size))
            padded[(slice(None), slice(None)) + region] += share
        dx[...] = padded[(slice(None), slice(None)) + tuple(
            slice(p, p + size) for p, size in zip(self.pad, dx.shape[2:]))]
