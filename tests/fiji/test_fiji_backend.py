"""The Fiji U-Net plugin's backend, replayed: `unetcore fiji-backend DIR` writes DIR/caffe_unet
and DIR/caffe, and the tests run them with the plugin's exact command lines and file layouts
(SegmentationJob, DetectionJob, FinetuneJob, CaffeJob), locally and as the plugin runs them
over SSH, and check the file and stdout contract and the numbers."""
import re
import signal
import subprocess

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cases import LMB_MODEL, needs_lmb_model, write_plugin_modeldef
from unetcore.cli import main
from unetcore.errors import DataError
from unetcore.fiji.backend import FlagError, parse_flags
from unetcore.fiji.finetune import prepare_finetuning
from unetcore.fiji.images import prepare_image, training_blobs
from unetcore.fiji.predict import tile_for_count, tile_for_grid, tile_for_pixels, tile_for_shape
from unetcore.gradcheck import randomize_params
from unetcore.fiji.modeldef import caffe_unet_net, caffe_unet_net_param, read_modeldef
from unetcore.net import Net
from unetcore.formats.prototxt import parse
from unetcore.inference.tiling import segment

PROGRESS = re.compile(r"Processing batch ([0-9]+)/([0-9]+), tile ([0-9]+)/([0-9]+)")


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """The two executables, a plugin-written model file, its weights and a job folder."""
    folder = tmp_path_factory.mktemp("backend")
    result = CliRunner().invoke(main, ["fiji-backend", str(folder / "bin")])
    assert result.exit_code == 0, result.output
    modeldef = write_plugin_modeldef(folder / "cell.modeldef.h5")
    net = caffe_unet_net(read_modeldef(modeldef), 1, (44, 44))
    randomize_params(net, np.random.default_rng(1))
    net.save(folder / "cell.caffemodel.h5")
    return {"bin": folder / "bin", "model": modeldef, "weights": folder / "cell.caffemodel.h5",
            "folder": folder}


def run(backend, tool, *args, **kwargs):
    return subprocess.run([str(backend["bin"] / tool), *map(str, args)], capture_output=True,
                          text=True, timeout=300, **kwargs)


def write_job_file(path, data):
    """The plugin's segmentation job file: /data (N, C, H, W) float32 with element_size_um."""
    with h5py.File(path, "w") as f:
        f["data"] = data.astype(np.float32)
        f["data"].attrs["element_size_um"] = np.array([0.5, 0.5])
    return path


def tiled_predict(backend, path, *extra):
    """SegmentationJob.runSegmentation's command line (the file is input and output)."""
    return run(backend, "caffe_unet", "tiled_predict", "-infileH5", path, "-outfileH5", path,
               "-model", backend["model"], "-weights", backend["weights"], "-iterations", "0",
               *extra)


def single_pass(backend, image):
    net = caffe_unet_net(read_modeldef(backend["model"]), image.shape[0], (80, 80))
    net.copy_from(str(backend["weights"]))
    return segment(net, image)


# ---------------------------------------------------------------- flags and probes


def test_gflags_syntax():
    defaults = {"gpu": "", "iterations": 50, "average_mirror": False}
    flags, positional = parse_flags(["tiled_predict", "-gpu", "0", "--iterations=3",
                                     "-average_mirror"], defaults)
    assert flags == {"gpu": "0", "iterations": 3, "average_mirror": True}
    assert positional == ["tiled_predict"]
    assert parse_flags(["-noaverage_mirror", "-average_mirror=false"], defaults)[0][
        "average_mirror"] is False
    with pytest.raises(FlagError, match="ERROR: unknown command line flag 'bogus'"):
        parse_flags(["-bogus", "1"], defaults)
    with pytest.raises(FlagError, match="illegal value 'x' specified for int32 flag"):
        parse_flags(["-iterations", "x"], defaults)


def test_the_executables_exit_0_without_arguments_and_refuse_unknown_flags(backend):
    for tool in ("caffe_unet", "caffe"):
        result = run(backend, tool)
        assert result.returncode == 0 and result.stdout == "", result.stderr
    result = run(backend, "caffe_unet", "tiled_predict", "-bogus", "1")
    assert result.returncode == 1 and "unknown command line flag 'bogus'" in result.stderr


