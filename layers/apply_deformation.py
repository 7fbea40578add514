"""ApplyDeformation (caffe_unet's type name): resample a blob at the positions of a map.

Bottoms: the blob to deform (N, C, H, W) and the map of CreateDeformation (N, ny, nx, 2).
Top: (N, C, ny, nx). interpolation: "linear", "cubic" (grey values) or "nearest" (labels,
weights); extrapolation: "mirror" or "zero". With output_shape_from naming a third bottom,
the top has that blob's spatial size, read from the centre of the map (a label tile is the
centre of its image tile).
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
        if p.output_shape_from and p.output_shape_from != self.bottom_name(len(bottom) - 1):
            raise self.error(f"output_shape_from '{p.output_shape_from}' must be the layer's "
                             "third bottom")
        self.order, self.mode = ORDERS[p.interpolation], MODES[p.extrapolation]

    def reshape(self, bottom, top):
        data, field = bottom[0].shape, bottom[1].shape
        if len(field) != 4 or field[-1] != 2 or field[0] != data[0]:
            raise self.error(f"bottom '{self.bottom_name(1)}' must be a (N, ny, nx, 2) map "
                             f"for the {data[0]} item(s) of '{self.bottom_name(0)}', got {field}")
        size = bottom[2].shape[-1] if len(bottom) == 3 else field[1]
        top[0].reshape(data[:2] + (size, size))

    def forward(self, bottom, top):
        size = top[0].shape[-1]
        data, field = bottom[0].data, bottom[1].data
        interpolate = ndimage_for(self.xp).map_coordinates
        for n in range(data.shape[0]):
            coords = center_crop(self.xp.moveaxis(field[n], -1, 0), size)
            for c in range(data.shape[1]):
                top[0].data[n, c] = interpolate(data[n, c], coords, order=self.order,
                                                mode=self.mode)

    def allow_force_backward(self, bottom_index):
        return False
