"""Pooling ops: the windows of an image, and MAX pooling forward and backward.

max_pool_forward writes y = the maximum of each window and returns argmax, the flat index
of the maximum in the unpadded image (h * W + w in 2-d, (d * H + h) * W + w in 3-d): the
first maximum in scan order, as Caffe. max_pool_backward routes each dy to its argmax:
dx[argmax] += dy.

The strided functions are the reference, in any number of spatial axes and on either
device; the CUDA kernels (ops/pooling.cu) serve 2-d images on a GPU.
"""
import numpy as np

from unetcore.ops import cuda
from unetcore.backend import array_module, on_gpu


def windows(xp, x, kernel, stride, pad, out_size, fill):
    """(N, C, *out_size, prod(kernel)) copy of the windows of x, reading `fill` outside the
    image."""
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
    """y = max over each window of x; returns the argmax (see the module's docstring)."""
    if on_gpu(x) and len(kernel) == 2:
        return max_pool_forward_gpu(x, y, kernel, stride, pad)
    return max_pool_forward_strided(x, y, kernel, stride, pad)


def max_pool_backward(dy, argmax, dx, kernel, stride, pad):
    """dx = 0, then dx[argmax] += dy."""
    if on_gpu(dy) and len(kernel) == 2:
        return max_pool_backward_gpu(dy, argmax, dx, kernel, stride, pad)
    return max_pool_backward_strided(dy, argmax, dx, kernel, stride, pad)


def max_pool_forward_strided(x, y, kernel, stride, pad):
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


def max_pool_backward_strided(dy, argmax, dx, kernel, stride, pad):
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


def max_pool_forward_gpu(x, y, kernel, stride, pad):
    """ops/pooling.cu: one thread per output."""
    import cupy
    argmax = cupy.empty(y.shape, dtype=cupy.int32)
    cuda.max_pool_forward(x, y, argmax, kernel, stride, pad)
    return argmax


def max_pool_backward_gpu(dy, argmax, dx, kernel, stride, pad):
    """ops/pooling.cu: each input gathers the dy of the windows whose maximum it is."""
    cuda.max_pool_backward(dy, argmax, dx, kernel, stride, pad)
