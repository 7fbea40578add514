"""Convolution engine "winograd": stride-1 kernels up to 3x3 by Winograd's minimal filtering.

Cut the output into m x m tiles; tile (ty, tx) needs the input tile of alpha_h x alpha_w pixels
at (m ty, m tx), alpha = m + k - 1. With the transforms of unetcore/ops/winograd.py, on tiles
flattened to T = alpha_h alpha_w elements (docs/winograd.md):

    V[t, c, p] = (B^T kron B^T) d[c, p]          input tiles, transformed   (T x C x P tiles)
    U[t, o, c] = (G kron G) g[o, c]              the kernel, transformed     (T x C_out x C)
    M[t]       = U[t] @ V[t]                     T GEMMs of C_out x C by C x P
    y[o, p]    = (A^T kron A^T) M[:, o, p]       the m x m output tile

The T GEMMs do all the multiplying: T / (m^2) per output where the direct sum does kh kw,
2.25x fewer for F(2, 3) and 4x fewer for F(4, 3).

Backward is the same algorithm transposed, product by product (the chain rule, as for im2col):

    dM[t]  = (A^T kron A^T)^T dy-tiles           dU[t] += dM[t] @ V[t]^T   dg = (G kron G)^T dU
    dV[t]  = U[t]^T @ dM[t]                      dx-tiles = (B^T kron B^T)^T dV, added back
                                                 onto the overlapping input tiles
So the data and weight gradients are Winograd too, with the same transforms and GEMM count,
and they are the exact gradients of this forward.

All of it runs in bands of tile rows, in the shared workspace, under
config.sizes().winograd_band_bytes. The layer's forward runs on all the CPU's cores at once
(unetcore/ops/parallel.py): smaller bands, under parallel_band_bytes, where the channels are
few; each band in two phases where they are more (first its input tiles, then its products
and output tiles, each phase cut into parts for the cores). It adds the bias (and the ReLU
that follows, where the Net folds it in) to the output tiles before they are written: one
pass over the output fewer, and none on a single core.
"""
import math

import numpy as np

from unetcore import backend, config
from unetcore.layer import register_engine
from unetcore.ops.parallel import run_bands, split_range
from unetcore.ops.winograd import tile_count, winograd_2d

from unetcore.layers.conditions import parsed_geometry, unit_stride_unpadded
from unetcore.layers.convolution import ConvolutionLayer, batch_images, row_bands

# Below this many input or output channels the transforms cost more than the GEMMs save.
WINOGRAD_MIN_CHANNELS = 64
# The forward runs its small bands on all cores up to this C_in * C_out (64 x 128): there its
# NumPy passes outweigh its GEMMs. Above it each small band's GEMM would re-read a transformed
# kernel of T C_in C_out numbers (docs/benchmarks.md).
PARALLEL_MAX_KERNEL = 64 * 128
# Above it, up to PHASES_MAX_KERNEL (128 x 256), each large band in two phases on all cores:
# the input tiles of PHASE_PARTS parts of its tile rows, then the products and output tiles
# of blocks of PHASE_CHANNELS output channels. The parts and blocks are the same whatever the
# number of cores, and so are the sums. Above that, the transformed kernel is too large to
# read once per part and block, and each band runs whole, its GEMMs on all of BLAS's threads.
PHASES_MAX_KERNEL = 128 * 256
PHASE_PARTS = 2
PHASE_CHANNELS = 64


def tile_for(c_in, c_out, out_h, out_w):
    """The output tile side m that pays for a layer, or None where none does (measured on the
    U-Net's layers, docs/benchmarks.md). The GEMMs move T (C_in + C_out) numbers per tile and
    the transformed kernel T C_in C_out, which is made twice and its gradient once per image:
    where the kernel outweighs the tiles (deep layers on small images) the transforms cost
    more than the multiplications saved. F(4, 3) where the kernel is at most the tiles, F(2, 3),
    with 4x as many tiles, where it is at most four times, else neither."""
    tiles = tile_count(out_h, 4) * tile_count(out_w, 4)
    kernel_per_tile = c_in * c_out / ((c_in + c_out) * tiles)
    if kernel_per_tile <= 1:
        return 4
    return 2 if kernel_per_tile <= 4 else None


