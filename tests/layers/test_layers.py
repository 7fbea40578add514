"""Every layer: hand-computed forwards, gradient checks over hypothesis-drawn shapes and
parameters (float64, central differences), and the errors bad shapes produce."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from cases import (assert_gradients, blobs_of, conv_params, conv_text, device_module,
                   engine_device_cases, forward_and_backward, make_layer, run_forward)
from unetcore import config
from unetcore.backend import rectify, to_numpy
from unetcore.blob import Blob
from unetcore.errors import NetError
from unetcore.formats.prototxt import parse
from unetcore.layers.convolution import direct_convolution, direct_convolution_backward
from unetcore.net import Net
from unetcore.ops.im2col import ConvGeometry

RNG = np.random.default_rng(0)


# every engine of the registry, on every device; "slices" runs volumes only (test_nd_layers)
CONV_CASES = engine_device_cases("Convolution", exclude=("slices",))
DECONV_CASES = engine_device_cases("Deconvolution")
POOLING_CASES = engine_device_cases("Pooling")


def for_engine(p, engine):
    """Drawn parameters bent so that `engine` can run them (engines need no weaker test)."""
    p = dict(p)
    if engine == "pointwise":
        p.update(kh=1, kw=1, sh=1, sw=1, ph=0, pw=0, group=1)
    if engine in ("correlation", "flat", "winograd"):
        p.update(sh=1, sw=1, ph=0, pw=0, dilation=1, group=1)
        if (p["kh"], p["kw"]) == (1, 1):
            p["kw"] = 2
    if engine == "blocks":
        p.update(sh=p["kh"], sw=p["kw"], ph=0, pw=0, dilation=1)
    return p


def geometry(p):
    """The ConvGeometry of drawn parameters, for the direct sum."""
    return ConvGeometry((p["kh"], p["kw"]), (p["sh"], p["sw"]), (p["ph"], p["pw"]),
                        (p["dilation"],) * 2)


def _conv_case(p, kind, engine=None, xp=np):
    cin, cout = p["cin"] * p["group"], p["cout"] * p["group"]
    text = conv_text(kind, cout, (p["kh"], p["kw"]), (p["sh"], p["sw"]), (p["ph"], p["pw"]),
                     p["dilation"], p["group"], p["bias"])
    x = RNG.standard_normal((p["n"], cin, p["h"], p["w"]))
    return make_layer(text, shapes=[x.shape], engine=engine, xp=xp), x


@pytest.mark.parametrize("engine,device", CONV_CASES)
@given(data=st.data())
def test_convolution_forward_matches_direct_sum_and_gradients(engine, device, data):
    """Forward, dx, dW and db equal the direct sum's (layers/convolution.py) on every device,
    and the gradients check (on the CPU, where the checker runs)."""
    xp = device_module(device)
    p = for_engine(data.draw(conv_params), engine)
    assume(p["h"] + 2 * p["ph"] >= p["dilation"] * (p["kh"] - 1) + 1)
    assume(p["w"] + 2 * p["pw"] >= p["dilation"] * (p["kw"] - 1) + 1)
    layer, x = _conv_case(p, "Convolution", engine, xp)
    geom = geometry(p)
    dy = RNG.standard_normal((p["n"], p["cout"] * p["group"], *geom.output_size(p["h"], p["w"])))
    y, dx, dw = forward_and_backward(layer, x, dy)
    w = to_numpy(layer.blobs[0].data)
    b = to_numpy(layer.blobs[1].data) if p["bias"] else None
    np.testing.assert_allclose(y, direct_convolution(x, w, b, geom), atol=1e-12)
    dx_direct, dw_direct, db_direct = direct_convolution_backward(x, w, dy, geom)
    np.testing.assert_allclose(dx, dx_direct, atol=1e-12)
    np.testing.assert_allclose(dw, dw_direct, atol=1e-12)
    if p["bias"]:
        np.testing.assert_allclose(to_numpy(layer.blobs[1].diff), db_direct, atol=1e-12)
    if xp is np:
        layer, x = _conv_case(p, "Convolution", engine)
        assert_gradients(layer, x)


@pytest.mark.parametrize("engine,device", DECONV_CASES)
@given(data=st.data())
def test_deconvolution_is_the_adjoint_of_convolution_and_gradients(engine, device, data):
    """<deconv(x), v> = <x, conv(v)> with the same weights, on every device; the gradients
    check on the CPU."""
    xp = device_module(device)
    p = for_engine(dict(data.draw(conv_params), bias=False), engine)
    for size, k, s, pad in ((p["h"], p["kh"], p["sh"], p["ph"]), (p["w"], p["kw"], p["sw"], p["pw"])):
        assume(s * (size - 1) + p["dilation"] * (k - 1) + 1 - 2 * pad >= 1)
    deconv, x = _conv_case(p, "Deconvolution", engine, xp)
    y = to_numpy(run_forward(deconv, x)[0])
    # <deconv(x), v> == <x, conv(v)> when the convolution (the reference) uses the same weights
    conv = make_layer(conv_text("Convolution", x.shape[1], (p["kh"], p["kw"]), (p["sh"], p["sw"]),
                                (p["ph"], p["pw"]), p["dilation"], p["group"], False),
                      engine="reference")
    v = RNG.standard_normal(y.shape)
    run_forward(conv, v)
    conv.blobs[0].data[...] = to_numpy(deconv.blobs[0].data)
    conv_v = run_forward_with_weights(conv, v)
    assert conv_v.shape == x.shape
    assert (y * v).sum() == pytest.approx((x * conv_v).sum(), rel=1e-10, abs=1e-10)
    if xp is np:
        deconv, x = _conv_case(dict(p, bias=True), "Deconvolution", engine)
        assert_gradients(deconv, x)


def run_forward_with_weights(layer, x):
    bottom, top = blobs_of(x), [Blob((), np.float64)]
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    return top[0].data


@pytest.mark.parametrize("kind,engine,c_in,c_out,kernel,stride", [
    ("Convolution", "pointwise", 16, 8, (1, 1), (1, 1)),
    ("Convolution", "correlation", 12, 6, (3, 3), (1, 1)),
    ("Convolution", "flat", 16, 16, (3, 3), (1, 1)),
    ("Convolution", "flat", 32, 16, (3, 2), (1, 1)),
    ("Convolution", "winograd", 64, 64, (3, 3), (1, 1)),
    ("Deconvolution", "blocks", 16, 8, (2, 2), (2, 2))])
def test_each_engine_is_the_one_auto_picks_and_equals_the_reference(kind, engine, c_in, c_out,
                                                                    kernel, stride):
    """At U-Net-like channel counts, engine "auto" picks the engine, and its forward, data
    gradient and weight gradient equal the reference's to rounding."""
    text = conv_text(kind, c_out, kernel, stride)
    size = (26, 27) if engine == "winograd" else (9, 10)     # Winograd pays with 36+ tiles
    x = RNG.standard_normal((2, c_in, *size))
    assert make_layer(text, shapes=[x.shape]).engine == engine
    dy = RNG.standard_normal(run_forward(make_layer(text), x)[0].shape)
    reference = make_layer(text, shapes=[x.shape], engine="reference")   # the same weights
    for fast, slow in zip(forward_and_backward(make_layer(text, shapes=[x.shape]), x, dy),
                          forward_and_backward(reference, x, dy)):
        np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_upconvolution_2x2_stride_2_hand_case():
    layer = make_layer('name: "up" type: "Deconvolution" convolution_param { num_output: 1 '
                       'kernel_size: 2 stride: 2 bias_term: false }')
    x = np.array([[[[1.0, 10.0]]]])
    run_forward(layer, x)
    layer.blobs[0].data[...] = [[[[1, 2], [3, 4]]]]
    y = run_forward_with_weights(layer, x)
    np.testing.assert_array_equal(y[0, 0], [[1, 2, 10, 20], [3, 4, 30, 40]])


