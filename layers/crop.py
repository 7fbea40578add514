"""Crop (Caffe's CropLayer): cut bottom[0] to the shape of bottom[1] from `axis` on.

Axes before `axis` are kept; axis i >= `axis` is cut to bottom[1].shape[i] starting at
offset[i - axis] (one offset serves every cropped axis; none means 0). Caffe crops
from the given offset, not the center: the U-Net prototxt spells its offsets out.
Backward: dx is zero except in the cropped window, where it is dy.
"""
from unetcore.layer import Layer, register
from unetcore.ops import parallel


@register
class CropLayer(Layer):
    type = "Crop"
    overwrites_tops = True
    exact_bottoms = 2
    exact_tops = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0          # bottom[1] gives only a shape

    def reshape(self, bottom, top):
        p = self.param.crop_param
        src, ref = bottom[0].shape, bottom[1].shape
        if len(src) != len(ref):
            raise self.error(f"bottoms have different numbers of axes: {src} and {ref}")
        axis = p.axis + len(src) if p.axis < 0 else p.axis
        cropped = len(src) - axis
        if len(p.offset) not in (0, 1, cropped):
            raise self.error(f"crop_param gives {len(p.offset)} offsets; give 0, 1 or one per "
                             f"cropped axis ({cropped})")
        self.window = []
        for i, size in enumerate(src):
            if i < axis:
                self.window.append(slice(0, size))
                continue
            offset = p.offset[0] if len(p.offset) == 1 else (p.offset[i - axis] if p.offset else 0)
            if offset + ref[i] > size:
                raise self.error(f"cannot crop axis {i} of '{self.bottom_name(0)}' {src} to "
                                 f"{ref[i]} at offset {offset}: it needs size >= {offset + ref[i]}")
            self.window.append(slice(offset, offset + ref[i]))
        self.window = tuple(self.window)
        top[0].reshape(tuple(s.stop - s.start for s in self.window))

    def forward(self, bottom, top):
        parallel.copy(top[0].data, bottom[0].data[self.window])

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dx = bottom[0].diff
            dx[...] = 0
            dx[self.window] = top[0].diff
