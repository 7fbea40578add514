"""Convolution engine "flat": stride 1 with 16 to 128 channels, on the CPU, in 2-d and 3-d.

Index the output on the input's grid, pixel (i, j) at column i*W + j, with W the input
width. Then every row of the im2col matrix is one contiguous slice of the flattened image,
shifted by its tap's offset p*W + q (the flat im2col, unetcore/ops/im2col.py): one slice copy
per row, in bands of a few rows that stay in the CPU's cache while the GEMM reads them. The
kw - 1 wrapped-around columns of each output row are computed and thrown away. In 3-d the
same holds slice by slice: output slice z starts at z*H*W of the flattened volume, and tap
(o, p, q) is offset by o*H*W + p*W + q.

There the im2col's GEMMs are thin (M = C_out, K = 9 C_in, or 27 C_in in 3-d), and im2col
through main memory costs as much as the GEMM; with more channels the GEMM dominates and
large bands suit BLAS better (docs/benchmarks.md has the measurements behind both limits).
The forward regroups the same sum into a GEMM kw times as tall (stacked_band). The data
gradient is the correlation engine's full correlation with the turned kernel: in 2-d on
the flat grid of dx, with the zero padding folded into each band (shifted_rows); in 3-d on
dy padded once, as a valid flat convolution like the forward.

The layer's forward adds the bias (and the ReLU the Net folds in) to each
band before it is written, and runs its bands, under parallel_band_bytes, on all the CPU's
cores at once (unetcore/ops/parallel.py): here the copies cost as much as the GEMMs, and
NumPy runs them on one core.
"""
import itertools
import math

import numpy as np

from unetcore import backend, config
from unetcore.ops.im2col import im2col_flat, tap_offsets
from unetcore.ops.parallel import run_bands
from unetcore.layer import register_engine

from unetcore.layers.convolution import batch_images, row_bands
from unetcore.layers.conditions import unit_stride_unpadded
from unetcore.layers.convolution_correlation import CorrelationConvolution

# The flat path pays where the GEMMs are thin: up to this many input and output channels
# (in 3-d, where K = 27 C_in, up to 64: docs/benchmarks.md).
FLAT_MAX_CHANNELS = {2: 128, 3: 64}
# ... and from this many input channels: below, im2col is small and the band copies cost more.
FLAT_MIN_CHANNELS = 16


