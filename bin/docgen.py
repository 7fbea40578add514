"""Generates the numbers and pictures of docs/ with the project's own code.

Markdown files carry blocks ``<!-- begin generated: NAME -->`` ... ``<!-- end generated -->``;
``python bin/docgen.py`` rewrites them and the figures, ``--check`` fails when any is
stale (a test runs it), so the docs' numbers are computed, never typed.
"""
import inspect
import re
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
BLOCK = re.compile(r"(<!-- begin generated: (\S+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _net(name, size=None):
    from unetcore.net import Net
    net = Net(str(REPO / "prototxt" / name), "TEST")
    if size is not None:
        net.set_inputs({"data": np.zeros((1, 1, size, size))})
    return net


def shapes_572():
    net = _net("unet-deploy.prototxt")
    rows = ["| layer | type | top | shape (N x C x H x W) |", "| --- | --- | --- | --- |"]
    for layer, spec, top in zip(net.layers, net.specs, net.top_vecs):
        if layer.type == "Split":
            continue
        for name, blob in zip(spec.tops, top):
            rows.append(f"| {layer.name} | {layer.type} | {name} | "
                        f"{' x '.join(map(str, blob.shape))} |")
    params = sum(b.count for b in net.learnable_params)
    return "\n".join(rows) + f"\n\n{len(net.layers)} layers, {params:,} learnable parameters.\n"


def valid_sizes():
    from unetcore.sizes import valid_sizes as sizes
    net = _net("unet-deploy.prototxt")
    found = sizes(net, "data", 150, 700)
    outputs = []
    for s in found:
        net.set_inputs({"data": np.zeros((1, 1, s, s))})
        outputs.append(net.blobs["score"].shape[-1])
    pairs = ", ".join(f"{s} -> {o}" for s, o in zip(found, outputs))
    loss = found[0] - outputs[0]
    return (f"Valid input sizes from 150 to 700 (input -> output): {pairs}.\n\n"
            f"Every one is 16k + 60 and loses {loss} pixels, {loss // 2} of context on each "
            "side.\n")


def receptive_field_table():
    """The input rows that output pixels 0..15 of the 2015 net at 572 depend on."""
    from unetcore.inference.receptive import receptive_field
    net = _net("unet-deploy.prototxt", 572)
    rows = ["| output pixel | input pixels it depends on | size | window centre - pixel centre |",
            "| --- | --- | --- | --- |"]
    sizes = set()
    for position in range(16):
        first, last = receptive_field(net, (position, position))[0]
        sizes.add(last - first + 1)
        rows.append(f"| {position} | {first} .. {last} | {last - first + 1} | "
                    f"{(first + last) / 2 - (position + 92):+.1f} |")
    return ("\n".join(rows) + f"\n\nSo an output pixel depends on "
            f"{' or '.join(map(str, sorted(sizes)))} input pixels per axis, and pixel 16 reads "
            "what pixel 0 does, shifted by 16.\n")


def receptive_picture():
    """Two 1-d pictures: valid convolutions shrinking a row, and the 2015 net's windows
    stepping with the pooling grid."""
    from unetcore.inference.receptive import receptive_field
    row, label = 16, "    {:<10}"
    lines = [label.format("input") + " ".join("o" for _ in range(row))]
    for cut in (1, 2):                            # each pixel takes 2 characters
        lines.append(label.format("conv 3") + "  " * cut
                     + " ".join("o" for _ in range(row - 2 * cut)))
    lines.append(label.format("pool 2") + "  " * 2      # one pixel under each pair
                 + "   ".join("o" for _ in range((row - 4) // 2)))
    shrink = "\n".join(lines)
    net = _net("unet-deploy.prototxt", 236)
    scale, rows = 4, []
    for position in range(20):
        first, last = receptive_field(net, (position, position))[0]
        bar = "".join("#" if first <= x * scale + scale - 1 and x * scale <= last else "."
                      for x in range(236 // scale))
        rows.append(f"    {position:>2} {bar}  {first:>3} .. {last}")
    return ("Each unpadded 3-tap convolution takes one pixel off each end of a row, and a "
            "2-wide pool halves what is left:\n\n" + shrink + "\n\nOn the way up, an "
            "up-convolution's output pixel reads one input pixel, so its neighbours read the same "
            "one or the next. Below, the input pixels (one character for 4) that output pixels "
            "0 to 19 of the 2015 net (at 236 px) depend on: the windows do not slide with the "
            "pixel, they jump every 16 pixels, and pixels 0 to 3 need less context than 4 to "
            "15.\n\n" + "\n".join(rows) + "\n")


def split_blobs():
    """The blobs of the deploy net that feed two layers, with their readers."""
    net = _net("unet-deploy.prototxt")
    rows = []
    for layer, spec in zip(net.layers, net.specs):
        if layer.type == "Split":
            readers = [other.name for other, s in zip(net.layers, net.specs)
                       if set(s.bottoms) & set(spec.tops)]
            rows.append(f"- `{spec.bottoms[0]}` (read by {', '.join(f'`{r}`' for r in readers)})")
    return f"{len(rows)} Splits in the deploy net:\n\n" + "\n".join(rows) + "\n"


def im2col_size():
    """The size of conv_d0b-c's im2col matrix at a 572 tile."""
    net = _net("unet-deploy.prototxt", 572)
    layer = net.layer("conv_d0b-c")
    rows = layer.channels * layer.geom.kernel[0] * layer.geom.kernel[1]
    out = net.blobs["d0c"].shape[-1]
    return (f"for `conv_d0b-c` ({layer.channels} -> {layer.num_output} channels, "
            f"{net.blobs['d0b'].shape[-1]} -> {out} px), `col` has one row per (channel, tap) "
            f"and one column per output pixel: {rows} x {out ** 2:,} floats, "
            f"{rows * out ** 2 * 4 / 1e6:.0f} MB.\n")


def _matrix(a):
    return "\n".join("    " + " ".join(f"{v:6g}" for v in row) for row in np.atleast_2d(a))


def im2col_example():
    from unetcore.ops.im2col import ConvGeometry, im2col
    x = np.arange(1, 19, dtype=float).reshape(2, 3, 3)
    geom = ConvGeometry((2, 2), (1, 1), (0, 0), (1, 1))
    col = im2col(np, x, geom, (2,), 0, 2, np.empty((8, 4)))
    w = np.array([[1, 0, 0, -1, 0.5, 0.5, 0, 0]])
    y = (w @ col).reshape(2, 2)
    return ("x, 2 channels of 3 x 3:\n\n" + _matrix(x[0]) + "\n\n" + _matrix(x[1])
            + "\n\ncol = im2col(x) for a 2 x 2 kernel, one column per output pixel, rows "
            "(c, p, q):\n\n" + _matrix(col) + "\n\nW (1 output channel, as a 1 x 8 row):\n\n"
            + _matrix(w) + "\n\ny = W @ col, reshaped to 2 x 2:\n\n" + _matrix(y) + "\n")


def _link(fn, needle=None):
    """A link to a function's lines, or to its first line that contains `needle`."""
    path = Path(inspect.getsourcefile(fn)).resolve().relative_to(REPO)
    lines, start = inspect.getsourcelines(fn)
    if needle is None:
        end = start + len(lines) - 1
        return f"[{path}:{start}-{end}](../{path}#L{start}-L{end})"
    line = start + next(i for i, text in enumerate(lines) if needle in text)
    return f"[{path}:{line}](../{path}#L{line})"


def layer_sources():
    """Each type's reference forward and backward, and its engines (same math, faster)."""
    from unetcore import layer as layer_module
    rows = ["| type | forward | backward | same math, faster |", "| --- | --- | --- | --- |"]
    for name, cls in sorted(layer_module.LAYER_TYPES.items()):
        engines = ", ".join(f"[{e.engine}](../{Path(inspect.getsourcefile(e)).resolve().relative_to(REPO)})"
                            for e in layer_module.ENGINES.get(name, ()))
        rows.append(f"| {name} | {_link(cls.forward)} | {_link(cls.backward)} | {engines} |")
    return "\n".join(rows) + "\n"


def convolution_definition():
    """Where the direct sum, the convolution's definition, and its chain rule are written out."""
    from unetcore.layers.convolution import direct_convolution, direct_convolution_backward
    return (f"- y, one output pixel at a time: `direct_convolution`, {_link(direct_convolution)}\n"
            f"- dx, dW and db, the chain rule on each of its terms: "
            f"`direct_convolution_backward`, {_link(direct_convolution_backward)}\n")


def pooling_sources():
    """Where MAX pooling's maths is (the layer's file) and its CUDA twins (ops)."""
    from unetcore.layers import pooling
    from unetcore.ops import pooling as ops
    return (f"- y = max over the window, and the argmax: `max_pool_forward`, "
            f"{_link(pooling.max_pool_forward)}; on a GPU, 2-d: `max_pool_forward_gpu`, "
            f"{_link(ops.max_pool_forward_gpu)}\n"
            f"- dx[argmax] += dy: `max_pool_backward`, {_link(pooling.max_pool_backward)}; "
            f"on a GPU, 2-d: `max_pool_backward_gpu`, {_link(ops.max_pool_backward_gpu)}\n")


def softmax_loss_sources():
    """Where the weighted loss's maths is (the layer's file) and its CUDA twins (ops)."""
    from unetcore.layers import softmax_loss
    from unetcore.ops import softmax_loss as ops
    return (f"- sum_x w(x) log p_l(x)(x): `weighted_log_loss`, "
            f"{_link(softmax_loss.weighted_log_loss)}; on a GPU: `weighted_log_loss_gpu`, "
            f"{_link(ops.weighted_log_loss_gpu)}\n"
            f"- w(x) (p_k(x) - [k = l(x)]): `loss_gradient`, {_link(softmax_loss.loss_gradient)}; "
            f"on a GPU: `loss_gradient_gpu`, {_link(ops.loss_gradient_gpu)}\n")


def convolution_products():
    """Where the reference Convolution computes each product of the derivation."""
    from unetcore.layers.convolution import ConvolutionLayer as Conv
    return (f"- Y = W_mat @ col: `forward_gemm`, {_link(Conv.forward_gemm, 'matmul_into')}\n"
            f"- dW_mat += dY @ col^T: `weight_gemm`, {_link(Conv.weight_gemm, 'dw[g] +=')}\n"
            f"- dcol = W_mat^T @ dY: `backward_gemm`, {_link(Conv.backward_gemm, '.T, dy_g')}\n"
            f"- dx = col2im(dcol): `backward_gemm`, {_link(Conv.backward_gemm, 'col2im_add(')}\n"
            f"- db += the sum of dY: `bias_backward`, {_link(Conv.bias_backward, '.sum(')}\n")


def deconvolution_matrix():
    """A 2x2 kernel on a 3x3 image as a 4x9 matrix M, and Deconvolution as M^T, computed by
    the layers themselves."""
    from unetcore.gradcheck import layer_from_text
    from unetcore.blob import Blob
    kernel = np.array([[1.0, 2.0], [3.0, 4.0]])

    def run(kind, x):
        layer = layer_from_text(f'name: "m" type: "{kind}" convolution_param {{ num_output: 1 '
                                'kernel_size: 2 bias_term: false }')
        bottom, top = [Blob(x.shape, np.float64)], [Blob((), np.float64)]
        bottom[0].data[...] = x
        layer.setup(bottom, top)
        layer.blobs[0].data[...] = kernel
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        return top[0].data.copy()
    units = np.eye(9).reshape(9, 1, 1, 3, 3)
    m = np.stack([run("Convolution", u).ravel() for u in units], axis=1)      # 4 x 9
    y = np.array([[1.0, -1.0], [2.0, 0.5]])
    deconv = run("Deconvolution", y.reshape(1, 1, 2, 2))[0, 0]
    assert np.allclose(deconv.ravel(), m.T @ y.ravel())
    return ("Kernel w = [[1, 2], [3, 4]]. Convolution of a 3 x 3 image x (flattened row by row) is "
            "y = M x with the 4 x 9 matrix\n\n" + _matrix(m)
            + "\n\nEach row is one output pixel: the kernel laid over its 2 x 2 window. The "
            "Deconvolution layer with the same weights, given\n\n" + _matrix(y)
            + "\n\nreturns the 3 x 3 image\n\n" + _matrix(deconv)
            + "\n\nwhich is M^T y, reshaped: each input pixel of the up-convolution scatters "
            "the kernel, scaled by its value, onto its window, and overlaps add.\n")


def overlap_tile_numbers():
    from unetcore.inference.tiling import tile_geometry
    net = _net("unet-deploy.prototxt")
    tile, out, margin, step = tile_geometry(net, "data", "score")
    rows = -(-512 // step)
    padded = (rows - 1) * step + tile
    return (f"For the 2015 net: tile {tile}, output {out}, margin {margin} on each side, "
            f"pooling grid 16, so tiles step by {step} (the largest multiple of 16 <= {out}).\n"
            f"A 512 x 512 image takes {rows} x {rows} tiles over a mirrored canvas of "
            f"{padded} x {padded}: {margin} mirrored pixels before the image and "
            f"{padded - 512 - margin} after it.\n")


def loss_normalizer():
    """The two normalizers of a weighted SoftmaxWithLoss on the README demo's training stack."""
    from unetcore.data.synth import synth_stack
    from unetcore.data.stacks import to_classes
    from unetcore.data.weightmap import weight_stack
    _, labels = synth_stack(8, 256, 0, 40)          # `unetcore synth`'s training stack
    weights = weight_stack(to_classes(labels, 2, "synth"), 10.0, 5.0, 2)
    mean = float(weights.mean())
    return (f"On the README demo's training stack (8 synthetic slices of 256 x 256, w0 = 10, "
            f"sigma = 5) the weights average {mean:.3f} (from {weights.min():.2f} to "
            f"{weights.max():.2f}). On a tile without ignored pixels the caffe_unet normalizer "
            f"Z = sum(w) is then about {mean:.2f} times the pixel count, so the same net on the "
            f"same data reports a loss, and takes gradient steps, {mean:.2f} times smaller "
            f"than with `normalization: FULL`.\n")


def tiny_unet(seed):
    """A U-Net in little (depth 1, 1 channel at the top, 2 classes, 20 px -> 4 px) with small
    integer weights (-1, 0, 1), biases of 0.1 and a random input, so that no ReLU input and
    no max-pool window sits on a kink or a tie, where finite differences cannot agree."""
    from unetcore.net import Net
    from unetcore.formats.prototxt import parse
    from unetcore.models.unet import layers_text
    text = ('name: "tiny"\nlayer { name: "input" type: "Input" top: "data" top: "label" '
            'top: "weights" input_param { shape { dim: 1 dim: 1 dim: 20 dim: 20 } '
            'shape { dim: 1 dim: 1 dim: 4 dim: 4 } shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }\n'
            + layers_text(depth=1, channels=1, classes=2, dropout_levels=0)
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" '
              'bottom: "weights" top: "loss" }\n')
    net = Net(parse(text), "TRAIN", dtype=np.float64)
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        blobs[0].data[...] = rng.choice([-1, 0, 1], blobs[0].shape)
        blobs[1].data[...] = 0.1          # not 0: a dead unit's output would sit on a kink
    net.set_inputs({"data": rng.random((1, 1, 20, 20)),
                    "label": rng.integers(0, 2, (1, 1, 4, 4)),
                    "weights": rng.integers(1, 4, (1, 1, 4, 4))})
    return net


def _grid(array):
    """A 2-d array as aligned text, up to 3 significant digits."""
    cells = [[f"{v + 0.0:.3g}" for v in row] for row in np.atleast_2d(array)]   # no "-0"
    width = max(len(c) for row in cells for c in row)
    return "\n".join("    " + " ".join(c.rjust(width) for c in row) for row in cells)


def _blob_text(name, array):
    if array.ndim == 0:
        return f"`{name}` = {float(array):.6g}\n"
    parts = [f"`{name}`, channel {c}:\n\n{_grid(array[0, c])}\n" for c in range(array.shape[1])]
    return "\n".join(parts)


def worked_backprop():
    """Every blob's data down the tiny U-Net, every diff back up, and the checker's verdict."""
    from unetcore.gradcheck import check_net
    net = tiny_unet(seed=1)   # a draw whose score is not flat and whose ReLUs are 35-81% alive
    loss = net.forward_layers()
    down = [f"The loss is {loss:.6g}. Forward, layer by layer (in-place ReLUs overwrite their "
            "convolution's top, so a convolution's top is shown after its ReLU):\n"]
    for layer, spec, top in zip(net.layers, net.specs, net.top_vecs):
        if layer.type in ("Split", "ReLU") or not spec.tops:
            continue
        shown = [(n, b.data) for n, b in zip(spec.tops, top)]
        down.append(f"**{layer.name}** ({layer.type}):\n\n" +
                    "\n".join(_blob_text(n, a) for n, a in shown))
    up = ["Backward, from the loss down: after each layer, the gradient it wrote into its "
          "bottoms, dL/dbottom. A ReLU runs in place, so its line is the gradient of the "
          "convolution's top after the mask: the dy that the convolution below it uses:\n"]
    for top, spec in zip(net.top_vecs, net.specs):          # as Net.backward starts
        for blob, weight in zip(top, spec.loss_weights):
            if weight:
                blob.diff[...] = weight
    for i in reversed(range(len(net.layers))):
        layer, spec, bottom = net.layers[i], net.specs[i], net.bottom_vecs[i]
        if not net.layer_need_backward[i]:
            continue
        layer.backward(net.top_vecs[i], net.bottom_need_backward[i], bottom)
        shown = [(n, b.diff.copy()) for n, b, need in zip(spec.bottoms, bottom,
                                                         net.bottom_need_backward[i]) if need]
        if shown:
            what = {"Split": "the sum of its tops' gradients",
                    "ReLU": "the gradient masked where its output was 0"}.get(
                        layer.type, "the gradient of its bottom")
            up.append(f"**{layer.name}** ({layer.type}), {what}:\n\n" +
                      "\n".join(_blob_text(n, a) for n, a in shown))
    weights = ["Parameter gradients (dL/dW, dL/db):\n"]
    for name, blobs in net.params.items():
        weights.append(f"**{name}**: dW\n\n" + "\n".join(
            _grid(blobs[0].diff[o, c]) for o in range(blobs[0].shape[0])
            for c in range(blobs[0].shape[1])) + f"\n\ndb = {_row(blobs[1].diff)}\n")
    return "\n".join(down + up + weights)


def worked_ties():
    """The max-pool windows of the tiny U-Net whose largest value is not unique."""
    net = tiny_unet(seed=1)
    zeros = []                               # exact zeros at the ReLUs' inputs (their kinks)

    def before_relu(i):
        if i + 1 < len(net.layers) and net.layers[i + 1].type == "ReLU":
            zeros.append(int((net.top_vecs[i][0].data == 0).sum()))
    net.after_forward.append(before_relu)
    net.forward_layers()
    parts = []
    for layer, bottom in zip(net.layers, net.bottom_vecs):
        if layer.type != "Pooling":
            continue
        x = bottom[0].data[0]
        windows = x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2)
        windows = windows.transpose(0, 1, 3, 2, 4).reshape(-1, 4)
        largest = windows.max(axis=1, keepdims=True)
        tied = (windows == largest).sum(axis=1) > 1
        if not np.all(largest[tied] == 0):   # the prose below holds for ties of zeros only
            raise ValueError(f"{layer.name} has a tie among values other than 0")
        parts.append(f"{tied.sum()} of the {len(windows)} windows of `{layer.name}` are ties, "
                     "every one among zeros")
    kinks = f"{sum(zeros)} ReLU inputs are exactly 0" if sum(zeros) else \
        "No ReLU input is exactly 0"
    return (f"{kinks}. " + "; ".join(parts) + ": the ReLUs below output 0 "
            "there. The pool routes such a window's gradient to its first maximum (Caffe's "
            "rule), and the ReLU below turns it into 0 whichever input gets it, so the "
            "derivative is the same on both sides of the tie.\n")


def worked_gradient_check():
    """The gradient checker's verdict on the tiny U-Net of worked_backprop (a rounding error:
    one of the ROUNDING_BLOCKS)."""
    from unetcore.gradcheck import check_net
    results = check_net(tiny_unet(seed=1))
    return (f"The gradient checker (central differences, h = 1e-6) agrees on every one of "
            f"the {sum(r.checked for r in results)} parameters: largest relative error "
            f"{max(r.max_scaled_error for r in results):.1e}.\n")


def _row(values):
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


# ---------------------------------------------------------------- exercises (answers computed)
def _answer(text):
    return f"<details><summary>Answer</summary>\n\n{text}\n\n</details>\n"


def exercises_walkthrough():
    from unetcore.errors import NetError
    net = _net("unet-deploy.prototxt")
    try:
        net.set_inputs({"data": np.zeros((1, 1, 566, 566))})
        verdict = "566 is valid."
    except NetError as err:
        verdict = f"No. `unetcore shapes --size 566` says: {err}"
    offsets = {}
    for size in (188, 572, 700):
        net.set_inputs({"data": np.zeros((1, 1, size, size))})
        offsets[size] = [net.layer(f"crop_d{k}c-d{k}cc").window[2].start for k in range(4)]
    same = ", ".join(f"{size}: {o}" for size, o in offsets.items())
    gaps = ", ".join(str(2 * o) for o in offsets[572])
    return ("1. Is 566 a valid input size for the 2015 net? If not, which pool complains?\n\n"
            + _answer(verdict) + "\n2. Why are the crop offsets the same for every valid "
            "size?\n\n" + _answer(
                f"Offsets at levels 0 to 3, by input size: {same}. With b the size at the "
                "bottom of the net, every map's size is 2^j b plus a constant (each pool halves, "
                "each up-convolution doubles, each convolution subtracts 2). At level k the "
                "contracting map and the upsampled map have the same 2^j b term, so they differ "
                f"by a constant that depends only on the depth: {gaps} px at levels 0 to 3. "
                "Half of it is cut on each side."))


def exercises_backprop():
    from unetcore.gradcheck import layer_from_text
    from unetcore.blob import Blob
    layer = layer_from_text('name: "c" type: "Convolution" convolution_param { num_output: 1 '
                            'kernel_h: 1 kernel_w: 3 stride: 2 bias_term: false '
                            'weight_filler { type: "constant" value: 1 } }')
    x, top = Blob((1, 1, 1, 7)), Blob(())
    x.data[...] = np.arange(7)
    layer.setup([x], [top])
    layer.reshape([x], [top])
    layer.forward([x], [top])
    layer.blobs[0].data[...] = [[[[1, 2, 3]]]]
    top.diff[...] = [[[[10, 100, 1000]]]]
    layer.backward([top], [True], [x])
    return ("1. A 1 x 3 convolution with weights (1, 2, 3) and stride 2 reads a row of 7 "
            "pixels. Its upstream gradient is dy = (10, 100, 1000). What is dx?\n\n" + _answer(
                "Output j reads x[2j], x[2j + 1], x[2j + 2] with weights 1, 2, 3, so "
                "dx[i] = sum over the (j, p) with 2j + p = i of w[p] dy[j]. The pixels at "
                "places 2 and 4 are read twice, by neighbouring windows: dx = ("
                + ", ".join(f"{v:g}" for v in x.diff[0, 0, 0]) + "). This is col2im with stride 2 (`test_convolution_"
                "forward_matches_direct_sum_and_gradients` checks it for strides 1 and 2)."))


def exercises_im2col():
    from unetcore.ops.im2col import ConvGeometry, col2im_add
    geom = ConvGeometry((3, 3), (1, 1), (0, 0), (1, 1))
    counts = np.zeros((1, 5, 5))
    col2im_add(np.ones((9, 9)), counts, geom, (3,), 0, 3)
    return ("1. A 3x3 kernel (stride 1, no padding) slides over a 5 x 5 image. How many "
            "columns of `col` read each pixel, that is, how many terms does col2im add into "
            "it?\n\n" + _answer("col2im of a `col` of ones counts them:\n\n"
                                  + _grid(counts[0]) + "\n\nA corner is read by one window, "
                                  "the centre by all nine."))


def exercises_training():
    from unetcore.data.synth import synth_stack
    from unetcore.data.stacks import to_classes
    from unetcore.data.weightmap import weight_stack
    _, labels = synth_stack(8, 256, 0, 40)
    mean = float(weight_stack(to_classes(labels, 2, "synth"), 10.0, 5.0, 2).mean())
    return ("1. Why is the first training loss about ln 2 = 0.693, and why was it about "
            "mean(w) ln 2 before unetcore took caffe_unet's normalizer?\n\n" + _answer(
                "At the start the scores of the two classes are about equal, so p = 1/2 and "
                "each pixel's term is w ln 2. Divided by the sum of the weights, the loss is "
                "ln 2; divided by the pixel count (`normalization: FULL`), it is mean(w) ln 2 = "
                f"{mean:.3f} x 0.693 = {mean * np.log(2):.3f} on the demo's data.")
            + "\n2. Which plain-SGD learning rate does base_lr 0.001 with momentum 0.99 "
            "mimic, once the momentum has built up?\n\n" + _answer(
                "With a steady gradient g, V settles where V = 0.99 V + 0.001 g, so "
                f"V = 0.001 g / (1 - 0.99) = {0.001 / (1 - 0.99):g} g: plain SGD at rate "
                f"{0.001 / (1 - 0.99):g}."))


def exercises_overlap_tile():
    from unetcore.inference.tiling import tile_geometry
    net = _net("unet-deploy.prototxt")
    tile, out, margin, step = tile_geometry(net, "data", "score")
    rows, cols = -(-1000 // step), -(-700 // step)
    canvas = ((rows - 1) * step + tile, (cols - 1) * step + tile)
    return (f"1. A 1000 x 700 image is segmented with {tile} px tiles. How many tiles, and "
            "how large is the mirrored canvas?\n\n" + _answer(
                f"Tiles step by {step} px, so {rows} x {cols} = {rows * cols} tiles. The canvas "
                f"is {canvas[0]} x {canvas[1]}: (tiles - 1) x {step} + {tile} per axis, with "
                f"{margin} mirrored pixels before the image."))



def exercises_3d():
    from unetcore.errors import NetError
    from unetcore.inference.tiling import axis_geometry
    net = _net("unet3d-em-deploy.prototxt")
    (tile_z, out_z, margin_z, step_z), (tile_y, out_y, margin_y, step_y), _ = \
        axis_geometry(net, "d0a", "score")
    try:
        net.set_inputs({"d0a": np.zeros((1, 1, 46, 268, 268))})
        verdict = "46 is valid."
    except NetError as err:
        verdict = f"No. `unetcore shapes` says: {err}"
    net.set_inputs({"d0a": np.zeros((1, 1, tile_z, tile_y, tile_y))})
    volume = (100, 1024, 1024)
    tiles = [-(-n // step) for n, step in zip(volume, (step_z, step_y, step_y))]
    weights = net.params["conv_d0a-b"][0].shape
    return (f"1. The EM net's first convolution has weights of shape {weights}. Why is "
            "its third axis 1, and what does the layer compute on a volume?\n\n" + _answer(
                "The kernel is 1 x 3 x 3 (`kernel_size: 1 kernel_size: 3 kernel_size: 3`): one "
                "tap along z. Each output slice is the 2-d 3 x 3 convolution of the same input "
                "slice, with the same weights for every slice.")
            + f"\n2. Is 46 a valid z size for the EM net (at {tile_y} x {tile_y} in y and x)?"
            "\n\n" + _answer(verdict)
            + f"\n3. A {' x '.join(map(str, volume))} volume is segmented with the EM net's "
            f"tile ({tile_z} x {tile_y} x {tile_y}). How many tiles does it take, and how much "
            "context does a tile have before its output in z and in y?\n\n" + _answer(
                f"Tiles step by {step_z} slices in z and {step_y} px in y and x, so "
                f"{tiles[0]} x {tiles[1]} x {tiles[2]} = {tiles[0] * tiles[1] * tiles[2]:,} "
                f"tiles. The margin is {margin_z} slices in z and {margin_y} px in y: the two "
                "anisotropic levels never convolve along z, so z needs less context."))


TEST_DATA = REPO / "tests" / "data"
ISBI_MODEL = TEST_DATA / "isbi-demo_iter_3000.caffemodel.h5"


@lru_cache(maxsize=1)
def real_data_prediction():
    """A held-out ISBI 2012 crop (slice 22), its labels, and the cell probability of the
    demo net trained 3000 iterations on slices 1-20 (bench/isbi.py; tests/data)."""
    import tifffile
    from unetcore.data.stacks import normalize_grey
    from unetcore.net import Net
    from unetcore.inference.tiling import as_channel_images, segment, softmax
    image = tifffile.imread(TEST_DATA / "isbi-heldout-volume.tif")
    cells = tifffile.imread(TEST_DATA / "isbi-heldout-labels.tif") > 0
    net = Net(REPO / "prototxt" / "unet-demo-deploy.prototxt", "TEST", weights=ISBI_MODEL)
    net.release_activations = True
    grey = as_channel_images(normalize_grey(image, path="isbi-heldout-volume.tif"), 1)
    arrays = image, cells, softmax(segment(net, grey[0]))[1]
    for array in arrays:                       # cached and shared: nobody may change them
        array.flags.writeable = False
    return arrays


def real_data_pictures():
    from unetcore.data.weightmap import weight_map
    from unetcore.tools.pictures import heat, to_grey
    image, cells, probability = real_data_prediction()
    return {"isbi-slice.png": image, "isbi-weightmap.png": heat(weight_map(cells.astype(int))),
            "isbi-prediction.png": to_grey(probability, 0, 1)}


def real_data_scores():
    from unetcore.measures.isbi import differing_pixels, evaluate, iou
    _, cells, probability = real_data_prediction()
    _, best = evaluate(probability[None], cells[None])
    scores = iou((probability > 0.5).astype(int)[None], cells.astype(int)[None])
    value = {name: v for name, (v, _) in best.items()}
    return (f"On this crop, the ISBI 2012 measures (best over thresholds, as the challenge "
            f"computed them): pixel error {value['pixel_error']:.4f}, Rand error "
            f"{value['rand_error']:.4f}, warping error {value['warping_error']:.5f}, V_Rand "
            f"{value['v_rand']:.4f}. At threshold 0.5, "
            f"{differing_pixels(probability > 0.5, cells):.1%} of the pixels differ from the "
            f"truth; IoU {scores[0]:.3f} (membrane) and {scores[1]:.3f} (cell); "
            f"{cells.mean():.0%} of its pixels are cell.\n")


def _fractions(rows):
    return "\n".join("    " + " ".join(f"{str(v):>6}" for v in row) for row in rows)


def winograd_matrices():
    """B^T, G and A^T of F(2, 3) and F(4, 3), exactly, as unetcore.ops.winograd makes them."""
    from unetcore.ops.winograd import POINTS, winograd_1d
    parts = []
    for m in (2, 4):
        f = winograd_1d(m, 3)
        points = ", ".join(str(p) for p in POINTS[:f.alpha - 1])
        parts.append(f"F({m}, 3), points {points} and infinity:\n\nB^T ({f.alpha} x {f.alpha}):\n\n"
                     + _fractions(f.bt) + f"\n\nG ({f.alpha} x 3):\n\n" + _fractions(f.g)
                     + f"\n\nA^T ({m} x {f.alpha}):\n\n" + _fractions(f.at) + "\n")
    return "\n".join(parts)


def winograd_example():
    """F(2, 3) on one tile, step by step, in exact fractions, beside the direct sums."""
    from fractions import Fraction

    from unetcore.ops.winograd import winograd_1d
    f = winograd_1d(2, 3)
    d, g = [Fraction(v) for v in (1, 2, 3, 4)], [Fraction(v) for v in (1, 0, -1)]
    bd = [sum(b * x for b, x in zip(row, d)) for row in f.bt]
    gg = [sum(a * x for a, x in zip(row, g)) for row in f.g]
    product = [a * b for a, b in zip(gg, bd)]
    y = [sum(a * x for a, x in zip(row, product)) for row in f.at]
    direct = [sum(d[i + k] * g[k] for k in range(3)) for i in range(2)]
    show = lambda values: "(" + ", ".join(str(v) for v in values) + ")"
    return (f"    d = {show(d)},  g = {show(g)}\n"
            f"    B^T d        = {show(bd)}\n"
            f"    G g          = {show(gg)}\n"
            f"    (G g) * (B^T d) = {show(product)}      4 multiplications\n"
            f"    y = A^T (...) = {show(y)}\n"
            f"    direct: y_i = sum_k d_(i+k) g_k = {show(direct)}      6 multiplications\n")


class _AnyGPU:
    """Stands for CuPy when asking the registry what it picks on a GPU: every engine's
    conditions only ask whether the array module is NumPy."""
    __name__ = "cupy"


def unet_engines():
    """The engine "auto" picks for each Convolution, Deconvolution and Pooling of the 2015 net
    at 572, on the CPU and on a GPU, from the registry (unetcore.layer.layer_class)."""
    from unetcore.layer import layer_class
    net = _net("unet-deploy.prototxt", 572)
    rows = ["| layer | type | channels in -> out | output | CPU | GPU |",
            "| --- | --- | --- | --- | --- | --- |"]
    for layer, bottom, top in zip(net.layers, net.bottom_vecs, net.top_vecs):
        if layer.type not in ("Convolution", "Deconvolution", "Pooling"):
            continue
        shapes = [bottom[0].shape]
        cpu, gpu = (layer_class(layer.param, shapes, xp).engine for xp in (np, _AnyGPU()))
        rows.append(f"| {layer.name} | {layer.type} | {bottom[0].shape[1]} -> "
                    f"{top[0].shape[1]} | {top[0].shape[-1]} | {cpu} | {gpu} |")
    return "\n".join(rows) + "\n"


def winograd_unet_layers():
    """The engine and tile "auto" picks for each 3x3 convolution of the 2015 net at 572, with
    the multiplications of the GEMMs against the direct sum's."""
    from unetcore.ops.winograd import tile_count
    net = _net("unet-deploy.prototxt", 572)
    rows = ["| layer | channels | output | engine | tile | GEMM multiplications / direct |",
            "| --- | --- | --- | --- | --- | --- |"]
    for layer, top in zip(net.layers, net.top_vecs):
        if layer.type != "Convolution" or layer.geom.kernel != (3, 3):
            continue
        out = top[0].shape[-1]
        tile, ratio = getattr(layer, "tile", None), "1"
        if tile:
            winograd = (tile + 2) ** 2 * tile_count(out, tile) ** 2
            ratio = f"1/{9 * out * out / winograd:.2f}"
        rows.append(f"| {layer.name} | {layer.channels} -> {layer.num_output} | {out} | "
                    f"{layer.engine} | {f'F({tile}, 3)' if tile else '-'} | {ratio} |")
    return "\n".join(rows) + "\n"


def winograd_errors():
    """float32 error of F(2, 3), F(4, 3) and F(6, 3) with two sets of points, against the
    float32 direct sum, on outputs of a 3x3 convolution with 128 input channels."""
    from fractions import Fraction as F

    from unetcore.ops.winograd import POINTS, winograd_2d
    lavin = (F(0), F(1), F(-1), F(2), F(-2), F(1, 2), F(-1, 2), F(4), F(-4))
    rng = np.random.default_rng(0)
    channels, count = 128, 500
    rows = ["| method | median | max |", "| --- | --- | --- |"]

    def errors(y, exact):
        e = np.abs(y - exact).max(axis=(1, 2)) / np.abs(exact).max(axis=(1, 2))
        return f"{np.median(e):.1e} | {e.max():.1e}"
    for m in (2, 4, 6):
        d = rng.random((count, channels, m + 2, m + 2))        # ReLU outputs: not negative
        g = rng.standard_normal((count, channels, 3, 3)) * np.sqrt(2 / (9 * channels))   # MSRA
        windows = np.lib.stride_tricks.sliding_window_view(d, (3, 3), axis=(2, 3))
        exact = np.einsum("ncijpq,ncpq->nij", windows, g)
        if m == 2:
            direct = np.einsum("ncijpq,ncpq->nij", windows.astype(np.float32), g.astype(np.float32))
            rows.append(f"| direct sum (im2col + GEMM), float32 | {errors(direct, exact)} |")
        for name, points in (("halves (unetcore)", POINTS), ("0, ±1, ±2 (Lavin & Gray)", lavin)):
            t = winograd_2d(m, (3, 3), np.float32, np, points)
            v = d.reshape(count, channels, -1).astype(np.float32) @ t.input_transform.T
            u = g.reshape(count, channels, -1).astype(np.float32) @ t.filter_transform.T
            y = (u * v).sum(axis=1) @ t.output_transform.T
            rows.append(f"| F({m}, 3), points {name} | {errors(y.reshape(count, m, m), exact)} |")
    return (f"Max error over each output tile, relative to its largest output, for {count} tiles "
            f"of a {channels}-channel sum (float64 is the truth):\n\n" + "\n".join(rows) + "\n")


def winograd_sources():
    """Where the engine computes each line of the algorithm."""
    from unetcore.layers.convolution_winograd import WinogradConvolution as Wino
    return (f"- U = (G kron G) g: `transformed_kernel`, {_link(Wino.transformed_kernel, 'filter_transform @')}\n"
            f"- V = (B^T kron B^T) d: `input_tiles`, {_link(Wino.input_tiles, 'input_transform, d')}\n"
            f"- M[t] = U[t] @ V[t]: `forward_gemm`, {_link(Wino.forward_gemm, 'matmul(u, v')}\n"
            f"- y = (A^T kron A^T) M: `put_output_tiles`, {_link(Wino.put_output_tiles, 'output_transform, m')}\n"
            f"- dM = (A^T kron A^T)^T dy: `output_tile_gradients`, {_link(Wino.output_tile_gradients, 'output_transform.T')}\n"
            f"- dU[t] = dM[t] @ V[t]^T, dg = (G kron G)^T dU: `backward_image`, {_link(Wino.backward_image, 'filter_transform.T')}\n"
            f"- dV[t] = U[t]^T @ dM[t]: `backward_image`, {_link(Wino.backward_image, 'matmul(u_t, dm')}\n"
            f"- dx += (B^T kron B^T)^T dV, tile by tile: `add_input_tile_gradients`, {_link(Wino.add_input_tile_gradients, 'pixels +=')}\n")


def three_d_tiles():
    """The 3-d nets' tiles: input, output, margin and step per axis, and the valid sizes."""
    from unetcore.sizes import nearest_sizes_per_axis
    from unetcore.inference.tiling import axis_geometry
    rows = ["| net | tile (z, y, x) | output | margin | step | valid sizes near the tile |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in ("unet3d-em", "unet3d-demo"):
        net = _net(f"{name}-deploy.prototxt")
        geometry = axis_geometry(net, "d0a", "score")
        column = lambda i: " x ".join(str(g[i]) for g in geometry)      # noqa: E731
        near = nearest_sizes_per_axis(net, "d0a", count=2)
        valid = "; ".join(f"{axis}: {', '.join(map(str, sizes))}" for axis, sizes
                          in zip("zyx", near))
        rows.append(f"| {name} | {column(0)} | {column(1)} | {column(2)} | {column(3)} | "
                    f"{valid} |")
    return "\n".join(rows) + "\n"


def three_d_im2col():
    """The im2col matrix of the EM net's first 3x3x3 layer, for one band of output slices."""
    net = _net("unet3d-em-deploy.prototxt")
    layer = next(l for l in net.layers if l.name == "conv_d2a-b")
    x, y = net.blobs["d2a"].shape, net.blobs["d2b"].shape
    rows = x[1] * 27
    per_slice = y[3] * y[4]
    return (f"For `conv_d2a-b` of the EM net ({x[1]} -> {y[1]} channels, "
            f"{'x'.join(map(str, x[2:]))} -> {'x'.join(map(str, y[2:]))} voxels, kernel "
            f"{'x'.join(map(str, layer.geom.kernel))}), `col` has {rows} rows (channel, o, p, "
            f"q) and {per_slice:,} columns per output slice: {rows * per_slice * 4 / 1e6:.1f} MB "
            f"a slice, {rows * per_slice * y[2] * 4 / 1e9:.2f} GB for all {y[2]} slices, so it "
            "is built in bands of slices within the workspace.\n")


BLOCKS = {"shapes-572": shapes_572, "valid-sizes": valid_sizes, "im2col-example": im2col_example,
          "layer-sources": layer_sources, "convolution-definition": convolution_definition,
          "convolution-products": convolution_products, "pooling-sources": pooling_sources,
          "softmax-loss-sources": softmax_loss_sources,
          "real-data-scores": real_data_scores,
          "deconvolution-matrix": deconvolution_matrix, "overlap-tile": overlap_tile_numbers, "loss-normalizer": loss_normalizer,
          "receptive-field": receptive_field_table, "splits": split_blobs,
          "receptive-picture": receptive_picture,
          "im2col-size": im2col_size, "worked-backprop": worked_backprop,
          "worked-gradient-check": worked_gradient_check, "worked-ties": worked_ties,
          "exercises-walkthrough": exercises_walkthrough,
          "exercises-backprop": exercises_backprop, "exercises-im2col": exercises_im2col,
          "exercises-training": exercises_training,
          "exercises-overlap-tile": exercises_overlap_tile,
          "winograd-matrices": winograd_matrices, "winograd-example": winograd_example,
          "winograd-unet-layers": winograd_unet_layers, "unet-engines": unet_engines, "winograd-errors": winograd_errors,
          "winograd-sources": winograd_sources, "three-d-tiles": three_d_tiles,
          "three-d-im2col": three_d_im2col, "exercises-3d": exercises_3d}


def figures():
    """{file name: bytes} of the pictures, drawn by the project's own code."""
    import tempfile

    from unetcore.data import deformation as deform
    from unetcore.data.synth import synth_stack
    from unetcore.data.weightmap import weight_map
    from unetcore.tools.draw import svg_text
    from unetcore.tools.pictures import heat, to_grey, write_png
    images, labels = synth_stack(1, 192, seed=3)
    image, label = images[0], labels[0]
    rng = np.random.default_rng(5)
    coords = np.indices((192, 192), dtype=float) + deform.paper_displacements((192, 192), rng)
    grid = image.copy()
    grid[::16, :] = 255
    grid[:, ::16] = 255
    pictures = {
        "synth-image.png": image, "synth-labels.png": label,
        "weightmap.png": heat(weight_map(label, 10, 5)),
        "deformed-grid.png": to_grey(deform.sample(grid.astype(float), coords, 3), 0, 255),
        "deformed-labels.png": deform.sample(label, coords, 0)}
    pictures.update(real_data_pictures())
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, array in pictures.items():
            write_png(Path(tmp) / name, array)
            out[name] = (Path(tmp) / name).read_bytes()
    out["unet.svg"] = svg_text(_net("unet-deploy.prototxt")).encode()
    out["overlap-tile.svg"] = overlap_tile_svg().encode()
    return out


def overlap_tile_svg(scale=0.5):
    """The 512 x 512 image, the mirrored canvas, one input tile and the outputs' grid."""
    from unetcore.inference.tiling import tile_geometry
    net = _net("unet-deploy.prototxt")
    tile, out, margin, step = tile_geometry(net, "data", "score")
    rows = -(-512 // step)
    canvas = (rows - 1) * step + tile
    s = lambda v: f"{v * scale:.0f}"                                 # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{s(canvas + 20)}" '
             f'height="{s(canvas + 20)}" font-family="sans-serif" font-size="11">',
             f'<rect x="{s(10)}" y="{s(10)}" width="{s(canvas)}" height="{s(canvas)}" '
             'fill="#eee" stroke="#999"/>',
             f'<rect x="{s(10 + margin)}" y="{s(10 + margin)}" width="{s(512)}" '
             f'height="{s(512)}" fill="#cde" stroke="#357"/>']
    for i in range(rows):
        for j in range(rows):
            parts.append(f'<rect x="{s(10 + margin + j * step)}" y="{s(10 + margin + i * step)}" '
                         f'width="{s(step)}" height="{s(step)}" fill="none" stroke="#c33" '
                         'stroke-dasharray="4 3"/>')
    parts.append(f'<rect x="{s(10)}" y="{s(10)}" width="{s(tile)}" height="{s(tile)}" '
                 'fill="none" stroke="#2a2" stroke-width="2"/>')
    parts.append(f'<text x="{s(16)}" y="{s(30)}">mirrored canvas {canvas} px; green: the first '
                 f'{tile} px input tile; blue: the image; red: outputs, step {step}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


# ---------------------------------------------------------------- fresh on every CPU
# The docs must be fresh on any x86-64 CPU, BLAS kernel and thread count. Most numbers are
# exact (counts, shapes, exact fractions) or printed with few digits; a float printed with a
# decimal point may still land on the other side of a rounding boundary on another CPU, so
# it may move by one unit of its last digit. The blocks below print rounding errors, whose
# size itself depends on the order of the sums: over OpenBLAS's SkylakeX, Haswell,
# Sandybridge and Prescott kernels their largest value moved by up to 1.5x (the F(6, 3)
# maxima, the checker's 5.5e-10 to 8.0e-10), so they may move by up to 2x.
ROUNDING_BLOCKS = {"winograd-errors", "worked-gradient-check"}
ROUNDING_FACTOR = 2.0
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def last_digit(number):
    """One unit of the last printed digit of a float's text: 0.01 for "3.14", 1e-06 for
    "2.5e-05"; None for an integer, which must match exactly."""
    mantissa, e, exponent = number.lower().partition("e")
    if "." not in mantissa and not e:
        return None
    return 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))


def numbers_agree(old, new, factor=None):
    """Integers exactly; floats within one unit of the last digit, or within `factor`."""
    unit = last_digit(old)
    if old == new or unit is None:
        return old == new
    a, b = float(old), float(new)
    if abs(a - b) <= 1.001 * unit:
        return True
    return factor is not None and a * b > 0 and max(a / b, b / a) <= factor


def texts_agree(old, new, factor=None):
    """The same text, but for numbers that agree as numbers_agree says."""
    if NUMBER.split(old) != NUMBER.split(new):
        return False
    return all(numbers_agree(a, b, factor)
               for a, b in zip(NUMBER.findall(old), NUMBER.findall(new)))


def blocks_agree(old_text, new_text):
    old_blocks, new_blocks = BLOCK.findall(old_text), BLOCK.findall(new_text)
    return BLOCK.sub("", old_text) == BLOCK.sub("", new_text) and all(
        texts_agree(old[2], new[2], ROUNDING_FACTOR if old[1] in ROUNDING_BLOCKS else None)
        for old, new in zip(old_blocks, new_blocks))


def figures_agree(name, old, new):
    """PNGs may differ by one grey level per pixel (a probability on a rounding boundary)."""
    if old == new:
        return True
    if not name.endswith(".png"):
        return False
    from unetcore.tools.pictures import read_png
    a, b = read_png(old).astype(int), read_png(new).astype(int)
    return a.shape == b.shape and np.abs(a - b).max() <= 1


def regenerate(check=False):
    """Rewrite (or with check, compare) every generated block and figure; return stale names.
    The check accepts the differences in rounding that other CPUs give (see above)."""
    stale = []
    for md in sorted(DOCS.glob("*.md")):
        text = md.read_text()
        new = BLOCK.sub(lambda m: m[1] + BLOCKS[m[2]]() + m[4], text)
        if new != text and not (check and blocks_agree(text, new)):
            stale.append(md.name)
            if not check:
                md.write_text(new)
    (DOCS / "figures").mkdir(exist_ok=True)
    for name, data in figures().items():
        path = DOCS / "figures" / name
        if not path.exists() or not figures_agree(name, path.read_bytes(), data):
            stale.append(f"figures/{name}")
            if not check:
                path.write_bytes(data)
    return stale


if __name__ == "__main__":
    check = "--check" in sys.argv
    stale = regenerate(check)
    print(("stale: " if check else "regenerated: ") + (", ".join(stale) or "nothing"))
    sys.exit(1 if check and stale else 0)
