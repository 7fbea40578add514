"""Nets written the way caffe_unet's (the Fiji U-Net plugin's Caffe) are written: single-quoted
strings, `include: { phase: TRAIN }`, a layer per line, HDF5Data with four tops,
CreateDeformation drawing the tile centre from a pdf, ApplyDeformation with
output_shape_from, ValueAugmentation, ValueTransformation, leaky ReLU and Concat that crops.
These are our own nets in that style (a 2-d cell net like 2d_cell_net_v0, and a 3-d net);
they must parse, build, train and pass the gradient check."""
import h5py
import numpy as np
import pytest

from cases import cell_net
import unetcore
from unetcore.errors import PrototxtError
from unetcore.gradcheck import check_net, randomize_params
from unetcore.formats.prototxt import parse



def write_training_file(folder, size, seed=0):
    """One HDF5 file of one image with labels, weights and a pdf, and the list naming it."""
    rng = np.random.default_rng(seed)
    with h5py.File(folder / "train.h5", "w") as f:
        f["data"] = rng.random((1, 1, size, size), dtype=np.float32)
        f["labels"] = rng.integers(0, 2, (1, 1, size, size)).astype(np.float32)
        f["weights"] = (1 + 9 * rng.random((1, 1, size, size))).astype(np.float32)
        f["weights2"] = np.ones((1, 1, size, size), np.float32)
    (folder / "input_files.txt").write_text("train.h5\n")
    return folder / "input_files.txt"


def test_the_2d_cell_net_builds_508_to_324_as_train_and_deploy_net(tmp_path):
    source = write_training_file(tmp_path, 520)
    param = parse(cell_net(508, h5_list=source), "NetParameter")
    train = unetcore.Net(param, unetcore.TRAIN)
    assert train.blobs["d0a"].shape == (1, 1, 508, 508)
    assert train.blobs["score"].shape == (1, 2, 324, 324)
    assert train.blobs["labelcrop"].shape == train.blobs["weightcrop"].shape == (1, 1, 324, 324)
    assert train.blobs["u0b"].shape == (1, 128, 328, 328)       # Concat cropped d0c to u0a
    deploy = unetcore.Net(param, unetcore.TEST)
    assert deploy.blobs["score"].shape == (1, 2, 324, 324)
    assert deploy.outputs == ["score"]
    assert "loaddata" not in deploy.layer_names and "val_aug-d0a" not in deploy.layer_names


def test_the_2d_cell_net_passes_the_gradient_check_end_to_end(tmp_path):
    """Depth 2 and 2 channels at 44 px; the data layers redraw the same tile for every
    evaluation (the checker restores each layer's random state)."""
    source = write_training_file(tmp_path, 60)
    param = parse(cell_net(44, depth=2, channels=2, h5_list=source), "NetParameter")
    net = unetcore.Net(param, unetcore.TRAIN, dtype=np.float64, seed=0)
    randomize_params(net, np.random.default_rng(1))
    assert net.blobs["score"].shape == (1, 2, 4, 4)
    results = check_net(net, max_checks=12, seed=2)
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert len(results) == len(net.learnable_params)


def test_the_2d_cell_net_trains(tmp_path):
    source = write_training_file(tmp_path, 60)
    solver_text = (f"net_param {{ {cell_net(44, depth=2, channels=4, h5_list=source)} }} "
                   "base_lr: 0.01 momentum: 0.9 random_seed: 0")
    solver = unetcore.get_solver(parse(solver_text, "SolverParameter"))
    solver.step(3)
    assert np.isfinite(solver.net.loss) and solver.iter == 3


THREE_D = """name: '3d_net'
layer { top: 'data' name: 'input' type: 'Input' input_param { shape { dim: 1 dim: 1 dim: 20 dim: 100 dim: 100 } } }
layer { bottom: 'data' top: 'd0b' name: 'conv_d0a-b' type: 'Convolution' convolution_param { num_output: 8 pad: 0 kernel_size: 1 kernel_size: 3 kernel_size: 3 weight_filler { type: 'msra' } } }
layer { bottom: 'd0b' top: 'd0b' name: 'relu_d0b' type: 'ReLU' relu_param { negative_slope: 0.1 } }
layer { bottom: 'd0b' top: 'd1a' name: 'pool_d0b-1a' type: 'Pooling' pooling_param { pool: MAX kernel_size: 1 kernel_size: 2 kernel_size: 2 stride: 1 stride: 2 stride: 2 } }
"""


def test_3d_nets_in_that_style_build_with_anisotropic_kernels():
    """caffe_unet's `kernel_size: 1 kernel_size: 3 kernel_size: 3` and 1x2x2 pooling on a 5-d
    blob: z is kept, y and x shrink and halve (tests/models/test_unet3d.py has whole 3-d nets)."""
    param = parse(THREE_D, "NetParameter")
    assert list(param.layer[1].convolution_param.kernel_size) == [1, 3, 3]
    assert list(param.layer[3].pooling_param.stride) == [1, 2, 2]
    net = unetcore.Net(param)
    assert net.params["conv_d0a-b"][0].shape == (8, 1, 1, 3, 3)
    assert net.blobs["d0b"].shape == (1, 8, 20, 98, 98)
    assert net.blobs["d1a"].shape == (1, 8, 20, 49, 49)


def test_a_misplaced_caffe_unet_field_names_the_message_it_belongs_in():
    text = ("layer { name: 'def' type: 'CreateDeformation' top: 'def' create_deformation_param "
            "{ ny: 4 nx: 4 interpolation: 'linear' } }")
    with pytest.raises(PrototxtError, match=r"<string>:1:97: unknown field 'interpolation' in "
                                            r"CreateDeformationParameter; it belongs in "
                                            r"ApplyDeformationParameter"):
        parse(text, "NetParameter")
