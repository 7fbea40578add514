"""unetcore used as a pycaffe user uses Caffe: load a net, reshape its input, run it forward
(whole, or part of it), read blobs, do surgery on the parameters, run backward, save and load,
share weights between nets, choose the device, train with a solver.
Read it as a tutorial: each step is what pycaffe's would be."""
import threading

import h5py
import numpy as np
import pytest

from cases import REPO, cupy_with_device, needs_gpu
import unetcore
from unetcore.errors import BackendError, NetError

PROTOTXT = REPO / "prototxt"
DEPLOY = str(PROTOTXT / "unet-small-deploy.prototxt")
TRAIN_NET = str(PROTOTXT / "unet-small-train.prototxt")


@pytest.fixture()
def net():
    # net = caffe.Net("deploy.prototxt", caffe.TEST)
    return unetcore.Net(DEPLOY, unetcore.TEST, seed=0)


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


def test_phases_are_the_integers_of_pycaffe():
    # caffe.TRAIN == 0 and caffe.TEST == 1; the names work too, in any case
    assert (unetcore.TRAIN, unetcore.TEST) == (0, 1)
    train = unetcore.Net(TRAIN_NET, unetcore.TRAIN)
    assert train.phase == "TRAIN" and "dropout_d1c" in train.layer_names   # include: TRAIN
    for phase in (unetcore.TEST, 1, np.int64(1), "TEST", "test"):
        net = unetcore.Net(TRAIN_NET, phase)
        assert net.phase == "TEST" and "dropout_d1c" not in net.layer_names
    for wrong in (2, "VAL", True, None):
        with pytest.raises(NetError, match=f"phase must be unetcore.TRAIN \\(0\\) or "
                                           f"unetcore.TEST \\(1\\), or the name 'TRAIN' or "
                                           f"'TEST'; got {wrong!r}"):
            unetcore.Net(DEPLOY, wrong)


def test_forward_returns_the_blobs_asked_for_too(net):
    image = np.random.default_rng(6).random((1, 1, 44, 44))
    # out = net.forward(blobs=["d0c"], data=image): the outputs, then the blobs named
    out = net.forward(blobs=["d0c", "score"], data=image)
    assert list(out) == ["score", "d0c"]
    assert out["d0c"] is net.blobs["d0c"].data and out["d0c"].shape == (1, 2, 40, 40)
    part = net.forward(end="relu_d0c", blobs=["d0b"], data=image)
    assert list(part) == ["d0c", "d0b"]
    with pytest.raises(NetError, match="the net has no blob 'nope' to return; its blobs: data, "):
        net.forward(blobs=["nope"])
    net.release_activations = True          # inner blobs are freed: refused, not zeros
    with pytest.raises(NetError, match="frees its inner blobs during forward "
                                       r"\(release_activations\), so it cannot return d0c"):
        net.forward(blobs=["d0c", "score"], data=image)


def test_backward_returns_the_diffs_asked_for_too(net):
    net.param.set("force_backward", True)
    net = unetcore.Net(net.param, unetcore.TEST, seed=0)
    net.forward(data=np.random.default_rng(7).random((1, 1, 44, 44)))
    dscore = np.random.default_rng(8).standard_normal(net.blobs["score"].shape)
    # grads = net.backward(diffs=["d0c"], score=dscore): the input's diff, then those named
    grads = net.backward(diffs=["d0c"], score=dscore)
    assert list(grads) == ["data", "d0c"]
    assert grads["d0c"] is net.blobs["d0c"].diff and np.any(grads["d0c"] != 0)
    with pytest.raises(NetError, match="the net has no blob 'nope' to return the diff of"):
        net.backward(diffs=["nope"])


