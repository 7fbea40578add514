"""Overlap-tile segmentation (Ronneberger et al. 2015, Fig. 2).

A U-Net's output is smaller than its input by a margin on each side (92 px for the 2015
net: 572 -> 388). To segment an image of any size, extend it by mirroring, cut input tiles
whose *outputs* tile the image, run the net on each tile and stitch the outputs.

Tiles start at multiples of `step`, a multiple of the net's total pooling stride (16 for
depth 4, as 2^depth): then every tile sees the max-pool grid where a single pass over the
whole mirrored image would, and the stitched result equals that single pass exactly. The
output size (388) is not such a multiple, so tiles overlap slightly: step = 384.

Everything holds per spatial axis, so a 3-d net tiles a volume the same way: in z, y and x,
each axis with its own tile, margin and step (a net that pools 1x2x2 on its first levels
has a finer pooling grid in z than in y and x).
"""
import itertools
import math

import numpy as np

from unetcore.backend import to_numpy
from unetcore.errors import DataError, NetError, UnetcoreError
from unetcore.memory import require_bytes
from unetcore.sizes import misaligned_pools
from unetcore.tools.timing import net_macs


def pooling_grid(net, axis=-1):
    """The total stride of the pooling layers on the contracting path along one spatial axis
    (2^depth where every level pools 2x2)."""
    grid = 1
    for layer in net.layers:
        if layer.type == "Pooling":
            grid *= int(layer.stride[axis])
    return grid


