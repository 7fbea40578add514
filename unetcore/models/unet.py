"""Writes U-Net prototxt files with the layer and blob names of the original Caffe release.

The 2015 net: depth 4, 64 base channels, input 572 -> output 388. Smaller nets (depth 2,
2 base channels) use the same generator, so the tests run the real architecture in little.
Names follow the release: conv_d0a-b, relu_d0b, conv_d0b-c, pool_d0c-1a, ..., dropout_d4c,
upconv_d4c_u3a, crop_d3c-d3cc, concat_d3cc_u3a-b, conv_u3b-c, ..., conv_u0d-score.

``python -m unetcore.models.unet`` rewrites the files in prototxt/ (a test checks they match).
"""
import sys
from pathlib import Path


def _conv(name, bottom, top, num_output, kernel, stride=1, deconv=False):
    """A (de)convolution with the release's learning-rate and decay multipliers: the weights
    at 1 and 1, the bias at twice the rate and without weight decay."""
    kind = "Deconvolution" if deconv else "Convolution"
    stride_line = f"\n    stride: {stride}" if stride != 1 else ""
    return f"""layer {{
  name: "{name}"
  type: "{kind}"
  bottom: "{bottom}"
  top: "{top}"
  param {{ lr_mult: 1 decay_mult: 1 }}
  param {{ lr_mult: 2 decay_mult: 0 }}
  convolution_param {{
    num_output: {num_output}
    kernel_size: {kernel}{stride_line}
    weight_filler {{ type: "msra" }}
    bias_filler {{ type: "constant" value: 0 }}
  }}
}}
"""


def _simple(name, kind, bottoms, top, body=""):
    lines = "".join(f'  bottom: "{b}"\n' for b in bottoms)
    return f'layer {{\n  name: "{name}"\n  type: "{kind}"\n{lines}  top: "{top}"\n{body}}}\n'


def _relu(blob):
    return _simple(f"relu_{blob}", "ReLU", [blob], blob)


def contracting_sizes(size, depth):
    """Edge lengths (d0c, d1c, ..., bottom) for an input edge `size` (3x3 convs, 2x2 pools)."""
    sizes = []
    for _ in range(depth):
        size -= 4
        sizes.append(size)
        size //= 2
    sizes.append(size - 4)
    return sizes


def crop_offsets(depth, size=None):
    """Offsets of the center crops d{l}c -> d{l}cc; they do not depend on the input size."""
    size = size or 16 * 2 ** depth + 60
    sizes = contracting_sizes(size, depth)
    up, offsets = sizes[depth], {}
    for level in reversed(range(depth)):
        up *= 2
        offsets[level] = (sizes[level] - up) // 2
        up -= 4
    return offsets


def layers_text(depth=4, channels=64, classes=2, dropout_levels=2, dropout=0.5,
                release=False):
    """The layers from 'data' to 'score' of a U-Net. `release`: the widths of the published
    2015 Caffe model, whose last up-convolution (upconv_u1d_u0a) keeps 2 * channels outputs
    where Fig. 1 of the paper halves them to `channels`."""
    parts, bottom = [], "data"
    width = lambda level: channels * 2 ** level          # noqa: E731
    for level in range(depth + 1):
        d = f"d{level}"
        parts.append(_conv(f"conv_{d}a-b", bottom, f"{d}b", width(level), 3))
        parts.append(_relu(f"{d}b"))
        parts.append(_conv(f"conv_{d}b-c", f"{d}b", f"{d}c", width(level), 3))
        parts.append(_relu(f"{d}c"))
        if level > depth - dropout_levels:
            parts.append(_simple(f"dropout_{d}c", "Dropout", [f"{d}c"], f"{d}c",
                                 f"  include {{ phase: TRAIN }}\n"
                                 f"  dropout_param {{ dropout_ratio: {dropout} }}\n"))
        if level < depth:
            bottom = f"d{level + 1}a"
            parts.append(_simple(f"pool_{d}c-{level + 1}a", "Pooling", [f"{d}c"], bottom,
                                 "  pooling_param { pool: MAX kernel_size: 2 stride: 2 }\n"))
    offsets = crop_offsets(depth)
    below = f"d{depth}c"
    for level in reversed(range(depth)):
        u, d = f"u{level}", f"d{level}"
        name = f"upconv_{below}_{u}a"
        up_width = 2 * channels if release and level == 0 else width(level)
        parts.append(_conv(name, below, f"{u}a", up_width, 2, stride=2, deconv=True))
        parts.append(_relu(f"{u}a"))
        parts.append(_simple(f"crop_{d}c-{d}cc", "Crop", [f"{d}c", f"{u}a"], f"{d}cc",
                             f"  crop_param {{ axis: 2 offset: {offsets[level]} }}\n"))
        parts.append(_simple(f"concat_{d}cc_{u}a-b", "Concat", [f"{u}a", f"{d}cc"], f"{u}b"))
        parts.append(_conv(f"conv_{u}b-c", f"{u}b", f"{u}c", width(level), 3))
        parts.append(_relu(f"{u}c"))
        parts.append(_conv(f"conv_{u}c-d", f"{u}c", f"{u}d", width(level), 3))
        parts.append(_relu(f"{u}d"))
        below = f"{u}d"
    parts.append(_conv("conv_u0d-score", "u0d", "score", classes, 1))
    return "".join(parts)


