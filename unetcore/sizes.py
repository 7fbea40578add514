"""Valid input sizes of a net that pools and then upsamples (the U-Net).

A max-pool with stride s sees a size that its windows do not tile exactly when
(size - kernel) % s != 0: Caffe then rounds up and the pooled map no longer lines up with
the skip connection that is cropped and concatenated on the way up. For the 2015 U-Net
this leaves the sizes 16k + 60 (k >= 8): 572 -> 388 is the paper's tile.
"""
from unetcore.errors import NetError, UnetcoreError


def misaligned_pools(net):
    """(layer name, *spatial size) of every Pooling layer whose windows do not tile its input."""
    return [(layer.name, *bottom[0].shape[2:]) for layer, bottom in pools(net)
            if any(misaligned(layer, bottom[0].shape, axis)
                   for axis in range(len(bottom[0].shape) - 2))]


def pools(net):
    """(layer, bottom blobs) of the net's windowed Pooling layers."""
    return [(layer, bottom) for layer, bottom in zip(net.layers, net.bottom_vecs)
            if layer.type == "Pooling" and not layer.global_pooling]


def misaligned(layer, shape, axis):
    """Whether a pooling layer's windows do not tile spatial axis `axis` of its bottom."""
    size, k, s, p = shape[2 + axis], layer.kernel[axis], layer.stride[axis], layer.pad[axis]
    return (size + 2 * p - k) % s != 0


def _fits(net, input_name, size):
    """True when a square input of `size` passes every layer, fits in memory and every pool
    is aligned."""
    blob = net.blobs[input_name]
    blob.reshape(blob.shape[:-2] + (size, size))
    try:
        net.reshape()
    except UnetcoreError:           # too small for a layer, or too large for the memory
        return False
    return not misaligned_pools(net)


def valid_sizes(net, input_name, low, high):
    """The square input sizes in [low, high] that the net takes without misalignment."""
    original = net.blobs[input_name].shape
    try:
        return [s for s in range(max(1, low), high + 1) if _fits(net, input_name, s)]
    finally:
        net.blobs[input_name].reshape(original)
        net.reshape()


def nearest_valid_sizes(net, input_name, size, count=2):
    """Up to `count` valid sizes below and above `size`."""
    below = valid_sizes(net, input_name, max(1, size - 256), size - 1)[-count:]
    above = valid_sizes(net, input_name, size + 1, size + 256)[:count]
    return below + above


def check_alignment(net, input_name):
    """Raise a NetError naming the first misaligned pool and the nearest valid sizes."""
    bad = misaligned_pools(net)
    if not bad:
        return
    name, *seen = bad[0]
    shape = net.blobs[input_name].shape[2:]
    if len(shape) == 2:
        near = nearest_valid_sizes(net, input_name, shape[-1])
        nearest = f"nearest valid sizes: {', '.join(map(str, near)) or 'none within 256'}"
    else:
        nearest = "valid sizes per axis: " + "; ".join(
            f"{axis}: {', '.join(map(str, sizes)) or 'none within 64'}"
            for axis, sizes in zip("zyx"[-len(shape):], nearest_sizes_per_axis(net, input_name)))
    raise NetError(f"input size {'x'.join(map(str, shape))} makes pooling layer '{name}' see "
                   f"{'x'.join(map(str, seen))}, which its windows do not tile, so the skip "
                   f"connections would be misaligned; {nearest}")


def _fits_axis(net, input_name, shape, axis, size):
    """True when `shape` with `size` on spatial axis `axis` passes with aligned pools."""
    blob = net.blobs[input_name]
    trial = list(shape)
    trial[axis] = size
    blob.reshape(blob.shape[:2] + tuple(trial))
    try:
        net.reshape()
    except UnetcoreError:           # too small for a layer, or too large for the memory
        return False
    return not any(misaligned(layer, bottom[0].shape, axis) for layer, bottom in pools(net))


def valid_sizes_per_axis(net, input_name, ranges):
    """For each spatial axis, the sizes in its (low, high) range that the net takes on that
    axis (the others at their current size). The axes are independent: each pools on its own."""
    original = net.blobs[input_name].shape
    try:
        return [[s for s in range(max(1, low), high + 1)
                 if _fits_axis(net, input_name, original[2:], axis, s)]
                for axis, (low, high) in enumerate(ranges)]
    finally:
        net.blobs[input_name].reshape(original)
        net.reshape()


def nearest_sizes_per_axis(net, input_name, count=2, reach=64):
    """Up to `count` valid sizes below and above the current one, per spatial axis, within
    `reach` of it."""
    shape = net.blobs[input_name].shape[2:]
    sizes = valid_sizes_per_axis(net, input_name, [(n - reach, n + reach) for n in shape])
    return [[s for s in axis_sizes if s < n][-count:] + [s for s in axis_sizes if s > n][:count]
            for axis_sizes, n in zip(sizes, shape)]