def axis_geometry(net, input_name, output_name):
    """(tile, output, margin, step) of the net at its current input size, one per spatial
    axis."""
    tiles, outs = net.blobs[input_name].shape[2:], net.blobs[output_name].shape[2:]
    geometry = []
    for axis, (tile, out) in enumerate(zip(tiles, outs)):
        grid = pooling_grid(net, axis)
        step = grid * (out // grid)
        if step == 0:
            raise NetError(f"a tile of {tile} gives an output of {out} px, less than the "
                           f"pooling grid of {grid}; use a larger --tile")
        geometry.append((tile, out, (tile - out) // 2, step))
    return geometry


def tile_geometry(net, input_name, output_name):
    """(tile, output, margin, step) of a net with square tiles, read on its last axis."""
    return axis_geometry(net, input_name, output_name)[-1]


def mirror_pad(image, before, after):
    """Mirror-extend the last len(after) axes (reflection about the border pixels, any
    width) by `before` (one width for all, or one per axis) and after[i]."""
    before = before if isinstance(before, (tuple, list)) else (before,) * len(after)
    pad = [(0, 0)] * (image.ndim - len(after)) + list(zip(before, after))
    return np.pad(image, pad, mode="reflect")


def tile_origins(shape, steps):
    """The tiles' origins on a grid of `steps` covering `shape`, in scan order."""
    return list(itertools.product(*(range(0, n, s) for n, s in zip(shape, steps))))


def mirror_axes(axes):
    """The flips of average_mirror: every non-empty set of the last `axes` axes."""
    spatial = range(-axes, 0)
    return [flip for r in range(1, axes + 1) for flip in itertools.combinations(spatial, r)]


def forward_tiles(net, tiles, average_mirror=False):
    """The net's scores of a batch of tiles; with average_mirror, the mean over the tiles and
    their mirror images (flipped in x, in y, in both), each flipped back (as the 2015
    release's segmentation and caffe_unet's tiled_predict do)."""
    input_name, output_name = net.image_input, net.outputs[0]
    scores = to_numpy(net.forward(**{input_name: tiles})[output_name]).copy()
    if average_mirror:
        flips = mirror_axes(tiles.ndim - 2)
        for axes in flips:
            flipped = np.flip(tiles, axes).copy()
            scores += np.flip(to_numpy(net.forward(**{input_name: flipped})[output_name]), axes)
        scores /= len(flips) + 1
    if not np.isfinite(scores).all():           # one check covers the mirrored passes too
        raise non_finite_error(net, tiles)
    return scores


def non_finite_error(net, tiles):
    """The error for scores that are not finite, naming where they first appear: the input,
    or the first layer whose output is not finite (forward once more, keeping every blob)."""
    if not np.isfinite(tiles).all():
        return DataError("the image holds NaN or infinite values after scaling; check the image "
                         "and --scale / --mean")
    net.release_activations = False
    net.forward(**{net.image_input: tiles})
    for layer, spec, top in zip(net.layers, net.specs, net.top_vecs):
        for name, blob in zip(spec.tops, top):
            if not np.isfinite(to_numpy(blob.data)).all():
                return NetError(f"the net's output is not finite: the first NaN or infinity is in "
                                f"top '{name}' of layer '{layer.name}' ({layer.type}); check the "
                                "weights and the input's scaling")
    return NetError("the net's output is not finite")


def segment(net, image, batch=1, progress=None, average_mirror=False, padding="mirror"):
    """Scores (classes, *spatial) of one (channels, *spatial) image by overlap-tile: an
    (H, W) image for a 2-d net, a (D, H, W) volume for a 3-d one. padding "zero" extends
    the image by zeros instead of mirroring it (a Fiji plugin model's unet_param/padding)."""
    geometry = axis_geometry(net, net.image_input, net.outputs[0])
    spatial = image.shape[-len(geometry):]
    counts = tuple(math.ceil(n / step) for n, (_, _, _, step) in zip(spatial, geometry))
    margins = tuple(margin for _, _, margin, _ in geometry)
    after = tuple((count - 1) * step + tile - n - margin
                  for n, count, (tile, _, margin, step) in zip(spatial, counts, geometry))
    require_canvas(net, image, [n + m + a for n, m, a in zip(spatial, margins, after)])
    padded = mirror_pad(image, margins, after) if padding == "mirror" else \
        np.pad(image, [(0, 0)] + list(zip(margins, after)))
    scores = segment_canvas(net, padded, counts, batch, progress, average_mirror)
    return scores[(slice(None),) + tuple(slice(0, n) for n in spatial)]


def require_canvas(net, image, canvas_shape):
    """Refuse, in one line, an image whose mirrored canvas and scores (float32) would not
    fit in memory (a 3-d net's volume is one image)."""
    classes = net.blobs[net.outputs[0]].shape[1]
    voxels = math.prod(canvas_shape)
    size = "x".join(map(str, image.shape[1:]))
    require_bytes(4 * voxels * (image.shape[0] + 2 * classes),
                  f"segmenting the {size} image in memory (its mirrored canvas and scores; "
                  "-o OUT.zarr segments it chunk by chunk)")


def segment_canvas(net, canvas, counts, batch=1, progress=None, average_mirror=False):
    """Scores (classes, *(count step)) of the tiles of a mirrored canvas, `counts` tiles per
    axis ((rows, cols) in 2-d), the canvas (count - 1) step + tile long on each axis, and tile
    (r, c) at (r step, c step)."""
    geometry = axis_geometry(net, net.image_input, net.outputs[0])
    tiles_shape = tuple(tile for tile, _, _, _ in geometry)
    steps = tuple(step for _, _, _, step in geometry)
    classes = net.blobs[net.outputs[0]].shape[1]
    scores = np.empty((classes,) + tuple(c * s for c, s in zip(counts, steps)), np.float32)
    origins = tile_origins(scores.shape[1:], steps)
    for start in range(0, len(origins), batch):
        group = origins[start:start + batch]
        tiles = np.stack([canvas[(slice(None),) + region(origin, tiles_shape)]
                          for origin in group])
        output = forward_tiles(net, tiles, average_mirror)
        for origin, result in zip(group, output):
            scores[(slice(None),) + region(origin, steps)] = result[
                (slice(None),) + region((0,) * len(steps), steps)]
        if progress is not None:
            progress(len(group))
    return scores


def region(origin, sizes):
    """The slices of a box of `sizes` at `origin`."""
    return tuple(slice(o, o + n) for o, n in zip(origin, sizes))


def as_channel_images(stack, channels, path="image"):
    """(slices, channels, H, W) from a 2-d image, a stack, or channel-first images."""
    if stack.ndim == 3 and stack.shape[-1] in (3, 4) and channels != stack.shape[-1] \
            and min(stack.shape[:2]) > 4:
        raise DataError(f"{path}: shape {stack.shape} looks like an RGB(A) image (H, W, "
                        f"{stack.shape[-1]}), but the net takes {channels}-channel images; "
                        "convert it to grey, or give channels first")
    if channels == 1 and stack.ndim in (2, 3):
        return stack.reshape((-1, 1) + stack.shape[-2:])
    if channels > 1 and stack.ndim in (3, 4) and stack.shape[-3] == channels:
        return stack.reshape((-1, channels) + stack.shape[-2:])
    raise DataError(f"{path}: the net takes {channels}-channel images, but the image has shape "
                    f"{stack.shape}; give (H, W) or (slices, H, W) for one channel, "
                    "(C, H, W) or (slices, C, H, W) for C channels")


def as_channel_volume(stack, channels, path="image"):
    """(channels, D, H, W) from a grey (D, H, W) volume, or a (D, C, H, W) one (ImageJ's
    order) for a net of C channels. A grey 2-d image is a volume of one slice."""
    if channels == 1 and stack.ndim in (2, 3):
        return stack.reshape((1, -1) + stack.shape[-2:])
    if channels > 1 and stack.ndim == 4 and stack.shape[1] == channels:
        return stack.swapaxes(0, 1)
    raise DataError(f"{path}: the 3-d net takes {channels}-channel volumes, but the image has "
                    f"shape {stack.shape}; give (slices, H, W) for one channel, "
                    "(slices, C, H, W) for C channels")


def softmax(scores, axis=0):
    shifted = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def tiles_per_batch(net, input_name, budget_bytes, tiles):
    """How many tiles fit in `budget_bytes` of blobs (data and diffs are not both needed)."""
    per_tile = tile_bytes(net, input_name)
    return int(max(1, min(tiles, budget_bytes // max(per_tile, 1))))


def tile_bytes(net, input_name):
    """Bytes of one tile's blobs (data only: segmentation keeps no diffs)."""
    return sum(b.count for b in net.blobs.values()) * net.dtype.itemsize / \
        max(net.blobs[input_name].shape[0], 1)


def segmentation_macs(net, image_shapes):
    """Multiply-adds of the convolutions to segment images of `image_shapes` ((..., H, W)
    each) with the net's current tile: tiles times the work of one, the tiles that hang over
    the image's edge included."""
    steps = [step for _, _, _, step in axis_geometry(net, net.image_input, net.outputs[0])]
    per_tile = net_macs(net) / max(net.blobs[net.image_input].shape[0], 1)
    tiles = sum(len(tile_origins(shape[-len(steps):], steps)) for shape in image_shapes)
    return tiles * per_tile


def auto_tile(net, image_shapes, budget_bytes):
    """The valid square tile that segments images of `image_shapes` with the fewest
    multiply-adds, among those whose blobs fit `budget_bytes`; the net is left reshaped to it.

    A larger tile wastes less of its input on the margin, but one that hangs far over the
    image's edge computes outputs that are thrown away: counting both, the multiply-adds
    rank the tiles as the measured times do (docs/benchmarks.md). Every size is tried, from
    the smallest valid one up to the first whose output covers the largest image or whose
    blobs outgrow the budget. Where even the smallest valid tile outgrows it, that one."""
    largest = max(max(shape[-2:]) for shape in image_shapes)
    # an output of `largest` needs at most largest + the margins + a pooling grid of input,
    # and the net's current tile is larger than its margins: twice it is room enough
    upper = largest + 2 * net.blobs[net.image_input].shape[-1]
    best = None
    for size in range(1, upper + 1):
        fits = reshaped_to(net, size)
        if fits is None:
            continue
        if best is not None and fits[1] > budget_bytes:
            break
        macs = segmentation_macs(net, image_shapes)
        if best is None or macs < best[1]:
            best = (size, macs)
        if net.blobs[net.outputs[0]].shape[-1] >= largest:
            break
    if best is None:
        raise NetError("no input size up to the image's fits the net")
    reshaped_to(net, best[0])
    return best[0]


def reshaped_to(net, size):
    """(size, bytes of a tile) with the net reshaped to a size x size input, or None where
    the size does not pass every layer, misaligns a pool or gives less than a pooling grid."""
    blob = net.blobs[net.image_input]
    blob.reshape(blob.shape[:-2] + (size, size))
    try:
        net.reshape()
        tile_geometry(net, net.image_input, net.outputs[0])
    except UnetcoreError:
        return None
    if misaligned_pools(net):
        return None
    return size, tile_bytes(net, net.image_input)
