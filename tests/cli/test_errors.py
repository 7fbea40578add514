"""Bad input, one clear error each: the data and deformation layers, the solver file, snapshots,
tiling and the CLI's own checks."""
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cases import REPO, make_layer
import unetcore
from unetcore.blob import Blob
from unetcore.cli import main
from unetcore.errors import DataError, NetError, SolverError
from unetcore.formats.prototxt import parse




def setup_layer(text, bottoms=(), tops=1):
    layer = make_layer(text)
    bottom = [Blob(shape) for shape in bottoms]
    top = [Blob(()) for _ in range(tops)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    return layer


@pytest.mark.parametrize("params,message", [
    ("nz: 3 ny: 4 nx: 4", r"ncomponents must be 3 \(z, y, x\) with nz > 0, got 2"),
    ("ny: 0 nx: 6", r"needs ny > 0 and nx > 0 \(and nz >= 0\), got nz 0, ny 0, nx 6"),
    ("ny: 4 nx: 4 ncomponents: 3", "ncomponents must be 2"),
    ("ny: 4 nx: 4 random_rotate_from { v: 0 v: 1 }", "random_rotate_from needs 1 value"),
    ("ny: 4 nx: 4 random_elastic_grid_spacing { v: 0 v: 4 }",
     "random_elastic_grid_spacing must be at least 1 px"),
    ("ny: 4 nx: 4 random_offset_range_from_pdf: true random_offset_range_from_ignore_label: 2",
     "give at most one of random_offset_range_from_in_blob_shape"),
])
def test_create_deformation_errors(params, message):
    with pytest.raises(NetError, match=message):
        setup_layer(f'name: "d" type: "CreateDeformation" top: "def" '
                    f'create_deformation_param {{ {params} }}')


@pytest.mark.parametrize("params,bottoms,message", [
    ('extrapolation: "wrap"', [(1, 1, 4, 4), (1, 4, 4, 2)], "extrapolation 'wrap' is not one of"),
    ('output_shape_from: "label"', [(1, 1, 4, 4), (1, 4, 4, 2)],
     "output_shape_from 'label' names no blob made before this layer"),
    ('output_shape_from: "label"', [(1, 1, 4, 4), (1, 4, 4, 2), (1, 1, 2, 2)],
     "output_shape_from 'label' differs from the third bottom"),
    ('', [(1, 1, 4, 4), (1, 4, 4, 2), (1, 1, 3, 3)],
     "an output of 3x3 must be the centre of the 4x4 map"),
    ("", [(1, 1, 4, 4), (2, 4, 4, 2)], r"must be a \(N, ny, nx, 2\) map for the 1 item"),
])
def test_apply_deformation_errors(params, bottoms, message):
    with pytest.raises(NetError, match=message):
        setup_layer(f'name: "a" type: "ApplyDeformation" bottom: "data" bottom: "def" top: "o" '
                    f'apply_deformation_param {{ {params} }}', bottoms)


@pytest.mark.parametrize("params,tops,message", [
    ("tile_size: 8", 1, "needs image: the path of a TIFF stack"),
    ('image: "x.tif"', 1, "needs tile_size > 0"),
    ('image: "x.tif" tile_size: 8 label_size: 10', 1, "label_size 10 exceeds tile_size 8"),
])
def test_tiff_data_parameter_errors(params, tops, message):
    with pytest.raises(NetError, match=message):
        setup_layer(f'name: "t" type: "TiffData" top: "data" tiff_data_param {{ {params} }}',
                    tops=tops)


def test_tiff_data_label_top_needs_a_label_stack(tmp_path):
    import tifffile
    tifffile.imwrite(tmp_path / "im.tif", np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(NetError, match="needs label: a TIFF stack for the 'label' top"):
        setup_layer(f'name: "t" type: "TiffData" top: "data" top: "label" tiff_data_param '
                    f'{{ image: "{tmp_path}/im.tif" tile_size: 8 }}', tops=2)


def test_hdf5_files_must_agree_in_item_shape(tmp_path):
    """With batches of several items (one item per batch may change shape, as caffe_unet's)."""
    for k, size in enumerate((2, 3)):
        with h5py.File(tmp_path / f"{k}.h5", "w") as f:
            f["data"] = np.zeros((1, 1, size, size))
    (tmp_path / "list.txt").write_text("0.h5\n1.h5\n")
    layer = setup_layer(f'name: "h" type: "HDF5Data" top: "data" hdf5_data_param '
                        f'{{ source: "{tmp_path}/list.txt" batch_size: 2 }}')
    top = [Blob((2,) + layer.current[0].shape[1:])]
    with pytest.raises(DataError, match=r"1.h5: its datasets have item shapes \[\(1, 3, 3\)\], "
                                        r"the first file's \[\(1, 2, 2\)\]"):
        layer.forward([], top)


def solver(text):
    return unetcore.get_solver(parse(text, "SolverParameter"))


SMALL = 'net: "prototxt/unet-small-train.prototxt" '


@pytest.mark.parametrize("text,message", [
    ("base_lr: 0.1", "names its train net by exactly one of net, net_param, train_net, "
                     "train_net_param; found none"),
    (SMALL + "test_iter: 1", "test nets need test_interval > 0"),
    (SMALL + 'test_net: "prototxt/unet-small-train.prototxt" test_interval: 5',
     "1 test net\\(s\\) but 0 test_iter value\\(s\\)"),
])
def test_solver_file_errors(text, message):
    with pytest.raises(SolverError, match=message):
        solver(text)


def test_unknown_regularization_type():
    s = solver(SMALL + 'weight_decay: 0.1 regularization_type: "L3"')
    with pytest.raises(SolverError, match="unknown regularization_type 'L3'; use L1 or L2"):
        s.apply_update()


def test_restore_refuses_files_that_are_not_solver_states(tmp_path):
    s = solver(SMALL)
    model = tmp_path / "w.caffemodel.h5"
    s.net.save(model)
    with pytest.raises(DataError, match="not a solver state file \\(no iter, learned_net, "
                                          "history\\)"):
        s.restore(model)
    with pytest.raises(DataError, match="missing.solverstate.h5: no such solver state file"):
        s.restore(tmp_path / "missing.solverstate.h5")


def test_tile_whose_output_is_smaller_than_the_pooling_grid():
    from unetcore.net import Net
    from unetcore.inference.tiling import tile_geometry
    net = Net("prototxt/unet-small-deploy.prototxt", "TEST")      # 44 -> 4 px, grid 4
    net.set_inputs({"data": np.zeros((1, 1, 44, 44))})
    assert tile_geometry(net, "data", "score") == (44, 4, 20, 4)
    net = Net("prototxt/unet-deploy.prototxt", "TEST")
    net.set_inputs({"data": np.zeros((1, 1, 188, 188))})           # 188 -> 4 px, grid 16
    with pytest.raises(NetError, match="a tile of 188 gives an output of 4 px, less than the "
                                       "pooling grid of 16; use a larger --tile"):
        tile_geometry(net, "data", "score")


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    shutil.copytree(REPO / "prototxt", tmp_path / "prototxt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli_error(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_cli_argument_errors(workdir):
    assert "give --weights or --snapshot, not both" in cli_error(
        "train", "prototxt/unet-demo-solver.prototxt", "--weights", "a.h5", "--snapshot", "b.h5")
    assert "missing.log: no such log file" in cli_error("plot-log", "missing.log", "-o", "c.svg")
    Path("empty.log").write_text("nothing here\n")
    assert "no 'Iteration N (...), loss = L' lines" in cli_error("plot-log", "empty.log", "-o",
                                                                 "c.svg")
    assert "plot-log writes SVG; name the output *.svg" in cli_error("plot-log", "empty.log",
                                                                     "-o", "c.png")
    if shutil.which("dot") is None:
        assert "without Graphviz installed, draw writes .svg or .dot" in cli_error(
            "draw", "prototxt/unet-small-deploy.prototxt", "-o", "net.png")


def test_weightmap_refuses_labels_outside_the_classes(workdir):
    import tifffile
    tifffile.imwrite("labels.tif", np.array([[0, 1], [2, 5]], np.uint8))
    assert "label value 5 is not a class of 0..2" in cli_error(
        "weightmap", "labels.tif", "-o", "w.tif", "--classes", 3)