def test_convolution_bands_give_the_same_result():
    x = RNG.standard_normal((1, 3, 12, 9))
    full = make_layer(conv_text(num_output=4, pad=(1, 1)))
    y_full = run_forward(full, x)[0]
    with config.using_sizes(workspace_bytes=27 * 9 * 8 * 2):           # two rows a band
        banded = make_layer(conv_text(num_output=4, pad=(1, 1)))
        np.testing.assert_allclose(run_forward(banded, x)[0], y_full, atol=1e-12)
        assert_gradients(make_layer(conv_text(num_output=4, pad=(1, 1))), x)


flat_params = st.fixed_dictionaries({
    "n": st.integers(1, 2), "cin": st.integers(1, 3), "cout": st.integers(1, 3),
    "kh": st.integers(1, 3), "kw": st.integers(1, 3), "h": st.integers(3, 8),
    "w": st.integers(3, 8), "bias": st.booleans(), "band_rows": st.integers(1, 8)})


@given(flat_params)
def test_flat_engine_in_cache_bands_matches_direct_sum_and_gradients(p):
    """The flat engine, for any channel count, in bands of 1 to 8 rows: the same
    forward as the direct sum, and gradients that check."""
    assume((p["kh"], p["kw"]) != (1, 1))
    text = conv_text(num_output=p["cout"], kernel=(p["kh"], p["kw"]), bias=p["bias"])
    x = RNG.standard_normal((p["n"], p["cin"], p["h"], p["w"]))
    k_rows = max(p["cin"], p["cout"]) * p["kh"] * p["kw"]
    band_bytes = k_rows * p["w"] * 8 * p["band_rows"]   # the backward's bands and the forward's
    with config.using_sizes(cache_band_bytes=band_bytes, parallel_band_bytes=band_bytes):
        layer = make_layer(text, shapes=[x.shape], engine="flat")
        y = run_forward(layer, x)[0]
        bias = layer.blobs[1].data if p["bias"] else None
        geom = ConvGeometry((p["kh"], p["kw"]), (1, 1), (0, 0), (1, 1))
        expected = direct_convolution(x, layer.blobs[0].data, bias, geom)
        np.testing.assert_allclose(y, expected, atol=1e-12)
        assert_gradients(make_layer(text, shapes=[x.shape], engine="flat"), x)


