"""ValueAugmentation (caffe_unet): a random smooth grey-value curve per item and channel.

y = LUT(x) with a lookup table drawn for each (item, channel) by
unetcore.data.value_augmentation: black and white levels drawn from black_from..black_to
and white_from..white_to, control points inserted n_control_point_insertions times with
slopes in slope_min..slope_max, smoothed to lut_size entries. Grey values are expected in
[0, 1]; values outside read the LUT's ends. Defaults are caffe_unet's. Like caffe_unet's,
the layer passes no gradient: it augments data on the way into a net.
"""
from unetcore.data import value_augmentation as values
from unetcore.layer import Layer, register


@register
class ValueAugmentationLayer(Layer):
    type = "ValueAugmentation"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        self.matrix = lut_setup(self, self.param.value_augmentation_param)

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        p, x, y = self.param.value_augmentation_param, bottom[0].data, top[0].data
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                lut = values.random_lut(self.rng, p, self.matrix)
                y[n, c] = values.apply_lut(lut, x[n, c], self.xp)

    def allow_force_backward(self, bottom_index):
        return False


def lut_setup(layer, p):
    """Check a ValueAugmentationParameter as caffe_unet does; the LUT matrix."""
    if p.lut_size < 2:
        raise layer.error(f"lut_size must be at least 2, got {p.lut_size}")
    if p.n_control_point_insertions < 0:
        raise layer.error("n_control_point_insertions must be >= 0")
    if not (p.slope_min <= p.slope_max and p.black_from <= p.black_to <= p.white_from
            <= p.white_to):
        raise layer.error("needs slope_min <= slope_max and black_from <= black_to <= "
                          "white_from <= white_to")
    rate = values.failure_rate(p)
    if rate > values.MAX_FAILURE_RATE:
        raise layer.error(f"{rate:.0%} of the drawn curves cannot keep the slopes within "
                          f"{p.slope_min}..{p.slope_max} (caffe_unet allows 50%); widen the "
                          "slopes, or draw fewer control points")
    return values.lut_matrix(2 ** p.n_control_point_insertions + 1, p.lut_size)