@register_engine
class FlatConvolution(CorrelationConvolution):
    engine = "flat"
    priority = 3

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        return xp is np and unit_stride_unpadded(param, bottom_shapes, dimensions=(2, 3))

    @classmethod
    def pays(cls, param, bottom_shapes, xp):
        if not bottom_shapes:
            return False
        c_in, c_out = bottom_shapes[0][1], param.convolution_param.num_output
        most = FLAT_MAX_CHANNELS[len(bottom_shapes[0]) - 2]
        return FLAT_MIN_CHANNELS <= c_in <= most and c_out <= most

    def forward_gemm(self, x, w, y):
        self.flat_convolution(x, w[0], y)

    def forward(self, bottom, top):
        """The forward by the kernel's columns stacked (stacked_band), with the bias and the
        ReLU folded into each band; the bands of every image of the batch on all cores at
        once (unetcore/ops/parallel.py): one small image alone has too few to share out."""
        stacked = self.stacked_kernel(self.weight_matrices(self.blobs[0].data)[0])
        limit = config.sizes().parallel_band_bytes
        jobs = [(x, y, job) for x, y in batch_images(bottom, top)
                for job in self.band_jobs(x, y, limit, self.stacked_buffer_rows(stacked, y))]
        run_bands(lambda item: self.stacked_band(item[0], stacked, item[1], item[2]), jobs)

    def stacked_kernel(self, matrix):
        """The weight (C_out, C kh kw) as (kw C_out, kh C): row (q, o), column (p, c) holds
        w[o, c, p, q] (in 3-d, columns (o', p, c) for the taps (o', p) of the leading axes)."""
        *lead, kw = self.geom.kernel
        w = matrix.reshape(self.num_output, self.channels, math.prod(lead), kw)
        return np.ascontiguousarray(w.transpose(3, 0, 2, 1)).reshape(kw * self.num_output, -1)

    def stacked_band(self, x, stacked, y, job):
        """One band of the forward with the kernel's columns stacked along the GEMM's output
        and its rows along the inner dimension: with X_p the flat image shifted down by p
        rows (by p W),

            Z[(q, o), j] = sum over p, c of w[o, c, p, q] X_p[c, j]      (one GEMM)
            y[o, j] = sum over q of Z[(q, o), j + q]                       (kw - 1 adds)

        the same sum as the flat im2col's, regrouped: the im2col copies kh row-shifted
        images (kd kh in 3-d) instead of all the taps', and the GEMM is kw times as tall (C_out is 16-64 here, too
        thin for BLAS to run at speed). Z needs only kw - 1 columns more than the band (the
        rows stacked instead would need kh - 1 image rows more, computed and thrown away).
        Then bias and ReLU, and the first W_out of every W columns into y."""
        index, start, r0, r1 = job
        c_in, c_out, out_w, wid = x.shape[0], y.shape[0], y.shape[-1], x.shape[-1]
        *lead, kw = self.geom.kernel
        row_offsets = tap_offsets(lead, x.shape[1:-1])  # taps p (2-d), (o', p) (3-d), in rows
        count = (r1 - r0) * wid - (kw - 1)
        reach = count + kw - 1
        col = self.column_buffer(len(row_offsets) * c_in, 1, reach)
        col = col.reshape(len(row_offsets), c_in, reach)
        x_flat, first = x.reshape(c_in, -1), start + r0 * wid
        for t, offset in enumerate(row_offsets):
            col[t] = x_flat[:, first + offset * wid:first + offset * wid + reach]
        z = self.band_buffer(len(stacked), reach, "stacked")
        np.matmul(stacked, col.reshape(-1, reach), out=z)
        band = self.band_buffer(c_out, (r1 - r0) * wid, "band")
        out = band[:, :count]
        columns = [z[q * c_out:(q + 1) * c_out, q:q + count] for q in range(kw)]
        if len(columns) == 1:
            out[...] = columns[0]
        else:
            np.add(columns[0], columns[1], out=out)
        for column in columns[2:]:
            out += column
        self.finish(out)
        y[(slice(None), *index, slice(r0, r1))] = \
            band.reshape(c_out, r1 - r0, wid)[:, :, :out_w]

    def flat_convolution(self, x, matrix, y):
        """y = matrix @ col(x), the valid convolution of x (C, *spatial) into y (M, *out),
        band by band."""
        for job in self.band_jobs(x, y):
            self.flat_band(x, matrix, y, job)

    def flat_band(self, x, matrix, y, job):
        """One band of output rows: y's rows r0:r1 of the slice that starts at `start` in
        x = matrix @ col, keeping the first W_out of every W columns."""
        index, start, r0, r1 = job
        c_out, out_w, wid = y.shape[0], y.shape[-1], x.shape[-1]
        col = self.band_columns(x, start, r0, r1)
        band = self.band_buffer(c_out, (r1 - r0) * wid, "band")
        np.matmul(matrix, col, out=band[:, :col.shape[1]])
        y[(slice(None), *index, slice(r0, r1))] = \
            band.reshape(c_out, r1 - r0, wid)[:, :, :out_w]

    def stacked_buffer_rows(self, stacked, y):
        """The rows of stacked_band's three buffers (the shifted images, the stacked
        products, the band), per pixel of a band."""
        return stacked.shape[1] + len(stacked) + y.shape[0]

    def band_jobs(self, x, y, limit=None, k_rows=None):
        """(index, start, r0, r1) for every band of output rows: y[:, *index] is the output
        slice, `start` where its input slice starts in the flattened x (output_slices).
        A band's buffers hold k_rows numbers per pixel (by default the flat im2col's)."""
        k, wid = k_rows or x.shape[0] * math.prod(self.geom.kernel), x.shape[-1]
        return [(index, start, r0, r1) for index, start in self.output_slices(x, y)
                for r0, r1 in self.flat_bands(y.shape[-2], k, wid, limit)]

    def weight_gemm(self, x, dy, dw):
        """dW += dY_flat @ col^T over bands of output rows, dY shifted onto the flat grid."""
        c_out, out_w, wid = dy.shape[0], dy.shape[-1], x.shape[-1]
        shift = wid - out_w                                   # kw - 1
        product = self.band_buffer(c_out, dw.shape[2], "product")
        for index, start, r0, r1 in self.band_jobs(x, dy):
            col = self.band_columns(x, start, r0, r1)
            dy_flat = self.shifted_rows(dy[(slice(None), *index)], r0, r1, wid)  # zeros where wrapped
            np.matmul(dy_flat[:, shift:shift + col.shape[1]], col.T, out=product)
            dw[0] += product

    def backward_gemm(self, dy, w, dx):
        if self.axes != 2:                  # dx = the valid flat convolution of padded dy
            padding = ((0, 0),) + tuple((k - 1, k - 1) for k in self.geom.kernel)
            self.flat_convolution(np.pad(dy, padding), self.turned_weights(w), dx)
            return
        self.backward_gemm_2d(dy, w, dx)

    def backward_gemm_2d(self, dy, w, dx):
        """dx[c, i*W + j] = sum over o, p, q of W_rot[c, o, p, q] dyP[o, i*W + j + p*W + q]:
        a valid correlation of dyP, the rows of dy shifted down by kh - 1 and right by kw - 1,
        with zeros around. On the flat grid the kw - 1 zero columns at the start of one row
        pad the end of the row above, so each dx band is written directly, without waste."""
        kh, (c_in, h, wid), w_rot = self.geom.kernel[0], dx.shape, self.turned_weights(w)
        offsets, k = tap_offsets(self.geom.kernel, (h, wid)), w_rot.shape[1]
        dx_flat = dx.reshape(c_in, -1)
        for r0, r1 in self.flat_bands(h, k, wid):
            dy_pad = self.shifted_rows(dy, r0 - (kh - 1), r1, wid)
            col = im2col_flat(dy_pad, offsets, 0, (r1 - r0) * wid,
                              self.column_buffer(k, r1 - r0, wid))
            np.matmul(w_rot, col, out=dx_flat[:, r0 * wid:r1 * wid])

    # ---- the flat grid
    @staticmethod
    def output_slices(x, y):
        """(index, where its input slice starts in the flattened x) for every index of y's
        leading spatial axes: () for the one image itself in 2-d, the output slices z in 3-d
        (input slice z starts at z*H*W)."""
        strides = [math.prod(x.shape[2 + axis:]) for axis in range(x.ndim - 3)]
        for index in itertools.product(*map(range, y.shape[1:-2])):
            yield index, sum(i * s for i, s in zip(index, strides))

    def band_columns(self, x, start, r0, r1):
        """The flat im2col of x for output rows r0:r1 of the slice that starts at `start`,
        with (r1 - r0) * W columns less the last kw - 1. Those are wrapped-around columns of
        the band's last row, thrown away like the others; in the last band they would read
        past the end of the image."""
        c_in, wid, kw = x.shape[0], x.shape[-1], self.geom.kernel[-1]
        offsets, x_flat = tap_offsets(self.geom.kernel, x.shape[1:]), x.reshape(c_in, -1)
        count = (r1 - r0) * wid - (kw - 1)
        return im2col_flat(x_flat, offsets, start + r0 * wid, count,
                           self.column_buffer(c_in * len(offsets), r1 - r0, wid))

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

    def flat_bands(self, rows, k_rows, width, limit=None):
        """Bands of rows whose flat im2col matrix (k_rows x rows*width) fits `limit` bytes
        (by default config.sizes().cache_band_bytes)."""
        limit = config.sizes().cache_band_bytes if limit is None else limit
        return row_bands(rows, k_rows * width * self.dtype.itemsize, limit)

    def band_buffer(self, channels, count, slot):
        return backend.workspace(np, self.dtype, channels * count, slot).reshape(channels, count)
