"""Generates the numbers and pictures of docs/ with the project's own code.

Markdown files carry blocks ``<!-- begin generated: NAME -->`` ... ``<!-- end generated -->``;
``python bin/docgen.py`` rewrites them and the figures, ``--check`` fails when any is
stale (a test runs it), so the docs' numbers are computed, never typed. ``--only NAME,...``
limits either to the named blocks and SVG figures (tests/docs/test_docs_hosts.py reruns the
ones with the most floating-point arithmetic under another BLAS kernel).
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


def _maths():
    """For the types whose forward or backward only dispatches (per image, per device), the
    functions that hold the maths: {type: (forward, backward, what the layer does with them)}."""
    from unetcore.layers import convolution, pooling, softmax_loss
    conv = convolution.ConvolutionLayer
    return {
        "Convolution": (convolution.direct_convolution, convolution.direct_convolution_backward,
                        "the definition; the layer computes it as im2col + GEMM"),
        "Deconvolution": (conv.backward_gemm, conv.forward_gemm,
                          "the convolution's products, swapped"),
        "Pooling": (pooling.max_pool_forward, pooling.max_pool_backward, "MAX"),
        "SoftmaxWithLoss": (softmax_loss.weighted_log_loss, softmax_loss.loss_gradient,
                            "the weighted loss and its gradient")}


def layer_sources():
    """Each type's maths, forward and backward, the layer methods that call it where they
    differ, and its engines (same math, faster)."""
    from unetcore import layer as layer_module
    maths = _maths()
    rows = ["| type | forward: the maths | backward: the maths | the layer's forward / backward "
            "| same math, faster |", "| --- | --- | --- | --- | --- |"]
    for name, cls in sorted(layer_module.LAYER_TYPES.items()):
        engines = ", ".join(f"[{e.engine}](../{Path(inspect.getsourcefile(e)).resolve().relative_to(REPO)})"
                            for e in layer_module.ENGINES.get(name, ()))
        no_backward = cls.backward is layer_module.Layer.backward
        backward = "none: it passes no gradient down" if no_backward else None
        if name in maths:
            forward_fn, backward_fn, note = maths[name]
            calls = f"{_link(cls.forward)} / {_link(cls.backward)} ({note})"
            rows.append(f"| {name} | `{forward_fn.__name__}`, {_link(forward_fn)} | "
                        f"`{backward_fn.__name__}`, {_link(backward_fn)} | {calls} | {engines} |")
        else:
            rows.append(f"| {name} | {_link(cls.forward)} | {backward or _link(cls.backward)} "
                        f"| the same | {engines} |")
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


def tiny_unet(seed, axes=2):
    """A U-Net in little (depth 1, 1 channel at the top, 2 classes, 20 px -> 4 px per axis,
    in `axes` spatial dimensions) with small integer weights (-1, 0, 1), biases of 0.1 and a
    random input. worked_ties counts where a ReLU input or a max-pool window sits on a kink
    or a tie, where finite differences cannot agree."""
    from unetcore.net import Net
    from unetcore.formats.prototxt import parse
    from unetcore.models.unet import layers_text

    def shape(size):
        return "shape { dim: 1 dim: 1 " + f"dim: {size} " * axes + "}"
    text = ('name: "tiny"\nlayer { name: "input" type: "Input" top: "data" top: "label" '
            f'top: "weights" input_param {{ {shape(20)} {shape(4)} {shape(4)} }} }}\n'
            + layers_text(depth=1, channels=1, classes=2, dropout_levels=0)
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" '
              'bottom: "weights" top: "loss" }\n')
    net = Net(parse(text), "TRAIN", dtype=np.float64)
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        blobs[0].data[...] = rng.choice([-1, 0, 1], blobs[0].shape)
        blobs[1].data[...] = 0.1          # not 0: a dead unit's output would sit on a kink
    net.set_inputs({"data": rng.random((1, 1) + (20,) * axes),
                    "label": rng.integers(0, 2, (1, 1) + (4,) * axes),
                    "weights": rng.integers(1, 4, (1, 1) + (4,) * axes)})
    return net


WORKED_SEED = 1     # a draw whose score is not flat and whose ReLUs are 35-81% alive
CIRCUIT_SEED = 13   # the 1-d net's: no kink, no tie, some ReLUs off, gradients reach every level


@lru_cache(maxsize=None)
def tiny_pass(seed=WORKED_SEED, axes=2):
    """One forward and backward pass of tiny_unet, layer by layer, as Net.backward runs it:
    the net; the loss; every blob's data after the forward (in place, a convolution's top
    holds its ReLU's output) and `pre`, each such top before its ReLU; and `steps`, for each
    layer that ran backward, the gradients it wrote into its bottoms, in the order written."""
    from types import SimpleNamespace
    net = tiny_unet(seed, axes)
    net.fused_rectifiers = {}           # every layer as written: the ReLUs run on their own
    pre = {}

    def before_relu(i):
        if i + 1 < len(net.layers) and net.layers[i + 1].type == "ReLU":
            pre[net.specs[i].tops[0]] = net.top_vecs[i][0].data.copy()
    net.after_forward.append(before_relu)
    loss = net.forward_layers()
    net.after_forward.remove(before_relu)
    data = {name: blob.data.copy() for name, blob in net.blobs.items()}
    for top, spec in zip(net.top_vecs, net.specs):          # as Net.backward starts
        for blob, weight in zip(top, spec.loss_weights):
            if weight:
                blob.diff[...] = weight
    for blobs in net.params.values():
        for blob in blobs:
            blob.diff[...] = 0
    steps = []
    for i in reversed(range(len(net.layers))):
        if not net.layer_need_backward[i]:
            continue
        layer, spec, bottom = net.layers[i], net.specs[i], net.bottom_vecs[i]
        layer.backward(net.top_vecs[i], net.bottom_need_backward[i], bottom)
        steps.append((layer, [(n, b.diff.copy()) for n, b, need in zip(
            spec.bottoms, bottom, net.bottom_need_backward[i]) if need]))
    return SimpleNamespace(net=net, loss=loss, data=data, pre=pre, steps=steps)


def _gradient(run, layer_name, blob):
    """The gradient that layer `layer_name` wrote into its bottom `blob`."""
    return next(diff for layer, grads in run.steps if layer.name == layer_name
                for name, diff in grads if name == blob)


def _grid(array):
    """A 2-d array as aligned text, up to 3 significant digits."""
    cells = [[_num(v) for v in row] for row in np.atleast_2d(array)]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("    " + " ".join(c.rjust(width) for c in row) for row in cells)


def _num(v):
    return f"{float(v) + 0.0:.3g}"             # + 0.0: no "-0"


def _blob_text(name, array):
    if array.ndim == 0:
        return f"`{name}` = {float(array):.6g}\n"
    parts = [f"`{name}`, channel {c}:\n\n{_grid(array[0, c])}\n" for c in range(array.shape[1])]
    return "\n".join(parts)


def _weight_grids(layer, blob, what):
    """Each k x k grid of a weight blob (or of its gradient), labelled by its (o, c): a
    Convolution's blob is (C_out, C_in, k, k), Caffe's Deconvolution stores (C_in, C_out, k, k)."""
    deconv = layer.type == "Deconvolution"
    grids = []
    for a in range(blob.shape[0]):
        for b in range(blob.shape[1]):
            o, c = (b, a) if deconv else (a, b)
            grids.append(f"`{what}[{a}, {b}]`, output channel o = {o}, input channel c = {c}:"
                         f"\n\n{_grid(blob[a, b])}\n")
    return "\n".join(grids)


def worked_backprop():
    """Every blob's data down the tiny U-Net, every diff back up, and every weight with its
    gradient."""
    run = tiny_pass()
    net = run.net
    down = [f"The loss is {run.loss:.6g}. Forward, layer by layer (in-place ReLUs overwrite their "
            "convolution's top, so a convolution's top is shown after its ReLU):\n"]
    for layer, spec in zip(net.layers, net.specs):
        if layer.type in ("Split", "ReLU") or not spec.tops:
            continue
        down.append(f"**{layer.name}** ({layer.type}):\n\n" +
                    "\n".join(_blob_text(n, run.data[n]) for n in spec.tops))
    up = ["Backward, from the loss down: after each layer, the gradient it wrote into its "
          "bottoms, dL/dbottom. A ReLU runs in place, so its line is the gradient of the "
          "convolution's top after the mask: the dy that the convolution below it uses:\n"]
    for layer, grads in run.steps:
        if grads:
            what = {"Split": "the sum of its tops' gradients",
                    "ReLU": "the gradient masked where its output was 0"}.get(
                        layer.type, "the gradient of its bottom")
            up.append(f"**{layer.name}** ({layer.type}), {what}:\n\n" +
                      "\n".join(_blob_text(n, a) for n, a in grads))
    weights = ["The weights W, the biases b and their gradients dL/dW, dL/db. A Convolution's "
               "weight blob is indexed [o, c, p, q], o its output channel and c its input "
               "channel; Caffe stores a Deconvolution's as [c, o, p, q], input channel first, "
               "and the labels below follow the blob's own order:\n"]
    for name, blobs in net.params.items():
        layer = net.layer(name)
        weights.append(f"**{name}** ({layer.type}), W:\n\n"
                       + _weight_grids(layer, blobs[0].data, "W")
                       + f"\nb = {_row(blobs[1].data)}\n\n**{name}**, dW:\n\n"
                       + _weight_grids(layer, blobs[0].diff, "dW")
                       + f"\ndb = {_row(blobs[1].diff)}\n")
    return "\n".join(down + up + weights)


def _terms(pairs):
    """'(a)(b) + (c)(d) ...' for the pairs whose product is not 0, and their sum."""
    pairs = list(pairs)
    shown = [(a, b) for a, b in pairs if a * b != 0]
    text = " + ".join(f"({_num(a)})({_num(b)})" for a, b in shown) or "0"
    return text, sum(a * b for a, b in pairs)


def _split_of(net, blob):
    """The Split layer that hands `blob` to its readers, and its spec."""
    return next((layer, spec) for layer, spec in zip(net.layers, net.specs)
                if layer.type == "Split" and spec.bottoms == [blob])


def _agrees(computed, stored, what):
    if not np.isclose(computed, stored, rtol=1e-12, atol=1e-15):
        raise ValueError(f"worked entry of {what}: {computed} by hand, {stored} in the net")
    return stored


def worked_entries():
    """One entry of each layer type of the tiny U-Net, worked by hand from the numbers the
    worked-backprop block prints; the generator checks every one against the net."""
    run = tiny_pass()
    net, data, pre = run.net, run.data, run.pre
    w = {name: blobs[0].data for name, blobs in net.params.items()}
    b = {name: float(blobs[1].data[0]) for name, blobs in net.params.items()}
    out = []

    # Convolution, forward: the first output pixel of conv_d0a-b whose sum is positive
    z = pre["d0b"][0, 0]
    i, j = next(ij for ij in zip(*np.nonzero(z > 0)))
    patch = data["data"][0, 0, i:i + 3, j:j + 3]
    text, total = _terms(zip(w["conv_d0a-b"][0, 0].ravel(), patch.ravel()))
    _agrees(b["conv_d0a-b"] + total, z[i, j], "conv_d0a-b")
    out.append(f"**Convolution, forward.** `d0b` at row {i}, column {j} is the bias plus the "
               f"3 x 3 weights `W[0, 0]` of `conv_d0a-b` times the input pixels at rows "
               f"{i} to {i + 2}, columns {j} to {j + 2} (terms with a weight of 0 left out):\n\n"
               f"    {_num(b['conv_d0a-b'])} + {text} = {_num(z[i, j])}\n\n"
               f"It is positive, so the ReLU passes it: d0b[{i}, {j}] = "
               f"{_num(data['d0b'][0, 0, i, j])}.\n")

    # ReLU, forward and backward: a pixel of d0b whose sum is negative and whose upstream
    # gradient is not 0
    before = _gradient(run, "conv_d0b-c", "d0b")[0, 0]
    after = _gradient(run, "relu_d0b", "d0b")[0, 0]
    i, j = next(ij for ij in zip(*np.nonzero((z < 0) & (before != 0))))
    out.append(f"**ReLU.** At row {i}, column {j} the sum of `conv_d0a-b` is {_num(z[i, j])}, so "
               f"the ReLU outputs 0. In the backward, `conv_d0b-c` hands it the gradient "
               f"{_num(before[i, j])} for that pixel; the ReLU's output did not change with "
               f"its input there, so it passes {_num(after[i, j])}: the gate is closed.\n")

    # Max pooling: the first window of pool_d0c-1a with a non-zero gradient and no tie
    x = data["d0c"][0, 0]
    dy = _gradient(run, "conv_d1a-b", "d1a")[0, 0]
    pool_split = next(name for name, _ in next(g for l, g in run.steps if l.name == "pool_d0c-1a"))
    dx = _gradient(run, "pool_d0c-1a", pool_split)[0, 0]
    for i, j in zip(*np.nonzero(dy)):
        window = x[2 * i:2 * i + 2, 2 * j:2 * j + 2]
        if (window == window.max()).sum() == 1:
            break
    p, q = np.unravel_index(window.argmax(), (2, 2))
    _agrees(window.max(), data["d1a"][0, 0, i, j], "pool_d0c-1a")
    _agrees(dy[i, j], dx[2 * i + p, 2 * j + q], "pool_d0c-1a backward")
    out.append(f"**Max pooling.** `d1a` at row {i}, column {j} is the largest of the window "
               f"of `d0c` at rows {2 * i}, {2 * i + 1} and columns {2 * j}, {2 * j + 1}:\n\n"
               f"    max({', '.join(_num(v) for v in window.ravel())}) = {_num(window.max())}\n\n"
               f"In the backward its gradient, {_num(dy[i, j])}, goes to the winner at row "
               f"{2 * i + p}, column {2 * j + q}; the other three pixels of the window get 0 from "
               "the pool.\n")

    # Split: a pixel of d0c that both the pool and the crop send a gradient to
    split, spec = _split_of(net, "d0c")
    crop_top = next(t for t in spec.tops if t != pool_split)
    from_pool = dx
    from_crop = _gradient(run, "crop_d0c-d0cc", crop_top)[0, 0]
    total = _gradient(run, split.name, "d0c")[0, 0]
    i, j = next(ij for ij in zip(*np.nonzero((from_pool != 0) & (from_crop != 0))))
    _agrees(from_pool[i, j] + from_crop[i, j], total[i, j], "the split of d0c")
    out.append(f"**Split.** `d0c` feeds the pool and the crop, so its gradient is the sum of "
               f"what the two send back. At row {i}, column {j}: ({_num(from_pool[i, j])}) "
               f"from the pool + ({_num(from_crop[i, j])}) from the crop = "
               f"{_num(total[i, j])}.\n")

    # Crop: where the window sits
    crop = net.layer("crop_d0c-d0cc")
    off = crop.window[2].start
    dcrop = _gradient(run, "concat_d0cc_u0a-b", "d0cc")[0, 0]
    i, j = next(ij for ij in zip(*np.nonzero(dcrop)))
    _agrees(dcrop[i, j], from_crop[i + off, j + off], "the crop")
    out.append(f"**Crop.** `d0cc` is `d0c` without its first and last {off} rows and columns: "
               f"d0cc[i, j] = d0c[i + {off}, j + {off}]. Its backward puts each gradient back "
               f"where the pixel came from, d0cc's {_num(dcrop[i, j])} at ({i}, {j}) into "
               f"d0c's ({i + off}, {j + off}), and 0 on the {off}-pixel frame it cut.\n")

    # Concat
    du0b = _gradient(run, "conv_u0b-c", "u0b")[0]
    dconcat = dict(next(g for l, g in run.steps if l.name == "concat_d0cc_u0a-b"))
    out.append("**Concat.** `u0b` is `u0a` (channel 0) and `d0cc` (channel 1) side by side. "
               "Its backward hands channel 0 of its gradient to `u0a` and channel 1 to `d0cc`, "
               "unchanged: the first row of channel 1 is "
               f"({', '.join(_num(v) for v in du0b[1, 0])}), "
               f"and so is the first row of `d0cc`'s gradient "
               f"({', '.join(_num(v) for v in dconcat['d0cc'][0, 0, 0])}).\n")

    # Deconvolution, forward and backward: an output pixel fed by both channels, and a
    # d1c pixel whose block sends back two gradients or more
    k = w["upconv_d1c_u0a"]                                # (C_in 2, C_out 1, 2, 2)
    d1c = data["d1c"][0]
    zu = pre["u0a"][0, 0]
    i, j, p, q = max(((i, j, p, q) for i in range(d1c.shape[1]) for j in range(d1c.shape[2])
                      for p in range(2) for q in range(2)),
                     key=lambda t: np.count_nonzero(k[:, 0, t[2], t[3]] * d1c[:, t[0], t[1]]))
    text, total = _terms(zip(k[:, 0, p, q], d1c[:, i, j]))
    _agrees(b["upconv_d1c_u0a"] + total, zu[2 * i + p, 2 * j + q], "upconv_d1c_u0a")
    du0a = _gradient(run, "relu_u0a", "u0a")[0, 0]
    dd1c = _gradient(run, "upconv_d1c_u0a", "d1c")[0]

    def block(c, i, j):
        return list(zip(k[c, 0].ravel(), du0a[2 * i:2 * i + 2, 2 * j:2 * j + 2].ravel()))
    c, bi, bj = next((c, bi, bj) for c in range(2) for bi in range(d1c.shape[1])
                     for bj in range(d1c.shape[2])
                     if sum(a * g != 0 for a, g in block(c, bi, bj)) >= 2)
    back_text, back = _terms(block(c, bi, bj))
    _agrees(back, dd1c[c, bi, bj], "upconv_d1c_u0a backward")
    out.append(f"**Up-convolution, forward.** Each pixel (i, j) of `d1c` writes its own 2 x 2 "
               f"block of `u0a`, rows 2i and 2i + 1, columns 2j and 2j + 1. So `u0a` at row "
               f"{2 * i + p}, column {2 * j + q} comes from `d1c`'s pixel ({i}, {j}) alone, "
               f"through tap ({p}, {q}) of the weights `W[c, 0]` (Caffe's order: input channel "
               f"c first), summed over the two channels c (zero terms left out):\n\n"
               f"    {_num(b['upconv_d1c_u0a'])} + {text} = {_num(zu[2 * i + p, 2 * j + q])}\n\n"
               f"**Up-convolution, backward.** The gradient of `d1c` channel {c} at ({bi}, {bj}) "
               f"collects the four gradients of its block of `u0a` (after `relu_u0a`'s mask), "
               f"each times the tap of `W[{c}, 0]` that carried it (zero terms left out):\n\n"
               f"    {back_text} = {_num(dd1c[c, bi, bj])}\n")

    # Convolution, backward: dx and dW of conv_u0c-d
    kernel = w["conv_u0c-d"][0, 0]
    dy = _gradient(run, "relu_u0d", "u0d")[0, 0]           # after the mask
    dx = _gradient(run, "conv_u0c-d", "u0c")[0, 0]
    i, j = 2, 2
    pairs = [(kernel[p, q], dy[i - p, j - q]) for p in range(3) for q in range(3)
             if 0 <= i - p < dy.shape[0] and 0 <= j - q < dy.shape[1]]
    text, total = _terms(pairs)
    _agrees(total, dx[i, j], "conv_u0c-d dx")
    x = data["u0c"][0, 0]
    p, q = 1, 1
    pairs = [(dy[a, c], x[a + p, c + q]) for a in range(4) for c in range(4)]
    wtext, wtotal = _terms(pairs)
    dw = net.params["conv_u0c-d"][0].diff[0, 0]
    _agrees(wtotal, dw[p, q], "conv_u0c-d dW")
    out.append(f"**Convolution, backward (dx).** Pixel ({i}, {j}) of `u0c` was read by every "
               f"output pixel (i - p, j - q) of `conv_u0c-d`, through tap (p, q). Its gradient "
               f"is the sum of those outputs' gradients (after `relu_u0d`'s mask) times the tap "
               f"(zero terms left out):\n\n    {text} = {_num(total)}\n\n"
               f"**Convolution, backward (dW).** Tap ({p}, {q}) of `W[0, 0]` multiplied input "
               f"pixel (i + {p}, j + {q}) into output pixel (i, j), for all 16 outputs. Its "
               f"gradient is the sum of each output's gradient times that input (zero terms "
               f"left out):\n\n    {wtext} = {_num(wtotal)}\n\n"
               f"The bias is in every output, so db is the sum of all 16 output gradients: "
               f"{_num(net.params['conv_u0c-d'][1].diff[0])}.\n")

    # The loss and the 1x1 score layer, at the first pixel whose two scores differ
    scores_all = data["score"][0]
    i, j = next(ij for ij in zip(*np.nonzero(scores_all[0] != scores_all[1])))
    scores = scores_all[:, i, j]
    e = np.exp(scores - scores.max())
    prob = e / e.sum()
    label = int(data["label"][0, 0, i, j])
    weight = float(data["weights"][0, 0, i, j])
    total_weight = float(data["weights"].sum())
    dz = _gradient(run, "loss", "score")[0, :, i, j]
    for k_ in range(2):
        _agrees(weight * (prob[k_] - (k_ == label)) / total_weight, dz[k_], "the loss")
    ws = w["conv_u0d-score"][:, 0, 0, 0]
    text, total = _terms(zip(ws, dz))
    _agrees(total, _gradient(run, "conv_u0d-score", "u0d")[0, 0, i, j], "conv_u0d-score dx")
    out.append(f"**The loss.** At pixel ({i}, {j}) the scores are z = ({_num(scores[0])}, "
               f"{_num(scores[1])}), so the softmax gives p = ({_num(prob[0])}, {_num(prob[1])}). "
               f"The label is l = {label} and the weight w = {_num(weight)}; the weights of the "
               f"16 pixels sum to Z = {_num(total_weight)}. So dL/dz_k = w (p_k - [k = l]) / Z:\n\n"
               + "\n".join(f"    dz_{k} = {_num(weight)} ({_num(prob[k])} - {int(label == k)}) / "
                           f"{_num(total_weight)} = {_num(dz[k])}" for k in range(2)) + "\n\n"
               f"**1x1 convolution, backward.** `conv_u0d-score` makes each class score from "
               f"`u0d` at the same pixel, with the weights W[0, 0] = {_num(ws[0])} and W[1, 0] = "
               f"{_num(ws[1])}. So u0d's gradient at ({i}, {j}) is (zero terms left out)\n\n"
               f"    {text} = {_num(total)}\n")
    return "\n".join(out)


def worked_ties():
    """The max-pool windows of the tiny U-Net whose largest value is not unique."""
    run = tiny_pass()
    net = run.net
    zeros = sum(int((a == 0).sum()) for a in run.pre.values())   # ReLU inputs at the kink
    parts = []
    for layer, spec in zip(net.layers, net.specs):
        if layer.type != "Pooling":
            continue
        x = run.data[spec.bottoms[0]][0]
        windows = x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2)
        windows = windows.transpose(0, 1, 3, 2, 4).reshape(-1, 4)
        largest = windows.max(axis=1, keepdims=True)
        tied = (windows == largest).sum(axis=1) > 1
        if not np.all(largest[tied] == 0):   # the prose below holds for ties of zeros only
            raise ValueError(f"{layer.name} has a tie among values other than 0")
        parts.append(f"{tied.sum()} of the {len(windows)} windows of `{layer.name}` are ties, "
                     "every one among zeros")
    kinks = f"{zeros} ReLU inputs are exactly 0" if zeros else "No ReLU input is exactly 0"
    return (f"{kinks}. " + "; ".join(parts) + ": the ReLUs below output 0 "
            "there. The pool routes such a window's gradient to its first maximum (Caffe's "
            "rule), and the ReLU below turns it into 0 whichever input gets it, so the "
            "derivative is the same on both sides of the tie.\n")


GRADIENT_CHECK_BOUND = 1e-8


def worked_gradient_check():
    """The gradient checker's verdict on the tiny U-Net of worked_backprop, as a bound: the
    error left is rounding, whose digits depend on the order of the sums (the CPU's BLAS
    kernel), so only a bound is the same on every host."""
    from unetcore.gradcheck import check_net
    results = check_net(tiny_unet(WORKED_SEED))
    worst = max(r.max_scaled_error for r in results)
    if not worst < GRADIENT_CHECK_BOUND:
        raise ValueError(f"the worked net's gradient check gives {worst:.1e}, not below "
                         f"{GRADIENT_CHECK_BOUND:.0e}")
    return (f"The gradient checker (central differences, h = 1e-6) agrees on every one of "
            f"the {sum(r.checked for r in results)} parameters, to a relative error below "
            f"1e{np.log10(GRADIENT_CHECK_BOUND):.0f} (its threshold is 1e-6). What is left is "
            "rounding: "
            "float64's 1e-16, divided by h, gives errors of about 1e-10, whose digits depend on "
            "the order of the sums, and so on the CPU.\n")


def circuit_svg():
    """The 1-d U-Net in little as a circuit: every blob element a node, each node's output
    wire labelled with its value (green) and its gradient (red), an edge for every non-zero
    weight and every routing (pool, crop, concat)."""
    run = tiny_pass(CIRCUIT_SEED, axes=1)
    net, data, pre = run.net, run.data, run.pre
    grads = {}                            # blob -> dL/d(blob) as its consumers send it back
    for layer, written in run.steps:
        for name, diff in written:
            if layer.type != "ReLU" and name not in grads:
                grads[name] = diff
    for name in pre:
        if (pre[name] == 0).any():
            raise ValueError(f"the circuit's {name} has a ReLU input on the kink")
    columns = [("data", "input"), ("d0b", "conv + ReLU"), ("d0c", "conv + ReLU"),
               ("d1a", "max-pool 2"), ("d1b", "conv + ReLU"), ("d1c", "conv + ReLU"),
               ("u0a", "up-conv + ReLU"), ("d0cc", "crop"), ("u0c", "conv + ReLU"),
               ("u0d", "conv + ReLU"), ("score", "1x1 conv"), ("loss", "weighted softmax loss")]
    gap, step, top_margin = 34, 150, 110
    nodes = {}                             # (blob, channel, i) -> (x, y)
    height = max(data[n][0].size + data[n].shape[1] - 1 for n, _ in columns if n != "loss")
    for col, (name, _) in enumerate(columns):
        x = 40 + col * step
        if name == "loss":
            nodes[(name, 0, 0)] = (x, top_margin + (height - 1) * gap / 2)
            continue
        channels, size = data[name].shape[1], data[name].shape[2]
        count = channels * size + channels - 1
        y0 = top_margin + (height - count) * gap / 2
        for c in range(channels):
            for i in range(size):
                nodes[(name, c, i)] = (x, y0 + (c * (size + 1) + i) * gap)
    parts = []

    def edge(src, dst, style):
        (x1, y1), (x2, y2) = nodes[src], nodes[dst]
        parts.append(f'<line x1="{x1 + 52}" y1="{y1:.0f}" x2="{x2 - 7}" y2="{y2:.0f}" {style}/>')
    solid = 'stroke="#555" stroke-width="0.7"'
    dashed = 'stroke="#555" stroke-width="0.7" stroke-dasharray="3 2"'
    for layer, spec in zip(net.layers, net.specs):
        kind = layer.type
        if kind in ("Convolution", "Deconvolution"):
            src = "u0b" if spec.bottoms[0] == "u0b" else spec.bottoms[0]
            dst = spec.tops[0]
            kernel = net.params[layer.name][0].data
            for o in range(data[dst].shape[1]):
                for i in range(data[dst].shape[2]):
                    for c in range(kernel.shape[1] if kind == "Convolution" else kernel.shape[0]):
                        for p in range(kernel.shape[2]):
                            if kind == "Convolution":
                                weight, j = kernel[o, c, p], i + p
                            else:
                                if i % 2 != p:
                                    continue
                                weight, j = kernel[c, o, p], i // 2
                            if weight == 0:
                                continue
                            source = (("u0a", 0, j) if c == 0 else ("d0cc", 0, j)) \
                                if src == "u0b" else (src.split("_")[0], c, j)
                            edge(source, (dst, o, i), solid if weight > 0 else dashed)
        elif kind == "Pooling":
            x = data["d0c"][0, 0]
            for i in range(data["d1a"].shape[2]):
                win = 2 * i + int(np.argmax(x[2 * i:2 * i + 2]))
                for j in (2 * i, 2 * i + 1):
                    edge(("d0c", 0, j), ("d1a", 0, i), 'stroke="#000" stroke-width="2"'
                         if j == win else 'stroke="#bbb" stroke-width="0.7" stroke-dasharray="1 2"')
        elif kind == "Crop":               # the skip connection, routed over the top
            off = layer.window[2].start
            for i in range(data["d0cc"].shape[2]):
                (x1, y1), (x2, y2) = nodes[("d0c", 0, i + off)], nodes[("d0cc", 0, i)]
                peak = 58 + 4 * i                 # a cubic's middle: (y1 + y2) / 8 + 3/4 control
                high = (peak - (y1 + y2) / 8) / 0.75
                parts.append(f'<path d="M {x1 + 52} {y1:.0f} C {x1 + 90} {high:.0f}, {x2 - 60} '
                             f'{high:.0f}, {x2 - 7} {y2:.0f}" fill="none" stroke="#36c" '
                             'stroke-width="0.8"/>')
        elif kind == "SoftmaxWithLoss":
            for c in range(2):
                for i in range(data["score"].shape[2]):
                    edge(("score", c, i), ("loss", 0, 0), 'stroke="#999" stroke-width="0.5"')
    for (name, c, i), (x, y) in nodes.items():
        if name == "loss":
            value, grad = run.loss, 1.0
        else:
            value, grad = data[name][0, c, i], grads.get(name, np.zeros_like(data[name]))[0, c, i]
        dead = name in pre and pre[name][0, c, i] < 0
        fill = "#ddd" if dead else "#fff"
        parts.append(f'<circle cx="{x}" cy="{y:.0f}" r="6" fill="{fill}" stroke="#333"/>')
        parts.append(f'<line x1="{x + 6}" y1="{y:.0f}" x2="{x + 52}" y2="{y:.0f}" '
                     'stroke="#333" stroke-width="1"/>')
        parts.append(f'<text x="{x + 9}" y="{y - 3:.0f}" fill="#080">{_num(value)}</text>')
        if name != "data":                 # the input needs no gradient: none is computed
            parts.append(f'<text x="{x + 9}" y="{y + 11:.0f}" fill="#c00">{_num(grad)}</text>')
    for col, (name, what) in enumerate(columns):
        x = 40 + col * step
        parts.append(f'<text x="{x - 6}" y="24" font-weight="bold">{name}</text>')
        parts.append(f'<text x="{x - 6}" y="40" fill="#555">{what}</text>')
    width = 40 + len(columns) * step
    bottom = top_margin + height * gap + 10
    legend = ("Above each wire its value (green), below it the gradient dL/d(value) (red). "
              "Solid edges: weight +1; dashed: weight -1; edges of weight 0 are left out.",
              "Grey node: its ReLU is off (input below 0), so it passes no gradient down. "
              "Max-pool: thick edge from the window's winner. Blue: the crop's copy.",
              "u0c reads the concat of u0a (channel 0) and d0cc (channel 1); every bias is 0.1; "
              "the input needs no gradient.")
    parts += [f'<text x="40" y="{bottom + 16 * k}" fill="#333">{line}</text>'
              for k, line in enumerate(legend)]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{bottom + 50}" '
            'font-family="sans-serif" font-size="10">\n<rect width="100%" height="100%" '
            'fill="#fff"/>\n' + "\n".join(parts) + "\n</svg>\n")


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


ENGINE_TYPES = ("Convolution", "Deconvolution", "Pooling")
# The shipped nets whose engines the docs name, at their deploy tiles: the file and its name
# on the pages.
ENGINE_NETS = {"unet-deploy.prototxt": "the 2015 net", "unet-demo-deploy.prototxt": "the demo net",
               "unet3d-em-deploy.prototxt": "the 3-d EM net",
               "unet3d-demo-deploy.prototxt": "the 3-d demo net"}


@lru_cache(maxsize=None)
def engine_rows(name):
    """(layer, type, bottom shape, top shape, CPU engine, GPU engine) for each layer of a
    shipped net that has engines, at the net's own tile, as the registry
    (unetcore.layer.layer_class) picks them with engine "auto"."""
    from unetcore import config
    from unetcore.layer import layer_class
    net = _net(name)
    rows = []
    with config.using_engine("auto"):
        for layer, bottom, top in zip(net.layers, net.bottom_vecs, net.top_vecs):
            if layer.type in ENGINE_TYPES:
                shapes = [bottom[0].shape]
                cpu, gpu = (layer_class(layer.param, shapes, xp).engine for xp in (np, _AnyGPU()))
                rows.append((layer.name, layer.type, bottom[0].shape, top[0].shape, cpu, gpu))
    return tuple(rows)


def _engine_counts(rows, column):
    counts = {}
    for row in rows:
        counts[row[column]] = counts.get(row[column], 0) + 1
    return ", ".join(f"{engine} {count}" for engine, count in
                     sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def engine_table(name):
    """The engine table of one shipped net, and the count per engine on each device."""
    rows = ["| layer | type | channels in -> out | output | CPU | GPU |",
            "| --- | --- | --- | --- | --- | --- |"]
    found = engine_rows(name)
    for layer, kind, bottom, top, cpu, gpu in found:
        rows.append(f"| {layer} | {kind} | {bottom[1]} -> {top[1]} | "
                    f"{' x '.join(map(str, top[2:]))} | {cpu} | {gpu} |")
    return ("\n".join(rows) + f"\n\nLayers per engine, on the CPU: {_engine_counts(found, 4)}; "
            f"on a GPU: {_engine_counts(found, 5)}.\n")


def unet_engines():
    """The engine "auto" picks for each Convolution, Deconvolution and Pooling of the 2015 net
    at 572, on the CPU and on a GPU, from the registry (unetcore.layer.layer_class)."""
    return engine_table("unet-deploy.prototxt")


def demo_engines():
    """The same for the README demo's net (16 base channels) at its 316 px tile."""
    return engine_table("unet-demo-deploy.prototxt")