def test_auto_picks_flat_for_thin_layers_only():
    """The U-Net's 64- and 128-channel layers take the flat engine; the first layer (1 input
    channel), the 256-channel ones, strided and padded ones take the banded im2col (or the
    correlation, where more channels come in than go out)."""
    def engine_for(c_in, c_out, extra=""):
        text = (f'name: "c" type: "Convolution" convolution_param {{ '
                f'num_output: {c_out} kernel_size: 3 {extra} }}')
        return make_layer(text, shapes=[(1, c_in, 5, 5)]).engine
    assert engine_for(64, 64) == engine_for(128, 64) == engine_for(64, 128) == "flat"
    assert engine_for(1, 64) == engine_for(128, 256) == "reference"
    assert engine_for(256, 128) == "correlation"
    assert engine_for(64, 64, "stride: 2") == engine_for(64, 64, "pad: 1") == "reference"


def test_auto_picks_winograd_where_its_tiles_outweigh_its_kernel():
    """F(4, 3) on the U-Net's large images, F(2, 3) where the transformed kernel is up to four
    times the tiles (u3b-c at 572), the banded im2col where it is more (the 1024-channel
    layers at 30 px), and nothing below 64 channels."""
    from unetcore.layers.convolution_winograd import tile_for

    def engine_and_tile(c_in, c_out, size):
        text = (f'name: "c" type: "Convolution" convolution_param {{ '
                f'num_output: {c_out} kernel_size: 3 }}')
        layer = make_layer(text, dtype=np.float32, shapes=[(1, c_in, size, size)])
        return layer.engine, tile_for(c_in, c_out, size - 2, size - 2)
    assert engine_and_tile(64, 64, 570) == engine_and_tile(512, 512, 66) == ("winograd", 4)
    assert engine_and_tile(1024, 512, 56) == engine_and_tile(512, 512, 54) == ("winograd", 2)
    assert engine_and_tile(1024, 1024, 30) == ("reference", None)
    assert engine_and_tile(32, 64, 570)[0] == "flat"


def test_winograd_in_every_tile_size_and_in_bands(monkeypatch):
    """F(2, 3), F(3, 3), F(4, 3) and F(6, 3), in one band and in bands of one tile row: the
    direct sum and gradients that check, tiles hanging over the edges included."""
    from unetcore.layers import convolution_winograd
    x = RNG.standard_normal((2, 3, 11, 9))
    text, geom = conv_text(num_output=2), ConvGeometry((3, 3), (1, 1), (0, 0), (1, 1))
    for tile in (2, 3, 4, 6):
        monkeypatch.setattr(convolution_winograd.WinogradConvolution, "tile_size",
                            lambda self, shape, tile=tile: tile)
        for band_bytes in (config.sizes().winograd_band_bytes, 1):
            with config.using_sizes(winograd_band_bytes=band_bytes):
                layer = make_layer(text, shapes=[x.shape], engine="winograd")
                y = run_forward(layer, x)[0]
            assert layer.tile == tile
            expected = direct_convolution(x, layer.blobs[0].data, layer.blobs[1].data, geom)
            np.testing.assert_allclose(y, expected, atol=1e-12)
            assert_gradients(make_layer(text, shapes=[x.shape], engine="winograd"), x,
                             max_checks=30)


def test_winograd_float32_error_on_a_unet_layer():
    """F(4, 3) in float32 on a 128-channel layer: max error under 1e-5 of the largest output
    (the float32 im2col's is 5e-7; docs/winograd.md has every U-Net layer)."""
    x = RNG.random((1, 128, 30, 30))
    text = conv_text(num_output=32).replace('type: "gaussian" }', 'type: "msra" }', 1)
    exact = make_layer(text, shapes=[x.shape], engine="reference")
    y_exact = run_forward(exact, x)[0]
    layer = make_layer(text, dtype=np.float32, shapes=[x.shape], engine="winograd")
    run_forward(layer, x)
    assert layer.tile == 4
    layer.blobs[0].data[...] = exact.blobs[0].data
    layer.blobs[1].data[...] = exact.blobs[1].data
    bottom, top = blobs_of(x, dtype=np.float32), [Blob((), np.float32)]
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    error = np.abs(top[0].data - y_exact).max() / np.abs(y_exact).max()
    assert 1e-7 < error < 1e-5


