"""Input: tops that the user fills (Caffe's InputLayer), shaped by input_param.shape."""
from unetcore.layer import Layer, register


@register
class InputLayer(Layer):
    type = "Input"
    exact_bottoms = 0
    min_tops = 1

    def setup(self, bottom, top):
        shapes = self.param.input_param.shape
        if len(shapes) not in (1, len(top)):
            raise self.error(f"input_param gives {len(shapes)} shapes for {len(top)} tops; "
                             "give one shape, or one per top")
        for i, t in enumerate(top):
            dims = tuple(shapes[0 if len(shapes) == 1 else i].dim)
            if any(d < 0 for d in dims):
                raise self.error(f"top '{self.param.top[i]}' has a negative dim in {dims}")
            t.reshape(dims)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass
