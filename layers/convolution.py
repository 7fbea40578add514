"""Convolution: y = W * x + b, by im2col + GEMM (Caffe's ConvolutionLayer).

Shapes: x (N, C_in, H, W), W (C_out, C_in/group, kh, kw), b (C_out,), y (N, C_out, H_out, W_out)
with H_out = (H + 2 pad - (dilation (kh - 1) + 1)) / stride + 1, rounded down.

Forward, per image and group g:      Y_g = W_g @ col(x)_g                    (W_g: C_out/g x K)
Backward (chain rule on that product):
    dW_g += dY_g @ col(x)_g^T        dx = col2im(W_g^T @ dY_g)        db += sum over n, h, w of dY

The im2col matrix is built in bands of output rows inside one workspace shared by
all layers, so its size stays under backend.WORKSPACE_LIMIT_BYTES whatever the image.
Stride-1 convolutions with few channels use the flat im2col on the CPU instead (see
unetcore/im2col.py and `flat` below): cache-sized bands, one slice copy per im2col row.
"""
import numpy as np

from unetcore import backend
from unetcore.im2col import (col2im_add, geometry_from_param, im2col, im2col_flat, pad_image,
                             tap_offsets)
from unetcore.layer import Layer, register

# The flat path pays where the GEMMs are thin: up to this many input and output channels.
FLAT_MAX_CHANNELS = 128
# ... and from this many input channels: below, im2col is small and the band copies cost more.
FLAT_MIN_CHANNELS = 16