def test_engine_caffe_in_the_prototxt_and_the_reference_setting_give_the_reference():
    text = 'name: "c" type: "Convolution" convolution_param { num_output: 64 kernel_size: 3 %s }'
    assert make_layer(text % "", shapes=[(1, 64, 5, 5)]).engine == "flat"
    assert make_layer(text % "engine: CAFFE", shapes=[(1, 64, 5, 5)]).engine == "reference"
    assert make_layer(text % "engine: CUDNN", shapes=[(1, 64, 5, 5)]).engine == "flat"
    with config.using_engine("reference"):
        assert make_layer(text % "", shapes=[(1, 64, 5, 5)]).engine == "reference"
    with config.using_engine("fft"), pytest.raises(NetError, match="unknown engine 'fft'"):
        make_layer(text % "", shapes=[(1, 64, 5, 5)])


def test_convolution_errors():
    with pytest.raises(NetError, match="input channels \\(3\\) must be divisible by group \\(2\\)"):
        run_forward(make_layer(conv_text(group=2)), np.zeros((1, 3, 5, 5)))
    with pytest.raises(NetError, match="input 2x2 is smaller than the kernel"):
        run_forward(make_layer(conv_text()), np.zeros((1, 1, 2, 2)))
    with pytest.raises(NetError, match="needs kernel_size"):
        run_forward(make_layer('name: "c" type: "Convolution" convolution_param { num_output: 1 }'),
                    np.zeros((1, 1, 2, 2)))
    with pytest.raises(NetError, match="needs num_output >= 1"):
        run_forward(make_layer('name: "c" type: "Convolution" convolution_param { kernel_size: 1 }'),
                    np.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize("fields, named", [
    ('type: "Convolution" convolution_param { num_output: 1 kernel_size: 3 stride_w: 2 }',
     "give both stride_h and stride_w"),
    ('type: "Convolution" convolution_param { num_output: 1 kernel_h: 3 }',
     "give both kernel_h and kernel_w"),
    ('type: "Pooling" pooling_param { pool: MAX kernel_size: 2 stride_h: 2 }',
     "give both stride_h and stride_w"),
    ('type: "Pooling" pooling_param { pool: MAX kernel_w: 2 stride: 2 }',
     "give both kernel_h and kernel_w")])
def test_half_of_an_h_w_pair_is_refused_in_one_line(fields, named):
    """Caffe reads a missing stride_h or kernel_w as 0 and stops on it; one line names both."""
    with pytest.raises(NetError, match=named):
        run_forward(make_layer(f'name: "l" {fields}'), np.zeros((1, 1, 8, 8)))


# ---------------------------------------------------------------- pooling
def pool_text(method="MAX", kernel=2, stride=2, pad=0):
    return (f'name: "p" type: "Pooling" pooling_param {{ pool: {method} kernel_size: {kernel} '
            f'stride: {stride} pad: {pad} }}')


@pytest.mark.parametrize("size, kernel, stride, pad, expected", [
    (4, 2, 2, 0, 2), (5, 2, 2, 0, 3), (6, 3, 2, 1, 4), (7, 3, 2, 0, 3), (5, 3, 3, 1, 2), (1, 2, 2, 0, 1)])
def test_pooling_output_size_is_caffes(size, kernel, stride, pad, expected):
    y = run_forward(make_layer(pool_text("MAX", kernel, stride, pad)), np.zeros((1, 1, size, size)))[0]
    assert y.shape == (1, 1, expected, expected)


def test_max_pooling_hand_case_with_mask():
    x = np.array([[[[1, 2, 5, 0], [3, 4, 1, 1], [0, 0, 2, 9], [7, 0, 3, 1]]]], float)
    y, mask = run_forward(make_layer(pool_text()), x, tops=2)
    np.testing.assert_array_equal(y[0, 0], [[4, 5], [7, 9]])
    np.testing.assert_array_equal(mask[0, 0], [[5, 2], [12, 11]])


@pytest.mark.parametrize("kernel,size", [(2, (6, 12)), (3, (6, 12)), (2, (7, 9)), (3, (7, 8))])
def test_tiled_max_pooling_equals_the_reference_with_ties_and_partial_windows(kernel, size):
    """Many ties (the first maximum wins in both), and sizes that leave a partial window."""
    x = RNG.integers(0, 3, (2, 3) + size).astype(float)
    results = []
    for engine in ("tiled", "reference"):
        layer = make_layer(pool_text("MAX", kernel, kernel), shapes=[x.shape], engine=engine)
        bottom, top = blobs_of(x), blobs_of(np.zeros((1,)), np.zeros((1,)))
        layer.setup(bottom, top)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        top[0].diff[...] = np.arange(top[0].count).reshape(top[0].shape)
        layer.backward(top, [True], bottom)
        results.append((top[0].data.copy(), top[1].data.copy(), bottom[0].diff.copy()))
    for tiled, reference in zip(*results):
        np.testing.assert_array_equal(tiled, reference)


@pytest.mark.parametrize("kernel,size", [(2, (6, 12)), (3, (7, 8)), (1, (3, 4)), (2, (38, 10)),
                                         (3, (52, 7)), (2, (5, 19, 6)), (2, (9,))])
def test_tiled_max_pooling_without_a_backward_keeps_the_max_and_refuses_backward(kernel, size):
    """Where the net runs no backward through it (backward_wanted cleared), the tiled engine
    computes the maxima alone: the same maxima, and a backward refused with a clear error.
    In 1-d, 2-d and 3-d, with partial windows (Caffe's ceil rounding)."""
    x = RNG.integers(0, 3, (2, 3) + size).astype(float)
    maxima = []
    for wanted in (True, False):
        layer = make_layer(pool_text("MAX", kernel, kernel), shapes=[x.shape], engine="tiled")
        layer.backward_wanted = wanted
        maxima.append(run_forward(layer, x)[0])
    np.testing.assert_array_equal(maxima[1], maxima[0])
    bottom, top = blobs_of(x), blobs_of(maxima[1])
    with pytest.raises(NetError, match="kept no argmax"):
        layer.backward(top, [True], bottom)


def test_a_deploy_net_clears_backward_wanted_and_a_training_net_keeps_it():
    text = ('name: "n" input: "data" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 } '
            'input: "label" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 } '
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 2 kernel_size: 1 } } '
            'layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" '
            'pooling_param { pool: MAX kernel_size: 2 stride: 2 } } ')
    loss = ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "pool" bottom: "label" '
            'top: "loss" }')

    def pool_layer(net):
        return net.layers[net.layer_names.index("pool")]
    assert not pool_layer(Net(parse(text), phase="TEST")).backward_wanted
    assert pool_layer(Net(parse(text + loss), phase="TRAIN")).backward_wanted


