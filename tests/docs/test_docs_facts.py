"""The numbers and rules that docs/ states in prose, outside the generated blocks, recomputed
from the code: each test quotes the sentence it keeps true, so a change on either side fails
it. (The generated blocks are kept true by the docs check, tests/docs/test_tutorial.py.)"""
import re
from pathlib import Path

import numpy as np
import pytest

from cases import blobs_of
from unetcore.blob import Blob
from unetcore.errors import NetError
from unetcore.gradcheck import check_gradients, layer_from_text

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
BLOCK = re.compile(r"<!-- begin generated: \S+ -->\n.*?<!-- end generated -->", re.S)


def prose(page):
    """A page's text outside the generated blocks, its lines joined (a sentence may break)."""
    return " ".join(BLOCK.sub("", (DOCS / page).read_text()).split())


def says(page, sentence):
    assert sentence in prose(page), f"{page} no longer says: {sentence}"


def run(layer, x, dy=None):
    """The top after forward, and with dy the bottom's gradient after backward."""
    bottom, top = blobs_of(x), [Blob((), np.float64)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    if dy is None:
        return top[0].data.copy(), None
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    return top[0].data.copy(), bottom[0].diff.copy()


# ---------------------------------------------------------------- training.md
def test_the_border_term_adds_at_most_9_23():
    """A 1 px background gap between two cells: d1 = d2 = 1, so w0 exp(-4 / (2 sigma^2))."""
    from unetcore.data.weightmap import weight_map
    says("training.md", "get weights up to w0 exp(-(1 + 1)^2 / (2 sigma^2)) = 9.23 above the "
                        "class weight (w0 = 10, sigma = 5 px; a 1 px gap has d1 = d2 = 1)")
    labels = np.zeros((20, 21), int)
    labels[4:16, 2:10], labels[4:16, 11:19] = 1, 2             # column 10 is the gap
    border = weight_map(labels, 10.0, 5.0) - weight_map(labels, 0.0, 5.0)
    assert border[labels == 0].max() == pytest.approx(10 * np.exp(-4 / 50))
    assert f"{border.max():.2f}" == "9.23"
    assert border[:, 10].argmax() in range(4, 16)              # on the gap, between the cells


def test_caffes_fan_in_gives_the_up_convolutions_1_over_sqrt_2_of_hes_std():
    """Caffe's msra filler takes fan_in = count / num of the blob; an up-convolution's blob is
    (C_in, C_out, 2, 2) with C_out = C_in / 2, while each output pixel sums C_in inputs."""
    from unetcore.formats.prototxt import parse
    from unetcore.fillers import fill
    says("training.md", "their std is 1/sqrt(2) of He's")
    c_in = 128
    filler = parse('type: "msra"', "FillerParameter")
    w = fill(filler, (c_in, c_in // 2, 2, 2), np.random.default_rng(0), np.float64)
    he = np.sqrt(2 / c_in)                      # each output pixel: one tap per input channel
    assert w.std() / he == pytest.approx(1 / np.sqrt(2), rel=0.02)


# ---------------------------------------------------------------- check-your-layer.md
@pytest.mark.parametrize("factor, error", [(2, 0.5), (0.5, 0.5), (4, 0.75), (0.25, 0.75),
                                           (-1, 2.0)])
def test_a_gradient_off_by_a_factor_gives_the_relative_error_the_page_says(factor, error):
    """1 - 1/f for f > 1, 1 - f for f < 1, 2 for a sign error, where the gradients are at
    least 1 in size (x = 10 + noise makes 2 x dy large)."""
    from unetcore.layer import Layer
    says("check-your-layer.md", "1 - 1/f for f > 1, and 1 - f for f < 1. The missing 2 above "
                                "is f = 1/2, which gives 0.5. A sign error, f = -1, gives 2.")

    class Scaled(Layer):
        type = "Scaled"

        def reshape(self, bottom, top):
            top[0].reshape(bottom[0].shape)

        def forward(self, bottom, top):
            top[0].data[...] = bottom[0].data ** 2

        def backward(self, top, propagate_down, bottom):
            bottom[0].diff[...] = factor * 2 * bottom[0].data * top[0].diff
    layer = Scaled(layer_from_text('name: "relu" type: "ReLU"').param, dtype=np.float64)
    x = 10 + np.random.default_rng(0).random((2, 3, 4))
    result = check_gradients(layer, x)[0]
    assert result.max_scaled_error == pytest.approx(error, rel=1e-6)


def test_the_threshold_is_unetcores_1e_6():
    import inspect

    from unetcore.gradcheck import check_layer
    says("check-your-layer.md", "The scaling is Caffe's GradientChecker's; the threshold, "
                                "1e-6, is unetcore's")
    assert inspect.signature(check_layer).parameters["threshold"].default == 1e-6


# ---------------------------------------------------------------- backprop.md
@pytest.mark.parametrize("size, kernel, stride, pad, dilation, c_in, c_out, group", [
    (5, 2, 2, 0, 1, 4, 2, 1), (4, 3, 2, 1, 1, 2, 3, 1), (3, 3, 1, 0, 2, 2, 2, 2),
    (6, 4, 3, 1, 1, 3, 6, 3)])
def test_deconvolution_output_size_and_weight_layout(size, kernel, stride, pad, dilation,
                                                    c_in, c_out, group):
    says("backprop.md", "W has shape (C_in, C_out / group, kh, kw), where a Convolution's is "
                        "(C_out, C_in / group, kh, kw)")
    says("backprop.md", "H_out = s (H - 1) + d (kh - 1) + 1 - 2 pad")
    text = (f'name: "up" type: "Deconvolution" convolution_param {{ num_output: {c_out} '
            f'kernel_size: {kernel} stride: {stride} pad: {pad} dilation: {dilation} '
            f'group: {group} }}')
    layer = layer_from_text(text, bottom_shapes=[(1, c_in, size, size)])
    y, _ = run(layer, np.ones((1, c_in, size, size)))
    side = stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad
    assert y.shape == (1, c_out, side, side)
    assert layer.blobs[0].shape == (c_in, c_out // group, kernel, kernel)
    conv = layer_from_text(text.replace("Deconvolution", "Convolution"),
                           bottom_shapes=[(1, c_in, side, side)])
    run(conv, np.ones((1, c_in, side, side)))
    assert conv.blobs[0].shape == (c_out, c_in // group, kernel, kernel)


def pooled(size, kernel, stride, pad):
    """backprop.md's rule: ceil, then minus 1 where the last window starts in the padding."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    return out - 1 if pad and (out - 1) * stride >= size + pad else out


@pytest.mark.parametrize("size", range(4, 12))
@pytest.mark.parametrize("kernel, stride, pad", [(2, 2, 0), (3, 2, 0), (3, 2, 1), (2, 2, 1),
                                                 (3, 3, 1), (3, 1, 1), (4, 3, 2)])
def test_pooling_output_size_clip_and_average_divisor(size, kernel, stride, pad):
    """The output size with Caffe's clip, and AVE's divisor: the window clipped to the padded
    image, padding included. With x = 1 inside the image, AVE gives the window's image
    pixels over that divisor."""
    says("backprop.md", "out = ceil((H + 2 pad - k) / s) + 1, minus 1 if pad > 0 and "
                        "(out - 1) s >= H + pad")
    says("backprop.md", "a window starting at h0 = i s - pad counts the rows h0 .. "
                        "min(h0 + k, H + pad) - 1, padding rows included")
    text = (f'name: "p" type: "Pooling" pooling_param {{ pool: AVE kernel_size: {kernel} '
            f'stride: {stride} pad: {pad} }}')
    y, _ = run(layer_from_text(text, bottom_shapes=[(1, 1, size, size)]),
               np.ones((1, 1, size, size)))
    out = pooled(size, kernel, stride, pad)
    assert y.shape == (1, 1, out, out)
    starts = np.arange(out) * stride - pad
    counted = np.minimum(starts + kernel, size + pad) - starts            # the divisor's side
    inside = np.minimum(starts + kernel, size) - np.maximum(starts, 0)   # image pixels
    np.testing.assert_allclose(y[0, 0], np.outer(inside, inside) / np.outer(counted, counted))


@pytest.mark.parametrize("slope", [0.0, 0.1, 0.5, -0.5])
def test_relu_in_place_needs_a_slope_of_at_least_0(slope):
    """In place the mask is read from y; y > 0 exactly where x > 0 when the slope is >= 0,
    so a negative slope in place is refused instead of giving a wrong gradient."""
    says("backprop.md", "That is right when y > 0 exactly where x > 0, which holds for a >= 0")
    says("backprop.md", "y = x where x > 0, a x elsewhere dx = dy where x > 0, a dy elsewhere")
    text = f'name: "r" type: "ReLU" relu_param {{ negative_slope: {slope} }}'
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 5))
    expected = np.where(x > 0, dy, slope * dy)
    _, dx = run(layer_from_text(text), x, dy)
    np.testing.assert_allclose(dx, expected)                   # out of place: always right
    layer = layer_from_text(text)
    blob = blobs_of(x)[0]                                      # in place: top is bottom
    layer.setup([blob], [blob])
    if slope < 0:
        with pytest.raises(NetError, match=f"negative_slope {slope:g} in place"):
            layer.reshape([blob], [blob])
        return
    layer.reshape([blob], [blob])
    layer.forward([blob], [blob])
    blob.diff[...] = dy
    layer.backward([blob], [True], [blob])
    np.testing.assert_allclose(blob.diff, expected)


# ---------------------------------------------------------------- backprop.md, im2col.md sizes
def test_the_workspace_sizes_the_pages_name():
    from docgen import im2col_size
    from unetcore import config
    sizes = config.sizes()
    says("backprop.md", "The `col` matrix of a 572 tile would take 743 MB for `conv_d0b-c`")
    assert "743 MB" in im2col_size()
    says("backprop.md", "inside one workspace that every layer of a thread shares (128 MiB at "
                        "most)")
    says("im2col.md", "`config.sizes().cache_band_bytes` (8 MiB) bounds it, against 128 MiB for "
                      "the general path")
    assert (sizes.workspace_bytes, sizes.cache_band_bytes) == (128 << 20, 8 << 20)
    says("winograd.md", "`config.sizes().winograd_band_bytes` (32 MiB)")
    assert sizes.winograd_band_bytes == 32 << 20
    says("im2col.md", "They are kw - 1 of every W columns: 0.35% at 572 px.")
    assert f"{2 / 570:.2%}" == "0.35%"          # conv_d0b-c reads 570 px: 2 wasted columns


# ---------------------------------------------------------------- winograd.md, 3d.md, README
def test_18_of_the_23_convolutions_are_3x3_with_stride_1_and_the_channel_limits():
    from docgen import _net
    from unetcore.layers.convolution_flat import FLAT_MAX_CHANNELS, FLAT_MIN_CHANNELS
    from unetcore.layers.convolution_winograd import WINOGRAD_MIN_CHANNELS
    says("winograd.md", "18 of the U-Net's 23 convolutions are 3x3 with stride 1")
    net = _net("unet-deploy.prototxt")
    convolutions = [l for l in net.layers if l.type in ("Convolution", "Deconvolution")]
    three = [l for l in convolutions if l.type == "Convolution" and l.geom.kernel == (3, 3)
             and l.geom.stride == (1, 1)]
    assert (len(three), len(convolutions)) == (18, 23)
    says("winograd.md", f"Below {WINOGRAD_MIN_CHANNELS} channels the transforms cost more")
    says("3d.md", f"on the CPU, 3x3x3 layers of {FLAT_MIN_CHANNELS} to {FLAT_MAX_CHANNELS[3]} "
                  f"channels ({FLAT_MAX_CHANNELS[2]} in 2-d)")


def test_the_3d_mirror_average_is_8_passes():
    from unetcore.inference.tiling import mirror_axes
    says("3d.md", "`--average-mirror` averages 8 passes of a volume tile: the tile itself and "
                  "its 7 flips")
    assert (1 + len(mirror_axes(3)), len(mirror_axes(3))) == (8, 7)


def test_the_receptive_field_is_188_or_204_px():
    from docgen import _net
    from unetcore.inference.receptive import receptive_field
    says("README.md", "the receptive field (188 or 204 px, by the pixel's place on the pooling "
                      "grid)")
    net = _net("unet-deploy.prototxt", 572)
    sizes = {last - first + 1 for first, last in
             (receptive_field(net, (p, p))[0] for p in range(16))}
    assert sizes == {188, 204}


# ---------------------------------------------------------------- matrix-calculus.md
def numeric_gradient(loss, x, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        grad[index] = (loss(x + step) - loss(x - step)) / (2 * h)
    return grad


def test_the_rules_of_the_matrix_calculus_table():
    """Each row of the table, against central differences, for L = sum(G * y) (dy = G)."""
    rng = np.random.default_rng(0)
    a, x, z = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(4)
    b = rng.standard_normal((4, 2))
    says("matrix-calculus.md", "| y = A x, A a matrix, x a vector | dx = A^T dy, dA = dy x^T |")
    dy = rng.standard_normal(3)
    np.testing.assert_allclose(numeric_gradient(lambda v: dy @ (a @ v), x), a.T @ dy, atol=1e-8)
    np.testing.assert_allclose(numeric_gradient(lambda m: dy @ (m @ x), a), np.outer(dy, x),
                               atol=1e-8)
    says("matrix-calculus.md", "| Y = A B, two matrices | dA = dY B^T, dB = A^T dY |")
    dY = rng.standard_normal((3, 2))
    np.testing.assert_allclose(numeric_gradient(lambda m: (dY * (m @ b)).sum(), a), dY @ b.T,
                               atol=1e-8)
    np.testing.assert_allclose(numeric_gradient(lambda m: (dY * (a @ m)).sum(), b), a.T @ dY,
                               atol=1e-8)
    says("matrix-calculus.md", "| x used twice, by y1 and y2 | dx = dy1 + dy2 |")
    dy1, dy2 = rng.standard_normal(4), rng.standard_normal(4)
    np.testing.assert_allclose(numeric_gradient(lambda v: dy1 @ np.sin(v) + dy2 @ (v * z), x),
                               dy1 * np.cos(x) + dy2 * z, atol=1e-8)
    says("matrix-calculus.md", "| y = x[k], one entry picked | dx[k] += dy, 0 elsewhere |")
    k = int(np.argmax(x))
    expected = np.zeros_like(x)
    expected[k] = 3.0
    np.testing.assert_allclose(numeric_gradient(lambda v: 3.0 * v.max(), x), expected, atol=1e-8)


# ---------------------------------------------------------------- every page
def cited_tests():
    """(page, name) of every test function or module a page names: a test_ word that is not
    a field of Caffe's schema (test_iter, test_interval) or a file name (test_input.npy)."""
    schema = (REPO / "unetcore" / "formats" / "schema.py").read_text()
    for md in sorted(DOCS.glob("*.md")):
        for name in set(re.findall(r"\b(test_\w+)\b(?!\.npy)", md.read_text())):
            if not re.search(rf"\b{name}\b", schema):
                yield md.name, name


def test_every_test_a_page_names_exists():
    defined = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^\s*def (test_\w+)", path.read_text(), re.M))
    modules = {path.stem for path in (REPO / "tests").rglob("test_*.py")}
    missing = [f"{page}: {name}" for page, name in cited_tests()
               if name not in defined and name not in modules]
    assert not missing, "\n".join(missing)


def test_every_relative_link_and_cited_path_exists():
    """Links such as [x](../layers/relu.py#L3) and paths such as `tests/docs/test_x.py`."""
    broken = []
    for md in sorted(DOCS.glob("*.md")):
        text = md.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target and not (md.parent / target).exists():
                broken.append(f"{md.name}: link {target}")
        for path in re.findall(r"`((?:tests|docs|bin|layers|unetcore|prototxt)/[\w/.-]+\.\w+)",
                               text):
            if not (REPO / path).exists():
                broken.append(f"{md.name}: path {path}")
    assert not broken, "\n".join(broken)
