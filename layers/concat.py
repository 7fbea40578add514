"""Concat (Caffe's ConcatLayer): stack the bottoms along `axis` (channels by default).

The bottoms must agree on every other axis, except that, as in caffe_unet, a bottom
larger than the first one on an axis after `axis` is center-cropped to the first one's
size: so caffe_unet-style nets that concatenate without Crop layers load too.
Backward: each bottom gets its slice of dy (zero outside its center crop).
"""
from unetcore.layer import Layer, register
from unetcore.ops import parallel


@register
class ConcatLayer(Layer):
    type = "Concat"
    overwrites_tops = True
    min_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom, top):
        p = self.param.concat_param
        first = bottom[0].shape
        axis = p.axis if p.has("axis") or not p.has("concat_dim") else p.concat_dim
        self.axis = axis + len(first) if axis < 0 else axis
        if not 0 <= self.axis < len(first):
            raise self.error(f"axis {p.axis} is out of range for bottoms of shape {first}")
        self.windows = [self.center_window(b.shape, first, name)
                        for b, name in zip(bottom, map(self.bottom_name, range(len(bottom))))]
        total = sum(b.shape[self.axis] for b in bottom)
        top[0].reshape(first[:self.axis] + (total,) + first[self.axis + 1:])

    def center_window(self, shape, first, name):
        if len(shape) != len(first):
            raise self.error(f"bottom '{name}' has shape {shape}, the first bottom {first}")
        window = []
        for i, (size, want) in enumerate(zip(shape, first)):
            if i == self.axis or size == want:
                window.append(slice(0, size))
            elif i > self.axis and size > want:
                start = (size - want) // 2
                window.append(slice(start, start + want))
            else:
                raise self.error(f"bottom '{name}' has shape {shape}, which does not fit the "
                                 f"first bottom {first} on axis {i}")
        return tuple(window)

    def forward(self, bottom, top):
        y, start = top[0].data, 0
        for b, window in zip(bottom, self.windows):
            n = b.shape[self.axis]
            parallel.copy(y[(slice(None),) * self.axis + (slice(start, start + n),)],
                          b.data[window])
            start += n

    def backward(self, top, propagate_down, bottom):
        dy, start = top[0].diff, 0
        for b, window, down in zip(bottom, self.windows, propagate_down):
            n = b.shape[self.axis]
            if down:
                dx = b.diff
                if any(s.stop - s.start != size for s, size in zip(window, b.shape)):
                    dx[...] = 0
                dx[window] = dy[(slice(None),) * self.axis + (slice(start, start + n),)]
            start += n
