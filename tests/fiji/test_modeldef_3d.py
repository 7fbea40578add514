"""3-d Fiji U-Net plugin model files (element_size_um of z, y, x): read with their per-axis tile
rule, caffe_unet's TEST net, the backend's `caffe_unet tiled_predict` on a volume as the plugin
runs it, and `segment --modeldef` / `load(path).segment` on a TIFF stack segmented as one
volume, each checked against one pass of the net over the padded volume."""
import re
import subprocess

import h5py
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cases import MODEL_3D_GEOMETRY, write_plugin_modeldef, write_plugin_modeldef_3d
from unetcore.cli import main
from unetcore.fiji.images import prepare_image, resample_to
from unetcore.fiji.model import load
from unetcore.fiji.modeldef import caffe_unet_net, read_modeldef
from unetcore.fiji.predict import tile_for_grid
from unetcore.gradcheck import randomize_params
from unetcore.inference.tiling import softmax
from unetcore.sizes import valid_sizes_per_axis

PROGRESS = re.compile(r"Processing batch ([0-9]+)/([0-9]+), tile ([0-9]+)/([0-9]+)")
MIRROR_FLIPS = ((), (-1,), (-2,), (-2, -1))          # x, y and both; z never


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The backend's executables, a 3-d model file (1 x 0.5 x 0.5 um voxels), its weights and
    a calibrated TIFF stack at the model's voxel size."""
    folder = tmp_path_factory.mktemp("volume")
    result = CliRunner().invoke(main, ["fiji-backend", str(folder / "bin")])
    assert result.exit_code == 0, result.output
    modeldef = write_plugin_modeldef_3d(folder / "volume.modeldef.h5")
    net = caffe_unet_net(read_modeldef(modeldef), 1, (18, 44, 44))
    # weights in [-0.5, 0.5]: at MSRA's scale most of this 2-channel net's ReLUs stay dead
    # and its scores hardly vary over a volume, which would make every comparison weak
    randomize_params(net, np.random.default_rng(7), scale=0.5)
    net.save(folder / "volume.caffemodel.h5")
    volume = np.random.default_rng(2).integers(0, 4096, (7, 13, 17)).astype(np.uint16)
    tifffile.imwrite(folder / "stack.tif", volume, imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "um", "spacing": 1.0})
    return {"bin": folder / "bin", "model": modeldef, "weights": folder / "volume.caffemodel.h5",
            "stack": folder / "stack.tif", "volume": volume}