def three_d_engines():
    """The same for the two 3-d nets at their tiles."""
    return "\n".join(f"{ENGINE_NETS[name][0].upper()}{ENGINE_NETS[name][1:]} "
                     f"(`prototxt/{name}`, tile "
                     f"{' x '.join(map(str, engine_rows(name)[0][2][2:]))}):\n\n"
                     + engine_table(name) for name in ("unet3d-em-deploy.prototxt",
                                                       "unet3d-demo-deploy.prototxt"))


def engine_rules():
    """When engine "auto" takes each engine, with the thresholds read from the code."""
    from unetcore.layer import ENGINES
    from unetcore.layers.convolution_flat import FLAT_MAX_CHANNELS, FLAT_MIN_CHANNELS
    from unetcore.layers.convolution_winograd import WINOGRAD_MIN_CHANNELS
    order = {kind: ", ".join(cls.engine for cls in ENGINES[kind]) for kind in ENGINE_TYPES}
    return (f"\"auto\" tries a type's engines in this order and takes the first that can run "
            f"the layer and pays; where none does, the reference runs it. Convolution: "
            f"{order['Convolution']}. Deconvolution: {order['Deconvolution']}. Pooling: "
            f"{order['Pooling']}.\n\n"
            "- **pointwise**: 1x1 kernels (1x1x1 on volumes), stride 1, no padding, one group; "
            "any device.\n"
            "- **slices**: volumes whose kernel is 1 x kh x kw, where a 2-d engine pays on one "
            "slice; it runs that engine slice by slice.\n"
            f"- **winograd**: 2-d, stride 1, no padding or dilation, one group, a kernel up to "
            f"3x3 other than 1x1, at least {WINOGRAD_MIN_CHANNELS} input and output channels, "
            "and a tile that "
            "pays (`tile_for`); on the CPU only.\n"
            f"- **flat**: 2-d or 3-d, stride 1, no padding or dilation, one group, a kernel other "
            f"than 1x1, {FLAT_MIN_CHANNELS} to "
            f"{FLAT_MAX_CHANNELS[2]} input channels and at most {FLAT_MAX_CHANNELS[2]} output "
            f"channels in 2-d ({FLAT_MAX_CHANNELS[3]} in 3-d); on the CPU only.\n"
            "- **correlation**: stride 1, no padding or dilation, one group, a kernel other than "
            "1x1; more input than "
            "output channels on the CPU, at least as many on a GPU.\n"
            "- **blocks**: up-convolutions whose stride equals the kernel, without padding or "
            "dilation; any device.\n"
            "- **tiled**: MAX pooling whose stride equals the kernel, without padding; on the "
            "CPU only.\n")


