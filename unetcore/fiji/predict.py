"""caffe_unet's tiled_predict, on unetcore's overlap-tile (src/caffe/util/tiled_predict.cpp).

caffe_unet chooses its tile from one of four options (`caffe_unet_tile`, ported from its
getTiling): an output tile shape (-tile_size, rounded up to a valid one), a number of tiles
(-n_tiles N: among grids of at most N tiles, the one with the most effective tiles, then the
smallest tile), a grid (-n_tiles AxB), or a budget of input pixels (-mem_available_px, and
-gpu_mem_available_MB through the model's mapInputNumPxGPUMemMB table). unetcore runs the net
at that input tile, but places its tiles on the pooling grid, so the scores equal one pass
over the padded image whatever the tile (caffe_unet's step is its output tile, whose phase
to the pooling grid changes from tile to tile).

-average_mirror and -average_rotate average the raw scores of 4 passes over the whole image:
flipped in x, in y and in both (z is never flipped), or rotated by 0, 90, 180 and 270 degrees
in the last two axes, each transformed back.

segment_tiff segments a TIFF as the plugin prepares it: a 2-d model each of its images, a
3-d model its stack as one volume (Z, Y, X), rescaled in z, y and x.
"""
import math

import numpy as np

from unetcore.errors import DataError
from unetcore.inference.tiling import segment

MIRROR_FLIPS = ((), (-1,), (-2,), (-2, -1))     # caffe_unet's passes 0..3 (bit 0 flips x)


# ---------------------------------------------------------------- caffe_unet's tile


def _tile_for_grid(model, shape, grid):
    """(input tile, output tile) of the smallest valid tiles that cover `shape` with `grid`
    tiles per axis: d4a = ceil((ceil(n / g) - padOutput) / downsampleFactor)."""
    d4a = [math.ceil((math.ceil(n / g) - p) / d) for n, g, p, d in
           zip(shape, grid, model.pad_output, model.downsample_factor)]
    return (tuple(d * k + i for d, k, i in zip(model.downsample_factor, d4a, model.pad_input)),
            tuple(d * k + p for d, k, p in zip(model.downsample_factor, d4a, model.pad_output)))


def _effective_tiles(shape, out_tile):
    return math.prod(math.ceil(n / o) for n, o in zip(shape, out_tile))


def tile_for_shape(model, out_tile):
    """-tile_size: the output tile rounded up to a valid one; its input tile."""
    if len(out_tile) != model.n_dims or min(out_tile) < 1:
        raise DataError(f"-tile_size {'x'.join(map(str, out_tile))}: give {model.n_dims} "
                        "positive sizes ([z]xYxX) for this model")
    d4a = [math.ceil((o - p) / d) for o, p, d in
           zip(out_tile, model.pad_output, model.downsample_factor)]
    return tuple(d * k + i for d, k, i in zip(model.downsample_factor, d4a, model.pad_input))


def tile_for_grid(model, shape, grid):
    """-n_tiles AxB[xC]: the smallest tile that covers the image with this grid."""
    if len(grid) == 1:
        grid = grid * model.n_dims
    if len(grid) != model.n_dims or min(grid) < 1:
        raise DataError(f"-n_tiles {'x'.join(map(str, grid))}: give {model.n_dims} positive "
                        "tile counts for this model")
    return _tile_for_grid(model, shape, grid)[0]


def tile_for_count(model, shape, count):
    """-n_tiles N (2-d): among grids of at most N tiles, the one with the most effective
    tiles (tiles that reach into the image), and of those the smallest input tile."""
    _require_2d(model, "-n_tiles N")
    best = None
    for grid in np.ndindex(count, count):
        grid = tuple(g + 1 for g in grid)
        if math.prod(grid) > count:
            continue
        in_tile, out_tile = _tile_for_grid(model, shape, grid)
        rank = (-_effective_tiles(shape, out_tile), math.prod(in_tile))
        if best is None or rank < best[0]:
            best = (rank, in_tile)
    return best[1]