def one_pass(files, image, padding="mirror"):
    """The raw scores (classes, Z, Y, X) of one forward of the net over the whole (C, Z, Y,
    X) image, padded by the net's margin before and to the tile after (mirrored, or zeros)."""
    model = read_modeldef(files["model"])
    tile = tile_for_grid(model, image.shape[1:], (1, 1, 1))
    output = model.output_tile(tile)
    net = caffe_unet_net(model, image.shape[0], tile)
    net.copy_from(str(files["weights"]))
    pad = [(0, 0)] + [((t - o) // 2, t - n - (t - o) // 2)
                      for t, o, n in zip(tile, output, image.shape[1:])]
    padded = np.pad(image, pad, mode="reflect") if padding == "mirror" else np.pad(image, pad)
    scores = net.forward(d0a=padded[None])["score"][0]
    return scores[(slice(None),) + tuple(slice(0, n) for n in image.shape[1:])].copy()


def normalized(volume):
    """The plugin's min/max normalization of a volume, over all its voxels, as (1, Z, Y, X)."""
    low, high = float(volume.min()), float(volume.max())
    return ((volume.astype(np.float32) - low) / (high - low))[None]


# ---------------------------------------------------------------- the model file


def test_a_3d_model_file_reads_with_its_per_axis_tile_rule(files):
    model = read_modeldef(files["model"])
    assert model.n_dims == 3 and model.element_size_um == (1.0, 0.5, 0.5)
    assert (model.downsample_factor, model.pad_input, model.pad_output) == tuple(
        MODEL_3D_GEOMETRY[key] for key in ("downsampleFactor", "padInput", "padOutput"))
    assert model.check_tile() == (18, 44, 44)              # caffe_unet's check shape
    assert model.segmentation_tile() == (36, 80, 80)       # 10 pooling steps more
    assert model.input_tile((2, 4, 4)) == (18, 44, 44)
    assert model.output_tile((20, 48, 52)) == (4, 8, 12)


def test_the_models_tile_rule_gives_the_sizes_the_net_takes(files):
    """Per axis, the input tiles downsampleFactor k + padInput whose output, downsampleFactor
    k + padOutput, is at least 1 are exactly the sizes that pass the net with aligned pools,
    and the net's output is the rule's."""
    model = read_modeldef(files["model"])
    net = caffe_unet_net(model, 1, model.check_tile())
    highest = (40, 90, 90)
    rule = [[d * k + i for k in range(h) if d * k + p >= 1 and d * k + i <= h]
            for h, d, i, p in zip(highest, model.downsample_factor, model.pad_input,
                                  model.pad_output)]
    assert valid_sizes_per_axis(net, "d0a", [(1, h) for h in highest]) == rule
    for tile in ((18, 44, 44), (20, 48, 52), (26, 60, 44)):
        net = caffe_unet_net(model, 1, tile)
        assert net.blobs["score"].shape[2:] == model.output_tile(tile)


def test_the_test_net_is_caffe_unets_input_layer_before_the_3d_train_prototxt(files):
    model = read_modeldef(files["model"])
    net = caffe_unet_net(model, 2, (20, 48, 48))
    assert net.layer_names[0] == "d0a" and net.inputs == ["d0a"] and net.outputs == ["score"]
    assert net.blobs["d0a"].shape == (1, 2, 20, 48, 48)
    assert net.blobs["score"].shape == (1, 2, 4, 8, 8)
    assert not {"loaddata", "create_deformation", "def_data-d0a", "loss"} & set(net.layer_names)


# ---------------------------------------------------------------- the backend


def run(files, tool, *args):
    return subprocess.run([str(files["bin"] / tool), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def tiled_predict(files, path, *extra):
    """SegmentationJob.runSegmentation's command line (the file is input and output)."""
    return run(files, "caffe_unet", "tiled_predict", "-infileH5", path, "-outfileH5", path,
               "-model", files["model"], "-weights", files["weights"], "-iterations", "0",
               *extra)


def write_job_file(path, data):
    """The plugin's 3-d segmentation job file: /data (N, C, Z, Y, X) float32."""
    with h5py.File(path, "w") as f:
        f["data"] = data.astype(np.float32)
        f["data"].attrs["element_size_um"] = np.array([1.0, 0.5, 0.5])
    return path


def test_check_model_and_weights_on_a_3d_model(files):
    result = run(files, "caffe_unet", "check_model_and_weights_h5", "-model", files["model"],
                 "-weights", files["weights"], "-n_channels", "1")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("averaging,flips", [([], [()]), (["-average_mirror"], MIRROR_FLIPS)],
                         ids=["one-pass", "average_mirror"])
def test_tiled_predict_on_a_volume_is_one_pass_over_the_padded_volume(files, tmp_path,
                                                                      averaging, flips):
    """-tile_size 4x8x8 (an output tile) cuts the 7 x 13 x 17 volumes into 2 x 2 x 3 tiles;
    the scores equal one pass over each padded volume, and -average_mirror is the mean of the
    passes flipped in x, in y and in both (z is never flipped)."""
    data = np.random.default_rng(3).random((2, 1, 7, 13, 17)).astype(np.float32)
    path = write_job_file(tmp_path / "unet-job.h5", data)
    result = tiled_predict(files, path, "-tile_size", "4x8x8", *averaging)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(PROGRESS.fullmatch(line) for line in lines)
    assert lines[-1] == f"Processing batch {2 * len(flips)}/{2 * len(flips)}, tile 12/12"
    with h5py.File(path) as f:
        assert list(f) == ["score"]
        scores = f["score"][()]
    assert scores.dtype == np.float32 and scores.shape == (2, 2, 7, 13, 17)
    for item, image in zip(scores, data):
        expected = np.mean([np.flip(one_pass(files, np.flip(image, f).copy()), f)
                            for f in flips], axis=0)
        np.testing.assert_allclose(item, expected, rtol=1e-4, atol=1e-5)


def test_tiled_predict_on_a_volume_refuses_2d_tiling_options(files, tmp_path):
    path = write_job_file(tmp_path / "job.h5", np.zeros((1, 1, 7, 13, 17)))
    result = tiled_predict(files, path, "-n_tiles", "4")
    assert result.returncode == 1
    assert "-n_tiles N is for 2-d models (caffe_unet's); give a 3-d model -tile_size or " \
           "-n_tiles AxBxC" in result.stderr


# ---------------------------------------------------------------- segment --modeldef


def segment(files, tmp_path, *extra, image=None):
    """`unetcore segment IMAGE --modeldef M --weights W`; (result, labels, probabilities)."""
    result = CliRunner().invoke(main, ["segment", str(image or files["stack"]), "-o",
                                       str(tmp_path / "labels.tif"), "--modeldef",
                                       str(files["model"]), "--weights", str(files["weights"]),
                                       "--probabilities", str(tmp_path / "p.tif"), *extra])
    if result.exit_code != 0:
        return result, None, None
    return (result, tifffile.imread(tmp_path / "labels.tif"),
            tifffile.imread(tmp_path / "p.tif"))


def test_segment_a_stack_at_the_models_voxel_size_is_one_pass_over_the_volume(files,
                                                                            tmp_path):
    """The stack is one volume, calibrated at the model's 1 x 0.5 x 0.5 um: not rescaled,
    normalized over all its voxels, segmented in 3-d; the probabilities are written as a
    stack (Z, classes, Y, X) and the labels as (Z, Y, X)."""
    volume = files["volume"]
    result, labels, probabilities = segment(files, tmp_path)
    assert result.exit_code == 0, result.output
    assert "7 slice(s) of 13x17, segmented as one volume by the 3-d net" in result.output
    assert "voxels of 1 x 0.5 x 0.5 um (z y x)" in result.output
    expected = softmax(one_pass(files, normalized(volume)))
    assert probabilities.shape == (7, 2, 13, 17)
    np.testing.assert_allclose(probabilities, expected.swapaxes(0, 1), atol=1e-5)
    np.testing.assert_array_equal(labels, 255 * (expected.argmax(axis=0) == 1))
    assert 0.1 < (labels == 255).mean() < 0.9                  # both classes: a real check
    # the Python API computes the same
    np.testing.assert_allclose(load(files["model"]).segment(volume, files["weights"],
                                                            (1.0, 0.5, 0.5)),
                               expected, atol=1e-5)


def test_element_size_gives_y_x_and_z_spacing_gives_z(files, tmp_path):
    """On an uncalibrated stack (1 um voxels, as ImageJ's), --element-size 0.5 0.5 sets the
    in-plane size and leaves z at the file's 1 um; --z-spacing sets z."""
    tifffile.imwrite(tmp_path / "plain.tif", files["volume"])
    expected = softmax(one_pass(files, normalized(files["volume"]))).swapaxes(0, 1)
    result, _, probabilities = segment(files, tmp_path, "--element-size", "0.5", "0.5",
                                       image=tmp_path / "plain.tif")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    result, _, probabilities = segment(files, tmp_path, "--z-spacing", "2",
                                       image=files["stack"])
    assert result.exit_code == 0, result.output
    assert "voxels of 2 x 0.5 x 0.5 um (z y x)" in result.output
    assert probabilities.shape == (7, 2, 13, 17)
    assert not np.allclose(probabilities, expected, atol=1e-3)       # rescaled in z


def test_segment_a_stack_rescaled_in_z_returns_the_volumes_own_voxels(files, tmp_path):
    """A stack of 2 um slices is stretched to the model's 1 um in z (7 slices -> 14),
    segmented, and its probabilities read back at its own 7 slices; mirror averaging flips
    x and y only."""
    volume = files["volume"]
    tifffile.imwrite(tmp_path / "thick.tif", volume, imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "um", "spacing": 2.0})
    result, labels, probabilities = segment(files, tmp_path, "--average-mirror",
                                            image=tmp_path / "thick.tif")
    assert result.exit_code == 0, result.output
    assert labels.shape == volume.shape and probabilities.shape == (7, 2, 13, 17)
    model = read_modeldef(files["model"])
    prepared = prepare_image(volume[None].astype(np.float32), model, (2.0, 0.5, 0.5))
    assert prepared.shape == (1, 14, 13, 17)
    scores = np.mean([np.flip(one_pass(files, np.flip(prepared, f).copy()), f)
                      for f in MIRROR_FLIPS], axis=0)
    expected = resample_to(softmax(scores), volume.shape, (2.0, 1.0, 1.0))
    np.testing.assert_allclose(probabilities, expected.swapaxes(0, 1), atol=1e-5)


def test_the_python_api_segments_a_volume_with_zero_padding_and_rotations(files, tmp_path):
    """load(path).segment on a (Z, Y, X) volume: zero padding as the model says, and
    -average_rotate's four turns in the y-x plane."""
    modeldef = write_plugin_modeldef_3d(tmp_path / "zero.modeldef.h5", padding="zero")
    volume = np.random.default_rng(4).random((5, 12, 12)).astype(np.float32)
    probabilities = load(modeldef).segment(volume, files["weights"], (1.0, 0.5, 0.5),
                                           averaging="rotate")
    image = normalized(volume)
    scores = np.mean([np.rot90(one_pass(files, np.rot90(image, k, (-2, -1)).copy(), "zero"),
                               -k, (-2, -1)) for k in range(4)], axis=0)
    np.testing.assert_allclose(probabilities, softmax(scores), atol=1e-5)


def test_what_3d_models_do_not_take_is_refused_in_one_line(files, tmp_path):
    """A square --tile, an RGB image for a 3-d model, and a z spacing for a 2-d one."""
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((20, 20, 3), np.uint8))
    two_d = write_plugin_modeldef(tmp_path / "cell.modeldef.h5")
    for image, modeldef, extra, message in (
            (files["stack"], files["model"], ["--tile", "48"],
             "--tile 48: a square tile is for 2-d models; a 3-d model's tile is chosen per "
             "axis (z y x) by its tile rule"),
            (tmp_path / "rgb.tif", files["model"], [],
             "looks like one RGB(A) image, not a stack of grey image slices"),
            (files["stack"], two_d, ["--z-spacing", "2"],
             f"--z-spacing 2: {two_d} is a 2-d model; a z spacing is for 3-d models")):
        result = CliRunner().invoke(main, ["segment", str(image), "-o", str(tmp_path / "l.tif"),
                                           "--modeldef", str(modeldef), "--weights",
                                           str(files["weights"]), *extra])
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_3d_model_is_refused_by_the_chunked_path_in_one_line(files, tmp_path):
    pytest.importorskip("dask.distributed")
    common = [str(files["stack"]), "-o", str(tmp_path / "l.zarr"), "--modeldef",
              str(files["model"]), "--weights", str(files["weights"])]
    for extra, message in (([], f"{files['model']}: a 3-d model; -o OUT.zarr segments chunk "
                                "by chunk with 2-d models only: segment the volume into a "
                                "TIFF (-o OUT.tif), in memory"),
                           (["--z-spacing", "2"], "--z-spacing is for 3-d models, and -o "
                            "OUT.zarr segments with 2-d models only")):
        result = CliRunner().invoke(main, ["segment", *common, *extra])
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