def _layer_list(names):
    names = [f"`{n}`" for n in names]
    if not names:
        return "no layer"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def flat_engine_use():
    """Where the flat engine runs, and where an im2col runs on a GPU, from the registry."""
    from unetcore.layers.convolution_flat import FLAT_MAX_CHANNELS, FLAT_MIN_CHANNELS
    from unetcore.layer import ENGINES
    full, demo = engine_rows("unet-deploy.prototxt"), engine_rows("unet-demo-deploy.prototxt")

    def on(rows, device, *engines):
        return [row[0] for row in rows if row[device] in engines and row[1] == "Convolution"]
    before = [cls.engine for cls in ENGINES["Convolution"]]
    before = before[:before.index("flat")]
    for name in ENGINE_NETS:               # what the second paragraph says of every net
        for layer, kind, bottom, top, cpu, gpu in engine_rows(name):
            if gpu in ("flat", "winograd") or (kind == "Deconvolution" and gpu != "blocks") or (
                    layer.endswith("-score") and gpu != "pointwise"):
                raise ValueError(f"{name}: {layer} runs {gpu} on a GPU; flat_engine_use says "
                                 "otherwise")
    return (f"The flat engine pays for {FLAT_MIN_CHANNELS} to {FLAT_MAX_CHANNELS[2]} input "
            f"channels and at most {FLAT_MAX_CHANNELS[2]} output channels "
            f"({FLAT_MAX_CHANNELS[3]} in 3-d), on the CPU only. \"auto\" tries "
            f"{', '.join(before)} before it, so in the 2015 net at 572 it runs "
            f"{_layer_list(on(full, 4, 'flat'))} (Winograd takes "
            f"{len(on(full, 4, 'winograd'))} of the 3x3 layers); in the demo net at 316 it runs "
            f"{_layer_list(on(demo, 4, 'flat'))}.\n\n"
            "On a GPU neither the flat nor the Winograd engine runs. There the convolutions of "
            "the reference and the correlation engine build their `col` with the CUDA kernels "
            "of `unetcore/ops/im2col.cu` in 2-d (for volumes, with the strided copy above); in "
            f"the 2015 net those are {_layer_list(on(full, 5, 'reference'))} (the reference) and "
            f"{_layer_list(on(full, 5, 'correlation'))} (correlation, whose dx builds the im2col "
            "of dy instead of a col2im). The 1x1 score layer runs the pointwise engine, a plain "
            "matrix product without any im2col, and the up-convolutions the blocks engine, a "
            "reshaping copy.\n")


