"""Writes 3-d U-Net prototxt files in the style of caffe_unet's 3-d example nets (phseg_v7,
snemi_v6) and of the same group's 3D U-Net (Çiçek et al., MICCAI 2016).

Blobs are 5-d, (N, C, D, H, W). As in caffe_unet, Concat crops the skip connection to the
up-convolved blob's size, so the nets carry no Crop layers, and training data come from
HDF5 files through HDF5Data, CreateDeformation (nz, ny, nx, 3 components) and
ApplyDeformation. For electron microscopy, whose z spacing is coarser than its xy spacing,
the first `flat_levels` levels are anisotropic: their convolutions are 1x3x3 and they pool
and up-convolve 1x2x2, so z is only convolved once the voxels are about cubic.

Each axis obeys the U-Net's tile rule on its own (unetcore.sizes): every pooling must see
a size its windows tile. `valid_tiles` lists the sizes per axis and `output_shape` walks a
tile through the net.

``python -m unetcore.models.unet3d`` rewrites the 3-d files in prototxt/ (a test checks they match).
"""
import sys
from pathlib import Path

PARAMS = "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }"


def level_kernels(level, flat_levels):
    """(convolution kernel, pooling / up-convolution kernel) of a level, (z, y, x)."""
    if level < flat_levels:
        return (1, 3, 3), (1, 2, 2)
    return (3, 3, 3), (2, 2, 2)


def repeated(field, values):
    """caffe_unet's repeated fields: once where every axis agrees, else once per axis."""
    values = values[:1] if len(set(values)) == 1 else values
    return " ".join(f"{field}: {v}" for v in values)


def conv(name, bottom, top, outputs, kernel, kind="Convolution", stride=None):
    stride_text = f"{repeated('stride', stride)} " if stride else ""
    return (f"layer {{ bottom: '{bottom}' top: '{top}' name: '{name}' type: '{kind}' {PARAMS} "
            f"convolution_param {{ num_output: {outputs} pad: 0 {repeated('kernel_size', kernel)} "
            f"{stride_text}weight_filler {{ type: 'msra' }} }} }}\n")


def relu(blob):
    return f"layer {{ bottom: '{blob}' top: '{blob}' name: 'relu_{blob}' type: 'ReLU' }}\n"


def layers_text(depth, channels, flat_levels, classes=2, bottom="d0a"):
    """The layers from `bottom` to 'score'; level l has channels * 2^l feature maps."""
    text, below = [], bottom
    for level in range(depth + 1):
        kernel, pool = level_kernels(level, flat_levels)
        width, d = channels * 2 ** level, f"d{level}"
        text += [conv(f"conv_{d}a-b", below, f"{d}b", width, kernel), relu(f"{d}b"),
                 conv(f"conv_{d}b-c", f"{d}b", f"{d}c", width, kernel), relu(f"{d}c")]
        if level < depth:
            below = f"d{level + 1}a"
            text.append(f"layer {{ bottom: '{d}c' top: '{below}' name: 'pool_{d}c-{level + 1}a' "
                        f"type: 'Pooling' pooling_param {{ pool: MAX {repeated('kernel_size', pool)} "
                        f"{repeated('stride', pool)} }} }}\n")
    below = f"d{depth}c"
    for level in reversed(range(depth)):
        kernel, pool = level_kernels(level, flat_levels)
        width, u = channels * 2 ** level, f"u{level}"
        text += [conv(f"upconv_{below}_{u}a", below, f"{u}a", width, pool, "Deconvolution", pool),
                 relu(f"{u}a"),
                 f"layer {{ bottom: '{u}a' bottom: 'd{level}c' top: '{u}b' "
                 f"name: 'concat_d{level}c_{u}a-b' type: 'Concat' }}\n",
                 conv(f"conv_{u}b-c", f"{u}b", f"{u}c", width, kernel), relu(f"{u}c"),
                 conv(f"conv_{u}c-d", f"{u}c", f"{u}d", width, kernel), relu(f"{u}d")]
        below = f"{u}d"
    text.append(conv("conv_u0d-score", "u0d", "score", classes, (1, 1, 1)))
    return "".join(text)


def axis_output(size, axis, depth, flat_levels):
    """The output size along one axis (0: z) of an input `size`, or None where a level's
    pooling does not tile its input or a size drops below 1."""
    sizes = []
    for level in range(depth + 1):
        kernel, pool = level_kernels(level, flat_levels)
        size -= 2 * (kernel[axis] - 1)
        if size < 1:
            return None
        sizes.append(size)
        if level < depth:
            if size % pool[axis]:
                return None
            size //= pool[axis]
    for level in reversed(range(depth)):
        kernel, pool = level_kernels(level, flat_levels)
        size = size * pool[axis] - 2 * (kernel[axis] - 1)
        if size < 1 or size > sizes[level]:
            return None
    return size


def output_shape(tile, depth, flat_levels):
    """(D, H, W) output of a (D, H, W) input tile; None on an axis whose size is invalid."""
    return tuple(axis_output(size, axis, depth, flat_levels) for axis, size in enumerate(tile))


def valid_tiles(axis, depth, flat_levels, low=1, high=512):
    """The input sizes along `axis` in [low, high] that pass the net with aligned pools."""
    return [s for s in range(low, high + 1) if axis_output(s, axis, depth, flat_levels)]


def deploy_text(name, tile, depth, channels, flat_levels, classes=2):
    shape = " ".join(f"dim: {d}" for d in (1, 1, *tile))
    return (f"name: '{name}'\n"
            f"layer {{ top: 'd0a' name: 'input' type: 'Input' input_param {{ shape {{ {shape} }} }} }}\n"
            + layers_text(depth, channels, flat_levels, classes))


