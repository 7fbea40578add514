"""No silent wrong result: inputs that used to give a plausible but wrong answer with exit
status 0 now stop with one clear line (issue 22's first list)."""
import importlib
import logging
import re

import h5py
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import unetcore
from unetcore.cli import main
from unetcore.data.stacks import normalize_grey, to_classes
from unetcore.errors import DataError, NetError
from unetcore.gradcheck import check_net

SMALL = "prototxt/unet-small-deploy.prototxt"


@pytest.fixture
def small_weights(tmp_path):
    net = unetcore.Net(SMALL, seed=0)
    net.save(tmp_path / "w.caffemodel.h5")
    tifffile.imwrite(tmp_path / "image.tif", np.random.default_rng(0).integers(0, 255, (40, 40))
                     .astype(np.uint8))
    return tmp_path / "w.caffemodel.h5"


def segment(tmp_path, weights, *extra):
    return CliRunner().invoke(main, ["segment", str(tmp_path / "image.tif"), "-o",
                                     str(tmp_path / "out.tif"), "--model", SMALL, "--weights",
                                     str(weights), *extra])


def test_partial_or_empty_weights_are_refused_for_inference(tmp_path, small_weights):
    with h5py.File(small_weights, "a") as f:
        del f["data/conv_u0d-score"]
    result = segment(tmp_path, small_weights)
    assert result.exit_code == 1
    assert "has no weights for layer(s) conv_u0d-score of the net" in result.output
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_group("data")
    result = segment(tmp_path, tmp_path / "empty.h5")
    assert result.exit_code == 1 and "has no weights for layer(s) conv_d0a-b" in result.output


def test_transposed_weights_are_refused(tmp_path, small_weights):
    with h5py.File(small_weights, "a") as f:
        w = f["data/conv_u0d-score/0"][()]                 # (2, 2, 1, 1)
        del f["data/conv_u0d-score/0"]
        f["data/conv_u0d-score/0"] = w.reshape(1, 2, 2, 1)  # same count, another shape
        w = f["data/conv_d0b-c/0"][()]                       # (2, 2, 3, 3)
        del f["data/conv_d0b-c/0"]
        f["data/conv_d0b-c/0"] = w.transpose(2, 3, 0, 1)
    result = segment(tmp_path, small_weights)
    assert result.exit_code == 1
    assert "blob 0 has shape (3, 3, 2, 2) in the file but (2, 2, 3, 3) in the net" in result.output


def test_duplicate_learnable_layer_names_are_refused():
    text = open(SMALL).read().replace('name: "conv_d0b-c"', 'name: "conv_d0a-b"')
    with pytest.raises(NetError, match="layer 'conv_d0a-b' .*another layer with parameters has "
                                       "this name"):
        unetcore.Net(unetcore.formats.prototxt.parse(text))


def test_non_finite_weights_or_scaling_stop_inference(tmp_path, small_weights):
    with h5py.File(small_weights, "a") as f:
        f["data/conv_d1a-b/0"][0, 0, 0, 0] = np.nan
    result = segment(tmp_path, small_weights)
    assert result.exit_code == 1
    assert ("the first NaN or infinity is in top 'd1b' of layer 'conv_d1a-b' (Convolution)"
            in result.output)
    result = segment(tmp_path, small_weights, "--scale", "nan")
    assert result.exit_code == 1 and "--scale nan: must be a finite number" in result.output


def test_integer_images_are_scaled_by_their_bit_depth(caplog):
    twelve_bit = np.array([[0, 4095], [2048, 100]], np.uint16)
    with caplog.at_level(logging.WARNING, logger="unetcore"):
        grey = normalize_grey(twelve_bit, path="x.tif")
    assert grey.max() == 1.0 and grey[1, 0] == pytest.approx(2048 / 4095)
    assert "x.tif: uint16 grey values up to 4095, scaled as 12-bit data" in caplog.text
    np.testing.assert_allclose(normalize_grey(twelve_bit, bits=16), twelve_bit / 65535)
    with pytest.raises(DataError, match="--bits 8 does not hold its uint16 values"):
        normalize_grey(twelve_bit, bits=8)
    signed = np.array([[-100, 0], [100, 300]], np.int16)
    np.testing.assert_allclose(normalize_grey(signed), (signed + 100) / 400)
    assert normalize_grey(np.array([[0, 255]], np.uint8)).tolist() == [[0.0, 1.0]]


def test_fractional_labels_are_refused():
    with pytest.raises(DataError, match=r"labels.tif: label values must be whole class numbers, "
                                        r"found \[0.6\]"):
        to_classes(np.array([0.0, 0.6, 1.0]), 2, "labels.tif")
    assert to_classes(np.array([0.0, 1.0]), 2).tolist() == [0, 1]


def test_gradcheck_of_a_net_without_a_loss_is_refused():
    net = unetcore.Net(SMALL, dtype=np.float64)
    with pytest.raises(NetError, match="has no loss .* no gradient to check"):
        check_net(net)