def test_max_pooling_odd_size_ceil_window():
    x = np.arange(25, dtype=float).reshape(1, 1, 5, 5)
    y = run_forward(make_layer(pool_text()), x)[0]
    np.testing.assert_array_equal(y[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])


def test_average_pooling_divisor_counts_padding_but_not_overhang():
    x = np.ones((1, 1, 3, 3))
    y = run_forward(make_layer(pool_text("AVE", 2, 2, 1)), x)[0]
    # windows start at -1: each 2x2 window covers 1, 2 or 4 image pixels; Caffe divides by the
    # window clipped to the padded image (4 for all but none here overhang past pad).
    np.testing.assert_allclose(y[0, 0], [[0.25, 0.5], [0.5, 1.0]])


@pytest.mark.parametrize("engine,device", POOLING_CASES)
@given(st.sampled_from(["MAX", "AVE"]), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2),
       st.integers(1, 7), st.integers(1, 7), st.integers(1, 2))
def test_pooling_gradients(engine, device, method, kernel, stride, pad, h, w, n):
    """The gradients check on the CPU; on a GPU, forward and backward equal the CPU
    reference's."""
    if engine == "tiled":                  # what the tiled engine runs: MAX, stride = kernel
        method, stride, pad = "MAX", kernel, 0
    assume(pad < kernel and stride <= kernel and h + 2 * pad >= kernel and w + 2 * pad >= kernel)
    x = RNG.permutation(n * 2 * h * w).reshape(n, 2, h, w) / 7.0     # distinct values: no ties
    text = pool_text(method, kernel, stride, pad)
    xp = device_module(device)
    layer = make_layer(text, shapes=[x.shape], engine=engine, xp=xp)
    if xp is np:
        assert_gradients(layer, x)
        return
    reference = make_layer(text, shapes=[x.shape], engine="reference")
    dy = RNG.standard_normal(run_forward(reference, x)[0].shape)
    for on_device, on_cpu in zip(pooled_and_dx(layer, x, dy), pooled_and_dx(reference, x, dy)):
        np.testing.assert_allclose(on_device, on_cpu, atol=1e-12)


