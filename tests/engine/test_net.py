import h5py
import numpy as np
import pytest

import unetcore
from unetcore.errors import BackendError, DataError, NetError
from unetcore.formats.prototxt import parse

BASE = '''
name: "t"
input: "data" input_shape { dim: 2 dim: 3 dim: 6 dim: 6 }
'''

CONV = '''layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}"
  {extra} convolution_param {{ num_output: 2 kernel_size: 3 weight_filler {{ type: "gaussian" }}
  bias_filler {{ type: "constant" value: 0.1 }} }} }}
'''


def net_of(text, phase=unetcore.TEST, **kw):
    return unetcore.Net(parse(BASE + text, filename="t.prototxt"), phase, **kw)


def test_net_level_input_dim_and_input_shape():
    a = unetcore.Net(parse('input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4'))
    b = unetcore.Net(parse('input: "x" input_shape { dim: 1 dim: 2 dim: 3 dim: 4 }'))
    assert a.blobs["x"].shape == b.blobs["x"].shape == (1, 2, 3, 4)
    assert a.inputs == ["x"] and a.layer_names == ["input"]


def test_input_count_mismatch_is_refused():
    with pytest.raises(NetError, match="2 input.*and 3 input_dim"):
        unetcore.Net(parse('input: "x" input: "y" input_dim: 1 input_dim: 2 input_dim: 3'))


def test_include_exclude_by_phase_level_stage():
    text = CONV.format(name="c", bottom="data", top="c", extra="") + '''
      layer { name: "only_train" type: "ReLU" bottom: "c" top: "r" include { phase: TRAIN } }
      layer { name: "not_train" type: "ReLU" bottom: "c" top: "r2" exclude { phase: TRAIN } }
      layer { name: "staged" type: "ReLU" bottom: "c" top: "r3" include { stage: "deep" min_level: 1 } }
    '''
    assert "only_train" not in net_of(text).layer_names
    assert "not_train" in net_of(text).layer_names
    train = net_of(text, unetcore.TRAIN)
    assert "only_train" in train.layer_names and "not_train" not in train.layer_names
    assert "staged" not in train.layer_names
    assert "staged" in net_of(text, stages=("deep",), level=1).layer_names
    assert "staged" not in net_of(text, stages=("deep",), level=0).layer_names


def test_in_place_layer_shares_the_blob():
    net = net_of(CONV.format(name="c", bottom="data", top="c", extra="") +
                 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }')
    assert net.top_vecs[2][0] is net.bottom_vecs[2][0] is net.blobs["c"]
    out = net.forward(data=np.random.default_rng(0).standard_normal((2, 3, 6, 6)))
    assert out["c"].min() >= 0


def test_split_inserted_with_caffe_names_and_gradients_summed():
    text = CONV.format(name="c", bottom="data", top="c", extra="") + '''
      layer { name: "s" type: "Eltwise" bottom: "c" bottom: "c" top: "s" }
      layer { name: "loss" type: "Eltwise" bottom: "s" bottom: "c" top: "loss" loss_weight: 1
              eltwise_param { operation: PROD } }'''
    net = net_of(text, dtype=np.float64)
    assert "c_c_0_split" in net.layer_names
    assert net.bottom_names["s"] == ["c_c_0_split_0", "c_c_0_split_1"]
    assert net.bottom_names["loss"] == ["s", "c_c_0_split_2"]
    net.forward(data=np.random.default_rng(1).standard_normal((2, 3, 6, 6)))
    net.clear_param_diffs()
    net.backward()
    c = net.blobs["c"].data
    np.testing.assert_allclose(net.blobs["c"].diff, 4 * c)       # d/dc (2c * c) = 4c


def test_unknown_bottom_names_layer_and_known_blobs():
    with pytest.raises(NetError, match=r"layer 'r' \(t.prototxt:\d+:\d+\) takes bottom 'nope', "
                                       r"which no layer before it produces in phase TEST; known blobs: data"):
        net_of('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }')