@register_engine
class WinogradConvolution(ConvolutionLayer):
    engine = "winograd"
    priority = 2

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        return (unit_stride_unpadded(param, bottom_shapes)
                and max(parsed_geometry(param, bottom_shapes).kernel) <= 3)

    @classmethod
    def pays(cls, param, bottom_shapes, xp):
        if xp is not np or not bottom_shapes or len(bottom_shapes[0]) != 4:
            return False
        (_, c_in, h, w), c_out = bottom_shapes[0], param.convolution_param.num_output
        out_h, out_w = parsed_geometry(param, bottom_shapes).output_size(h, w)
        return (min(c_in, c_out) >= WINOGRAD_MIN_CHANNELS and out_h > 0 and out_w > 0
                and tile_for(c_in, c_out, out_h, out_w) is not None)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.tile = self.tile_size(top[0].shape)
        self.wino = winograd_2d(self.tile, self.geom.kernel, self.dtype.type, self.xp)

    def tile_size(self, out_shape):
        """tile_for's choice; F(2, 3) where none pays but the engine was asked for by name."""
        return tile_for(self.channels, self.num_output, *out_shape[2:]) or 2

    # ---- forward, and the two backward products fused band by band
    def forward_gemm(self, x, w, y):
        u = self.transformed_kernel(w)
        for band in self.tile_bands(y.shape[1:], x.shape[0], y.shape[0]):
            self.forward_band(x, u, band, y)

    def forward(self, bottom, top):
        """forward_gemm with the bias and the ReLU folded into the output tiles, on all
        cores: where the channels are few, the bands of every image of the batch at once;
        with more, each band in two phases (forward_in_phases); with the most, one band at
        a time, its GEMMs on all of BLAS's threads."""
        if self.xp is not np:
            return super().forward(bottom, top)
        u = self.transformed_kernel(self.weight_matrices(self.blobs[0].data))
        images = batch_images(bottom, top)
        if self.channels * self.num_output <= PARALLEL_MAX_KERNEL:
            limit = config.sizes().parallel_band_bytes
            jobs = [(x, y, band) for x, y in images
                    for band in self.tile_bands(y.shape[1:], x.shape[0], y.shape[0], limit)]
            run_bands(lambda job: self.forward_band(job[0], u, job[2], job[1], finish=True),
                      jobs)
            return
        phases = self.channels * self.num_output <= PHASES_MAX_KERNEL
        for x, y in images:
            for band in self.tile_bands(y.shape[1:], x.shape[0], y.shape[0]):
                if phases:
                    self.forward_in_phases(x, u, band, y)
                else:
                    self.forward_band(x, u, band, y, finish=True)

    def forward_band(self, x, u, band, y, finish=False):
        """y's tile rows ty0:ty1 = (A^T kron A^T)(U @ V); then finish (bias, ReLU) where
        asked."""
        (ty0, ty1), c_out = band, y.shape[0]
        v = self.input_tiles(x, ty0, ty1, y.shape[2])
        m = self.buffer((len(u), c_out, v.shape[2]), "products")
        self.xp.matmul(u, v, out=m)
        self.put_output_tiles(m, ty0, ty1, y, finish)

    def forward_in_phases(self, x, u, band, y):
        """One band of a layer with many channels, whose transformed kernel U is too large
        to read again for each of many small bands: first the input tiles of PHASE_PARTS
        parts of the band's tile rows, on all cores; then U @ V and the output tiles by
        blocks of PHASE_CHANNELS output channels, on all cores, each block reading its rows
        of U once per part. The parts and blocks do not depend on the number of cores, nor
        do the sums."""
        parts = split_range(*band, PHASE_PARTS)
        tiles_w, t, c_in = tile_count(y.shape[2], self.tile), len(u), x.shape[0]
        v = [self.buffer((t, c_in, (r1 - r0) * tiles_w), f"transformed part {k}")
             for k, (r0, r1) in enumerate(parts)]
        run_bands(lambda k: self.input_tiles(x, *parts[k], y.shape[2], out=v[k]),
                  range(len(parts)))

        def outputs(block):
            channels = slice(*block)
            for (r0, r1), v_part in zip(parts, v):
                m = self.buffer((t, block[1] - block[0], v_part.shape[2]), "products")
                np.matmul(u[:, channels], v_part, out=m)
                self.put_output_tiles(m, r0, r1, y, True, channels)
        run_bands(outputs, [(o, min(o + PHASE_CHANNELS, y.shape[0]))
                            for o in range(0, y.shape[0], PHASE_CHANNELS)])

    def backward_image(self, x, dy, w, dw, dx):
        """dU += dM V^T and dV = U^T dM, sharing each band's dM; then dW from dU."""
        xp, t = self.xp, len(self.wino.input_transform)
        du = xp.empty((t, dy.shape[0], x.shape[0]), self.dtype) if dw is not None else None
        u_t = self.transformed_kernel(w).transpose(0, 2, 1) if dx is not None else None
        if dx is not None:
            dx[...] = 0
        for band, (ty0, ty1) in enumerate(self.tile_bands(dy.shape[1:], x.shape[0], dy.shape[0])):
            dm = self.output_tile_gradients(dy, ty0, ty1)
            if du is not None:
                v_t = self.input_tiles(x, ty0, ty1, dy.shape[2]).transpose(0, 2, 1)
                if band == 0:
                    xp.matmul(dm, v_t, out=du)
                else:
                    du += xp.matmul(dm, v_t)
            if dx is not None:
                dv = self.buffer((t, x.shape[0], dm.shape[2]), "transformed")
                xp.matmul(u_t, dm, out=dv)
                self.add_input_tile_gradients(dv, ty0, ty1, dx)
        if du is not None:
            dg = self.wino.filter_transform.T @ du.reshape(t, -1)     # (kh kw, C_out C)
            dw[0] += dg.T.reshape(dw.shape[1:])

    # ---- the transforms
    def transformed_kernel(self, w):
        """U = (G kron G) g as (T, C_out, C) from w (1, C_out, C kh kw)."""
        c_out, taps = w.shape[1], self.wino.filter_transform.shape[1]
        u = self.wino.filter_transform @ w[0].reshape(-1, taps).T      # (T, C_out C)
        return u.reshape(len(u), c_out, -1)

    def input_tiles(self, x, ty0, ty1, out_w, out=None):
        """V = (B^T kron B^T) d for the input tiles of tile rows ty0:ty1 of an output
        `out_w` wide: (T, C, P), into `out` where given."""
        wino, tile_w = self.wino, tile_count(out_w, self.tile)
        channels, count = x.shape[0], (ty1 - ty0) * tile_w
        d = self.buffer((len(wino.input_transform), channels, ty1 - ty0, tile_w), "tiles")
        for t, (i, j) in enumerate(self.tile_offsets(wino.alphas)):
            self.copy_tile_element(x, i + self.tile * ty0, j, ty1 - ty0, tile_w, d[t])
        v = self.buffer((len(d), channels, count), "transformed") if out is None else out
        backend.matmul_into(self.xp, wino.input_transform, d.reshape(len(d), -1),
                            v.reshape(len(v), -1))
        return v

    def put_output_tiles(self, m, ty0, ty1, y, finish=False, channels=slice(None)):
        """y's tile rows ty0:ty1 (of the output `channels` that M holds) = (A^T kron A^T) M,
        less what hangs over y's edges; with `finish`, the bias added and the ReLU applied
        on the way."""
        tile, tile_w = self.tile, tile_count(y.shape[2], self.tile)
        out = self.buffer((tile * tile, m.shape[1], ty1 - ty0, tile_w), "outputs")
        backend.matmul_into(self.xp, self.wino.output_transform, m.reshape(len(m), -1),
                            out.reshape(len(out), -1))
        if finish:
            self.finish(out, channel_axis=1, channels=channels)
        for t, (i, j) in enumerate(self.tile_offsets((tile, tile))):
            pixels = self.tile_element_view(y[channels], i + self.tile * ty0, j, ty1 - ty0,
                                            tile_w)
            pixels[...] = out[t, :, :pixels.shape[1], :pixels.shape[2]]

    def output_tile_gradients(self, dy, ty0, ty1):
        """dM = (A^T kron A^T)^T dy-tiles for tile rows ty0:ty1: (T, C_out, P)."""
        wino, tile, tile_w, c_out = self.wino, self.tile, tile_count(dy.shape[2], self.tile), dy.shape[0]
        e = self.buffer((tile * tile, c_out, ty1 - ty0, tile_w), "outputs")
        for t, (i, j) in enumerate(self.tile_offsets((tile, tile))):
            self.copy_tile_element(dy, i + tile * ty0, j, ty1 - ty0, tile_w, e[t])
        dm = self.buffer((wino.output_transform.shape[1], c_out, (ty1 - ty0) * tile_w), "products")
        backend.matmul_into(self.xp, wino.output_transform.T, e.reshape(len(e), -1),
                            dm.reshape(len(dm), -1))
        return dm

    def add_input_tile_gradients(self, dv, ty0, ty1, dx):
        """dx += the input-tile gradients (B^T kron B^T)^T dV, each tile element added back
        onto the pixel it was read from (the tiles overlap by k - 1)."""
        wino, tile_w = self.wino, dv.shape[2] // (ty1 - ty0)
        dd = self.buffer((len(dv), dx.shape[0], ty1 - ty0, tile_w), "tiles")
        backend.matmul_into(self.xp, wino.input_transform.T, dv.reshape(len(dv), -1),
                            dd.reshape(len(dd), -1))
        for t, (i, j) in enumerate(self.tile_offsets(wino.alphas)):
            pixels = self.tile_element_view(dx, i + self.tile * ty0, j, ty1 - ty0, tile_w)
            pixels += dd[t, :, :pixels.shape[1], :pixels.shape[2]]

    # ---- tiles on the image grid
    @staticmethod
    def tile_offsets(alphas):
        return [(i, j) for i in range(alphas[0]) for j in range(alphas[1])]

    def tile_element_view(self, image, row, col, tiles_h, tiles_w):
        """image[:, row + m ty, col + m tx] for ty < tiles_h, tx < tiles_w: a strided view,
        cut where the tiles hang over the image's edge."""
        m = self.tile
        return image[:, row:row + m * tiles_h:m, col:col + m * tiles_w:m]

    def copy_tile_element(self, image, row, col, tiles_h, tiles_w, out):
        """out[:, ty, tx] = image[:, row + m ty, col + m tx], zero past the edges."""
        view = self.tile_element_view(image, row, col, tiles_h, tiles_w)
        h, w = view.shape[1:]
        out[:, :h, :w] = view
        out[:, h:] = 0
        out[:, :h, w:] = 0

    # ---- bands and buffers
    def tile_bands(self, out_shape, c_in, c_out, limit=None):
        """Bands of tile rows whose four buffers fit `limit` bytes (by default
        config.sizes().winograd_band_bytes): per tile, T C input elements twice (the tiles
        and their transform), T C_out products, m^2 C_out outputs."""
        t, m = len(self.wino.input_transform), self.tile
        per_tile = 2 * t * c_in + t * c_out + m * m * c_out
        limit = config.sizes().winograd_band_bytes if limit is None else limit
        return row_bands(tile_count(out_shape[0], m),
                         per_tile * tile_count(out_shape[1], m) * self.dtype.itemsize, limit)

    def buffer(self, shape, slot):
        return backend.workspace(self.xp, self.dtype, math.prod(shape),
                                 "winograd " + slot).reshape(shape)
