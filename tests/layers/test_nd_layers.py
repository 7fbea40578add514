"""N-d layers (issue 20): Convolution, Deconvolution and Pooling on blobs with 1 and 3 spatial
axes, with Caffe's repeated fields (one value for every axis, or one per axis), checked
against direct sums and by the gradient checker on hypothesis-drawn shapes, anisotropic
kernels included."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from cases import (assert_gradients, blobs_of, forward_and_backward, make_layer, nd_conv_case,
                   nd_conv_text, nd_pool_text, run_forward)
from unetcore import config
from unetcore.blob import Blob
from unetcore.errors import NetError
from unetcore.layers.convolution import direct_convolution, direct_convolution_backward
from unetcore.ops.im2col import ConvGeometry

RNG = np.random.default_rng(1)


def forward_again(layer, x):
    """Forward through a layer already set up, keeping its weights."""
    bottom, top = blobs_of(x), [Blob((), np.float64)]
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    return top[0].data


def uniform_or_per_axis(values):
    """The repeated field as a user may write it: once where every axis agrees."""
    return values[:1] if len(set(values)) == 1 else values


def _layer(kind, c, engine="reference"):
    text = nd_conv_text(kind, c["cout"] * c["group"], uniform_or_per_axis(c["kernel"]),
                     uniform_or_per_axis(c["stride"]), uniform_or_per_axis(c["pad"]),
                     uniform_or_per_axis(c["dilation"]), c["group"], c["bias"])
    x = RNG.standard_normal((c["n"], c["cin"] * c["group"], *c["size"]))
    return make_layer(text, shapes=[x.shape], engine=engine), x


@settings(max_examples=40, deadline=None)
@given(nd_conv_case())
def test_nd_convolution_matches_the_direct_sum_and_its_gradients_check(c):
    """Forward, dx, dW and db equal the direct sum's (layers/convolution.py), and the
    gradients check."""
    assume(all(n + 2 * p >= d * (k - 1) + 1 for n, p, d, k
               in zip(c["size"], c["pad"], c["dilation"], c["kernel"])))
    layer, x = _layer("Convolution", c)
    geom = ConvGeometry(c["kernel"], c["stride"], c["pad"], c["dilation"])
    dy = RNG.standard_normal((c["n"], c["cout"] * c["group"], *geom.output_size(*c["size"])))
    y, dx, dw = forward_and_backward(layer, x, dy)
    w = layer.blobs[0].data
    b = layer.blobs[1].data if c["bias"] else None
    np.testing.assert_allclose(y, direct_convolution(x, w, b, geom), atol=1e-12)
    dx_direct, dw_direct, db_direct = direct_convolution_backward(x, w, dy, geom)
    np.testing.assert_allclose(dx, dx_direct, atol=1e-12)
    np.testing.assert_allclose(dw, dw_direct, atol=1e-12)
    if c["bias"]:
        np.testing.assert_allclose(layer.blobs[1].diff, db_direct, atol=1e-12)
    layer, x = _layer("Convolution", c)
    assert_gradients(layer, x)


@settings(max_examples=40, deadline=None)
@given(nd_conv_case(max_size=4))
def test_nd_deconvolution_is_the_adjoint_of_convolution_and_its_gradients_check(c):
    assume(all(s * (n - 1) + d * (k - 1) + 1 - 2 * p >= 1 for n, p, d, k, s
               in zip(c["size"], c["pad"], c["dilation"], c["kernel"], c["stride"])))
    deconv, x = _layer("Deconvolution", dict(c, bias=False))
    y = run_forward(deconv, x)[0]
    conv = make_layer(nd_conv_text("Convolution", x.shape[1], c["kernel"], c["stride"], c["pad"],
                                c["dilation"], c["group"], False), shapes=[y.shape],
                      engine="reference")
    v = RNG.standard_normal(y.shape)
    run_forward(conv, v)
    conv.blobs[0].data[...] = deconv.blobs[0].data
    conv_v = forward_again(conv, v)
    # <deconv(x), v> == <x, conv(v)> with the same weights
    assert (y * v).sum() == pytest.approx((x * conv_v).sum(), rel=1e-10, abs=1e-10)
    deconv, x = _layer("Deconvolution", dict(c, bias=True))
    assert_gradients(deconv, x)


@settings(max_examples=30, deadline=None)
@given(nd_conv_case(max_size=4))
def test_nd_fast_engines_equal_the_reference(c):
    """pointwise (1x1x1), blocks (stride = kernel) and correlation (dx through the turned
    kernel) run in 1-d and 3-d too, flat in 3-d, and slices (1 x kh x kw on volumes, any 2-d
    stride, padding and dilation); they give the reference's forward and pass the gradient
    check."""
    point = dict(c, kernel=(1,) * c["axes"], stride=(1,) * c["axes"], pad=(0,) * c["axes"],
                 dilation=(1,) * c["axes"], group=1)
    blocks = dict(c, stride=c["kernel"], pad=(0,) * c["axes"], dilation=(1,) * c["axes"])
    cases = [("Convolution", point, "pointwise"), ("Deconvolution", blocks, "blocks")]
    turned = dict(c, stride=(1,) * c["axes"], pad=(0,) * c["axes"], dilation=(1,) * c["axes"],
                  group=1)
    if set(c["kernel"]) != {1} and all(n >= k for n, k in zip(c["size"], c["kernel"])):
        cases.append(("Convolution", turned, "correlation"))
        if c["axes"] == 3:
            cases.append(("Convolution", turned, "flat"))
    planar = dict(c, kernel=(1, *c["kernel"][1:]), stride=(1, *c["stride"][1:]),
                  pad=(0, *c["pad"][1:]), dilation=(1, *c["dilation"][1:]))
    if c["axes"] == 3 and planar["kernel"][1:] != (1, 1) and all(
            n + 2 * p >= d * (k - 1) + 1 for n, p, d, k in
            zip(c["size"], planar["pad"], planar["dilation"], planar["kernel"])):
        cases.append(("Convolution", planar, "slices"))
    for kind, case, engine in cases:
        fast, x = _layer(kind, case, engine)
        slow, _ = _layer(kind, case, "reference")
        np.testing.assert_allclose(run_forward(fast, x)[0], run_forward(slow, x)[0], atol=1e-12)
        assert_gradients(_layer(kind, case, engine)[0], x)


def test_auto_picks_the_engines_that_pay_on_volumes():
    """3x3x3 kernels: flat up to 64 channels, the reference above, correlation where
    C_in > C_out; pointwise for 1x1x1. Winograd is 2-d: forcing it on a volume falls back
    to the reference."""
    def engine(c_in, c_out, kernel=(3,)):
        text = nd_conv_text("Convolution", c_out, kernel, (1,), (0,), (1,))
        return make_layer(text, shapes=[(1, c_in, 6, 20, 20)]).engine
    assert engine(32, 32) == engine(64, 64) == "flat"
    assert engine(128, 128) == engine(8, 8) == "reference"
    assert engine(256, 128) == "correlation"
    assert engine(64, 2, (1,)) == "pointwise"
    with pytest.raises(AssertionError, match="cannot run"):
        make_layer(nd_conv_text("Convolution", 64, (3,), (1,), (0,), (1,)),
                   shapes=[(1, 64, 6, 20, 20)], engine="winograd")


def test_anisotropic_1x3x3_kernel_is_caffe_unets_and_a_plane_by_plane_2d_convolution():
    """caffe_unet's `kernel_size: 1 kernel_size: 3 kernel_size: 3` convolves each z slice on
    its own: the same as the 2-d layer on every slice with the weights' middle axis dropped."""
    text = nd_conv_text("Convolution", 3, (1, 3, 3), (1,), (0,), (1,))
    x = RNG.standard_normal((1, 2, 4, 7, 8))
    layer = make_layer(text, shapes=[x.shape])
    y = run_forward(layer, x)[0]
    assert layer.blobs[0].shape == (3, 2, 1, 3, 3)
    assert y.shape == (1, 3, 4, 5, 6)
    plane = make_layer(nd_conv_text("Convolution", 3, (3,), (1,), (0,), (1,)), engine="reference")
    run_forward(plane, x[:, :, 0])
    plane.blobs[0].data[...] = layer.blobs[0].data[:, :, 0]
    plane.blobs[1].data[...] = layer.blobs[1].data
    for z in range(4):
        np.testing.assert_allclose(forward_again(plane, x[:, :, z]), y[:, :, z], atol=1e-12)


