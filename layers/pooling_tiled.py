"""Pooling engine "tiled": MAX pooling on the CPU with windows that tile the image, stride
equal to the kernel and no padding (the U-Net's 2x2 stride-2 windows, 2x2x2 and 1x2x2 in 3-d).

Then window element (p, q) of every window is the strided grid x[p::kh, q::kw] (and
x[o::kd, p::kh, q::kw] in 3-d). Forward compares the grids in scan order, keeping the first
maximum (Caffe's tie rule), and remembers which element won as a small offset (p*kw + q in
2-d) instead of a flat index. Backward writes each grid once: dy where its element won, else
0. No window copy, no scatter.

Where the image is not a whole number of windows (Caffe's ceil rounding adds a partial
window at the end), the image is padded with -inf to whole windows: the padding never
wins, because each window's first element lies in the image and a tie keeps the first.
"""
import itertools

import numpy as np

from unetcore.errors import NetError
from unetcore.layer import register_engine
from unetcore.ops.parallel import in_channel_chunks

from unetcore.layers.pooling import PoolingLayer, flat_positions, window_fields


@register_engine
class TiledMaxPooling(PoolingLayer):
    engine = "tiled"
    priority = 0

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        p = param.pooling_param
        if xp is not np or p.pool != "MAX" or p.global_pooling:
            return False
        axes = len(bottom_shapes[0]) - 2 if bottom_shapes else 2
        try:
            kernel, stride, pad = window_fields(p, NetError, axes)
        except NetError:
            return False
        return axes >= 1 and stride == kernel and not any(pad)

    def forward_max(self, x, top):
        y = top[0].data
        grid = self.whole_windows(x)
        if not self.backward_wanted and len(top) == 1:
            self.offset = None                     # the max alone: no backward will ask
            in_channel_chunks(grid, lambda region: self.max_only(grid[region], y[region]))
        elif self.kernel[-2:] == (2, 2) and set(self.kernel[:-2]) <= {1}:
            self.offset = np.empty(y.shape, np.int8)
            in_channel_chunks(grid, lambda region: self.max_2x2_tournament(
                grid[region], y[region], self.offset[region]))
        else:
            self.offset = np.zeros(y.shape, np.int8)
            taps = self.taps()
            y[...] = grid[self.tap_grid(taps[0])]
            for k, tap in enumerate(taps[1:], 1):
                candidate = grid[self.tap_grid(tap)]
                better = candidate > y
                np.copyto(y, candidate, where=better)
                np.copyto(self.offset, k, where=better)
        if len(top) == 2:                          # Caffe's mask: the flat index in the image
            offsets = np.unravel_index(self.offset, self.kernel)
            top[1].data[...] = flat_positions(np, offsets, self.kernel, (0,) * self.axes,
                                              x.shape[2:])

    def taps(self):
        """The window's elements in scan order: (p, q) in 2-d, (o, p, q) in 3-d."""
        return list(itertools.product(*map(range, self.kernel)))

    def tap_grid(self, tap):
        """The strided grid of window element `tap` in every window."""
        return (slice(None), slice(None)) + tuple(slice(t, None, k)
                                                  for t, k in zip(tap, self.kernel))

    def whole_shape(self):
        """out_size * kernel: the spatial size of whole windows, no more."""
        return tuple(o * k for o, k in zip(self.out_size, self.kernel))

    def common_region(self, spatial):
        """The region an image of `spatial` size shares with the whole windows."""
        return (slice(None), slice(None)) + tuple(slice(0, min(n, w)) for n, w
                                                  in zip(spatial, self.whole_shape()))

    def whole_windows(self, x):
        """x cut or padded with -inf to whole windows."""
        if x.shape[2:] == self.whole_shape():
            return x
        grid = np.full(x.shape[:2] + self.whole_shape(), -np.inf, x.dtype)
        common = self.common_region(x.shape[2:])
        grid[common] = x[common]
        return grid

    def max_only(self, grid, y):
        """y = the maximum of each window, without its position: the taps' grids compared
        pairwise."""
        first, *others = [grid[self.tap_grid(tap)] for tap in self.taps()]
        if not others:
            y[...] = first
            return
        np.maximum(first, others[0], out=y)
        for other in others[1:]:
            np.maximum(y, other, out=y)

    @staticmethod
    def max_2x2_tournament(x, y, offset):
        """The U-Net's 2x2 windows (and 1x2x2 in 3-d: 2x2 in every slice), as a tournament:
        left against right in each row, then top row against bottom row. A tie keeps the
        earlier one in scan order, as Caffe. Writes the winner's offset p * 2 + q in its
        window into `offset` (int8). The forward runs it on channel chunks on all cores."""
        a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
        c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
        np.greater(b, a, out=offset.view(np.bool_))      # 0 or 1: the top row's winner
        bottom_offset = (d > c).view(np.int8)
        bottom_offset += 2                               # 2 or 3
        np.maximum(a, b, out=y)                          # the top row's maximum, for now
        bottom = np.maximum(c, d)
        np.copyto(offset, bottom_offset, where=bottom > y)
        np.maximum(y, bottom, out=y)

    def backward_max(self, dy, dx):
        """Window element `tap` of every window gets dy where it won, else 0."""
        if self.offset is None:
            raise self.error("its forward kept no argmax: the net runs no backward through "
                             "this layer (set force_backward, or give it a loss above)")
        fits = dx.shape[2:] == self.whole_shape()
        grid = dx if fits else np.empty(dx.shape[:2] + self.whole_shape(), dx.dtype)
        for k, tap in enumerate(self.taps()):
            np.multiply(dy, self.offset == k, out=grid[self.tap_grid(tap)])
        if not fits:
            common = self.common_region(dx.shape[2:])
            dx[...] = 0
            dx[common] = grid[common]