def shapes_of(text_changes, *extra):
    text = open(SMALL).read()
    for old, new in text_changes:
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("change,message", [
    (("stride: 2", "stride: 0"), r"pooling stride must be >= 1, got \(0, 0\)"),
    (("dim: 44", "dim: -44"), r"top 'data' has a negative dim in \(1, 1, -44, -44\)"),
    (("num_output: 2\n", "num_output: 99999999999999999999\n"),
     "field 'num_output': 99999999999999999999 is out of range for a 64-bit integer"),
    (("num_output: 2\n", "num_output: 100000000000\n"),
     "the parameter blob .* of layer 'conv_d0a-b' would take .* GiB, more than"),
    (('weight_filler { type: "msra" }', 'weight_filler { type: "msra" variance_norm: FAN_OUT }'),
     None),
])
def test_bad_numbers_in_a_net_are_one_clear_error(change, message, tmp_path):
    (tmp_path / "net.prototxt").write_text(shapes_of([change]))
    result = CliRunner().invoke(main, ["shapes", str(tmp_path / "net.prototxt")])
    if message is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.search(message, result.output), result.output


@pytest.mark.parametrize("args,message", [
    (["synth", "-o", "{tmp}/s", "--size", "0"], "0 is not in the range 16<=x<=16384"),
    (["synth", "-o", "{tmp}/s", "--train", "0"], "0 is not in the range x>=1"),
    (["synth", "-o", "{tmp}/s", "--cell-size", "0"], "0 is not in the range x>=4"),
    (["time", SMALL, "--iterations", "0"], "0 is not in the range x>=1"),
    (["shapes", SMALL, "--size", "-5"], "the input size must be a positive number of pixels"),
    (["time", "prototxt/unet-deploy.prototxt", "--size", "60060"],      # shapes would print
     "the blobs of net 'unet' at 60060 x 60060 would take .* GiB, more than"),
    (["weightmap", "{tmp}/zero.tif", "-o", "{tmp}/w.tif"], r"zero.tif: holds no label pixels"),
    (["segment", "{tmp}/zero.tif", "-o", "/proc/none/out.tif", "--model", SMALL, "--weights",
      "x.h5"], "out.tif: cannot create its folder"),
])
def test_bad_command_lines_are_one_clear_line(args, message, tmp_path):
    with pytest.warns(UserWarning):                   # tifffile warns of the empty page
        tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 8, 8), np.uint8))
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert re.search(message, result.output), result.output


def test_solver_checks_iter_size_and_snapshot_prefix_before_training(tmp_path):
    from unetcore.errors import SolverError
    from unetcore.formats.prototxt import parse
    base = 'net: "prototxt/unet-small-train.prototxt" base_lr: 0.01 '
    with pytest.raises(SolverError, match="iter_size must be >= 1, got 0"):
        unetcore.get_solver(parse(base + "iter_size: 0", "SolverParameter"))
    with pytest.raises(SolverError, match=f"snapshot_prefix '{tmp_path}' is a directory"):
        unetcore.get_solver(parse(base + f'snapshot_prefix: "{tmp_path}"', "SolverParameter"))
    with pytest.raises(SolverError, match="cannot create its folder"):
        unetcore.get_solver(parse(base + 'snapshot_prefix: "/proc/none/unet"', "SolverParameter"))


def test_drawings_escape_layer_names():
    import xml.dom.minidom

    from unetcore.tools.draw import dot_text, svg_text
    text = open(SMALL).read().replace('name: "conv_d0a-b"', 'name: "<script>\\"x"')
    net = unetcore.Net(unetcore.formats.prototxt.parse(text))
    svg = svg_text(net)
    xml.dom.minidom.parseString(svg)                   # well-formed
    assert "<script>" not in svg and "&lt;script&gt;&quot;x" in svg
    assert '"<script>\\"x" [label=' in dot_text(net)


def test_an_unexpected_error_is_still_one_line(monkeypatch):
    cli = importlib.import_module("unetcore.cli.nets")

    def broken(*args, **kwargs):
        raise KeyError("boom")
    monkeypatch.setattr(cli, "square_input", broken)
    result = CliRunner().invoke(main, ["shapes", SMALL, "--size", "44"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "unetcore: internal error: KeyError: 'boom' (a bug in unetcore" in result.output


def test_a_memory_budget_refuses_nets_that_exceed_it(monkeypatch):
    monkeypatch.setenv("UNETCORE_MAX_MEMORY", "100")                   # MiB
    with pytest.raises(unetcore.errors.UnetcoreError,
                       match=r"the blobs of net 'unet' at 572 x 572 would take 1\.\d GiB, more "
                             r"than the 0\.1 GiB allowed by UNETCORE_MAX_MEMORY"):
        unetcore.Net("prototxt/unet-deploy.prototxt")
    net = unetcore.Net(SMALL)                                           # a small net fits
    with pytest.raises(unetcore.errors.UnetcoreError, match="at 4000 x 4000 would take"):
        net.set_inputs({"data": np.zeros((1, 1, 4000, 4000))})
