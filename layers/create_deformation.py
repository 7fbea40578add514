"""CreateDeformation (caffe_unet): random sampling maps for data augmentation.

Top: (batch, ny, nx, 2): for each output pixel, the (y, x) position it reads in the input;
feed it to ApplyDeformation. With nz > 0 (caffe_unet's 3-d form, ncomponents 3) the top is
(batch, nz, ny, nx, 3), the (z, y, x) positions of a volume tile; the vector fields then take
one value per axis (z, y, x) and three rotation angles. unetcore.data.deformation builds
each map: an elastic field (caffe_unet's B-spline on control points
random_elastic_grid_spacing px apart with
random_elastic_deform_magnitude px, or the paper's grid with unetcore's own deform_std and
grid_points), then random mirroring (random_mirror_flag), rotation (random_rotate_from..to,
degrees) and offset (random_offset_from..to, px) about the centre of the input.

The optional bottom is the input to deform (its size places the centre), or, with
random_offset_range_from_pdf / random_offset_range_from_ignore_label, a (N, 1, H, W) map that
chooses where the tile's centre lands: a position drawn with probability proportional to the
map, or uniformly among the pixels whose label is not that ignore label.
random_offset_range_from_in_blob_shape draws it uniformly over the bottom.

Differences from caffe_unet, on purpose: its random_mirror_flag draws a flip but never applies
it (create_deformation_layer.cpp at e9ff07f); here the flip is applied, as the field's
documentation says. The random numbers are NumPy's, not Caffe's. caffe_unet also accepts
nz > 0 with 2 components (a 2-d map repeated on every slice); that form is refused here.
"""
import math

import numpy as np

from unetcore.data import deformation as deform
from unetcore.layer import Layer, register


@register
class CreateDeformationLayer(Layer):
    type = "CreateDeformation"
    max_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.param.create_deformation_param
        self.shape = (p.nz, p.ny, p.nx) if p.nz > 0 else (p.ny, p.nx)
        if p.ny <= 0 or p.nx <= 0 or p.nz < 0:
            raise self.error(f"needs ny > 0 and nx > 0 (and nz >= 0), got nz {p.nz}, "
                             f"ny {p.ny}, nx {p.nx}")
        if p.ncomponents != len(self.shape):
            axes = "(z, y, x) with nz > 0" if p.nz > 0 else "(y, x) in 2-d"
            raise self.error(f"ncomponents must be {len(self.shape)} {axes}, got {p.ncomponents}")
        try:
            deform.check_parameters(p, len(self.shape))
        except ValueError as err:
            raise self.error(str(err)) from None
        modes = [p.random_offset_range_from_in_blob_shape, p.random_offset_range_from_pdf,
                 p.random_offset_range_from_ignore_label > 0]
        if sum(modes) > 1:
            raise self.error("give at most one of random_offset_range_from_in_blob_shape, "
                             "random_offset_range_from_pdf, random_offset_range_from_ignore_label")
        if any(modes) and not bottom:
            raise self.error("a random_offset_range_from_* mode needs a bottom to draw from")

    def reshape(self, bottom, top):
        p = self.param.create_deformation_param
        batch = bottom[0].shape[0] if bottom else p.batch_size
        top[0].reshape((batch, *self.shape, len(self.shape)))

    def forward(self, bottom, top):
        p, axes = self.param.create_deformation_param, len(self.shape)
        source = bottom[0].shape[-axes:] if bottom else self.shape
        for n in range(top[0].shape[0]):
            shift = self.drawn_position(bottom[0], n) if bottom else (0.0,) * axes
            coords = deform.deformation_map(self.rng, p, self.shape, source, shift, self.xp)
            top[0].data[n] = self.xp.moveaxis(coords, 0, -1)

    def drawn_position(self, blob, n):
        """The random_offset_range_from_* offset: a drawn pixel position of `blob` minus
        the centre (n - 1) / 2 per axis, as caffe_unet adds it; zeros when no mode is set."""
        p, sizes = self.param.create_deformation_param, blob.shape[-len(self.shape):]
        if p.random_offset_range_from_in_blob_shape:
            position = [self.rng.integers(size) for size in sizes]
        elif p.random_offset_range_from_pdf or p.random_offset_range_from_ignore_label:
            position = np.unravel_index(self.draw_index(blob, n), sizes)
        else:
            return (0.0,) * len(sizes)
        return tuple(float(i) - (size - 1) / 2.0 for i, size in zip(position, sizes))

    def draw_index(self, blob, n):
        """A flat pixel index drawn with probability proportional to the pdf (or to 'label is
        not the ignore label'), where the bottom lives: one scalar read on a GPU."""
        p, xp = self.param.create_deformation_param, self.xp
        if blob.count != blob.shape[0] * math.prod(blob.shape[-len(self.shape):]):
            shape = "(N, 1, D, H, W)" if len(self.shape) == 3 else "(N, 1, H, W)"
            raise self.error(f"random_offset_range_from_* needs a one-channel bottom "
                             f"{shape}, got {blob.shape}")
        values = blob.data[n].reshape(-1)
        if p.random_offset_range_from_ignore_label:
            values = (values.astype(int) != p.random_offset_range_from_ignore_label)
        cdf = xp.cumsum(values, dtype=float)
        index = int(xp.searchsorted(cdf, cdf[-1] * self.rng.random(), side="right"))
        if index >= values.size:
            raise self.error(f"item {n} of bottom '{self.bottom_name(0)}' has no pixel to draw "
                             "(its probabilities sum to 0, or every label is ignored)")
        return index
