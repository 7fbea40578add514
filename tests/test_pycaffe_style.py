"""unetcore used as a pycaffe user uses Caffe: load a net, reshape its input, run it forward
(whole, or part of it), read blobs, do surgery on the parameters, run backward, save and load.
Read it as a tutorial: each step is what pycaffe's would be."""
from pathlib import Path

import numpy as np
import pytest

import unetcore
from unetcore.errors import NetError

PROTOTXT = Path(__file__).resolve().parent.parent / "prototxt"


@pytest.fixture()
def net():
    # net = caffe.Net("deploy.prototxt", caffe.TEST)
    return unetcore.Net(str(PROTOTXT / "unet-small-deploy.prototxt"), unetcore.TEST, seed=0)


def test_reshape_the_input_then_forward_and_read_blobs(net):
    assert list(net.inputs) == ["data"] and list(net.outputs) == ["score"]
    # net.blobs["data"].reshape(1, 1, 60, 60); net.reshape()
    net.blobs["data"].reshape(1, 1, 60, 60)
    net.reshape()
    assert net.blobs["score"].data.shape == (1, 2, 20, 20)
    # net.blobs["data"].data[...] = image; out = net.forward()
    image = np.random.default_rng(0).random((1, 1, 60, 60))
    net.blobs["data"].data[...] = image
    out = net.forward()
    assert list(out) == ["score"] and out["score"].shape == (1, 2, 20, 20)
    # blobs and params are ordered as the net runs, as pycaffe's OrderedDicts
    names = list(net.blobs)
    assert names.index("data") < names.index("d0c") < names.index("score")
    assert list(net.params)[0] == "conv_d0a-b" and list(net.params)[-1] == "conv_u0d-score"
    # net.blobs[name].num / channels / height / width
    blob = net.blobs["d0c"]
    assert (blob.num, blob.channels, blob.height, blob.width) == blob.shape


def test_forward_part_of_the_net_by_layer_name(net):
    image = np.random.default_rng(1).random((1, 1, 44, 44))
    full = net.forward(data=image)["score"].copy()
    # out = net.forward(end="relu_d0c"): runs up to that layer, returns its tops
    part = net.forward(data=image, end="relu_d0c")
    assert list(part) == ["d0c"] and part["d0c"].shape == (1, 2, 40, 40)
    # net.forward(start="pool_d0c-1a") picks up from there with the blobs as they are
    rest = net.forward(start="pool_d0c-1a")
    np.testing.assert_allclose(rest["score"], full, rtol=1e-6)
    with pytest.raises(NetError, match="no layer 'nope'"):
        net.forward(end="nope")


def test_surgery_on_the_parameters_then_save_and_load(net, tmp_path):
    image = np.random.default_rng(2).random((1, 1, 44, 44))
    # net.params["conv_u0d-score"][1].data[...] = [0, 5]: a bias that favours class 1
    net.params["conv_u0d-score"][0].data[...] = 0
    net.params["conv_u0d-score"][1].data[...] = [0, 5]
    scores = net.forward(data=image)["score"]
    assert np.all(scores[0, 1] == 5) and np.all(scores[0, 0] == 0)
    # net.save("w.caffemodel.h5"); caffe.Net(model, weights, caffe.TEST)
    net.save(tmp_path / "w.caffemodel.h5")
    again = unetcore.Net(str(PROTOTXT / "unet-small-deploy.prototxt"),
                         str(tmp_path / "w.caffemodel.h5"), unetcore.TEST)
    np.testing.assert_array_equal(again.forward(data=image)["score"], scores)


def test_backward_from_a_given_top_gradient(net):
    # net.forward(); net.backward(**{"score": dscore}) returns the input's gradient
    net.param.set("force_backward", True)
    net = unetcore.Net(net.param, unetcore.TEST, seed=0, dtype=np.float64)
    image = np.random.default_rng(3).random((1, 1, 44, 44))
    net.forward(data=image)
    dscore = np.random.default_rng(4).standard_normal(net.blobs["score"].shape)
    grads = net.backward(score=dscore)
    assert list(grads) == ["data"] and grads["data"].shape == image.shape
    # the gradient of <dscore, score(x)> along a random direction, by central differences
    v = np.random.default_rng(5).standard_normal(image.shape)
    h = 1e-6
    plus = (net.forward(data=image + h * v)["score"] * dscore).sum()
    minus = (net.forward(data=image - h * v)["score"] * dscore).sum()
    assert (grads["data"] * v).sum() == pytest.approx((plus - minus) / (2 * h), rel=1e-5)
    # net.backward(start=..., end=...): only the part between two layers
    net.forward(data=image)
    part = net.backward(start="conv_u0d-score", end="conv_u0d-score", score=dscore)
    assert list(part) == ["u0d"]
