"""Valid input sizes of a net that pools and then upsamples (the U-Net).

A max-pool with stride s sees a size that its windows do not tile exactly when
(size - kernel) % s != 0: Caffe then rounds up and the pooled map no longer lines up with
the skip connection that is cropped and concatenated on the way up. For the 2015 U-Net
this leaves the sizes 16k + 60 (k >= 8): 572 -> 388 is the paper's tile.
"""
from .errors import NetError


def misaligned_pools(net):
    """(layer name, H, W) of every Pooling layer whose windows do not tile its input."""
    bad = []
    for layer, bottom in zip(net.layers, net.bottom_vecs):
        if layer.type != "Pooling" or layer.global_pooling:
            continue
        for size, k, s, p in zip(bottom[0].shape[2:], layer.kernel, layer.stride, layer.pad):
            if (size + 2 * p - k) % s:
                bad.append((layer.name, *bottom[0].shape[2:]))
                break
    return bad


def _fits(net, input_name, size):
    """True when a square input of `size` passes every layer and every pool is aligned."""
    blob = net.blobs[input_name]
    blob.reshape(blob.shape[:-2] + (size, size))
    try:
        net.reshape()
    except NetError:
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
    name, h, w = bad[0]
    size = net.blobs[input_name].shape[-1]
    near = nearest_valid_sizes(net, input_name, size)
    raise NetError(f"input size {net.blobs[input_name].shape[-2]}x{size} makes pooling layer "
                   f"'{name}' see {h}x{w}, which its windows do not tile, so the skip connections "
                   f"would be misaligned; nearest valid sizes: "
                   f"{', '.join(map(str, near)) or 'none within 256'}")
