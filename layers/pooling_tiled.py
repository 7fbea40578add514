"""Pooling engine "tiled": MAX pooling on the CPU with windows that tile the image, stride
equal to the kernel and no padding (the U-Net's 2x2 stride-2 windows).

Then window element (p, q) of every window is the strided grid x[p::kh, q::kw]. Forward
compares the kh*kw grids in scan order, keeping the first maximum (Caffe's tie rule), and
remembers which element won as a small offset p*kw + q instead of a flat index. Backward
writes each grid once: dy where its element won, else 0. No window copy, no scatter.

Where the image is not a whole number of windows (Caffe's ceil rounding adds a partial
window at the end), the image is padded with -inf to whole windows: the padding never
wins, because each window's first element lies in the image and a tie keeps the first.
"""
import numpy as np

from unetcore.errors import NetError
from unetcore.layer import register_engine

from .pooling import PoolingLayer, window_pair


@register_engine
class TiledMaxPooling(PoolingLayer):
    engine = "tiled"
    priority = 0

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        p = param.pooling_param
        if xp is not np or p.pool != "MAX" or p.global_pooling:
            return False
        try:
            kernel = window_pair(p, "kernel_size", "kernel_h", "kernel_w", None, NetError)
            stride = window_pair(p, "stride", "stride_h", "stride_w", 1, NetError)
            pad = window_pair(p, "pad", "pad_h", "pad_w", 0, NetError)
        except NetError:
            return False
        return None not in kernel and stride == kernel and pad == (0, 0)

    def forward_max(self, x, top):
        (kh, kw), y = self.kernel, top[0].data
        grid = self.whole_windows(x)
        if (kh, kw) == (2, 2):
            self.offset = self.max_2x2_tournament(grid, y)
        else:
            self.offset = np.zeros(y.shape, np.int8)
            y[...] = grid[:, :, 0::kh, 0::kw]
            for k in range(1, kh * kw):
                p, q = divmod(k, kw)
                candidate = grid[:, :, p::kh, q::kw]
                better = candidate > y
                np.copyto(y, candidate, where=better)
                np.copyto(self.offset, k, where=better)
        if len(top) == 2:                          # Caffe's mask: the flat index h * W + w
            oh, ow = self.out_size
            rows = np.arange(oh).reshape(-1, 1) * kh + self.offset // kw
            cols = np.arange(ow).reshape(1, -1) * kw + self.offset % kw
            top[1].data[...] = rows * x.shape[3] + cols

    def whole_windows(self, x):
        """x cut or padded with -inf to (H_out kh, W_out kw): whole windows, no more."""
        (kh, kw), (oh, ow) = self.kernel, self.out_size
        if x.shape[2:] == (oh * kh, ow * kw):
            return x
        h, w = min(x.shape[2], oh * kh), min(x.shape[3], ow * kw)
        grid = np.full(x.shape[:2] + (oh * kh, ow * kw), -np.inf, x.dtype)
        grid[:, :, :h, :w] = x[:, :, :h, :w]
        return grid

    @staticmethod
    def max_2x2_tournament(x, y):
        """The U-Net's 2x2 windows, as a tournament: left against right in each row, then
        top row against bottom row. A tie keeps the earlier one in scan order, as Caffe.
        Returns the winner's offset p * 2 + q in its window."""
        a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
        c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
        offset = (b > a).view(np.int8)                   # 0 or 1: the top row's winner
        bottom_offset = (d > c).view(np.int8)
        bottom_offset += 2                               # 2 or 3
        np.maximum(a, b, out=y)                          # the top row's maximum, for now
        bottom = np.maximum(c, d)
        np.copyto(offset, bottom_offset, where=bottom > y)
        np.maximum(y, bottom, out=y)
        return offset

    def backward_max(self, dy, dx):
        """Window element (p, q) of every window gets dy where it won, else 0."""
        (kh, kw), (oh, ow) = self.kernel, self.out_size
        whole = dx.shape[2:] == (oh * kh, ow * kw)
        grid = dx if whole else np.empty(dx.shape[:2] + (oh * kh, ow * kw), dx.dtype)
        for k in range(kh * kw):
            p, q = divmod(k, kw)
            np.multiply(dy, self.offset == k, out=grid[:, :, p::kh, q::kw])
        if not whole:
            h, w = min(dx.shape[2], oh * kh), min(dx.shape[3], ow * kw)
            dx[...] = 0
            dx[:, :, :h, :w] = grid[:, :, :h, :w]
