"""The U-Net itself: shapes, valid sizes, the release's names, the prototxt files, and the
whole small net gradient-checked end to end (crop, concat, deconv, weighted loss included)."""

import numpy as np
import pytest

from cases import REPO
import unetcore
from unetcore import config
from unetcore.models import unet
from unetcore.errors import NetError
from unetcore.gradcheck import check_net, randomize_params, random_inputs
from unetcore.net import load_net_param
from unetcore.formats.prototxt import parse
from unetcore.models.unet import train_text
from unetcore.sizes import valid_sizes

PROTOTXT = REPO / "prototxt"


def test_committed_prototxt_files_match_the_generator(tmp_path):
    unet.write_files(tmp_path)
    for name in unet.FILES:
        assert (PROTOTXT / name).read_text() == (tmp_path / name).read_text(), name


def test_unet_572_gives_388_with_release_names_and_31m_params():
    net = unetcore.Net(PROTOTXT / "unet-deploy.prototxt")
    assert net.blobs["score"].shape == (1, 2, 388, 388)
    assert net.blobs["d4c"].shape == (1, 1024, 28, 28)
    assert net.blobs["u3b"].shape == (1, 1024, 56, 56)
    assert sum(b.count for b in net.learnable_params) == 31_030_658
    convs = [l for l in net.layers if l.type in ("Convolution", "Deconvolution")]
    assert len([l for l in convs if l.type == "Convolution"]) == 19
    assert {"conv_d0a-b", "pool_d0c-1a", "upconv_d4c_u3a", "crop_d3c-d3cc",
            "concat_d3cc_u3a-b", "conv_u3b-c", "conv_u0d-score"} <= set(net.layer_names)


def test_release_widths_multipliers_and_train_only_dropout():
    """As the 2015 release: upconv_u1d_u0a keeps 128 outputs (31,100,354 parameters), every
    bias learns at twice the rate without weight decay, and dropout runs only in training."""
    release = unetcore.Net(PROTOTXT / "unet-release-deploy.prototxt")
    assert sum(b.count for b in release.learnable_params) == 31_100_354
    assert release.blobs["u0a"].shape[1] == 128 and release.blobs["u0b"].shape[1] == 192
    train = unetcore.Net(PROTOTXT / "unet-train-inputs.prototxt", unetcore.TRAIN)
    assert [l.name for l in train.layers if l.type == "Dropout"] == ["dropout_d3c", "dropout_d4c"]
    assert not [l for l in release.layers if l.type == "Dropout"]
    assert train.lr_mults[:2] == [1, 2] and train.decay_mults[:2] == [1, 0]


def test_valid_sizes_are_16k_plus_60():
    net = unetcore.Net(PROTOTXT / "unet-deploy.prototxt")
    assert valid_sizes(net, "data", 150, 700) == list(range(188, 701, 16))
    assert all((s - 60) % 16 == 0 for s in valid_sizes(net, "data", 150, 700))


def test_odd_pool_input_names_the_pool_and_nearest_sizes():
    net = unetcore.Net(PROTOTXT / "unet-deploy.prototxt")
    with pytest.raises(NetError, match="pooling layer 'pool_d1c-2a' see 279x279.*nearest valid "
                                       "sizes: 540, 556, 572, 588"):
        net.forward(data=np.zeros((1, 1, 570, 570), np.float32))


def test_crop_offsets_match_the_release():
    assert unet.crop_offsets(4) == {3: 4, 2: 16, 1: 40, 0: 88}


def engines_of(net):
    return {type(layer).engine for layer in net.layers}


@pytest.mark.parametrize("engine", ["auto", "reference", "flat", "winograd"])
def test_small_unet_gradient_checked_end_to_end(engine):
    """With the engines that "auto" picks for its few channels (pointwise, correlation,
    tiled, blocks), with the reference layers alone, and with the flat or the Winograd
    engine forced."""
    param = load_net_param(PROTOTXT / "unet-small-train.prototxt")
    param.set("force_backward", True)
    with config.using_engine(engine):
        net = unetcore.Net(param, unetcore.TRAIN, dtype=np.float64, seed=3)
    expected = {"auto": {"reference", "pointwise", "correlation", "tiled", "blocks"},
                "reference": {"reference"}, "flat": {"reference", "flat"},
                "winograd": {"reference", "winograd"}}[engine]
    assert engines_of(net) == expected
    assert {"Crop", "Concat", "Deconvolution", "Dropout", "SoftmaxWithLoss"} <= {l.type for l in net.layers}
    rng = np.random.default_rng(3)
    randomize_params(net, rng)
    random_inputs(net, rng)
    results = check_net(net, max_checks=25, seed=3)
    assert len(results) == 2 * 13 + 1                      # weight and bias of 13 convs + the input
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)


def test_a_unet_wide_enough_for_the_flat_engine_gradient_checked_end_to_end():
    """16 base channels at depth 1: "auto" picks flat for the 16- and 32-channel layers."""
    param = parse(train_text("wide", depth=1, channels=16, size=20), "NetParameter")
    param.set("force_backward", True)
    net = unetcore.Net(param, unetcore.TRAIN, dtype=np.float64, seed=4)
    assert engines_of(net) == {"reference", "flat", "pointwise", "tiled", "blocks"}
    rng = np.random.default_rng(4)
    randomize_params(net, rng, scale=0.1)          # 0.5 saturates the softmax at this width
    random_inputs(net, rng)
    results = check_net(net, max_checks=20, seed=4)
    assert len(results) == 2 * 8 + 1                       # weight and bias of 8 layers + the input
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)


def test_full_unet_forward_572_float32():
    net = unetcore.Net(PROTOTXT / "unet-deploy.prototxt", seed=0)
    image = np.random.default_rng(0).random((1, 1, 572, 572), dtype=np.float32)
    score = net.forward(data=image)["score"]
    assert score.shape == (1, 2, 388, 388) and score.dtype == np.float32
    assert np.isfinite(score).all() and score.std() > 0