def test_repeated_field_errors_are_one_line_and_name_the_rule():
    x = np.zeros((1, 1, 4, 6, 6))
    cases = [
        (nd_conv_text("Convolution", 1, (1, 3), (1,), (0,), (1,)), "kernel_size gives 2 values "
         "for 3 spatial axes; give 1 value, or one per spatial axis \\(3\\)"),
        ('name: "c" type: "Convolution" convolution_param { num_output: 1 kernel_h: 3 '
         'kernel_w: 3 }', "kernel_h/kernel_w are for 2-d layers; this one has 3 spatial axes"),
        ('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 2 kernel_size: 2 }',
         "kernel_size gives 2 values for 3 spatial axes"),
        ('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_h: 2 kernel_w: 2 }',
         "kernel_h/kernel_w are for 2-d pooling; this one has 3 spatial axes"),
        (nd_conv_text("Convolution", 1, (3, 3, 7), (1,), (0,), (1,)),
         "input 4x6x6 is smaller than the kernel \\(3, 3, 7\\)"),
    ]
    for text, message in cases:
        with pytest.raises(NetError, match=message):
            run_forward(make_layer(text), x)


def direct_pool(x, method, kernel, stride, pad, out):
    """Caffe's pooling, one output at a time: MAX over the window clipped to the image; AVE
    the sum over it divided by the window clipped to the padded image."""
    y = np.zeros(x.shape[:2] + tuple(out))
    for index in itertools.product(*map(range, out)):
        starts = [i * s - p for i, s, p in zip(index, stride, pad)]
        ends = [min(b + k, n + p) for b, k, n, p in zip(starts, kernel, x.shape[2:], pad)]
        size = np.prod([e - b for b, e in zip(starts, ends)])
        window = tuple(slice(max(b, 0), min(e, n)) for b, e, n in zip(starts, ends, x.shape[2:]))
        values = x[(slice(None), slice(None)) + window]
        axes = tuple(range(2, x.ndim))
        y[(slice(None), slice(None)) + index] = (values.max(axis=axes) if method == "MAX"
                                                 else values.sum(axis=axes) / size)
    return y