def test_save_hdf5_and_load_hdf5_round_trip(tmp_path):
    # net.save_hdf5(path); other.load_hdf5(path): Caffe's HDF5 layout, /data/<layer>/<i>
    saved = unetcore.Net(DEPLOY, unetcore.TEST, seed=1)
    saved.save_hdf5(str(tmp_path / "w.caffemodel.h5"))
    with h5py.File(tmp_path / "w.caffemodel.h5") as f:
        assert list(f["data"]) == sorted(saved.params)
    loaded = unetcore.Net(DEPLOY, unetcore.TEST, seed=2)
    loaded.load_hdf5(str(tmp_path / "w.caffemodel.h5"))
    for name, blobs in saved.params.items():
        for a, b in zip(blobs, loaded.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_save_writes_a_binary_caffemodel_as_pycaffe_and_hdf5_for_an_h5_name(tmp_path):
    # net.save("w.caffemodel"): Caffe's binary NetParameter, which Caffe and copy_from read
    saved = unetcore.Net(DEPLOY, unetcore.TEST, seed=1)
    saved.save(str(tmp_path / "w.caffemodel"))
    saved.save(str(tmp_path / "w.caffemodel.h5"))
    assert not h5py.is_hdf5(tmp_path / "w.caffemodel")
    assert h5py.is_hdf5(tmp_path / "w.caffemodel.h5")
    for name in ("w.caffemodel", "w.caffemodel.h5"):
        loaded = unetcore.Net(DEPLOY, unetcore.TEST, seed=2)
        loaded.copy_from(str(tmp_path / name))
        for layer, blobs in saved.params.items():
            for a, b in zip(blobs, loaded.params[layer]):
                np.testing.assert_array_equal(a.data, b.data)


def test_share_with_gives_a_net_the_parameters_of_another():
    # net.share_with(other): this net computes with other's parameter arrays
    trained = unetcore.Net(DEPLOY, unetcore.TEST, seed=1)
    net = unetcore.Net(DEPLOY, unetcore.TEST, seed=2)
    net.share_with(trained)
    image = np.random.default_rng(9).random((1, 1, 44, 44))
    np.testing.assert_array_equal(net.forward(data=image)["score"],
                                  trained.forward(data=image)["score"])
    trained.params["conv_u0d-score"][1].data[...] = [0, 5]      # what one net changes ...
    assert list(net.params["conv_u0d-score"][1].data) == [0, 5]  # ... the other sees
    with pytest.raises(NetError, match=r"float64 on the CPU\) cannot share the parameters of "
                                       r"net 'unet-small' \(float32 on the CPU\)"):
        unetcore.Net(DEPLOY, unetcore.TEST, dtype=np.float64).share_with(trained)
    larger = unetcore.Net(str(PROTOTXT / "unet-deploy.prototxt"), unetcore.TEST)
    with pytest.raises(NetError, match=r"cannot share the parameters of layer 'conv_d0a-b': its "
                                       r"blob 0 has shape \(2, 1, 3, 3\) in this net, "
                                       r"\(64, 1, 3, 3\) in net"):
        net.share_with(larger)


def solver_file(tmp_path, type_="SGD"):
    """A solver prototxt of the small training net, with a test net of its TEST phase."""
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "{TRAIN_NET}" type: "{type_}" base_lr: 0.1 momentum: 0.9 '
                    f'lr_policy: "fixed" max_iter: 3 test_iter: 1 test_interval: 100 '
                    f'snapshot_prefix: "{tmp_path / "snap"}" random_seed: 0\n')
    return str(path)


def give_a_batch(net):
    rng = np.random.default_rng(10)
    net.blobs["data"].data[...] = rng.random(net.blobs["data"].shape)
    net.blobs["label"].data[...] = rng.integers(0, 2, net.blobs["label"].shape)
    net.blobs["weights"].data[...] = 1


