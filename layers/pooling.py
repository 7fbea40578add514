"""Pooling, MAX and AVE, with Caffe's output size (Caffe's PoolingLayer).

Output size (round_mode CEIL, Caffe's default; PyTorch rounds down):
    H_out = ceil((H + 2 pad - kernel) / stride) + 1, minus 1 if the last window would
    start inside the bottom padding ((H_out - 1) stride >= H + pad), so it starts in the image.

MAX:  y = max over the window; backward routes dy to the argmax (the first maximum in
      scan order, as Caffe): dx[argmax] += dy. An optional second top holds the argmax
      as the flat index h * W + w, as Caffe's mask top.
AVE:  y = sum over the window / pool_size, where pool_size counts the window clipped to
      the padded image (Caffe's rule); backward spreads dy / pool_size over the window.

This is the reference engine. The MAX kernels on the two devices are ops
(unetcore/ops/pooling.py); layers/pooling_tiled.py is a faster engine for windows that tile
the image, as the U-Net's 2x2 stride-2 windows do.
"""
import math

import numpy as np

from unetcore.im2col import spatial_pair
from unetcore.layer import Layer, register
from unetcore.ops.pooling import max_pool_backward, max_pool_forward, windows


def pooled_size(size, kernel, stride, pad, ceil_mode=True):
    rounding = math.ceil if ceil_mode else math.floor
    out = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def window_pair(p, both, h, w, default, error):
    """(height, width) of a window field: the _h/_w pair, or the repeated field's 1 or 2 values."""
    if p.has(h) or p.has(w):
        return (getattr(p, h), getattr(p, w))
    values = list(getattr(p, both))
    return spatial_pair(values, both, error) if values else (default, default)


@register
class PoolingLayer(Layer):
    type = "Pooling"
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
        if not self.global_pooling:
            self.kernel = window_pair(p, "kernel_size", "kernel_h", "kernel_w", None, self.error)
            if None in self.kernel:
                raise self.error("pooling_param needs kernel_size (or kernel_h and kernel_w)")
        self.stride = window_pair(p, "stride", "stride_h", "stride_w", 1, self.error)
        self.pad = window_pair(p, "pad", "pad_h", "pad_w", 0, self.error)
        for name, values, low in (("kernel", getattr(self, "kernel", (1, 1)), 1),
                                  ("stride", self.stride, 1), ("pad", self.pad, 0)):
            if min(values) < low:
                raise self.error(f"pooling {name} must be >= {low}, got {values}")
        self.ceil_mode = p.round_mode == "CEIL"

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(f"needs a 4-d bottom (N, C, H, W), got shape {shape} "
                             f"({len(shape) - 2} spatial axes): unetcore's layers are 2-d for now")
        self.bottom_size = shape[2:]
        if self.global_pooling:
            self.kernel, self.stride, self.pad = shape[2:], (1, 1), (0, 0)
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
            raise self.error(f"input {shape[2]}x{shape[3]} is smaller than the kernel {self.kernel}")
        for t in top:
            t.reshape(shape[:2] + self.out_size)

    def forward(self, bottom, top):
        x = bottom[0].data
        if self.method == "MAX":
            self.forward_max(x, top)
        else:
            win = windows(self.xp, x, self.kernel, self.stride, self.pad, self.out_size, 0)
            top[0].data[...] = win.sum(axis=-1) / self.pool_sizes()

    def forward_max(self, x, top):
        self.argmax = max_pool_forward(x, top[0].data, self.kernel, self.stride, self.pad)
        if len(top) == 2:
            top[1].data[...] = self.argmax

    def pool_sizes(self):
        """(H_out, W_out) window sizes, clipped to the padded image (Caffe's AVE divisor)."""
        xp = self.xp
        h, w = self.bottom_size
        sizes = []
        for out, size, k, s, p in zip(self.out_size, (h, w), self.kernel, self.stride, self.pad):
            start = np.arange(out) * s - p
            sizes.append(np.minimum(start + k, size + p) - start)
        return xp.asarray(np.outer(*sizes), dtype=self.dtype)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = top[0].diff, bottom[0].diff
        if self.method == "MAX":
            self.backward_max(dy, dx)
        else:
            self.backward_ave(dy, dx)

    def backward_max(self, dy, dx):
        max_pool_backward(dy, self.argmax, dx, self.kernel, self.stride, self.pad)

    def backward_ave(self, dy, dx):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        (oh, ow), (h, w) = self.out_size, dx.shape[2:]
        share = dy / self.pool_sizes()
        padded = self.xp.zeros(dx.shape[:2] + ((oh - 1) * sh + kh + h, (ow - 1) * sw + kw + w),
                               dtype=dx.dtype)
        for p in range(kh):
            for q in range(kw):
                padded[:, :, p:p + sh * (oh - 1) + 1:sh, q:q + sw * (ow - 1) + 1:sw] += share
        dx[...] = padded[:, :, ph:ph + h, pw:pw + w]
