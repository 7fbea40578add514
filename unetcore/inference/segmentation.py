"""Segment a TIFF image or stack with a deploy net: the workflow behind `unetcore segment` and
`unetcore test`, callable from Python.

    net = deploy_net("prototxt/unet-deploy.prototxt", "w.caffemodel.h5", None, None)
    images = read_inputs("test-volume.tif", net)
    choose_tile(net, "prototxt/unet-deploy.prototxt", [im.shape for im in images])
    probabilities = segment_images(net, images)           # (slices, classes, H, W)
    labels = class_labels(probabilities)

A 2-d net segments each slice of a stack; a 3-d net segments the stack as one volume, and
its probabilities are returned slice by slice all the same, so that labels are written and
scored as a stack.
"""
import numpy as np

from unetcore.data.stacks import normalize_grey, read_tiff
from unetcore.inference.deploy import square_input
from unetcore.inference.tiling import (as_channel_images, as_channel_volume, auto_tile,
                                       axis_geometry, segment, softmax, tile_origins,
                                       tiles_per_batch)

DEFAULT_MEMORY_MB = 1024     # activations per forward; several tiles are batched when they fit


def is_3d(net):
    """Whether the net's image input is a volume (N, C, D, H, W)."""
    return len(net.blobs[net.image_input].shape) == 5


def read_inputs(path, net, scale=0.0, mean=0.0, bits=None):
    """The TIFF at `path` as the net's inputs, grey values (v - mean) * scale (scale 0: to
    [0, 1] by the bit depth): a 2-d net's images (slices, C, H, W), or for a 3-d net the
    stack as one volume, (1, C, D, H, W)."""
    channels = net.blobs[net.image_input].shape[1]
    grey = normalize_grey(read_tiff(path, "image"), scale, mean, path, bits)
    if is_3d(net):
        return as_channel_volume(grey, channels, path)[None]
    return as_channel_images(grey, channels, path)


def choose_tile(net, source, image_shapes, memory_mb=DEFAULT_MEMORY_MB):
    """Reshape a 2-d net to the tile with the fewest multiply-adds for images of these shapes
    whose blobs fit `memory_mb` (tiling.auto_tile); a 3-d net keeps its prototxt's tile.
    Returns a sentence that says which tile and why."""
    if is_3d(net):
        shape = "x".join(map(str, net.blobs[net.image_input].shape[2:]))
        return f"tile {shape}: the prototxt's input shape (a 3-d net's tile)"
    chosen = auto_tile(net, image_shapes, memory_mb * 2 ** 20)
    square_input(net, source, chosen)
    return (f"tile {chosen} x {chosen}: the fewest multiply-adds for these images within "
            f"--memory {memory_mb} MiB (--tile sets another)")


def segment_images(net, images, memory_mb=DEFAULT_MEMORY_MB, average_mirror=False,
                   progress=None):
    """Class probabilities (slices, classes, H, W) of the images, by overlap-tile at the
    net's current tile, batching as many tiles per forward as fit `memory_mb`; `progress(n)`
    is called as tiles are done."""
    steps = [step for _, _, _, step in axis_geometry(net, net.image_input, net.outputs[0])]
    count = sum(len(tile_origins(im.shape[-len(steps):], steps)) for im in images)
    batch = tiles_per_batch(net, net.image_input, memory_mb * 2 ** 20, count)
    probs = np.stack([softmax(segment(net, im, batch, progress, average_mirror))
                      for im in images])
    return probs[0].swapaxes(0, 1) if is_3d(net) else probs


def class_labels(probabilities):
    """The most probable class of each pixel, uint8; with two classes 0 and 255, as the ISBI
    masks are written."""
    labels = probabilities.argmax(axis=1).astype(np.uint8)
    if probabilities.shape[1] == 2:
        labels *= 255
    return labels