def row_bands(rows, bytes_per_row, limit=None):
    """Split `rows` output rows into bands whose im2col matrix fits `limit` bytes
    (by default the workspace limit)."""
    limit = backend.WORKSPACE_LIMIT_BYTES if limit is None else limit
    per_band = max(1, limit // max(1, bytes_per_row))
    return [(r, min(rows, r + per_band)) for r in range(0, rows, per_band)]


@register
class ConvolutionLayer(Layer):
    type = "Convolution"
    min_bottoms = 1
    min_tops = 1

    def setup(self, bottom, top):
        p = self.param.convolution_param
        if len(bottom) != len(top):
            raise self.error(f"takes as many tops as bottoms, got {len(bottom)} and {len(top)}")
        if p.axis != 1:
            raise self.error("only axis 1 (N, C, H, W blobs) is supported")
        self.geom = geometry_from_param(p, self.error)
        self.num_output, self.group = p.num_output, p.group
        if self.num_output < 1:
            raise self.error("convolution_param needs num_output >= 1")
        if len(bottom[0].shape) != 4:
            raise self.error(f"needs a 4-d bottom (N, C, H, W), got shape {bottom[0].shape} "
                             f"({len(bottom[0].shape) - 2} spatial axes): unetcore's layers "
                             "are 2-d for now")
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
            if len(b.shape) != 4 or b.shape[1] != self.channels:
                raise self.error(f"bottom '{self.bottom_name(0)}' must have shape "
                                 f"(N, {self.channels}, H, W), got {b.shape}")
            out_h, out_w = self.output_shape(b.shape)
            if out_h < 1 or out_w < 1:
                raise self.error(f"input {b.shape[2]}x{b.shape[3]} is smaller than the "
                                 f"kernel {self.geom.kernel} (with pad {self.geom.pad})")
            t.reshape((b.shape[0], self.num_output, out_h, out_w))

    # ---- per-group views of the parameters
    def weight_matrices(self, array):
        """The weight as (group, C_out/group, K) for a Convolution."""
        return array.reshape(self.group, self.num_output // self.group, -1)

    def add_bias(self, y):
        if len(self.blobs) > 1:
            y += self.blobs[1].data.reshape(1, -1, 1, 1)

    def bias_backward(self, dy):
        if len(self.blobs) > 1 and self.param_propagate_down[1]:
            self.blobs[1].diff += dy.sum(axis=(0, 2, 3))

    def column_buffer(self, k_rows, band_rows, width):
        return backend.workspace(self.xp, self.dtype, k_rows * band_rows * width) \
            .reshape(k_rows, band_rows * width)

    # ---- forward and backward
    def forward(self, bottom, top):
        for b, t in zip(bottom, top):
            self.forward_one(b.data, t.data)

    @property
    def pointwise(self):
        """A 1x1 convolution, stride 1, no padding: the im2col matrix is the image itself."""
        g = self.geom
        return g.kernel == (1, 1) and g.stride == (1, 1) and g.pad == (0, 0) and self.group == 1

    def forward_one(self, x, y):
        xp, w = self.xp, self.weight_matrices(self.blobs[0].data)
        k, c_out = w.shape[2], w.shape[1]
        out_h, out_w = y.shape[2:]
        for n in range(x.shape[0]):
            if self.pointwise:
                xp.matmul(w[0], x[n].reshape(k, -1), out=y[n].reshape(c_out, -1))
                continue
            if self.flat:
                self.forward_flat(x[n], w[0], y[n])
                continue
            x_pad = pad_image(xp, x[n], self.geom.pad)
            for r0, r1 in row_bands(out_h, k * self.group * out_w * self.dtype.itemsize):
                col = im2col(xp, x_pad, self.geom, out_w,
                             r0, r1, self.column_buffer(k * self.group, r1 - r0, out_w))
                for g in range(self.group):      # rows r0:r1 of each channel: a strided view
                    y_g = y[n, g * c_out:(g + 1) * c_out, r0:r1].reshape(c_out, -1)
                    backend.matmul_into(xp, w[g], col[g * k:(g + 1) * k], y_g)
        self.add_bias(y)

    def backward(self, top, propagate_down, bottom):
        for t, down, b in zip(top, propagate_down, bottom):
            self.backward_one(t.diff, b, down)
            self.bias_backward(t.diff)

    def backward_one(self, dy, bottom, down):
        x = bottom.data
        w = self.weight_matrices(self.blobs[0].data)
        dw = self.weight_matrices(self.blobs[0].diff) if self.param_propagate_down[0] else None
        for n in range(x.shape[0]):
            dx = bottom.diff[n] if down else None
            if self.pointwise:
                self.backward_pointwise(x[n], dy[n], w[0], dw, dx)
            elif self.flat:
                self.backward_flat(x[n], dy[n], dw, dx)
            elif down and self.correlates_back:
                self.data_gradient_by_correlation(dy[n], dx)
                self.backward_bands(x[n], dy[n], w, dw, None)
            else:
                self.backward_bands(x[n], dy[n], w, dw, dx)

    def backward_bands(self, x, dy, w, dw, dx):
        """dW by im2col + GEMM band by band, and dx (unless None) by GEMM + col2im."""
        xp, k, c_out, down = self.xp, w.shape[2], w.shape[1], dx is not None
        (ph, pw), (h, wid), (out_h, out_w) = self.geom.pad, x.shape[1:], dy.shape[1:]
        x_pad = pad_image(xp, x, self.geom.pad)
        dx_pad = None
        if down:         # without padding, accumulate straight into the bottom's gradient
            dx_pad = dx if x_pad is x else xp.zeros_like(x_pad)
            dx_pad[...] = 0
        if dw is None and not down:
            return
        for r0, r1 in row_bands(out_h, k * self.group * out_w * self.dtype.itemsize):
            col = im2col(xp, x_pad, self.geom, out_w,
                         r0, r1, self.column_buffer(k * self.group, r1 - r0, out_w))
            dy_g = [dy[g * c_out:(g + 1) * c_out, r0:r1].reshape(c_out, -1)
                    for g in range(self.group)]
            for g in range(self.group):
                if dw is not None:
                    dw[g] += xp.matmul(dy_g[g], col[g * k:(g + 1) * k].T)
            if down:
                for g in range(self.group):   # the column buffer now holds dcol
                    xp.matmul(w[g].T, dy_g[g], out=col[g * k:(g + 1) * k])
                col2im_add(col, dx_pad, self.geom, out_w, r0, r1)
        if down and dx_pad is not dx:
            dx[...] = dx_pad[:, ph:ph + h, pw:pw + wid]

    @property
    def correlates_back(self):
        """Whether to take dx by correlation: stride 1, no padding, dilation or groups, and
        more input than output channels (the U-Net's conv_u*b-c after a concat). Its im2col
        matrix then has C_out * kh * kw rows instead of col2im's C_in * kh * kw; on the CPU,
        with C_in <= C_out, col2im is as fast and needs no padded copy of dy. On a GPU also
        with equal channel counts: there the col2im kernel, a gather with integer divisions,
        moves bytes at a third of a copy's rate and im2col at 80% (docs/benchmarks.md)."""
        g = self.geom
        if not (g.stride == (1, 1) and g.pad == (0, 0) and g.dilation == (1, 1)
                and self.group == 1 and not self.pointwise):
            return False
        if self.xp is np:
            return self.channels > self.num_output
        return self.channels >= self.num_output

    def turned_weights(self):
        """W_rot[c, (o, p, q)] = W[o, c, kh-1-p, kw-1-q]: the kernel turned by 180 degrees,
        input and output channels swapped, as a (C_in, C_out * kh * kw) matrix."""
        return self.blobs[0].data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(
            self.channels, -1)

    def data_gradient_by_correlation(self, dy, dx):
        """The gradient of the data as a convolution, without col2im (a "full" correlation):

            dx[c, y, x] = sum_{o,p,q} W[o, c, p, q] dy[o, y - p, x - q]

        is a valid convolution of dy, zero-padded by k - 1 on each side, with the kernel
        turned by 180 degrees and its in/out channels swapped: W_rot[c, o, p, q] =
        W[o, c, kh-1-p, kw-1-q]. im2col + GEMM then write dx band by band."""
        xp, (kh, kw), w_rot = self.xp, self.geom.kernel, self.turned_weights()
        dy_pad = xp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
        k, (h, wid) = w_rot.shape[1], dx.shape[1:]
        for r0, r1 in row_bands(h, k * wid * self.dtype.itemsize):
            col = im2col(xp, dy_pad, self.geom, wid, r0, r1, self.column_buffer(k, r1 - r0, wid))
            backend.matmul_into(xp, w_rot, col, dx[:, r0:r1].reshape(self.channels, -1))

    # ---- the flat path (unetcore/im2col.py): output pixel (i, j) at column i*W + j
    @property
    def flat(self):
        """Whether to use the flat im2col: a stride-1, unpadded, undilated, ungrouped
        convolution on the CPU with 16 to 128 channels in and at most 128 out. There the
        GEMMs are thin (M = C_out, K = 9 C_in), and im2col through main memory costs as much
        as the GEMM; with more channels the GEMM dominates and large bands suit BLAS better
        (docs/benchmarks.md has the measurements behind both limits)."""
        g = self.geom
        return (self.xp is np and g.stride == (1, 1) and g.pad == (0, 0)
                and g.dilation == (1, 1) and self.group == 1 and not self.pointwise
                and FLAT_MIN_CHANNELS <= self.channels <= FLAT_MAX_CHANNELS
                and self.num_output <= FLAT_MAX_CHANNELS)

    def flat_bands(self, rows, k_rows, width):
        """Bands of rows whose flat im2col matrix (k_rows x rows*width) fits a cache band."""
        return row_bands(rows, k_rows * width * self.dtype.itemsize, backend.CACHE_BAND_BYTES)

    def band_buffer(self, channels, count, slot):
        return backend.workspace(np, self.dtype, channels * count, slot).reshape(channels, count)

    def forward_flat(self, x, w, y):
        """y = W @ col band by band, keeping the first W_out of every W columns."""
        (c_out, out_h, out_w), wid = y.shape, x.shape[2]
        for r0, r1, col in self.flat_columns(x, out_h):
            count = col.shape[1]
            band = self.band_buffer(c_out, (r1 - r0) * wid, "band")
            np.matmul(w, col, out=band[:, :count])
            y[:, r0:r1] = band.reshape(c_out, r1 - r0, wid)[:, :, :out_w]

    def backward_flat(self, x, dy, dw, dx):
        """dW += dY_flat @ col^T over bands of output rows, then dx over bands of input rows
        as the full correlation of dy with the turned kernel (data_gradient_by_correlation),
        both on the flat grid of width W."""
        if dw is not None:
            self.weight_gradient_flat(x, dy, dw[0])
        if dx is not None:
            self.data_gradient_flat(dy, dx, x.shape[2])

    def weight_gradient_flat(self, x, dy, dw):
        (c_out, out_h, out_w), wid = dy.shape, x.shape[2]
        shift = wid - out_w                                   # kw - 1
        product = self.band_buffer(c_out, dw.shape[1], "product")
        for r0, r1, col in self.flat_columns(x, out_h):
            dy_flat = self.shifted_rows(dy, r0, r1, wid)     # zeros in the wrapped columns
            np.matmul(dy_flat[:, shift:shift + col.shape[1]], col.T, out=product)
            dw += product

    def flat_columns(self, x, out_h):
        """(r0, r1, col) for each band of output rows: the flat im2col of x, with
        (r1 - r0) * W columns less the last kw - 1. Those are wrapped-around columns of the
        band's last row, thrown away like the others; in the last band they would read past
        the end of the image."""
        (c_in, _, wid), kw = x.shape, self.geom.kernel[1]
        offsets, x_flat = tap_offsets(self.geom.kernel, wid), x.reshape(c_in, -1)
        k = c_in * len(offsets)
        for r0, r1 in self.flat_bands(out_h, k, wid):
            count = (r1 - r0) * wid - (kw - 1)
            yield r0, r1, im2col_flat(x_flat, offsets, r0 * wid, count,
                                      self.column_buffer(k, r1 - r0, wid))

    def data_gradient_flat(self, dy, dx, wid):
        """dx[c, i*W + j] = sum over o, p, q of W_rot[c, o, p, q] dyP[o, i*W + j + p*W + q]:
        a valid correlation of dyP, the rows of dy shifted down by kh - 1 and right by kw - 1,
        with zeros around. On the flat grid the kw - 1 zero columns at the start of one row
        pad the end of the row above, so each dx band is written directly, without waste."""
        kh, (c_in, h, _), w_rot = self.geom.kernel[0], dx.shape, self.turned_weights()
        offsets, k = tap_offsets(self.geom.kernel, wid), w_rot.shape[1]
        dx_flat = dx.reshape(c_in, -1)
        for r0, r1 in self.flat_bands(h, k, wid):
            dy_pad = self.shifted_rows(dy, r0 - (kh - 1), r1, wid)
            col = im2col_flat(dy_pad, offsets, 0, (r1 - r0) * wid,
                              self.column_buffer(k, r1 - r0, wid))
            np.matmul(w_rot, col, out=dx_flat[:, r0 * wid:r1 * wid])

    def shifted_rows(self, dy, row0, row1, wid):
        """Rows row0:row1 of dy (zeros outside dy) on a flat grid of width `wid`, each row
        shifted right by kw - 1 = wid - W_out, with kw - 1 zeros of slack at the end:
        out[o, (a - row0) * wid + kw - 1 + b] = dy[o, a, b]."""
        (c_out, out_h, _), pad = dy.shape, wid - dy.shape[2]
        rows = row1 - row0
        band = self.band_buffer(c_out, rows * wid + pad, "band")
        grid = band[:, :rows * wid].reshape(c_out, rows, wid)
        lo, hi = max(row0, 0), min(row1, out_h)
        grid[:, :lo - row0] = 0
        grid[:, hi - row0:] = 0
        grid[:, lo - row0:hi - row0, :pad] = 0
        grid[:, lo - row0:hi - row0, pad:] = dy[:, lo:hi]
        band[:, rows * wid:] = 0
        return band

    def backward_pointwise(self, x, dy, w, dw, dx):
        """dW += dY @ X^T and dX = W^T @ dY, with X and dY as (channels, pixels) views."""
        xp, x, dy = self.xp, x.reshape(x.shape[0], -1), dy.reshape(dy.shape[0], -1)
        if dw is not None:
            dw[0] += xp.matmul(dy, x.T)
        if dx is not None:
            xp.matmul(w.T, dy, out=dx.reshape(dx.shape[0], -1))
