"""Pooling, MAX and AVE, with Caffe's output size (Caffe's PoolingLayer).

Output size (round_mode CEIL, Caffe's default; PyTorch rounds down):
    H_out = ceil((H + 2 pad - kernel) / stride) + 1, minus 1 if the last window would
    start inside the bottom padding ((H_out - 1) stride >= H + pad), so it starts in the image.

MAX:  y = max over the window; backward routes dy to the argmax (the first maximum in
      scan order, as Caffe): dx[argmax] += dy. An optional second top holds the argmax
      as the flat index h * W + w, as Caffe's mask top.
AVE:  y = sum over the window / pool_size, where pool_size counts the window clipped to
      the padded image (Caffe's rule); backward spreads dy / pool_size over the window.
"""
import math

import numpy as np

from unetcore.im2col import spatial_pair
from unetcore.layer import Layer, register


def pooled_size(size, kernel, stride, pad, ceil_mode=True):
    rounding = math.ceil if ceil_mode else math.floor
    out = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@register
class PoolingLayer(Layer):
    type = "Pooling"
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
            self.kernel = self._pair(p, "kernel_size", "kernel_h", "kernel_w", None)
            if None in self.kernel:
                raise self.error("pooling_param needs kernel_size (or kernel_h and kernel_w)")
        self.stride = self._pair(p, "stride", "stride_h", "stride_w", 1)
        self.pad = self._pair(p, "pad", "pad_h", "pad_w", 0)
        for name, values, low in (("kernel", getattr(self, "kernel", (1, 1)), 1),
                                  ("stride", self.stride, 1), ("pad", self.pad, 0)):
            if min(values) < low:
                raise self.error(f"pooling {name} must be >= {low}, got {values}")
        self.ceil_mode = p.round_mode == "CEIL"

    def _pair(self, p, both, h, w, default):
        if p.has(h) or p.has(w):
            return (getattr(p, h), getattr(p, w))
        values = list(getattr(p, both))
        return spatial_pair(values, both, self.error) if values else (default, default)

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

    def windows(self, x, fill):
        """(N, C, H_out, W_out, kh*kw) copy of the windows, reading `fill` outside the image."""
        xp = self.xp
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        (oh, ow), (h, w) = self.out_size, x.shape[2:]
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

    def forward(self, bottom, top):
        if self.method == "MAX":
            self.forward_max(bottom[0].data, top)
        else:
            top[0].data[...] = self.windows(bottom[0].data, 0).sum(axis=-1) / self.pool_sizes()

    def forward_max(self, x, top):
        xp = self.xp
        self.tiled = xp is np and self.tiles_exactly()
        if self.tiled:
            return self.forward_max_tiled(x, top)
        if xp is not np:
            return self.forward_max_gpu(x, top)
        win = self.windows(x, -np.inf)
        arg = win.argmax(axis=-1)
        top[0].data[...] = xp.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
        # flat index h * W + w of each maximum in the unpadded bottom
        kw, (sh, sw), (ph, pw) = self.kernel[1], self.stride, self.pad
        oh, ow = self.out_size
        rows = xp.arange(oh).reshape(-1, 1) * sh - ph + arg // kw
        cols = xp.arange(ow).reshape(1, -1) * sw - pw + arg % kw
        self.argmax = rows * x.shape[3] + cols
        if len(top) == 2:
            top[1].data[...] = self.argmax

    def tiles_exactly(self):
        """Windows that neither overlap nor leave gaps nor need padding (the U-Net's 2x2/2)."""
        return self.pad == (0, 0) and tuple(self.stride) == tuple(self.kernel) and all(
            out * k == size for out, k, size in zip(self.out_size, self.kernel, self.bottom_size))

    def forward_max_tiled(self, x, top):
        """Then window element (p, q) of every window is the strided grid x[p::kh, q::kw]:
        compare the kh*kw grids in scan order, keeping the first maximum (Caffe's tie rule),
        and remember which element won as a small offset instead of a flat index."""
        (kh, kw), y = self.kernel, top[0].data
        if (kh, kw) == (2, 2):
            self.offset = self.max_2x2_tournament(x, y)
        else:
            self.offset = np.zeros(y.shape, np.int8)
            y[...] = x[:, :, 0::kh, 0::kw]
            for k in range(1, kh * kw):
                p, q = divmod(k, kw)
                grid = x[:, :, p::kh, q::kw]
                better = grid > y
                np.copyto(y, grid, where=better)
                np.copyto(self.offset, k, where=better)
        if len(top) == 2:
            oh, ow = self.out_size
            rows = np.arange(oh).reshape(-1, 1) * kh + self.offset // kw
            cols = np.arange(ow).reshape(1, -1) * kw + self.offset % kw
            top[1].data[...] = rows * x.shape[3] + cols

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

    def backward_max_tiled(self, dy, dx):
        """Window element (p, q) of every window gets dy where it won, else 0."""
        kh, kw = self.kernel
        for k in range(kh * kw):
            p, q = divmod(k, kw)
            np.multiply(dy, self.offset == k, out=dx[:, :, p::kh, q::kw])

    def forward_max_gpu(self, x, top):
        """The same on a GPU, by the kernel of kernels/pooling.cu (one thread per output)."""
        from unetcore import gpu
        self.argmax = self.xp.empty(top[0].shape, dtype=self.xp.int32)
        gpu.max_pool_forward(x, top[0].data, self.argmax, self.kernel, self.stride, self.pad)
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
        xp = self.xp
        if self.tiled:
            return self.backward_max_tiled(dy, dx)
        if xp is not np:                     # kernels/pooling.cu: each input gathers its dy
            from unetcore import gpu
            return gpu.max_pool_backward(dy, self.argmax, dx, self.kernel, self.stride, self.pad)
        n, c, h, w = dx.shape
        plane = xp.arange(n * c).reshape(n, c, 1, 1) * (h * w)
        index = (plane + self.argmax).ravel()
        if self.stride[0] >= self.kernel[0] and self.stride[1] >= self.kernel[1]:
            dx[...] = 0                      # windows do not overlap: each input gets at most one dy
            dx.reshape(-1)[index] = dy.ravel()
        else:
            dx[...] = xp.bincount(index, weights=dy.ravel(), minlength=dx.size).reshape(dx.shape)

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