@st.composite
def nd_pool_case(draw):
    axes = draw(st.sampled_from([1, 3]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(axes))
    stride = tuple(draw(st.integers(1, k)) for k in kernel)
    pad = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    size = tuple(draw(st.integers(k, 6)) for k in kernel)
    return dict(method=draw(st.sampled_from(["MAX", "AVE"])), kernel=kernel, stride=stride,
                pad=pad, size=size, n=draw(st.integers(1, 2)), c=draw(st.integers(1, 2)))


@settings(max_examples=40, deadline=None)
@given(nd_pool_case())
def test_nd_pooling_matches_caffes_windows_and_its_gradients_check(c):
    text = nd_pool_text(c["method"], c["kernel"], c["stride"], c["pad"])
    x = RNG.permutation(np.prod((c["n"], c["c"], *c["size"]))).reshape(
        (c["n"], c["c"], *c["size"])) / 7.0                 # no ties: MAX's gradient is defined
    layer = make_layer(text, shapes=[x.shape], engine="reference")
    y = run_forward(layer, x)[0]
    np.testing.assert_allclose(y, direct_pool(x, c["method"], c["kernel"], c["stride"], c["pad"],
                                              y.shape[2:]), atol=1e-12)
    assert_gradients(make_layer(text, shapes=[x.shape], engine="reference"), x)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([(1, 2, 2), (2, 2, 2), (2,), (3, 1, 2)]), st.data())
def test_nd_tiled_max_pooling_equals_the_reference_with_ties_and_its_mask(kernel, data):
    """The tiled engine in 1-d and 3-d, partial windows and ties included: the same maxima,
    the same mask (the flat index (d H + h) W + w), the same gradient."""
    size = tuple(data.draw(st.integers(k, 2 * k + 1)) for k in kernel)
    x = RNG.integers(0, 3, (2, 2, *size)).astype(float)          # many ties
    dy_seed = data.draw(st.integers(0, 100))
    results = []
    for engine in ("tiled", "reference"):
        layer = make_layer(nd_pool_text("MAX", kernel, kernel, (0,)), shapes=[x.shape],
                           engine=engine)
        y, mask = run_forward(layer, x, tops=2)
        bottom, top = blobs_of(x), blobs_of(y, mask)
        layer.forward(bottom, top)
        top[0].diff[...] = np.random.default_rng(dy_seed).standard_normal(y.shape)
        layer.backward(top, [True], bottom)
        results.append((y, mask, bottom[0].diff.copy()))
    for fast, slow in zip(*results):
        np.testing.assert_array_equal(fast, slow)
    y, mask, _ = results[0]
    flat = x.reshape(2, 2, -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, mask.reshape(2, 2, -1).astype(int),
                                                     axis=-1), y.reshape(2, 2, -1))