def tile_for_pixels(model, shape, pixels):
    """-mem_available_px P (2-d): of the grids whose input tile has at most P pixels, the one
    with the least input in all (tile pixels times effective tiles), up to caffe_unet's
    largest reasonable grid."""
    _require_2d(model, "-mem_available_px")
    ds, pad_in, pad_out = model.downsample_factor, model.pad_input, model.pad_output
    smallest = [d * math.ceil((1 - p) / d) + i for d, p, i in zip(ds, pad_out, pad_in)]
    if pixels < math.prod(smallest):
        raise DataError(f"-mem_available_px {pixels}: the model's smallest input tile is "
                        f"{'x'.join(map(str, smallest))} = {math.prod(smallest)} pixels")
    most = [math.ceil(n / o) for n, o in zip(shape, _largest_outputs(model, shape, pixels))]
    best = None
    for grid in np.ndindex(*most):
        in_tile, out_tile = _tile_for_grid(model, shape, tuple(g + 1 for g in grid))
        total = math.prod(in_tile) * _effective_tiles(shape, out_tile)
        if math.prod(in_tile) <= pixels and (best is None or total < best[0]):
            best = (total, in_tile)
    if best is None:
        raise DataError(f"-mem_available_px {pixels}: no tiling of the "
                        f"{'x'.join(map(str, shape))} image fits")
    return best[1]


def _largest_outputs(model, shape, pixels):
    """caffe_unet's largest output tile per axis for a pixel budget: the other axis's tile
    made as small as splitting the image allows, this one as long as the budget leaves."""
    ds, pad_in, pad_out = model.downsample_factor, model.pad_input, model.pad_output
    largest = []
    for axis in (0, 1):
        other = 1 - axis
        count, out = 0, 0
        while out <= 0:
            count += 1
            d4a = int((math.ceil(shape[other] / count) - pad_out[other]) / ds[other])
            in_other = ds[other] * d4a + pad_in[other]
            border = round((pad_in[axis] - pad_out[axis]) / 2)
            room = math.floor(pixels / in_other) - 2 * border
            out = ds[axis] * math.floor((room - pad_out[axis]) / ds[axis]) + pad_out[axis]
        largest.append(out)
    return largest


def pixels_for_gpu_memory(model, megabytes):
    """-gpu_mem_available_MB M: the input pixels of the largest entry of the model's
    mapInputNumPxGPUMemMB table whose MB is at most M (the first entry if none is)."""
    if model.memory_map is None:
        raise DataError(f"{model.path}: has no /unet_param/mapInputNumPxGPUMemMB table for "
                        "-gpu_mem_available_MB; give -tile_size, -n_tiles or -mem_available_px")
    fitting = [k for k, mb in enumerate(model.memory_map[1]) if mb <= megabytes]
    return int(model.memory_map[0][fitting[-1] if fitting else 0])


def _require_2d(model, option):
    if model.n_dims != 2:
        raise DataError(f"{option} is for 2-d models (caffe_unet's); give a 3-d model "
                        "-tile_size or -n_tiles AxBxC")


# ---------------------------------------------------------------- scores


def passes(averaging):
    """(transform, inverse) of each pass of an averaging mode (None, "mirror", "rotate")."""
    if averaging == "mirror":
        return [(lambda a, f=f: np.flip(a, f), lambda a, f=f: np.flip(a, f))
                for f in MIRROR_FLIPS]
    if averaging == "rotate":
        return [(lambda a, k=k: np.rot90(a, k, (-2, -1)),
                 lambda a, k=k: np.rot90(a, -k, (-2, -1))) for k in range(4)]
    return [(lambda a: a, lambda a: a)]


def averaged_scores(net, image, averaging=None, padding="mirror", progress=None):
    """Raw scores (classes, *spatial) of one (channels, *spatial) image, averaged over the
    passes of `averaging`; progress(1) after every tile."""
    transforms = passes(averaging)
    total = 0
    for transform, inverse in transforms:
        total = total + inverse(segment(net, np.ascontiguousarray(transform(image)), 1,
                                        progress, padding=padding))
    return total / len(transforms)


# ---------------------------------------------------------------- a TIFF, as the plugin does

