"""Convolution engine "slices": a kernel of extent 1 along every axis but the last two, with
stride 1, no padding and no dilation along those axes: caffe_unet's 1x3x3 convolutions on
(N, C, D, H, W) volumes.

Such a convolution never mixes slices: output slice z is the 2-d convolution of input
slice z, with the same weights for every slice. Its weight matrix (C_out, C_in * 1 * kh * kw)
is the 2-d layer's (C_out, C_in * kh * kw). So each of the three products runs, slice by
slice, the products of the 2-d engine that "auto" picks for one (C, H, W) slice (flat,
Winograd, correlation), on the slices' strided (C, H, W) views, and the 3-d layer is as
fast per slice as the 2-d one.
"""
import copy
import itertools

from unetcore.blob import Blob
from unetcore.layer import layer_class, register_engine

from unetcore.layers.conditions import parsed_geometry
from unetcore.layers.convolution import ConvolutionLayer


def plane_param(param, geom):
    """The LayerParameter of the 2-d convolution of one slice: `param` with the kernel,
    stride, pad and dilation of the last two axes."""
    plane = copy.deepcopy(param)
    conv = plane.convolution_param
    for field, values in (("kernel_size", geom.kernel), ("stride", geom.stride),
                          ("pad", geom.pad), ("dilation", geom.dilation)):
        conv.clear(field)
        for value in values[-2:]:
            conv.set(field, value)
    return plane


def plane_shape(shape):
    """One slice of an (N, C, *leading, H, W) bottom, as a 2-d bottom (1, C, H, W)."""
    return (1, shape[1], *shape[-2:])


@register_engine
class SliceConvolution(ConvolutionLayer):
    engine = "slices"
    priority = 1

    @classmethod
    def can_run(cls, param, bottom_shapes, xp):
        if not bottom_shapes or len(bottom_shapes[0]) < 5:
            return False
        geom = parsed_geometry(param, bottom_shapes, dimensions=(3,))
        return geom is not None and geom.kernel[-2:] != (1, 1) and all(   # 1x1x1: pointwise
            k == 1 and s == 1 and p == 0 and d == 1 for k, s, p, d in
            zip(geom.kernel[:-2], geom.stride[:-2], geom.pad[:-2], geom.dilation[:-2]))

    @classmethod
    def pays(cls, param, bottom_shapes, xp):
        """Where a 2-d engine beats the reference on one slice."""
        geom = parsed_geometry(param, bottom_shapes, dimensions=(3,))
        plane = layer_class(plane_param(param, geom), [plane_shape(bottom_shapes[0])], xp)
        return plane.engine != "reference"

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if getattr(self, "plane_for", None) != plane_shape(bottom[0].shape):
            self.plane_for = plane_shape(bottom[0].shape)
            self.plane = self.plane_layer(bottom[0].shape)

    def plane_layer(self, shape):
        """The 2-d layer that convolves one slice, set up for a (1, C, H, W) bottom; built
        again only when the slices' shape changes. Its own weights are never read: the
        products are given this layer's weight matrices."""
        param = plane_param(self.param, self.geom)
        cls = layer_class(param, [plane_shape(shape)], self.xp)
        plane = cls(param, self.phase, self.dtype, self.xp, self.rng)
        bottom = [Blob(plane_shape(shape), self.dtype, self.xp)]
        top = [Blob((), self.dtype, self.xp)]
        plane.setup(bottom, top)
        plane.reshape(bottom, top)
        return plane

    @staticmethod
    def slices(*arrays):
        """(C, H, W) views of slice after slice of (C, *leading, H, W) arrays (None stays)."""
        leading = arrays[0].shape[1:-2]
        for index in itertools.product(*map(range, leading)):
            yield [None if a is None else a[(slice(None), *index)] for a in arrays]

    def forward_gemm(self, x, w, y):
        for x_z, y_z in self.slices(x, y):
            self.plane.forward_gemm(x_z, w, y_z)

    def backward_image(self, x, dy, w, dw, dx):
        for x_z, dy_z, dx_z in self.slices(x, dy, dx):
            self.plane.backward_image(x_z, dy_z, w, dw, dx_z)