def pooled_and_dx(layer, x, dy):
    """(y, dx) of a pooling layer, as NumPy arrays, on the layer's device."""
    bottom, top = blobs_of(x, xp=layer.xp), [Blob((), np.float64, layer.xp)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    top[0].diff[...] = layer.xp.asarray(dy)
    layer.backward(top, [True], bottom)
    return to_numpy(top[0].data), to_numpy(bottom[0].diff)


def test_global_and_rectangular_pooling():
    layer = make_layer('name: "p" type: "Pooling" pooling_param { pool: AVE global_pooling: true }')
    x = RNG.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(run_forward(layer, x)[0][..., 0, 0], x.mean(axis=(2, 3)))
    layer = make_layer('name: "p" type: "Pooling" pooling_param { kernel_h: 1 kernel_w: 2 stride_h: 1 stride_w: 2 }')
    assert run_forward(layer, x)[0].shape == (2, 3, 4, 3)


def test_pooling_errors():
    with pytest.raises(NetError, match="STOCHASTIC pooling is not implemented"):
        run_forward(make_layer('name: "p" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 }'),
                    np.zeros((1, 1, 4, 4)))
    with pytest.raises(NetError, match="the last window starts past the 2-pixel input"):
        run_forward(make_layer(pool_text(kernel=1, stride=3)), np.zeros((1, 1, 2, 2)))
    with pytest.raises(NetError, match="pad .* must be smaller than the kernel"):
        run_forward(make_layer(pool_text(pad=2)), np.zeros((1, 1, 4, 4)))


# ---------------------------------------------------------------- elementwise
@given(st.floats(0, 0.5))
def test_relu_forward_and_gradients(slope):
    text = f'name: "r" type: "ReLU" relu_param {{ negative_slope: {slope} }}'
    x = np.array([[-2.0, -0.5, 0.5, 3.0]])
    np.testing.assert_allclose(run_forward(make_layer(text), x)[0], [[-2 * slope, -0.5 * slope, 0.5, 3]])
    assert_gradients(make_layer(text), RNG.standard_normal((2, 3, 4)))


def test_relu_in_place_backward():
    layer = make_layer('name: "r" type: "ReLU"')
    blob = blobs_of(np.array([-1.0, 2.0]))[0]
    layer.setup([blob], [blob])
    layer.reshape([blob], [blob])
    layer.forward([blob], [blob])
    blob.diff[...] = [5.0, 7.0]
    layer.backward([blob], [True], [blob])
    np.testing.assert_array_equal(blob.data, [0, 2])
    np.testing.assert_array_equal(blob.diff, [0, 7])


@given(st.lists(st.integers(0, 5), min_size=0, max_size=4), st.sampled_from(["float32", "float64"]),
       st.booleans())
def test_rectify_is_max_with_zero_and_keeps_nan(shape, dtype, strided):
    """backend.rectify (the ReLU against a row of zeros) gives max(x, 0) on any shape,
    strided or not, in place or not; NaN stays NaN."""
    x = RNG.standard_normal([2 * n for n in shape] if strided else shape).astype(dtype)
    x = x[tuple(slice(None, None, 2) for _ in shape)] if strided and shape else x
    if x.size:
        x.flat[0] = np.nan
    expected = np.maximum(x, 0)
    out = np.empty_like(x)
    rectify(np, x, out)
    np.testing.assert_array_equal(out, expected)
    rectify(np, x, x)
    np.testing.assert_array_equal(x, expected)
    assert out.size == 0 or np.isnan(out.flat[0])


@given(st.sampled_from([0.0, 0.25, 0.5, 0.9]))
def test_dropout_train_scales_kept_units_and_gradients(ratio):
    text = f'name: "d" type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}'
    x = np.ones((4, 50, 50))
    y = run_forward(make_layer(text), x)[0]
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / (1 - ratio))
    assert kept.mean() == pytest.approx(1 - ratio, abs=0.02)
    assert_gradients(make_layer(text), RNG.standard_normal((2, 3, 4)))


def test_dropout_is_identity_at_test():
    x = RNG.standard_normal((2, 3))
    layer = make_layer('name: "d" type: "Dropout"', phase="TEST")
    np.testing.assert_array_equal(run_forward(layer, x)[0], x)
    with pytest.raises(NetError, match="dropout_ratio must be in \\[0, 1\\)"):
        run_forward(make_layer('name: "d" type: "Dropout" dropout_param { dropout_ratio: 1 }'), x)


# ---------------------------------------------------------------- crop, concat
def test_crop_offsets_caffe_semantics():
    x = np.arange(2 * 3 * 6 * 7, dtype=float).reshape(2, 3, 6, 7)
    ref = np.zeros((1, 1, 2, 3))
    y = run_forward(make_layer('name: "c" type: "Crop" crop_param { axis: 2 offset: 1 offset: 3 }'), x, ref)[0]
    np.testing.assert_array_equal(y, x[:, :, 1:3, 3:6])
    y = run_forward(make_layer('name: "c" type: "Crop" crop_param { axis: 2 offset: 2 }'), x, ref)[0]
    np.testing.assert_array_equal(y, x[:, :, 2:4, 2:5])
    y = run_forward(make_layer('name: "c" type: "Crop"'), x, ref)[0]
    np.testing.assert_array_equal(y, x[:, :, :2, :3])
    y = run_forward(make_layer('name: "c" type: "Crop" crop_param { axis: 1 offset: 1 }'), x, ref)[0]
    np.testing.assert_array_equal(y, x[:, 1:2, 1:3, 1:4])


@given(st.integers(0, 3), st.integers(0, 3), st.integers(1, 4), st.integers(1, 4))
def test_crop_gradients(oy, ox, h, w):
    x = RNG.standard_normal((2, 2, h + oy + 1, w + ox))
    layer = make_layer(f'name: "c" type: "Crop" crop_param {{ axis: 2 offset: {oy} offset: {ox} }}')
    assert_gradients(layer, x, np.zeros((1, 1, h, w)), check_bottoms=[0])