def segment_tiff(image_path, modeldef_path, weights, tile=None, gpu=None, memory_mb=1024,
                 element_size=None, averaging=None, progress=None, z_spacing=None,
                 runtime="numpy"):
    """Class probabilities of a TIFF under a Fiji plugin model (.modeldef.h5) as the plugin
    computes them (its image preparation, caffe_unet's TEST net, padding and averaging:
    None, "mirror" or "rotate"), mapped back to the TIFF's own pixels; the net; and a
    sentence on the tile (None when `tile` was given). A 2-d model segments each image of
    the TIFF: (slices, classes, H, W). A 3-d model segments the stack as one volume, whose
    probabilities come slice by slice all the same, (Z, classes, Y, X), so that its labels
    are written as a stack. The pixel size is the TIFF's calibration, with y x from
    `element_size` and z from `z_spacing` where given (images.image_element_size). The
    forward passes run in `runtime` (inference.runtimes)."""
    from unetcore.fiji.images import prepare_image, read_model_images, scale_to_model
    from unetcore.fiji.modeldef import read_modeldef
    from unetcore.inference.runtimes import with_runtime
    from unetcore.inference.segmentation import choose_tile
    model = read_modeldef(modeldef_path)
    if tile and model.n_dims == 3:
        raise DataError(f"--tile {tile}: a square tile is for 2-d models; a 3-d model's tile "
                        "is chosen per axis (z y x) by its tile rule")
    images, size = read_model_images(image_path, model, element_size, z_spacing)
    prepared = [prepare_image(im, model, size) for im in images]
    if model.n_dims == 3:
        net = modeldef_net(model, weights, tile, gpu, len(images[0]),
                           covering_tile(model, prepared[0].shape[1:]))
        note = volume_note(net, model, size)
    else:
        net = modeldef_net(model, weights, tile, gpu, channels=len(images[0]))
        note = None if tile else choose_tile(net, modeldef_path, [im.shape for im in prepared],
                                             memory_mb)
    scale = scale_to_model(size, model)
    runner = with_runtime(net, runtime)
    probs = np.stack([probabilities_at(runner, im, original.shape[1:], scale, model, averaging,
                                       progress)
                      for im, original in zip(prepared, images)])
    return (probs[0].swapaxes(0, 1) if model.n_dims == 3 else probs), net, note


def probabilities_at(net, prepared, shape, scale, model, averaging=None, progress=None):
    """Class probabilities of one prepared image (images.prepare_image), averaged over the
    passes of `averaging` with the model's padding, read back at the image's own pixels
    (`shape`, the image rescaled by `scale` to the model's)."""
    from unetcore.fiji.images import resample_to
    from unetcore.inference.tiling import softmax
    scores = averaged_scores(net, prepared, averaging, model.padding, progress)
    return resample_to(softmax(scores), shape, scale)


def covering_tile(model, shape):
    """The input tile to segment an image of `shape` (at the model's pixel size) with: the
    plugin's segmentation tile, cut on each axis to the smallest valid tile whose output
    covers the image in one, so that a small image (a volume, above all) is not padded up
    to the plugin's tile. The scores do not depend on the tile (docs/overlap-tile.md)."""
    one_tile = _tile_for_grid(model, shape, (1,) * model.n_dims)[0]
    return tuple(min(a, b) for a, b in zip(model.segmentation_tile(), one_tile))


def volume_note(net, model, element_size):
    """A sentence on a 3-d model's tile and the voxel sizes it rescales between."""
    def words(sizes):
        return " x ".join(f"{s:g}" for s in sizes)
    tile = "x".join(map(str, net.blobs[net.image_input].shape[2:]))
    return (f"tile {tile} (z y x): the plugin's segmentation tile, cut to the volume; voxels "
            f"of {words(element_size)} um (z y x) rescaled to the model's "
            f"{words(model.element_size_um)} um")


def require_2d_model(model):
    """The model, refused in one line if it is 3-d: -o OUT.zarr (inference.chunked) segments
    chunk by chunk with 2-d models only; a 3-d model segments its volume in memory into a
    TIFF, and the Fiji backend's caffe_unet tiled_predict runs it too."""
    if model.n_dims != 2:
        raise DataError(f"{model.path}: a 3-d model; -o OUT.zarr segments chunk by chunk with "
                        "2-d models only: segment the volume into a TIFF (-o OUT.tif), in "
                        "memory")
    return model


def modeldef_net(model, weights, tile=None, gpu=None, channels=1, input_shape=None):
    """caffe_unet's TEST net of a model (a ModelDefinition, or the path of its .modeldef.h5)
    for images of `channels` channels, with every layer's `weights`, forward only, at an
    input of `input_shape` per axis (None: the plugin's segmentation tile) or, for a 2-d
    model, of tile x tile."""
    from unetcore.fiji.modeldef import caffe_unet_net, read_modeldef
    from unetcore.inference.deploy import copy_all_weights, square_input
    if isinstance(model, str):
        model = read_modeldef(model)
    net = caffe_unet_net(model, channels, input_shape or model.segmentation_tile(), gpu)
    copy_all_weights(net, weights)
    net.release_activations = True
    square_input(net, model.path, tile)
    return net


def slice_normalizations(volume, kind):
    """(offset, divisor) of the plugin's normalization (normalization_type `kind`) of each
    slice of a (Z, H, W) volume, each slice being one image to the plugin; read slice by
    slice."""
    from unetcore.fiji.images import normalization_of
    return tuple(normalization_of(np.asarray(volume[z], np.float32)[None], kind)
                 for z in range(volume.shape[0]))