def _shape(*dims):
    return "shape { " + " ".join(f"dim: {d}" for d in dims) + " }"


def output_size(size, depth):
    up = contracting_sizes(size, depth)[depth]
    for _ in range(depth):
        up = 2 * up - 4
    return up


def deploy_text(name="unet", depth=4, channels=64, classes=2, size=572, in_channels=1,
                release=False):
    head = (f'name: "{name}"\n'
            + _simple("input", "Input", [], "data",
                      f"  input_param {{ {_shape(1, in_channels, size, size)} }}\n"))
    return head + layers_text(depth, channels, classes, release=release)


def train_text(name="unet", depth=4, channels=64, classes=2, size=572, in_channels=1,
               data_layer=None):
    """A training net: inputs data, label and weights, the U-Net, the weighted loss.
    `data_layer` (prototxt text producing data, label, weights) replaces the Input layer."""
    out = output_size(size, depth)
    data = data_layer or (
        'layer {\n  name: "input"\n  type: "Input"\n  top: "data"\n  top: "label"\n'
        f'  top: "weights"\n  input_param {{ {_shape(1, in_channels, size, size)} '
        f'{_shape(1, 1, out, out)} {_shape(1, 1, out, out)} }}\n}}\n')
    loss = _simple("loss", "SoftmaxWithLoss", ["score", "label", "weights"], "loss")
    return f'name: "{name}"\n' + data + layers_text(depth, channels, classes) + loss


def tiff_data_layer(split, size, out, phase="TRAIN"):
    """The TiffData layer of the training nets: random tiles of the ISBI-layout stacks
    data/<split>-volume.tif and -labels.tif, weight maps computed from the labels, and at
    TRAIN the paper's augmentation (elastic deformation, rotation, mirroring)."""
    augment = ('  create_deformation_param { deform_std: 10 grid_points: 3\n'
               '    random_mirror_flag { v: 1 v: 1 }\n'
               '    random_rotate_from { v: 0 } random_rotate_to { v: 360 } }\n') \
        if phase == "TRAIN" else ""
    return (f'layer {{\n  name: "data"\n  type: "TiffData"\n  top: "data"\n  top: "label"\n'
            f'  top: "weights"\n  include {{ phase: {phase} }}\n  tiff_data_param {{\n'
            f'    image: "data/{split}-volume.tif"\n    label: "data/{split}-labels.tif"\n'
            f'    tile_size: {size}\n    label_size: {out}\n    w0: 10\n    sigma: 5\n  }}\n'
            f'{augment}}}\n')


def tiff_train_text(name, depth=4, channels=64, size=572):
    out = output_size(size, depth)
    data = tiff_data_layer("train", size, out) + tiff_data_layer("test", size, out, "TEST")
    return train_text(name, depth, channels, size=size, data_layer=data)


def solver_text(net, base_lr, max_iter, snapshot, prefix, display=20, test=""):
    """The paper's recipe: SGD, momentum 0.99, one tile per batch."""
    return (f'# SGD with momentum 0.99 and a batch of one large tile (Ronneberger et al. 2015)\n'
            f'net: "{net}"\n{test}base_lr: {base_lr}\nlr_policy: "fixed"\nmomentum: 0.99\n'
            f'weight_decay: 0.0005\nmax_iter: {max_iter}\ndisplay: {display}\n'
            f'average_loss: {display}\nsnapshot: {snapshot}\nsnapshot_prefix: "{prefix}"\n'
            f'random_seed: 0\ntype: "SGD"\n')


DEMO = dict(depth=4, channels=16, size=316)     # the README's CPU demo: the 2015 net, thinner


FILES = {
    "unet-deploy.prototxt": lambda: deploy_text("unet"),
    "unet-release-deploy.prototxt": lambda: deploy_text("unet-release", release=True),
    "unet-train-inputs.prototxt": lambda: train_text("unet"),
    "unet-train.prototxt": lambda: tiff_train_text("unet"),
    "unet-solver.prototxt": lambda: solver_text("prototxt/unet-train.prototxt", 0.001, 10000,
                                                1000, "snapshots/unet"),
    "unet-demo-deploy.prototxt": lambda: deploy_text("unet-demo", DEMO["depth"],
                                                     DEMO["channels"], size=DEMO["size"]),
    "unet-demo-train.prototxt": lambda: tiff_train_text("unet-demo", **DEMO),
    "unet-demo-solver.prototxt": lambda: solver_text(
        "prototxt/unet-demo-train.prototxt", 0.001, 600, 200, "snapshots/unet-demo",
        test="test_iter: 10\ntest_interval: 200\ntest_initialization: false\n"),
    "isbi-cpu-solver.prototxt": lambda: solver_text(
        "prototxt/unet-demo-train.prototxt", 0.001, 3000, 1000, "snapshots/isbi-cpu"),
    "unet-small-deploy.prototxt": lambda: deploy_text("unet-small", depth=2, channels=2, size=44),
    "unet-small-train.prototxt": lambda: train_text("unet-small", depth=2, channels=2, size=44),
}


def write_files(folder):
    for filename, make in FILES.items():
        (Path(folder) / filename).write_text(make())


if __name__ == "__main__":
    write_files(sys.argv[1] if len(sys.argv) > 1 else "prototxt")
