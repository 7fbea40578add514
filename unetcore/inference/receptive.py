"""The receptive field of an output pixel: which input pixels it depends on, found by
propagating index intervals backwards through the net, layer by layer, one axis at a time.

An output pixel i of a layer reads an interval of its bottom:

    convolution, pooling (kernel k, stride s, pad p, dilation d):  [i s - p, i s - p + d (k - 1)]
    deconvolution (its adjoint):  the j with j s - p <= i <= j s - p + d (k - 1)
    crop by offset o, and a Concat that crops its larger bottoms:  [i + o, i + o]
    pointwise layers (ReLU, Dropout, Softmax, Split, ...):          [i, i]

A blob read by several layers needs the union (the hull) of what they need. In the U-Net
the answer depends on where the pixel sits on the pooling grid: pooling halves the
resolution, and an up-convolution's output pixels read one input pixel or its neighbour
depending on their parity. So the field has two sizes, and it is not centred on the pixel.
"""
import math

# Layer types that leave spatial positions where they are.
POINTWISE = {"ReLU", "Dropout", "Softmax", "SoftmaxWithLoss", "Split", "Eltwise",
             "ValueTransformation", "ValueAugmentation", "Accuracy"}


def needed_interval(layer, bottom_index, bottom_shape, top_shape, interval, axis):
    """The interval of bottom `bottom_index` (along spatial `axis`) that the top's `interval`
    reads, or None if that bottom gives no values to it (a crop's size reference)."""
    lo, hi = interval
    if layer.type in POINTWISE:
        return lo, hi
    if layer.type == "Convolution":
        g = layer.geom
        s, p, d, k = g.stride[axis], g.pad[axis], g.dilation[axis], g.kernel[axis]
        return lo * s - p, hi * s - p + d * (k - 1)
    if layer.type == "Pooling":
        s, p, k = layer.stride[axis], layer.pad[axis], layer.kernel[axis]
        return lo * s - p, hi * s - p + k - 1
    if layer.type == "Deconvolution":
        g = layer.geom
        s, p, d, k = g.stride[axis], g.pad[axis], g.dilation[axis], g.kernel[axis]
        return math.ceil((lo + p - d * (k - 1)) / s), (hi + p) // s
    if layer.type == "Crop":
        if bottom_index == 1:
            return None
        offset = layer.window[2 + axis].start
        return lo + offset, hi + offset
    if layer.type == "Concat":
        offset = (bottom_shape[2 + axis] - top_shape[2 + axis]) // 2
        return lo + offset, hi + offset
    raise ValueError(f"layer '{layer.name}' ({layer.type}): no receptive-field rule")


def receptive_field(net, position, output=None, input_name=None):
    """(first, last) input pixel per spatial axis that output pixel `position` (y, x) of blob
    `output` depends on."""
    output = output or net.outputs[0]
    input_name = input_name or net.image_input
    need = {output: [(p, p) for p in position]}
    for i in reversed(range(len(net.layers))):
        layer, spec = net.layers[i], net.specs[i]
        wanted = [need.get(name) for name in spec.tops]
        if not any(wanted):
            continue
        for j, (name, blob) in enumerate(zip(spec.bottoms, net.bottom_vecs[i])):
            for top_name, interval, top in zip(spec.tops, wanted, net.top_vecs[i]):
                if interval is None or len(blob.shape) != 4:
                    continue
                reads = [needed_interval(layer, j, blob.shape, top.shape, interval[a], a)
                         for a in range(2)]
                if reads[0] is None:
                    continue
                old = need.get(name)
                need[name] = reads if old is None else [
                    (min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(old, reads)]
    return need[input_name]


def field_sizes(net, grid=None):
    """{size of the field per axis: [positions mod the pooling grid that have it]} along y,
    for the output pixels 0..grid-1 of the first row: the field's size by grid position."""
    from unetcore.inference.tiling import pooling_grid
    grid = grid or pooling_grid(net)
    sizes = {}
    for position in range(grid):
        lo, hi = receptive_field(net, (position, position))[0]
        sizes.setdefault(hi - lo + 1, []).append(position)
    return sizes