def test_3d_max_pooling_1x2x2_pools_each_slice_as_2d():
    """caffe_unet's anisotropic `kernel_size: 1 kernel_size: 2 kernel_size: 2` pooling keeps
    the z resolution and pools each slice as the 2-d layer does."""
    x = RNG.standard_normal((1, 2, 3, 6, 8))
    y = run_forward(make_layer(nd_pool_text("MAX", (1, 2, 2), (1, 2, 2), (0,))), x)[0]
    assert y.shape == (1, 2, 3, 3, 4)
    plane = make_layer(nd_pool_text("MAX", (2,), (2,), (0,)))
    for z in range(3):
        np.testing.assert_array_equal(run_forward(plane, x[:, :, z])[0], y[:, :, z])


@pytest.mark.parametrize("c_in,c_out,size,plane", [
    (32, 32, (3, 12, 13), "flat"),                  # caffe_unet's level-0 width
    (64, 64, (2, 26, 27), "winograd"),              # Winograd pays with 36+ tiles a slice
    (12, 6, (2, 9, 10), "correlation"),             # C_in > C_out: the turned kernel
    (2, 3, (2, 6, 7), None),                        # thin: the reference, no slice engine
])
def test_slices_engine_runs_each_slice_through_the_2d_engine(c_in, c_out, size, plane):
    """A 1x3x3 convolution on volumes: "auto" takes the slices engine where a 2-d engine
    pays on one slice, and its forward, data gradient and weight gradient equal the
    reference's; it passes the gradient check."""
    text = nd_conv_text("Convolution", c_out, (1, 3, 3), (1,), (0,), (1,))
    x = RNG.standard_normal((2, c_in, *size))
    layer = make_layer(text, shapes=[x.shape])
    if plane is None:
        assert layer.engine == "reference"
        return
    assert layer.engine == "slices"
    run_forward(layer, x)
    assert layer.plane.engine == plane
    dy = RNG.standard_normal(run_forward(make_layer(text), x)[0].shape)
    reference = make_layer(text, shapes=[x.shape], engine="reference")
    for fast, slow in zip(forward_and_backward(make_layer(text, shapes=[x.shape]), x, dy),
                          forward_and_backward(reference, x, dy)):
        np.testing.assert_allclose(fast, slow, atol=1e-10)
    small = RNG.standard_normal((1, c_in, 2, 6, 7))
    assert_gradients(make_layer(text, shapes=[small.shape], engine="slices"), small,
                     max_checks=30)


@settings(max_examples=20, deadline=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
       st.tuples(st.integers(3, 6), st.integers(3, 7), st.integers(3, 7)),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 6))
def test_flat_engine_in_3d_matches_the_direct_sum_in_cache_bands(kernel, size, c_in, c_out,
                                                                 band_rows):
    """The flat engine on volumes, slice by slice, in bands of 1 to 6 rows: the
    direct sum's forward, and gradients that check (dx from the padded dy)."""
    assume(set(kernel) != {1} and all(n >= k for n, k in zip(size, kernel)))
    text = nd_conv_text("Convolution", c_out, kernel, (1,), (0,), (1,))
    x = RNG.standard_normal((2, c_in, *size))
    k_rows = max(c_in, c_out) * math.prod(kernel)
    band_bytes = k_rows * size[-1] * 8 * band_rows      # the backward's bands and the forward's
    with config.using_sizes(cache_band_bytes=band_bytes, parallel_band_bytes=band_bytes):
        layer = make_layer(text, shapes=[x.shape], engine="flat")
        y = run_forward(layer, x)[0]
        geom = ConvGeometry(kernel, (1, 1, 1), (0, 0, 0), (1, 1, 1))
        expected = direct_convolution(x, layer.blobs[0].data, layer.blobs[1].data, geom)
        np.testing.assert_allclose(y, expected, atol=1e-12)
        assert_gradients(make_layer(text, shapes=[x.shape], engine="flat"), x, max_checks=40)
