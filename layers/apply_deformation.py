"""ApplyDeformation (caffe_unet's type name): resample a blob at the positions of a map.

Bottoms: the blob to deform (N, C, H, W) and the map of CreateDeformation (N, ny, nx, 2).
Top: (N, C, ny, nx). In 3-d: (N, C, D, H, W), a (N, nz, ny, nx, 3) map, top
(N, C, nz, ny, nx). interpolation: "linear", "cubic" (grey values) or "nearest" (labels,
weights); extrapolation: "mirror" or "zero". With output_shape_from naming a blob of the net
made before this layer (caffe_unet's form, as its label layers name the score blob), or a
third bottom (unetcore's own form), the top has that blob's spatial size, read from the
centre of the map (a label tile is the centre of its image tile).
"""
from unetcore.backend import ndimage_for
from unetcore.data.deformation import center_crop
from unetcore.layer import Layer, register

ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}
MODES = {"mirror": "mirror", "zero": "constant"}


@register
class ApplyDeformationLayer(Layer):
    type = "ApplyDeformation"
    min_bottoms = 2
    max_bottoms = 3
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.param.apply_deformation_param
        if p.interpolation not in ORDERS:
            raise self.error(f"interpolation '{p.interpolation}' is not one of "
                             f"{', '.join(ORDERS)}")
        if p.extrapolation not in MODES:
            raise self.error(f"extrapolation '{p.extrapolation}' is not one of "
                             f"{', '.join(MODES)}")
        self.shape_blob = self.shape_source(p.output_shape_from, bottom)
        self.order, self.mode = ORDERS[p.interpolation], MODES[p.extrapolation]

    def shape_source(self, name, bottom):
        """The blob whose spatial size the top takes, or None for the map's own size."""
        if len(bottom) == 3:
            if name and name != self.bottom_name(2):
                raise self.error(f"output_shape_from '{name}' differs from the third bottom "
                                 f"'{self.bottom_name(2)}'")
            return bottom[2]
        if not name:
            return None
        if name not in self.net_blobs:
            raise self.error(f"output_shape_from '{name}' names no blob made before this layer; "
                             f"known: {', '.join(self.net_blobs) or 'none'}")
        return self.net_blobs[name]

    def reshape(self, bottom, top):
        data, field = bottom[0].shape, bottom[1].shape
        axes = len(data) - 2
        if len(field) != axes + 2 or field[-1] != axes or field[0] != data[0]:
            form = "(N, nz, ny, nx, 3)" if axes == 3 else "(N, ny, nx, 2)"
            raise self.error(f"bottom '{self.bottom_name(1)}' must be a {form} map for the "
                             f"{data[0]} item(s) of '{self.bottom_name(0)}' {data}, got {field}")
        grid = field[1:-1]
        size = grid if self.shape_blob is None else self.shape_blob.shape[-axes:]
        if any(s > f or (f - s) % 2 for s, f in zip(size, grid)):
            raise self.error(f"an output of {'x'.join(map(str, size))} must be the centre of "
                             f"the {'x'.join(map(str, grid))} map: as large at most, and "
                             "smaller by an even number on each axis")
        top[0].reshape(data[:2] + tuple(size))

    def forward(self, bottom, top):
        size = top[0].shape[2:]
        data, field = bottom[0].data, bottom[1].data
        interpolate = ndimage_for(self.xp).map_coordinates
        for n in range(data.shape[0]):
            coords = center_crop(self.xp.moveaxis(field[n], -1, 0), size)
            for c in range(data.shape[1]):
                top[0].data[n, c] = interpolate(data[n, c], coords, order=self.order,
                                                mode=self.mode)

    def allow_force_backward(self, bottom_index):
        return False