def test_duplicate_top_is_refused():
    with pytest.raises(NetError, match="produces top 'data', which an earlier layer already produces"):
        net_of('layer { name: "r" type: "ReLU" bottom: "data" top: "x" }'
               'layer { name: "r2" type: "ReLU" bottom: "x" top: "data" }')


def test_unknown_type_lists_known_types():
    with pytest.raises(NetError, match="unknown type 'Convolutoin'; did you mean "
                                       "'Convolution'. known types: .*Convolution"):
        net_of('layer { name: "c" type: "Convolutoin" bottom: "data" top: "c" }')


def test_include_and_exclude_together_is_refused():
    with pytest.raises(NetError, match="both include and exclude"):
        net_of('layer { name: "r" type: "ReLU" bottom: "data" top: "r" include { phase: TEST } '
               'exclude { phase: TRAIN } }')


def test_loss_weight_scales_loss_and_gradient():
    text = CONV.format(name="c", bottom="data", top="c", extra="loss_weight: 3")
    net = net_of(text, dtype=np.float64)
    net.forward(data=np.ones((2, 3, 6, 6)))
    assert net.loss == pytest.approx(3 * net.blobs["c"].data.sum())
    net.clear_param_diffs()
    net.backward()
    np.testing.assert_allclose(net.params["c"][1].diff, 3 * 2 * 4 * 4 * np.ones(2))


def test_param_sharing_by_name_and_shape_check():
    shared = 'param { name: "w" } param { name: "b" }'
    text = (CONV.format(name="c1", bottom="data", top="c1", extra=shared) +
            'layer { name: "pad" type: "Concat" bottom: "c1" bottom: "c1" bottom: "c1" top: "cat" '
            'concat_param { axis: 1 } }' +
            CONV.format(name="c2", bottom="cat", top="c2", extra=shared))
    with pytest.raises(NetError, match="shares parameter 'w' with layer 'c1'.*shape \\(2, 6, 3, 3\\)"):
        net_of(text)
    ok = (CONV.format(name="c1", bottom="data", top="c1", extra=shared) +
          CONV.format(name="c2", bottom="data", top="c2", extra=shared))
    net = net_of(ok)
    assert net.params["c1"][0] is net.params["c2"][0]
    assert len(net.learnable_params) == 2


def test_lr_mult_zero_and_propagate_down_prune_backward():
    text = (CONV.format(name="c1", bottom="data", top="c1", extra="param { lr_mult: 0 } param { lr_mult: 0 }") +
            CONV.format(name="c2", bottom="c1", top="c2", extra="propagate_down: false loss_weight: 1"))
    net = net_of(text)
    i1, i2 = net.layer_names.index("c1"), net.layer_names.index("c2")
    assert net.layer_need_backward[i1] is False           # frozen, and c2 does not propagate to it
    assert net.layer_need_backward[i2] is True and net.bottom_need_backward[i2] == [False]


def test_force_backward_reaches_the_input():
    text = 'force_backward: true\n' + CONV.format(name="c", bottom="data", top="c", extra="loss_weight: 1")
    net = net_of(text, dtype=np.float64)
    net.forward(data=np.ones((2, 3, 6, 6)))
    grads = net.backward()
    w = net.params["c"][0].data
    assert grads["data"].shape == (2, 3, 6, 6)
    assert grads["data"][0, :, 2, 2] == pytest.approx(w.sum(axis=(0, 2, 3)))   # center: all 9 taps


def test_layers_not_leading_to_a_loss_skip_backward():
    text = (CONV.format(name="c", bottom="data", top="c", extra="") +
            'layer { name: "side" type: "ReLU" bottom: "c" top: "side" }')
    net = net_of(text)
    assert not any(net.layer_need_backward)