def test_sgd_solver_steps_and_a_shared_net_follows(tmp_path):
    # solver = caffe.SGDSolver("solver.prototxt"); solver.step(2)
    solver = unetcore.SGDSolver(solver_file(tmp_path))
    assert solver.iter == 0 and solver.net.phase == "TRAIN"
    assert [net.phase for net in solver.test_nets] == ["TEST"]
    deploy = unetcore.Net(DEPLOY, unetcore.TEST)
    deploy.share_with(solver.net)
    give_a_batch(solver.net)
    before = solver.net.params["conv_d0a-b"][0].data.copy()
    solver.step(2)
    assert solver.iter == 2
    assert not np.array_equal(solver.net.params["conv_d0a-b"][0].data, before)
    for name, blobs in solver.net.params.items():    # both nets still read the trained arrays
        for trained, shared, tested in zip(blobs, deploy.params[name],
                                           solver.test_nets[0].params[name]):
            np.testing.assert_array_equal(shared.data, trained.data)
            np.testing.assert_array_equal(tested.data, trained.data)
    solver.solve()                                   # on to max_iter
    assert solver.iter == 3


@pytest.mark.parametrize("solver_class", [unetcore.SGDSolver, unetcore.NesterovSolver,
                                          unetcore.AdaGradSolver, unetcore.RMSPropSolver,
                                          unetcore.AdaDeltaSolver, unetcore.AdamSolver])
def test_each_solver_class_builds_its_type_whatever_the_file_says(tmp_path, solver_class):
    solver = solver_class(solver_file(tmp_path, type_="Adam" if solver_class is
                                      unetcore.SGDSolver else "SGD"))
    assert type(solver) is solver_class
    give_a_batch(solver.net)
    solver.step(1)
    assert solver.iter == 1


@pytest.fixture()
def device_choice():
    """The test may switch to GPU mode: leave the CPU chosen after it."""
    yield
    unetcore.set_mode_cpu()
    unetcore.set_device(0)


def test_set_mode_chooses_the_device_of_the_nets_built_next(device_choice):
    # caffe.set_mode_cpu(); net = caffe.Net(...)
    unetcore.set_mode_cpu()
    net = unetcore.Net(DEPLOY, unetcore.TEST)
    assert net.gpu is None and net.xp is np
    assert net.forward(data=np.ones((1, 1, 44, 44)))["score"].shape == (1, 2, 4, 4)
    # caffe.set_mode_gpu(); caffe.set_device(n): nets built afterwards go to GPU n, here
    # one that this machine lacks, so that building a net says why it cannot
    cupy = cupy_with_device()
    missing = cupy.cuda.runtime.getDeviceCount() if cupy else 0
    unetcore.set_mode_gpu()
    unetcore.set_device(missing)
    with pytest.raises(BackendError, match="GPU|CUDA"):
        unetcore.Net(DEPLOY, unetcore.TEST)
    assert net.xp is np                                     # a net stays where it was built
    built = []                                              # a new thread starts on the CPU
    thread = threading.Thread(target=lambda: built.append(unetcore.Net(DEPLOY).xp))
    thread.start()
    thread.join()
    assert built == [np]
    with pytest.raises(BackendError, match=r"set_device takes a CUDA device number \(0, 1, "
                                           r"...\), not -1"):
        unetcore.set_device(-1)


@needs_gpu
def test_set_mode_gpu_builds_nets_and_solvers_on_the_gpu(device_choice, tmp_path):
    cupy = cupy_with_device()
    cpu = unetcore.Net(DEPLOY, unetcore.TEST, seed=0)
    unetcore.set_mode_gpu()
    unetcore.set_device(0)
    gpu = unetcore.Net(DEPLOY, unetcore.TEST, seed=0)
    assert gpu.gpu == 0 and gpu.xp is cupy
    image = np.random.default_rng(11).random((1, 1, 44, 44))
    np.testing.assert_allclose(cupy.asnumpy(gpu.forward(data=image)["score"]),
                               cpu.forward(data=image)["score"], rtol=1e-4, atol=1e-5)
    solver = unetcore.SGDSolver(solver_file(tmp_path))
    assert solver.xp is cupy and solver.net.xp is cupy and solver.test_nets[0].xp is cupy
    solver.step(1)
    assert solver.iter == 1