def winograd_unet_layers():
    """The engine and tile "auto" picks on the CPU for each 3x3 convolution of the 2015 net at
    572, the GEMM multiplications against the direct sum's, and the engine on a GPU."""
    from unetcore.ops.winograd import tile_count
    from unetcore.layers.convolution_winograd import tile_for
    gpu = {row[0]: row[5] for row in engine_rows("unet-deploy.prototxt")}
    net = _net("unet-deploy.prototxt", 572)
    rows = ["| layer | channels | output | CPU engine | tile | GEMM multiplications / direct "
            "| GPU engine |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for layer, top in zip(net.layers, net.top_vecs):
        if layer.type != "Convolution" or layer.geom.kernel != (3, 3):
            continue
        out = top[0].shape[-1]
        tile = tile_for(layer.channels, layer.num_output, out, out) \
            if layer.engine == "winograd" else None
        ratio = "1"
        if tile:
            winograd = (tile + 2) ** 2 * tile_count(out, tile) ** 2
            ratio = f"1/{9 * out * out / winograd:.2f}"
        rows.append(f"| {layer.name} | {layer.channels} -> {layer.num_output} | {out} | "
                    f"{layer.engine} | {f'F({tile}, 3)' if tile else '-'} | {ratio} | "
                    f"{gpu[layer.name]} |")
    return "\n".join(rows) + "\n"


def _point_names(points):
    """'0, ±1, ±1/2' for a set of points symmetric about 0."""
    names, seen = [], set()
    for p in points:
        if p in seen:
            continue
        seen.add(p)
        if p != 0 and -p in points:
            seen.add(-p)
            names.append(f"±{abs(p)}")
        else:
            names.append(str(p))
    return ", ".join(names)


def _f32_transform(a, matrix):
    """a (..., K) times matrix (J, K)^T in float32, summing k = 0, 1, ... in that order: each
    product and each sum rounded once, as IEEE float32 does on every CPU."""
    matrix = matrix.astype(np.float32)
    out = np.zeros(a.shape[:-1] + (matrix.shape[0],), np.float32)
    for k in range(matrix.shape[1]):
        out += a[..., k:k + 1] * matrix[:, k]
    return out


def winograd_errors():
    """float32 error of the direct sum and of F(2, 3), F(4, 3) and F(6, 3) with different
    sets of points, on outputs of a 3x3 convolution with 128 input channels, against float64.
    The float32 sums run in a fixed order (channel after channel, tap after tap), not in a
    BLAS kernel's, so the table is the same on every CPU."""
    from fractions import Fraction as F

    from unetcore.ops.winograd import POINTS, winograd_2d
    point_sets = {2: [("", POINTS[:3])],
                  4: [("unetcore's", POINTS[:5]),
                      ("Lavin & Gray's", (F(0), F(1), F(-1), F(2), F(-2)))],
                  6: [("unetcore's", POINTS[:7]), ("integers", (F(0), F(1), F(-1), F(2), F(-2), F(3), F(-3)))]}
    rng = np.random.default_rng(0)
    channels, count = 128, 500
    rows = ["| method | points | median | max |", "| --- | --- | --- | --- |"]
    found = {}

    def errors(y, exact, key=None):
        e = np.abs(y - exact).max(axis=(1, 2)) / np.abs(exact).max(axis=(1, 2))
        found[key] = float(np.median(e)), float(e.max())
        return f"{np.median(e):.1e} | {e.max():.1e}"
    for m, sets in point_sets.items():
        names = [frozenset(points) for _, points in sets]
        if len(set(names)) != len(names):
            raise ValueError(f"two of F({m}, 3)'s point sets are the same set")
        d = rng.random((count, channels, m + 2, m + 2))        # ReLU outputs: not negative
        g = rng.standard_normal((count, channels, 3, 3)) * np.sqrt(2 / (9 * channels))   # MSRA
        windows = np.lib.stride_tricks.sliding_window_view(d, (3, 3), axis=(2, 3))
        exact = np.einsum("ncijpq,ncpq->nij", windows, g)
        d32, g32 = d.astype(np.float32), g.astype(np.float32)
        if m == 2:
            w32 = windows.astype(np.float32)
            direct = np.zeros((count, m, m), np.float32)
            for c in range(channels):
                for p in range(3):
                    for q in range(3):
                        direct += w32[:, c, :, :, p, q] * g32[:, c, p, q, None, None]
            rows.append(f"| direct sum (what im2col + GEMM computes) | - | {errors(direct, exact)} |")
        for whose, points in sets:
            t = winograd_2d(m, (3, 3), np.float64, np, tuple(points))
            v = _f32_transform(d32.reshape(count, channels, -1), t.input_transform)
            u = _f32_transform(g32.reshape(count, channels, -1), t.filter_transform)
            product = np.zeros(v.shape[::2], np.float32)       # (count, T)
            for c in range(channels):
                product += u[:, c] * v[:, c]
            y = _f32_transform(product, t.output_transform).reshape(count, m, m)
            label = f"{_point_names(points)}" + (f" ({whose})" if whose else "")
            rows.append(f"| F({m}, 3) | {label} | {errors(y, exact, (m, whose))} |")
    used = [found[key] for key in ((2, ""), (4, "unetcore's"), (4, "Lavin & Gray's"))]
    medians = found[(4, "unetcore's")][0], found[(4, "Lavin & Gray's")][0]
    integers = found[(6, "integers")][0] / found[(6, "unetcore's")][0]
    if not (max(e[1] for e in used) < 1e-4 and max(e[0] for e in used) < 1e-5
            and max(medians) / min(medians) < 1.5 and integers > 10):
        raise ValueError("winograd_errors: the sentences below the table no longer hold")
    return (f"Max error over each output tile, relative to its largest output, for {count} tiles "
            f"of a {channels}-channel sum (float64 is the truth). The float32 sums run in a "
            "fixed order, one channel and one tap after the other:\n\n" + "\n".join(rows)
            + "\n\nF(2, 3) and F(4, 3) stay below 1e-4 in every tile, the bound the engine was "
            "built to meet, and their medians an order of magnitude below it. For F(4, 3), "
            "unetcore's points and "
            "Lavin & Gray's give medians within a factor of 1.5 of each other. With integer "
            f"points, F(6, 3)'s median error is {integers:.0f} times that with unetcore's.\n")


def exercises_winograd():
    """The answers of winograd.md's exercises, computed in exact fractions."""
    from fractions import Fraction as F

    from unetcore.ops.winograd import exact_inverse, winograd_1d

    def apply(rows, v):
        return [sum(a * b for a, b in zip(row, v)) for row in rows]

    def show(values):
        return "(" + ", ".join(str(v) for v in values) + ")"
    f = winograd_1d(2, 3)
    d, g = [F(v) for v in (0, 1, 0, 0)], [F(v) for v in (1, 2, 3)]
    bd, gg = apply(f.bt, d), apply(f.g, g)
    product = [a * b for a, b in zip(gg, bd)]
    y = apply(f.at, product)
    direct = [sum(d[i + k] * g[k] for k in range(3)) for i in range(2)]
    assert y == direct
    one = (f"    B^T d = {show(bd)},  G g = {show(gg)}\n"
           f"    (G g) * (B^T d) = {show(product)}\n"
           f"    y = A^T (...) = {show(y)}\n\n"
           f"The direct sums agree: y_0 = d_0 g_0 + d_1 g_1 + d_2 g_2 = {direct[0]} and "
           f"y_1 = d_1 g_0 + d_2 g_1 + d_3 g_2 = {direct[1]}.")

    # 2: the last row of B^T, and the point 2 in place of infinity
    last = f.bt[-1]
    finite = [F(0), F(1), F(-1), F(2)]
    vandermonde = [[a ** k for k in range(4)] for a in finite]
    b_finite = exact_inverse(vandermonde)
    bt_finite = [list(col) for col in zip(*b_finite)]
    g_row = [F(2) ** k for k in range(3)]
    nonzero = [sum(v != 0 for v in row) for row in f.bt]
    nonzero_finite = [sum(v != 0 for v in row) for row in bt_finite]
    same_cubic = [v * 6 for v in bt_finite[-1]] == list(last)
    assert same_cubic
    two = (f"The last row of B^T is {show(last)}: the coefficients of x^3 - x = x (x - 1) (x + 1). "
           "Row j of B^T is column j of V^-1: the coefficients of the cubic that is 1 at point j "
           "and 0 at the other points. For the point at infinity, \"1 there\" means a leading "
           "coefficient of 1, and the cubic that is 0 at 0, 1 and -1 with leading coefficient 1 "
           "is x^3 - x. With the point 2 in its place, every row is the Lagrange cubic of its "
           "point among 0, 1, -1, 2:\n\n" + _fractions(bt_finite)
           + f"\n\nThe new point's own row is the same cubic divided by its value at 2, which "
           f"is 6. But the other rows, which with infinity have {', '.join(map(str, nonzero[:3]))} "
           f"non-zero entries, now have {', '.join(map(str, nonzero_finite[:3]))}, and fractions "
           "such as 1/3 and 1/6 that float32 cannot hold exactly. G's new row "
           f"{show(g_row)} multiplies the filter by up to 4 where infinity's row, (0, 0, 1), "
           "picks g_2 alone. The same 4 multiplications, more additions, more rounding.")

    # 3: F(3, 2)
    f32 = winograd_1d(3, 2)
    d, g = [F(v) for v in (1, 2, 3, 4)], [F(1), F(-1)]
    y = apply(f32.at, [a * b for a, b in zip(apply(f32.g, g), apply(f32.bt, d))])
    direct = [sum(d[i + k] * g[k] for k in range(2)) for i in range(3)]
    assert y == direct
    units = all(apply(f32.at, [a * b for a, b in zip(
        apply(f32.g, [F(int(k == kk)) for kk in range(2)]),
        apply(f32.bt, [F(int(a == aa)) for aa in range(4)]))]) ==
        [F(int(a == i + k)) for i in range(3)] for a in range(4) for k in range(2))
    assert units
    three = (f"`winograd_1d(3, 2)` has alpha = {f32.m + f32.r - 1}: B^T is 4 x 4, G 4 x 2 and "
             f"A^T 3 x 4. For d = {show(d)} and g = {show(g)} it gives y = {show(y)}, and so do "
             f"the direct sums d_i - d_(i+1). It holds for every d and g, because y is bilinear "
             f"and every pair of unit vectors d = e_a, g = e_k gives y_i = 1 where a = i + k "
             f"and 0 elsewhere (the generator checks all 8 pairs, and so does "
             f"`test_every_input_filter_pair_gives_exactly_the_correlation`): 3 outputs of a "
             f"2-tap filter with 4 multiplications instead of 6.")

    m = 4
    four = (f"Neighbouring tiles overlap. An output tile of m = {m} pixels (per axis) reads "
            f"alpha = m + 2 = {m + 2} input pixels, and the next tile starts m pixels further, "
            f"so the last 2 input pixels of one tile are the first 2 of the next. Such a pixel "
            "contributes to the outputs of both tiles (in 2-d, of up to four), and the chain "
            "rule adds the gradients of all the outputs it reached. An assignment would keep "
            "only the last tile's.")
    return ("1. Compute F(2, 3) by hand for d = (0, 1, 0, 0) and g = (1, 2, 3), and check "
            "y = (2, 1).\n\n" + _answer(one)
            + "\n2. Why does the last row of B^T for F(2, 3) have a -1 and a 1, and what would "
            "change if the point at infinity were replaced by the point 2?\n\n" + _answer(two)
            + "\n3. Run `python -c \"from unetcore.ops.winograd import winograd_1d; "
            "print(winograd_1d(3, 2))\"` and check that the alpha = 4 products give the 3 "
            "outputs of a 2-tap filter.\n\n" + _answer(three)
            + "\n4. Why is the data gradient's add-back (`add_input_tile_gradients`) an "
            "addition and not an assignment? (Hint: which input pixels belong to two tiles?)"
            "\n\n" + _answer(four))


def winograd_sources():
    """Where the engine computes each line of the algorithm."""
    from unetcore.layers.convolution_winograd import WinogradConvolution as Wino
    return (f"- U = (G kron G) g: `transformed_kernel`, {_link(Wino.transformed_kernel, 'filter_transform @')}\n"
            f"- V = (B^T kron B^T) d: `input_tiles`, {_link(Wino.input_tiles, 'input_transform, d')}\n"
            f"- M[t] = U[t] @ V[t]: `forward_band`, {_link(Wino.forward_band, 'matmul(u, v')}\n"
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



# ---------------------------------------------------------------- matrix calculus, exercises
def matrix_calculus_example():
    """Y = A B with small integers, a loss L = sum(G * Y) whose gradient dL/dY is G, the two
    gradients by the rules dA = dY B^T and dB = A^T dY, and each checked entry by entry with a
    step of 1: L is linear in A and in B, so the difference is exact, in integers."""
    a = np.array([[1, 2, 0], [-1, 3, 1]])
    b = np.array([[2, -1], [0, 1], [1, 1]])
    dy = np.array([[1, 0], [2, -1]])
    y = a @ b

    def loss(a_, b_):
        return int((dy * (a_ @ b_)).sum())
    da, db = dy @ b.T, a.T @ dy
    for grad, which in ((da, "A"), (db, "B")):
        for index in np.ndindex(grad.shape):
            step = np.zeros_like(grad)
            step[index] = 1
            moved = loss(a + step, b) if which == "A" else loss(a, b + step)
            if moved - loss(a, b) != grad[index]:
                raise ValueError(f"d{which}{index}: the rule says {grad[index]}, the step "
                                 f"{moved - loss(a, b)}")
    i, j = 1, 0
    terms = " + ".join(f"({dy[i, k]})({b[j, k]})" for k in range(2))
    step = np.zeros_like(a)
    step[i, j] = 1
    return ("A (2 x 3), B (3 x 2) and Y = A B (2 x 2):\n\n" + _matrix(a) + "\n\n" + _matrix(b)
            + "\n\n" + _matrix(y) + "\n\nTake L = sum over i, j of G[i, j] Y[i, j] with\n\n"
            + _matrix(dy) + "\n\nso dL/dY = G: call it dY. The rules give\n\n"
            "dA = dY B^T:\n\n" + _matrix(da) + "\n\ndB = A^T dY:\n\n" + _matrix(db)
            + f"\n\nCheck one entry by hand: dA[{i}, {j}] = sum over k of dY[{i}, k] B[{j}, k] = "
            f"{terms} = {da[i, j]}. And by a step: adding 1 to A[{i}, {j}] moves L from "
            f"{loss(a, b)} to {loss(a + step, b)}, by {da[i, j]}. L is linear in A, so a step of "
            "any size moves it by exactly the gradient times the step; the generator checks "
            "every entry of dA and dB this way.\n")


def _exercise_harness():
    import importlib.util
    path = DOCS / "exercises" / "harness.py"
    spec = importlib.util.spec_from_file_location("exercises_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exercise_skeleton(name):
    """The skeleton of coding exercise `name` (docs/exercises/NAME.py), as the student gets
    it: the given functions in full, the rest as signatures and docstrings."""
    return "```python\n" + _exercise_harness().skeleton(name) + "```\n"

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
          "three-d-im2col": three_d_im2col, "exercises-3d": exercises_3d,
          "engine-rules": engine_rules, "demo-engines": demo_engines,
          "three-d-engines": three_d_engines, "worked-entries": worked_entries,
          "exercises-winograd": exercises_winograd,
          "matrix-calculus-example": matrix_calculus_example,
          "flat-engine-use": flat_engine_use}
for _name in ("conv_backward", "maxpool_backward", "upconv_adjoint", "strided_dx"):
    BLOCKS[f"exercise-{_name}"] = lambda _name=_name: exercise_skeleton(_name)


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
    out["circuit-1d.svg"] = circuit_svg().encode()
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


# The SVG figures, one function each (regenerate's `only` draws them alone).
FIGURES = {"overlap-tile.svg": overlap_tile_svg, "circuit-1d.svg": circuit_svg}


# ---------------------------------------------------------------- fresh on every CPU
# The docs must be fresh on any x86-64 CPU, BLAS kernel and thread count. Most numbers are
# exact (counts, shapes, exact fractions) or printed with few digits; a float printed with a
# decimal point may still land on the other side of a rounding boundary on another CPU, so
# it may move by one unit of its last digit. No block prints digits of a rounding error that
# depend on the order of the sums: winograd_errors sums float32 in a fixed order of its own,
# and worked_gradient_check prints a bound. A block that did would be named here, and its
# numbers allowed to move by up to ROUNDING_FACTOR.
ROUNDING_BLOCKS = set()
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
    """PNGs may differ by one grey level per pixel (a probability on a rounding boundary);
    an SVG's numbers as texts_agree allows (a printed value on a rounding boundary)."""
    if old == new:
        return True
    if name.endswith(".svg"):
        return texts_agree(old.decode(), new.decode())
    if not name.endswith(".png"):
        return False
    from unetcore.tools.pictures import read_png
    a, b = read_png(old).astype(int), read_png(new).astype(int)
    return a.shape == b.shape and np.abs(a - b).max() <= 1


def regenerate(check=False, only=None):
    """Rewrite (or with check, compare) every generated block and figure; return stale names.
    The check accepts the differences in rounding that other CPUs give (see above). With
    `only`, a set of names of blocks and of FIGURES, just those."""
    stale = []
    for md in sorted(DOCS.glob("*.md")):
        text = md.read_text()
        new = BLOCK.sub(lambda m: m[1] + BLOCKS[m[2]]() + m[4]
                        if only is None or m[2] in only else m[0], text)
        if new != text and not (check and blocks_agree(text, new)):
            stale.append(md.name)
            if not check:
                md.write_text(new)
    drawn = figures() if only is None else {name: FIGURES[name]().encode()
                                            for name in only if name in FIGURES}
    (DOCS / "figures").mkdir(exist_ok=True)
    for name, data in drawn.items():
        path = DOCS / "figures" / name
        if not path.exists() or not figures_agree(name, path.read_bytes(), data):
            stale.append(f"figures/{name}")
            if not check:
                path.write_bytes(data)
    return stale


if __name__ == "__main__":
    check = "--check" in sys.argv
    only = None
    if "--only" in sys.argv:                 # --only NAME,NAME: just these blocks
        only = set(sys.argv[sys.argv.index("--only") + 1].split(","))
        unknown = only - set(BLOCKS) - set(FIGURES)
        if unknown:
            sys.exit(f"unknown block(s): {', '.join(sorted(unknown))}")
    stale = regenerate(check, only)
    print(("stale: " if check else "regenerated: ") + (", ".join(stale) or "nothing"))
    sys.exit(1 if check and stale else 0)