def test_check_model_and_weights(backend, tmp_path):
    def check(weights, model=backend["model"]):
        return run(backend, "caffe_unet", "check_model_and_weights_h5", "-model", model,
                   "-weights", weights, "-n_channels", "1")

    assert check(backend["weights"]).returncode == 0
    assert check(tmp_path / "missing.caffemodel.h5").returncode == 1
    assert check(backend["weights"], tmp_path / "cell.modeldef").returncode == 1
    with h5py.File(tmp_path / "tagged.caffemodel.h5", "w") as f:
        f["/.unet-ident"] = np.bytes_(b"test-cell-net")          # same ident: no forward
    assert check(tmp_path / "tagged.caffemodel.h5").returncode == 0
    with h5py.File(tmp_path / "other.caffemodel.h5", "w") as f:
        f["/.unet-ident"] = np.bytes_(b"another-net")
    result = check(tmp_path / "other.caffemodel.h5")
    assert result.returncode == 1 and "Unet IDs do not match" in result.stderr
    three = run(backend, "caffe_unet", "check_model_and_weights_h5", "-model", backend["model"],
                "-weights", backend["weights"], "-n_channels", "3")
    assert three.returncode == 0, three.stderr                 # caffe_unet's copy fits them
    assert "Changing number of input channels of layer conv_d0a-b from 1 (weights) to 3 " \
           "(model)" in three.stderr


# ---------------------------------------------------------------- tiled_predict


def test_tiled_predict_writes_the_scores_of_one_pass_in_place(backend, tmp_path):
    data = np.random.default_rng(2).random((2, 1, 50, 61)).astype(np.float32)
    path = write_job_file(tmp_path / "unet-job.h5", data)
    result = tiled_predict(backend, path, "-tile_size", "40x40")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(PROGRESS.fullmatch(line) for line in lines)
    assert lines[0].startswith("Processing batch 1/2, tile 1/")
    assert lines[-1].startswith("Processing batch 2/2,")
    with h5py.File(path) as f:
        assert list(f) == ["score"]                     # the plugin reads every member
        scores = f["score"][()]
    assert scores.dtype == np.float32 and scores.shape == (2, 2, 50, 61)
    for item, image in zip(scores, data):
        np.testing.assert_allclose(item, single_pass(backend, image), rtol=1e-4, atol=1e-5)