def test_crop_errors():
    with pytest.raises(NetError, match="cannot crop axis 2 .* needs size >= 5"):
        run_forward(make_layer('name: "c" type: "Crop" crop_param { offset: 3 }'),
                    np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2)))
    with pytest.raises(NetError, match="gives 3 offsets"):
        run_forward(make_layer('name: "c" type: "Crop" crop_param { offset: [1, 1, 1] }'),
                    np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2)))


def test_concat_channels_and_caffe_unet_center_crop():
    a, b = RNG.standard_normal((1, 2, 4, 4)), RNG.standard_normal((1, 3, 8, 6))
    y = run_forward(make_layer('name: "cat" type: "Concat"'), a, b)[0]
    assert y.shape == (1, 5, 4, 4)
    np.testing.assert_array_equal(y[:, :2], a)
    np.testing.assert_array_equal(y[:, 2:], b[:, :, 2:6, 1:5])


@given(st.integers(1, 3), st.integers(0, 4), st.integers(0, 3), st.sampled_from([0, 1]))
def test_concat_gradients(c, extra_h, extra_w, axis):
    a = RNG.standard_normal((2, c, 3, 4))
    b_shape = (2, c + 1, 3 + extra_h, 4 + extra_w) if axis == 1 else (1, c, 3 + extra_h, 4 + extra_w)
    b = RNG.standard_normal(b_shape)
    assert_gradients(make_layer(f'name: "cat" type: "Concat" concat_param {{ axis: {axis} }}'), a, b)


def test_concat_errors():
    with pytest.raises(NetError, match="does not fit the first bottom"):
        run_forward(make_layer('name: "cat" type: "Concat"'), np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 4)))


# ---------------------------------------------------------------- softmax and loss
def test_softmax_forward_and_gradients():
    x = np.array([[[[0.0]], [[np.log(3.0)]]]])
    np.testing.assert_allclose(run_forward(make_layer('name: "s" type: "Softmax"'), x)[0].ravel(), [0.25, 0.75])
    assert_gradients(make_layer('name: "s" type: "Softmax"'), RNG.standard_normal((2, 3, 2, 2)))
    assert_gradients(make_layer('name: "s" type: "Softmax" softmax_param { axis: -1 }'),
                     RNG.standard_normal((2, 3, 4)))


def loss_text(extra=""):
    return f'name: "loss" type: "SoftmaxWithLoss" loss_param {{ {extra} }}'


def test_softmax_loss_hand_cases():
    scores = np.zeros((1, 2, 1, 2))                 # p = 1/2 everywhere
    labels = np.array([[[[0, 1]]]], float)
    loss = run_forward(make_layer(loss_text()), scores, labels)[0]
    assert float(loss) == pytest.approx(np.log(2))
    weights = np.array([[[[1.0, 3.0]]]])
    loss = run_forward(make_layer(loss_text()), scores, labels, weights)[0]
    assert float(loss) == pytest.approx(4 * np.log(2) / 4)      # caffe_unet: Z = 1 + 3
    full = run_forward(make_layer(loss_text("normalization: FULL")), scores, labels, weights)[0]
    assert float(full) == pytest.approx(4 * np.log(2) / 2)      # Z = 2 pixels
    one = run_forward(make_layer(loss_text("ignore_label: 1")), scores, labels, weights)[0]
    assert float(one) == pytest.approx(1 * np.log(2) / 1)       # only pixel 0 counts: Z = 1
    small = run_forward(make_layer(loss_text()), scores, labels, weights / 8)[0]
    assert float(small) == pytest.approx(0.5 * np.log(2))       # Z = max(1, 0.5)
    zero = run_forward(make_layer(loss_text()), scores, labels, 0 * weights)[0]
    assert float(zero) == 0.0                                   # caffe_unet: no weight, no loss
    ignore = run_forward(make_layer(loss_text("ignore_label: 1")), scores, labels)[0]
    assert float(ignore) == pytest.approx(np.log(2))            # one valid pixel, Z = 1
    assert float(run_forward(make_layer(loss_text("ignore_label: 1 normalization: FULL")),
                             scores, labels)[0]) == pytest.approx(np.log(2) / 2)
    assert float(run_forward(make_layer(loss_text("normalization: NONE")),
                             scores, labels)[0]) == pytest.approx(2 * np.log(2))
    assert float(run_forward(make_layer(loss_text("normalize: false")),
                             scores, labels)[0]) == pytest.approx(2 * np.log(2))   # BATCH_SIZE, N = 1


def test_softmax_loss_probability_top():
    scores = np.array([[[[0.0]], [[np.log(3.0)]]]])
    _, prob = run_forward(make_layer(loss_text()), scores, np.zeros((1, 1, 1, 1)), tops=2)
    np.testing.assert_allclose(prob.ravel(), [0.25, 0.75])


