"""ValueTransformation (caffe_unet): y = (x + offset_c) * scale_c, per channel c.

offset and scale are vectors with one value for every channel, or one value for all.
Backward: dx = scale_c * dy.
"""
import numpy as np

from unetcore.layer import Layer, register


@register
class ValueTransformationLayer(Layer):
    type = "ValueTransformation"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p, shape = self.param.value_transformation_param, bottom[0].shape
        self.offset = self.per_channel(list(p.offset.v) or [0.0], shape, "offset")
        self.scale = self.per_channel(list(p.scale.v) or [1.0], shape, "scale")

    def per_channel(self, values, shape, what):
        """The values as a (1, C, 1, ...) array that broadcasts over a blob of `shape`."""
        channels = shape[1]
        if len(values) not in (1, channels):
            raise self.error(f"value_transformation_param.{what} gives {len(values)} values "
                             f"for {channels} channels; give one, or one per channel")
        column = np.broadcast_to(np.asarray(values, dtype=self.dtype), (channels,))
        return self.xp.asarray(column.reshape((1, channels) + (1,) * (len(shape) - 2)))

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = (bottom[0].data + self.offset) * self.scale

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.scale
