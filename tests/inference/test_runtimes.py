"""Runtimes: ONNX Runtime inside unetcore's overlap-tile gives the probabilities the NumPy
net gives, to float32 rounding, over several tiles, batches and mirrorings, in 2-d and 3-d;
and each way of asking for a runtime that cannot run is refused in one line."""
import sys

import numpy as np
import pytest

from cases import REPO
from unetcore.errors import NetError, UnetcoreError
from unetcore.gradcheck import randomize_params
from unetcore.inference.deploy import square_input
from unetcore.inference.runtimes import OnnxRuntimeNet, with_runtime
from unetcore.inference.segmentation import segment_images
from unetcore.inference.tiling import segment, softmax, tile_origins
from unetcore.net import Net

SMALL = REPO / "prototxt" / "unet-small-deploy.prototxt"       # 2-d, tile 48 -> output 8
DEMO_3D = REPO / "prototxt" / "unet3d-demo-deploy.prototxt"     # 3-d, tile 20x76x76 -> 4x36x36


@pytest.fixture
def onnxruntime():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def random_net(model, seed=0, tile=None):
    """A deploy net with random weights, at a tile x tile input (None: the prototxt's)."""
    net = Net(model, "TEST")
    randomize_params(net, np.random.default_rng(seed))
    square_input(net, model, tile)
    net.release_activations = True               # as unetcore segment runs it
    return net


@pytest.mark.parametrize("average_mirror", [False, True])
@pytest.mark.parametrize("size", [(37, 53), (50, 29)])
def test_a_stack_segments_alike_in_both_runtimes(onnxruntime, size, average_mirror):
    """Two images of each size: 35 and 28 tiles each, all in a single forward (the default
    memory) and two at a time (the last batch of an image half full)."""
    net = random_net(SMALL, tile=48)
    images = np.random.default_rng(1).random((2, 1) + size, dtype=np.float32)
    assert len(tile_origins(size, (8, 8))) > 20
    ours = segment_images(net, images, average_mirror=average_mirror)
    wrapped = with_runtime(net, "onnxruntime")
    assert isinstance(wrapped, OnnxRuntimeNet)
    theirs = segment_images(wrapped, images, average_mirror=average_mirror)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5)
    pairs = [softmax(segment(wrapped, image, 2, average_mirror=average_mirror))
             for image in images]
    np.testing.assert_allclose(np.stack(pairs), ours, rtol=0, atol=1e-5)


def test_one_session_serves_every_tile_and_batch(onnxruntime):
    """The export's sizes are dynamic: a wrapper made at one tile runs the net at another."""
    net = random_net(SMALL)
    wrapped = OnnxRuntimeNet(net)
    square_input(net, SMALL, 64)
    image = np.random.default_rng(2).random((1, 40, 40), dtype=np.float32)
    np.testing.assert_allclose(segment(wrapped, image, 3), segment(net, image, 3),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("average_mirror", [False, True])
def test_a_3d_volume_segments_alike_in_both_runtimes(onnxruntime, average_mirror):
    """2 x 2 x 2 tiles of the 3-d demo net; with average_mirror, 7 flips of each."""
    net = random_net(DEMO_3D)
    volume = np.random.default_rng(3).random((1, 1, 6, 50, 60), dtype=np.float32)
    ours = segment_images(net, volume, average_mirror=average_mirror)
    theirs = segment_images(OnnxRuntimeNet(net), volume, average_mirror=average_mirror)
    assert theirs.shape == (6, 2, 50, 60)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5)


def test_scores_that_are_not_finite_name_the_first_layer_at_fault(onnxruntime):
    net = random_net(SMALL, tile=48)
    net.params["conv_d1a-b"][0].data[0, 0, 0, 0] = np.nan
    image = np.random.default_rng(4).random((1, 20, 20), dtype=np.float32)
    with pytest.raises(NetError, match=r"first NaN or infinity is in top '\w+' of layer "
                                       r"'conv_d1a-b'"):
        segment(OnnxRuntimeNet(net), image)


def test_the_numpy_runtime_is_the_net_itself():
    net = random_net(SMALL)
    assert with_runtime(net, "numpy") is net


def test_an_unknown_runtime_is_refused_in_one_line():
    with pytest.raises(UnetcoreError) as refused:
        with_runtime(random_net(SMALL), "tensorrt")
    assert str(refused.value) == ("unknown runtime 'tensorrt': the runtimes are numpy, "
                                  "onnxruntime")


def test_onnxruntime_missing_is_refused_with_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # import onnxruntime fails
    with pytest.raises(UnetcoreError) as refused:
        with_runtime(random_net(SMALL), "onnxruntime")
    assert str(refused.value) == ("the onnxruntime runtime needs the onnx and onnxruntime "
                                  "packages: pip install 'unetcore[export]'")


def test_a_provider_this_onnxruntime_lacks_is_refused_in_one_line(onnxruntime):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    with pytest.raises(UnetcoreError) as refused:
        OnnxRuntimeNet(random_net(SMALL), ["CUDAExecutionProvider", "CPUExecutionProvider"])
    message = str(refused.value)
    assert message.startswith("ONNX Runtime has no CUDAExecutionProvider here (it has ")
    assert message.endswith("; pip install onnxruntime-gpu for CUDA")
    assert "\n" not in message