@given(st.integers(2, 4), st.booleans(), st.booleans(),
       st.sampled_from(["FULL", "VALID", "BATCH_SIZE", "NONE"]), st.integers(1, 2))
def test_softmax_loss_gradients(classes, weighted, ignore, normalization, n):
    scores = RNG.standard_normal((n, classes, 3, 2))
    labels = RNG.integers(0, classes, (n, 1, 3, 2)).astype(float)
    extra = f"normalization: {normalization}" + (" ignore_label: 0" if ignore else "")
    bottoms = [scores, labels] + ([RNG.uniform(0.5, 3, (n, 1, 3, 2))] if weighted else [])
    assert_gradients(make_layer(loss_text(extra)), *bottoms, check_bottoms=[0])


def test_softmax_loss_errors():
    with pytest.raises(NetError, match="label 2 in .* is outside 0..1"):
        make = make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l"')
        run_forward(make, np.zeros((1, 2, 1, 1)), np.full((1, 1, 1, 1), 2.0))
    with pytest.raises(NetError, match="bottom 'w' has shape \\(1, 1, 2, 2\\).*need 1: one per pixel"):
        run_forward(make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" bottom: "w"'),
                    np.zeros((1, 2, 1, 1)), np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 2, 2)))


# ---------------------------------------------------------------- eltwise, accuracy
@given(st.sampled_from(["SUM", "PROD", "MAX"]), st.integers(2, 3))
def test_eltwise_forward_and_gradients(op, count):
    xs = [RNG.standard_normal((2, 3, 2)) for _ in range(count)]
    coeff = " coeff: 2" + " coeff: -1" * (count - 1) if op == "SUM" else ""
    layer = make_layer(f'name: "e" type: "Eltwise" eltwise_param {{ operation: {op}{coeff} }}')
    y = run_forward(layer, *xs)[0]
    expected = {"SUM": 2 * xs[0] - sum(xs[1:]), "PROD": np.prod(xs, axis=0), "MAX": np.max(xs, axis=0)}[op]
    np.testing.assert_allclose(y, expected)
    assert_gradients(make_layer(f'name: "e" type: "Eltwise" eltwise_param {{ operation: {op}{coeff} }}'), *xs)


def test_accuracy_hand_case():
    scores = np.array([[[[0.9, 0.1, 0.3]], [[0.1, 0.9, 0.2]], [[0.0, 0.0, 0.5]]]])   # argmax 0, 1, 2
    labels = np.array([[[[0, 0, 2]]]], float)
    assert float(run_forward(make_layer('name: "a" type: "Accuracy"'), scores, labels)[0]) == pytest.approx(2 / 3)
    top2 = make_layer('name: "a" type: "Accuracy" accuracy_param { top_k: 2 }')
    assert float(run_forward(top2, scores, labels)[0]) == pytest.approx(1.0)
    ignore = make_layer('name: "a" type: "Accuracy" accuracy_param { ignore_label: 2 }')
    assert float(run_forward(ignore, scores, labels)[0]) == pytest.approx(0.5)


def test_layer_blob_count_rules():
    with pytest.raises(NetError, match="takes 2 bottom blob\\(s\\), got 1"):
        run_forward(make_layer('name: "c" type: "Crop"'), np.zeros((1, 1, 2, 2)))


def test_value_transformation_hand_case_and_gradients():
    text = ('name: "vt" type: "ValueTransformation" value_transformation_param { '
            'offset { v: 1 v: -1 } scale { v: 2 } }')
    x = np.arange(8, dtype=float).reshape(1, 2, 2, 2)
    y = run_forward(make_layer(text), x)[0]
    np.testing.assert_allclose(y[0, 0], (x[0, 0] + 1) * 2)
    np.testing.assert_allclose(y[0, 1], (x[0, 1] - 1) * 2)
    assert_gradients(make_layer(text), RNG.standard_normal((2, 2, 3, 3)))
    with pytest.raises(NetError, match="offset gives 3 values for 2 channels"):
        run_forward(make_layer('name: "vt" type: "ValueTransformation" '
                               'value_transformation_param { offset { v: 1 v: 2 v: 3 } }'), x)


def test_every_engine_of_a_type_has_a_priority_of_its_own():
    """The choice among engines never depends on the order of imports."""
    from unetcore.layer import ENGINES, register_engine
    for kind, engines in ENGINES.items():
        assert len({e.priority for e in engines}) == len(engines), kind
    winograd = next(e for e in ENGINES["Convolution"] if e.engine == "winograd")
    twin = type("Twin", (winograd,), {"engine": "twin"})
    with pytest.raises(NetError, match="engine 'twin' of Convolution has priority 2, which "
                                       "engine 'winograd' has already"):
        register_engine(twin)
    with pytest.raises(NetError, match="registered twice"):
        register_engine(winograd)
    assert [e.engine for e in ENGINES["Convolution"]] == \
        ["pointwise", "slices", "winograd", "flat", "correlation"]