def test_reshape_when_input_size_changes():
    net = net_of(CONV.format(name="c", bottom="data", top="c", extra=""))
    out = net.forward(data=np.zeros((1, 3, 9, 7)))
    assert out["c"].shape == (1, 2, 7, 5)


def test_hooks_run_after_each_layer_and_each_pass():
    """Net's loops call their hooks (Caffe's Net callbacks); the memory plan uses them."""
    text = CONV.format(name="c", bottom="data", top="c", extra="") + \
        'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }'
    net = net_of(text)
    calls = []
    net.after_forward.append(lambda i: calls.append(("forward", net.layers[i].name)))
    net.end_forward.append(lambda: calls.append(("forward", "end")))
    net.after_backward.append(lambda i: calls.append(("backward", net.layers[i].name)))
    net.end_backward.append(lambda: calls.append(("backward", "end")))
    net.forward(data=np.ones((2, 3, 6, 6)))
    net.backward()
    assert calls == [("forward", "input"), ("forward", "c"), ("forward", "r"), ("forward", "end"),
                     ("backward", "r"), ("backward", "c"), ("backward", "input"),
                     ("backward", "end")]


def test_set_input_errors():
    net = net_of(CONV.format(name="c", bottom="data", top="c", extra=""))
    with pytest.raises(NetError, match="'img' is not an input of the net; its inputs are: data"):
        net.forward(img=np.zeros((1, 3, 6, 6)))
    with pytest.raises(NetError, match="takes a 4-d array"):
        net.forward(data=np.zeros((3, 6, 6)))


def test_bad_phase():
    with pytest.raises(NetError, match="phase must be"):
        unetcore.Net(parse('input: "x" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1'), "VAL")


def test_save_and_copy_from_in_caffe_layout(tmp_path):
    text = CONV.format(name="c", bottom="data", top="c", extra="")
    a, b = net_of(text, seed=1), net_of(text, seed=2)
    path = tmp_path / "w.caffemodel.h5"
    a.save(path)
    with h5py.File(path) as f:
        assert sorted(f["data"]["c"]) == ["0", "1"]
        assert f["data"]["c"]["0"].shape == (2, 3, 3, 3)
    assert not np.array_equal(a.params["c"][0].data, b.params["c"][0].data)
    b.copy_from(path)
    np.testing.assert_array_equal(a.params["c"][0].data, b.params["c"][0].data)
    c = unetcore.Net(parse(BASE + text), unetcore.TEST, str(path))      # pycaffe order
    np.testing.assert_array_equal(a.params["c"][0].data, c.params["c"][0].data)
    assert not list(tmp_path.glob("*.tmp"))


def test_copy_from_shape_mismatch_names_layer_and_shapes(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/c/0", data=np.zeros((5, 3, 3, 3)))
        f.create_dataset("data/c/1", data=np.zeros(2))
    net = net_of(CONV.format(name="c", bottom="data", top="c", extra=""))
    with pytest.raises(DataError, match=r"layer 'c' blob 0 has shape \(5, 3, 3, 3\) in the file but "
                                        r"\(2, 3, 3, 3\) in the net"):
        net.copy_from(path)


def test_copy_from_missing_and_corrupt_files(tmp_path):
    net = net_of(CONV.format(name="c", bottom="data", top="c", extra=""))
    with pytest.raises(DataError, match="no such weights file"):
        net.copy_from(tmp_path / "missing.h5")
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"not\x00hdf5")       # 'n' = 0x6e: field 13 with wire type 6
    with pytest.raises(DataError, match="bad.caffemodel: byte 0: field 13 has wire type 6"):
        net.copy_from(bad)
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="bad.caffemodel: is a text file, not weights"):
        net.copy_from(bad)


def test_gpu_request_without_cupy_is_a_clear_error():
    pytest.importorskip("numpy")
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed")
    except ImportError:
        pass
    with pytest.raises(BackendError, match="CuPy is not installed"):
        net_of(CONV.format(name="c", bottom="data", top="c", extra=""), gpu=0)