def inputs_train_text(name, tile, depth, channels, flat_levels, classes=2):
    """A training net whose data, label and weights are Input blobs (for benchmarks and the
    gradient check), with the weighted loss."""
    out = output_shape(tile, depth, flat_levels)
    dims = lambda shape: " ".join(f"dim: {d}" for d in (1, 1, *shape))      # noqa: E731
    return (f"name: '{name}'\nforce_backward: true\n"
            f"layer {{ top: 'd0a' top: 'label' top: 'weights' name: 'input' type: 'Input' "
            f"input_param {{ shape {{ {dims(tile)} }} shape {{ {dims(out)} }} "
            f"shape {{ {dims(out)} }} }} }}\n"
            + layers_text(depth, channels, flat_levels, classes)
            + "layer { bottom: 'score' bottom: 'label' bottom: 'weights' top: 'loss' "
              "name: 'loss' type: 'SoftmaxWithLoss' }\n")


def train_text(name, tile, depth, channels, flat_levels, source, relsize_z=1.0, classes=2):
    """A training net as caffe_unet's 3-d nets: HDF5Data (data, labels, weights), a tile
    centre drawn anywhere in the volume, caffe_unet's elastic B-spline field (control points
    every 4 slices and 24 px, moved by 1 slice and 3 px), rotation in the xy plane, mirroring;
    the labels and weights read at the centre of the same map (output_shape_from: 'score')."""
    nz, ny, nx = tile
    return (f"name: '{name}'\nforce_backward: true\n"
            f"layer {{ top: 'data' top: 'labels' top: 'weights' name: 'loaddata' type: 'HDF5Data' "
            f"hdf5_data_param {{ source: '{source}' batch_size: 1 }} include: {{ phase: TRAIN }} }}\n"
            f"layer {{ bottom: 'data' top: 'def' name: 'create_deformation' type: 'CreateDeformation' "
            f"create_deformation_param {{ nz: {nz} ny: {ny} nx: {nx} ncomponents: 3 "
            f"voxel_relsize_z: {relsize_z:g} random_offset_range_from_in_blob_shape: true "
            "random_elastic_grid_spacing { v: 4 v: 24 v: 24 } "
            "random_elastic_deform_magnitude { v: 1 v: 3 v: 3 } "
            "random_rotate_from { v: 0 v: 0 v: 0 } random_rotate_to { v: 360 v: 0 v: 0 } "
            "random_mirror_flag { v: 1 v: 1 v: 1 } } include: { phase: TRAIN } }\n"
            "layer { bottom: 'data' bottom: 'def' top: 'd0a' name: 'def_data-d0a' "
            "type: 'ApplyDeformation' apply_deformation_param { interpolation: 'linear' "
            "extrapolation: 'mirror' } include: { phase: TRAIN } }\n"
            + layers_text(depth, channels, flat_levels, classes)
            + "".join(f"layer {{ bottom: '{blob}' bottom: 'def' top: '{blob}crop' "
                      f"name: 'def_{blob}-crop' type: 'ApplyDeformation' apply_deformation_param "
                      "{ interpolation: 'nearest' extrapolation: 'mirror' "
                      "output_shape_from: 'score' } include: { phase: TRAIN } }\n"
                      for blob in ("labels", "weights"))
            + "layer { bottom: 'score' bottom: 'labelscrop' bottom: 'weightscrop' top: 'loss' "
              "name: 'loss' type: 'SoftmaxWithLoss' include: { phase: TRAIN } }\n")


def solver_text(net, max_iter, snapshot, prefix, base_lr=0.001):
    return (f"# SGD with momentum 0.99 and one tile per batch (Ronneberger et al. 2015)\n"
            f'net: "{net}"\nbase_lr: {base_lr}\nlr_policy: "fixed"\nmomentum: 0.99\n'
            f"weight_decay: 0.0005\nmax_iter: {max_iter}\ndisplay: 10\naverage_loss: 10\n"
            f'snapshot: {snapshot}\nsnapshot_prefix: "{prefix}"\nrandom_seed: 0\ntype: "SGD"\n')


# The EM net: snemi_v6's shape of net (depth 4, 32 channels, two 1x3x3 levels), our own file.
EM = dict(depth=4, channels=32, flat_levels=2, tile=(44, 268, 268))
# The CPU demo: a thinned anisotropic net that trains on `unetcore synth --3d` in minutes.
DEMO = dict(depth=2, channels=8, flat_levels=1, tile=(20, 76, 76))

FILES = {
    "unet3d-em-deploy.prototxt": lambda: deploy_text("unet3d-em", **EM),
    "unet3d-em-train.prototxt": lambda: train_text("unet3d-em", **EM,
                                                   source="data/volume3d-train.txt",
                                                   relsize_z=5),
    "unet3d-demo-deploy.prototxt": lambda: deploy_text("unet3d-demo", **DEMO),
    "unet3d-demo-train.prototxt": lambda: train_text("unet3d-demo", **DEMO,
                                                     source="data/volume3d-train.txt",
                                                     relsize_z=3),
    "unet3d-demo-solver.prototxt": lambda: solver_text("prototxt/unet3d-demo-train.prototxt",
                                                       600, 200, "snapshots/unet3d-demo"),
}


def write_files(folder):
    for filename, make in FILES.items():
        (Path(folder) / filename).write_text(make())


if __name__ == "__main__":
    write_files(sys.argv[1] if len(sys.argv) > 1 else "prototxt")
