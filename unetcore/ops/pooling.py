"""Pooling ops: the windows of an image, and MAX pooling forward and backward.

max_pool_forward writes y = the maximum of each window and returns argmax, the flat index
h * W + w of the maximum in the unpadded image (the first maximum in scan order, as Caffe).
max_pool_backward routes each dy to its argmax: dx[argmax] += dy.
"""
import numpy as np

from unetcore import gpu
from unetcore.backend import on_gpu


def windows(xp, x, kernel, stride, pad, out_size, fill):
    """(N, C, H_out, W_out, kh*kw) copy of the windows of x, reading `fill` outside the image."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    (oh, ow), (h, w) = out_size, x.shape[2:]
    need_h, need_w = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    if ph == 0 and pw == 0 and need_h <= h and need_w <= w:
        padded = x
    else:
        padded = xp.full(x.shape[:2] + (max(need_h, h + ph), max(need_w, w + pw)), fill,
                         dtype=x.dtype)
        padded[:, :, ph:ph + h, pw:pw + w] = x
    s = padded.strides
    view = xp.lib.stride_tricks.as_strided(
        padded, shape=x.shape[:2] + (oh, ow, kh, kw),
        strides=(s[0], s[1], s[2] * sh, s[3] * sw, s[2], s[3]))
    return view.reshape(x.shape[:2] + (oh, ow, kh * kw))


def max_pool_forward(x, y, kernel, stride, pad):
    """y = max over each window of x; returns the argmax (see the module's docstring)."""
    if on_gpu(x):
        return max_pool_forward_gpu(x, y, kernel, stride, pad)
    return max_pool_forward_cpu(x, y, kernel, stride, pad)


def max_pool_backward(dy, argmax, dx, kernel, stride, pad):
    """dx = 0, then dx[argmax] += dy."""
    if on_gpu(dy):
        return max_pool_backward_gpu(dy, argmax, dx, kernel, stride, pad)
    return max_pool_backward_cpu(dy, argmax, dx, kernel, stride, pad)


def max_pool_forward_cpu(x, y, kernel, stride, pad):
    win = windows(np, x, kernel, stride, pad, y.shape[2:], -np.inf)
    arg = win.argmax(axis=-1)
    y[...] = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    kw, (sh, sw), (ph, pw), (oh, ow) = kernel[1], stride, pad, y.shape[2:]
    rows = np.arange(oh).reshape(-1, 1) * sh - ph + arg // kw
    cols = np.arange(ow).reshape(1, -1) * sw - pw + arg % kw
    return rows * x.shape[3] + cols


def max_pool_backward_cpu(dy, argmax, dx, kernel, stride, pad):
    n, c, h, w = dx.shape
    plane = np.arange(n * c).reshape(n, c, 1, 1) * (h * w)
    index = (plane + argmax).ravel()
    if stride[0] >= kernel[0] and stride[1] >= kernel[1]:
        dx[...] = 0                      # windows do not overlap: each input gets at most one dy
        dx.reshape(-1)[index] = dy.ravel()
    else:
        dx[...] = np.bincount(index, weights=dy.ravel(), minlength=dx.size).reshape(dx.shape)


def max_pool_forward_gpu(x, y, kernel, stride, pad):
    """kernels/pooling.cu: one thread per output."""
    import cupy
    argmax = cupy.empty(y.shape, dtype=cupy.int32)
    gpu.max_pool_forward(x, y, argmax, kernel, stride, pad)
    return argmax


def max_pool_backward_gpu(dy, argmax, dx, kernel, stride, pad):
    """kernels/pooling.cu: each input gathers the dy of the windows whose maximum it is."""
    gpu.max_pool_backward(dy, argmax, dx, kernel, stride, pad)