def test_a_backend_written_for_onnx_runtime_predicts_the_same_scores(backend, tmp_path):
    """fiji-backend --runtime onnxruntime: the scripts run tiled_predict's forward passes in
    ONNX Runtime (its log says so), with the scores of one pass, to 1e-5."""
    pytest.importorskip("onnxruntime")
    result = CliRunner().invoke(main, ["fiji-backend", str(tmp_path / "bin"), "--runtime",
                                       "onnxruntime"])
    assert result.exit_code == 0, result.output
    assert "UNETCORE_RUNTIME=onnxruntime" in (tmp_path / "bin" / "caffe_unet").read_text()
    data = np.random.default_rng(12).random((1, 1, 50, 61)).astype(np.float32)
    path = write_job_file(tmp_path / "unet-job.h5", data)
    result = tiled_predict(dict(backend, bin=tmp_path / "bin"), path, "-tile_size", "40x40")
    assert result.returncode == 0, result.stderr
    assert "Forward passes run in onnxruntime (UNETCORE_RUNTIME)" in result.stderr
    with h5py.File(path) as f:
        np.testing.assert_allclose(f["score"][0], single_pass(backend, data[0]), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("tiling", [["-n_tiles", "4"], ["-n_tiles", "2x3"],
                                    ["-mem_available_px", "20000"]])
def test_every_tiling_gives_the_same_scores(backend, tmp_path, tiling):
    data = np.random.default_rng(3).random((1, 1, 45, 52)).astype(np.float32)
    path = write_job_file(tmp_path / "job.h5", data)
    result = tiled_predict(backend, path, *tiling)
    assert result.returncode == 0, result.stderr
    with h5py.File(path) as f:
        np.testing.assert_allclose(f["score"][0], single_pass(backend, data[0]), rtol=1e-4,
                                   atol=1e-5)


def test_average_mirror_is_the_mean_of_four_flipped_passes(backend, tmp_path):
    image = np.random.default_rng(4).random((1, 30, 41)).astype(np.float32)
    path = write_job_file(tmp_path / "job.h5", image[None])
    result = tiled_predict(backend, path, "-tile_size", "40x40", "-average_mirror")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("Processing batch 4/4,")
    flips = [np.flip(single_pass(backend, np.flip(image, axes).copy()), axes)
             for axes in ((), (-1,), (-2,), (-2, -1))]
    with h5py.File(path) as f:
        np.testing.assert_allclose(f["score"][0], np.mean(flips, axis=0), rtol=1e-4,
                                   atol=1e-5)


def test_the_detection_job_is_a_segmentation_job_on_the_backend(backend, tmp_path):
    """The plugin's DetectionJob extends SegmentationJob: the same file, command line and
    progress lines; only its reading of the result differs (it needs the softmax of every
    output to place its markers), so a stack of frames with -average_rotate must come back
    as raw scores, one (N, classes, H, W) dataset per output."""
    data = np.random.default_rng(8).random((2, 1, 36, 36)).astype(np.float32)
    path = write_job_file(tmp_path / "unet-detection.h5", data)
    result = tiled_predict(backend, path, "-tile_size", "40x40", "-average_rotate")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(PROGRESS.fullmatch(line) for line in lines)
    assert lines[-1].startswith("Processing batch 8/8,")        # 2 frames x 4 rotations
    with h5py.File(path) as f:
        assert list(f) == ["score"]
        scores = f["score"][()]
    assert scores.shape == (2, 2, 36, 36)
    for item, image in zip(scores, data):
        turns = [np.rot90(single_pass(backend, np.rot90(image, k, (1, 2)).copy()), -k, (1, 2))
                 for k in range(4)]
        np.testing.assert_allclose(item, np.mean(turns, axis=0), rtol=1e-4, atol=1e-5)


def test_tiled_predict_over_ssh_prints_the_pid_first(backend, tmp_path):
    """Over SSH the plugin runs `echo $$ && exec CMD`, paths unquoted, and reads the PID
    from the first stdout line."""
    path = write_job_file(tmp_path / "job.h5", np.zeros((1, 1, 20, 20)))
    command = (f"{backend['bin'] / 'caffe_unet'} tiled_predict -infileH5 {path} -outfileH5 "
               f"{path} -model {backend['model']} -weights {backend['weights']} -iterations 0 "
               "-n_tiles 1 -average_rotate")
    result = subprocess.run(["sh", "-c", f"echo $$ && exec {command}"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.isdigit() and rest and all(PROGRESS.fullmatch(line) for line in rest)


def test_tiled_predict_refuses_no_tiling_on_the_cpu_and_two_averagings(backend, tmp_path):
    path = write_job_file(tmp_path / "job.h5", np.zeros((1, 1, 20, 20)))
    result = tiled_predict(backend, path)
    assert result.returncode == 1 and "exactly one of" in result.stderr
    result = tiled_predict(backend, path, "-n_tiles", "1", "-average_mirror",
                           "-average_rotate")
    assert result.returncode == 1 and "mutually exclusive" in result.stderr


@needs_lmb_model
def test_caffe_unets_tile_choices_on_2d_cell_net_v0():
    model = read_modeldef(LMB_MODEL)
    assert tile_for_shape(model, (164, 164)) == (348, 348)     # the plugin's default tile
    assert tile_for_shape(model, (100, 100)) == (284, 284)     # rounded up to a valid one
    assert tile_for_grid(model, (512, 512), (2, 2)) == (444, 444)
    # of the grids of at most 4 tiles, 2x2 has the most effective tiles and the least input
    assert tile_for_count(model, (512, 512), 4) == (444, 444)
    # 3x4 tiles of 364x316 pixels: the least input of the grids within 348 x 348 pixels
    assert tile_for_pixels(model, (512, 512), 348 * 348) == (364, 316)


# ---------------------------------------------------------------- caffe train


def finetuning_job(backend, folder, iterations):
    """What FinetuneJob writes before it runs `caffe train`."""
    rng = np.random.default_rng(5)
    samples = []
    for shape in ((30, 36), (26, 40)):
        labels = np.ones(shape, int)
        labels[4:12, 5:15] = 2
        labels[15:22, 20:30] = 2
        samples.append(((labels * 0.4 + rng.random(shape) * 0.2)[None], labels, (0.5, 0.5)))
    solver, _ = prepare_finetuning(read_modeldef(backend["model"]), samples,
                                   folder / "unet-ft", iterations=iterations)
    return solver


def test_caffe_train_fine_tunes_with_the_plugins_files(backend, tmp_path):
    solver = finetuning_job(backend, tmp_path, iterations=3)
    result = run(backend, "caffe", "train", "-solver", solver, "-weights", backend["weights"],
                 "-sigint_effect", "stop")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""                          # its first line would be a PID
    losses = [line.split("loss = ")[1] for line in result.stderr.splitlines()
              if re.match(r"^.*Iteration [0-9]+ .* loss = .*$", line)]
    assert len(losses) == 3 and all(np.isfinite(float(loss)) for loss in losses)
    assert (tmp_path / "unet-ft-snapshot_iter_3.caffemodel.h5").exists()


def train_until_cancelled(backend, *args):
    """Run `caffe train ARGS`, send SIGINT (the plugin's kill -2) after the first iteration's
    loss line; (exit status, stdout, the first iteration logged, the snapshot's path)."""
    process = subprocess.Popen([str(backend["bin"] / "caffe"), "train", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = []
    for line in process.stderr:
        log.append(line)
        if re.match(r"^.*Iteration [0-9]+ .* loss = .*$", line):
            process.send_signal(signal.SIGINT)
            break
    log += process.stderr.readlines()
    stdout = process.stdout.read()
    process.wait(timeout=300)
    first = int(re.search(r"Iteration ([0-9]+) ",
                          next(line for line in log if " loss = " in line)).group(1))
    snapshots = [re.sub(r"^.* Snapshotting to HDF5 file ", "", line.rstrip("\n"))
                 for line in log if re.match(r"^.* Snapshotting to HDF5 file ", line)]
    return process.returncode, stdout, first, snapshots[0] if snapshots else None


def test_cancel_snapshots_and_stops_and_resume_goes_on(backend, tmp_path):
    solver = finetuning_job(backend, tmp_path, iterations=100000)
    status, stdout, _, snapshot = train_until_cancelled(
        backend, "-solver", solver, "-weights", backend["weights"], "-sigint_effect", "stop")
    assert status == 0 and stdout == "" and snapshot is not None
    assert snapshot.endswith(".caffemodel.h5") and (tmp_path / snapshot).exists()
    stopped_at = int(re.search(r"_iter_([0-9]+)\.caffemodel\.h5$", snapshot).group(1))
    state = snapshot.replace(".caffemodel.h5", ".solverstate.h5")   # as FinetuneJob derives it
    status, _, first, _ = train_until_cancelled(backend, "-solver", solver, "-snapshot", state,
                                                "-sigint_effect", "stop")
    assert status == 0 and first == stopped_at > 0      # on from where it stopped, not 0


# ---------------------------------------------------------------- fine-tuning with validation


def labelled_sample(shape, rng):
    """An image of two cells and its labels (1 background, 2 cell), at 0.5 um per pixel."""
    labels = np.ones(shape, int)
    labels[4:12, 5:15] = 2
    labels[15:22, 20:30] = 2
    return (labels * 0.4 + rng.random(shape) * 0.2)[None], labels, (0.5, 0.5)


def validation_job(backend, folder, iterations, validation_step):
    """What FinetuneJob writes with one training and one validation image (50 x 45: 2 x 2
    output tiles of 40 x 40 at the plugin's tile, 80)."""
    rng = np.random.default_rng(6)
    model = read_modeldef(backend["model"])
    validation = [labelled_sample((50, 45), rng)]
    solver, _ = prepare_finetuning(model, [labelled_sample((30, 36), rng)], folder / "unet-ft",
                                   iterations=iterations, validation=validation,
                                   validation_step=validation_step)
    return solver, model, validation[0]


def plugin_sums(log, key):
    """The plugin's parse of a count line: per test pass (iteration / step), the values
    summed over its tiles (FinetuneJob.parseCaffeOutputString)."""
    sums, current = {}, None
    for line in log.splitlines():
        if re.match(r"^.*Iteration [0-9]+, Testing net.*$", line):
            current = int(line.split("Iteration ")[1].split(",")[0])
        if re.match(rf"^.*{key}: .*$", line):
            values = [float(v) for v in line.split(f"{key}: ")[1].split(" ") if v]
            sums[current] = [a + b for a, b in zip(sums.get(current, [0] * len(values)),
                                                   values)]
    return sums


def test_validation_tiles_are_the_plugins(backend, tmp_path):
    solver, model, (image, labels, element_size) = validation_job(backend, tmp_path, 2, 1)
    files = (tmp_path / "unet-ft-validfilelist.txt").read_text().splitlines()
    assert files == [str((tmp_path / f"unet-ft_valid_0_{j}.h5").resolve()) for j in range(4)]
    data = np.pad(prepare_image(image, model, element_size), ((0, 0), (20, 50), (20, 55)),
                  mode="reflect")
    blob_labels, blob_weights, _ = training_blobs(labels, model)
    inside = np.zeros((80, 80), bool)
    inside[:50, :45] = True
    for j, (y, x) in enumerate(((0, 0), (0, 40), (40, 0), (40, 40))):
        with h5py.File(files[j]) as f:
            assert sorted(f) == ["d0a", "labels", "weights"]         # input_blob_name, ...
            np.testing.assert_array_equal(f["d0a"][0], data[:, y:y + 80, x:x + 80])
            assert f["labels"].shape == f["weights"].shape == (1, 1, 40, 40)
            weights = f["weights"][0, 0]
            counted = inside[y:y + 40, x:x + 40]
            np.testing.assert_array_equal(weights[~counted], 0)    # mirrored: not counted
            np.testing.assert_array_equal(weights[counted],
                                          blob_weights[y:y + 40, x:x + 40].ravel())
            np.testing.assert_array_equal(f["labels"][0, 0][counted],
                                          blob_labels[y:y + 40, x:x + 40].ravel())


def test_the_validation_net_and_solver_are_the_plugins(backend, tmp_path):
    solver_path, _, _ = validation_job(backend, tmp_path, 2, 2)
    solver = parse(solver_path.read_text(), "SolverParameter")
    assert list(solver.test_iter) == [4] and solver.test_interval == 2
    net = parse((tmp_path / "unet-ft-model.prototxt").read_text(), "NetParameter")
    first, *_, loss, iou, detection, segmentation = net.layer
    assert (first.name, first.type, list(first.top)) == ("loaddata_valid", "HDF5Data",
                                                         ["d0a", "labels", "weights"])
    assert [(l.name, l.type) for l in (loss, iou, detection, segmentation)] == [
        ("loss_valid", "SoftmaxWithLoss"), ("IoU", "IoU"), ("F1_detection", "F1"),
        ("F1_segmentation", "F1")]
    assert (detection.f1_param.distance_mode, detection.f1_param.distance_threshold) == \
        ("EUCLIDEAN", 3.0) and not segmentation.has("f1_param")
    assert all(l.include[0].phase == "TEST" and list(l.bottom) == ["score", "labels", "weights"]
               for l in (loss, iou, detection, segmentation))
    tuned = read_modeldef(tmp_path / "unet-ft.modeldef.h5")       # saved before validation
    assert "loaddata_valid" not in tuned.model_prototxt and "IoU" not in tuned.model_prototxt


def test_caffe_train_validates_and_logs_what_the_plugin_parses(backend, tmp_path):
    solver, _, _ = validation_job(backend, tmp_path, 2, 1)
    result = run(backend, "caffe", "train", "-solver", solver, "-weights", backend["weights"],
                 "-sigint_effect", "stop")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    log = result.stderr
    tests = [int(line.split("Iteration ")[1].split(",")[0]) for line in log.splitlines()
             if re.match(r"^.*Iteration [0-9]+, Testing net.*$", line)]
    assert tests == [0, 1, 2]                     # test_initialization, then every step
    losses = [float(line.split("loss_valid = ")[1].split(" ")[0]) for line in log.splitlines()
              if re.match(r"^.*Test net output #[0-9]*: loss_valid = .*$", line)]
    assert len(losses) == 3 and all(np.isfinite(losses))
    for name in ("IoU", "F1_detection", "F1_segmentation"):
        assert len(re.findall(rf"Test net output #[0-9]*: {name} = ", log)) == 3
    # the counts, summed over the 4 tiles of a pass: one value per foreground class; the
    # objects are the labelled cells of the tiles' counted pixels (whatever the net predicts)
    objects = {pass_: [2.0] for pass_ in tests}
    assert plugin_sums(log, "F1_detection - Per class object count") == objects
    assert plugin_sums(log, "F1_segmentation - Per class object count") == objects
    intersection = plugin_sums(log, "IoU - Per class intersection")
    union = plugin_sums(log, "IoU - Per class union")
    cells = 8 * 10 + 7 * 10                       # the labelled cell pixels, all counted
    assert all(len(intersection[t]) == 1 and intersection[t][0] <= cells <= union[t][0]
               for t in tests)


# ---------------------------------------------------------------- weights of other channel counts


def net_with(backend, channels, classes):
    """The model's TEST net for `channels` image channels and `classes` classes."""
    param = caffe_unet_net_param(read_modeldef(backend["model"]), channels, (44, 44))
    next(layer for layer in param.layer if layer.name == "conv_u0d-score") \
        .convolution_param.set("num_output", classes)
    return Net(param, "TEST")


def test_weights_copy_the_channels_both_have_and_name_each_layer(backend, logged):
    """RGB images on a 1-channel net and 3 classes on a 2-class one: caffe_unet's copy."""
    net = net_with(backend, 3, 3)
    before = {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}
    net.copy_from(str(backend["weights"]), resize_channels=True)
    with h5py.File(backend["weights"]) as f:
        first, score, bias = (f["data/conv_d0a-b/0"][()], f["data/conv_u0d-score/0"][()],
                              f["data/conv_u0d-score/1"][()])
    conv = net.params["conv_d0a-b"][0].data
    np.testing.assert_array_equal(conv[:, :1], first)                # every kernel element
    np.testing.assert_array_equal(conv[:, 1:], before["conv_d0a-b"][0][:, 1:])   # the filler
    np.testing.assert_array_equal(net.params["conv_u0d-score"][0].data[:2], score)
    np.testing.assert_array_equal(net.params["conv_u0d-score"][0].data[2:],
                                  before["conv_u0d-score"][0][2:])
    np.testing.assert_array_equal(net.params["conv_u0d-score"][1].data[:2], bias)
    changes = [line for line in logged if line.startswith("Changing")]
    assert [line.split(";")[0] for line in changes] == [
        "Changing number of input channels of layer conv_d0a-b from 1 (weights) to 3 (model)",
        "Changing number of output channels of layer conv_u0d-score from 2 (weights) to 3 "
        "(model)"]


def test_weights_that_differ_otherwise_stay_refused(backend, tmp_path):
    with pytest.raises(DataError, match="conv_d0a-b' blob 0 has shape .* in the file but "
                                        r"\(2, 3, 3, 3\) in the net"):
        net_with(backend, 3, 2).copy_from(str(backend["weights"]))   # not asked to resize
    with h5py.File(backend["weights"]) as f, h5py.File(tmp_path / "w.h5", "w") as g:
        f.copy("data", g)
        del g["data/conv_d0a-b/0"]
        g["data/conv_d0a-b/0"] = np.zeros((2, 1, 5, 5), np.float32)      # another kernel
    with pytest.raises(DataError, match="only a Convolution's or Deconvolution's channel "
                                        "counts may differ"):
        net_with(backend, 1, 2).copy_from(str(tmp_path / "w.h5"), resize_channels=True)


def test_fine_tuning_rgb_images_on_a_1_channel_model(backend, tmp_path):
    rng = np.random.default_rng(7)
    samples = [(np.repeat(image, 3, axis=0), labels, size) for image, labels, size in
               (labelled_sample((30, 36), rng),)]
    solver, _ = prepare_finetuning(read_modeldef(backend["model"]), samples,
                                   tmp_path / "unet-ft", iterations=1)
    result = run(backend, "caffe", "train", "-solver", solver, "-weights", backend["weights"],
                 "-sigint_effect", "stop")
    assert result.returncode == 0, result.stderr
    assert "Changing number of input channels of layer conv_d0a-b from 1 (weights) to 3 " \
           "(model)" in result.stderr
    path = write_job_file(tmp_path / "job.h5", np.zeros((1, 3, 20, 20)))
    refused = tiled_predict(backend, path, "-n_tiles", "1")        # scores need every weight
    assert refused.returncode == 1 and "conv_d0a-b' blob 0 has shape" in refused.stderr
