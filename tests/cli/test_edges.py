"""Nothing lost and nothing silently wrong at the edges (issue 33): resumes that cannot mix two
jobs, outputs that would overwrite an input or each other, full disks and unwritable folders,
out-of-range options and solver fields, odd inputs; each with its one line. And the fast
weight map equals the plain one, an EDT per cell over the whole image."""
import errno
import socket
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from scipy import ndimage

from cases import REPO, write_plugin_modeldef
import unetcore
from unetcore import config
from unetcore.cli import main
from unetcore.data.weightmap import weight_map
from unetcore.errors import DataError, NetError, SolverError
from unetcore.gradcheck import randomize_params
from unetcore.formats.prototxt import parse

SMALL = str(REPO / "prototxt" / "unet-small-deploy.prototxt")
SMALL_TRAIN = str(REPO / "prototxt" / "unet-small-train.prototxt")
FULL_DISK = OSError(errno.ENOSPC, "No space left on device")


def run(*args, code=1):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def one_line(output):
    """The error line, asserted to be the only one."""
    lines = [line for line in output.splitlines() if line.startswith("unetcore: error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.fixture
def weights(tmp_path):
    """Two sets of weights for the small net, and a 30 x 30 image as TIFF."""
    paths = []
    for seed in (0, 1):
        net = unetcore.Net(SMALL, "TEST")
        randomize_params(net, np.random.default_rng(seed))
        net.save(str(tmp_path / f"w{seed}.caffemodel.h5"))
        paths.append(tmp_path / f"w{seed}.caffemodel.h5")
    values = np.random.default_rng(0).integers(0, 256, (2, 30, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", values, photometric="minisblack")
    return paths


# ---------------------------------------------------------------- resumes
def test_a_resume_with_other_weights_or_tile_is_refused_and_overwrite_starts_over(
        tmp_path, weights, monkeypatch):
    pytest.importorskip("zarr")
    from unetcore.inference import chunked
    args = ("segment", tmp_path / "in.tif", "-o", tmp_path / "out.zarr", "--model", SMALL,
            "--chunk", 16)
    original, written = chunked.write_chunk, []

    def dies_after_two(*chunk_args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(chunk_args)
        original(*chunk_args)
    monkeypatch.setattr(chunked, "write_chunk", dies_after_two)
    run(*args, "--weights", weights[0], "--tile", 48)
    monkeypatch.setattr(chunked, "write_chunk", original)
    line = one_line(run(*args, "--weights", weights[1], "--tile", 48))
    assert "out.zarr: holds part of another job's result (not this run's: the weights); " \
           "rerun that job to finish it, give --overwrite to start over" in line
    out = run(*args, "--weights", weights[1], "--tile", 64)
    assert "(not this run's: the weights, the tile" in out
    out = run(*args, "--weights", weights[1], "--tile", 48, "--overwrite", code=0)
    assert "8 chunks of 16 px: 8 segmented, 0 already written" in out
    assert "0 segmented, 8 already written" in run(*args, "--weights", weights[1], "--tile", 48,
                                                   code=0)


def test_a_resume_of_another_input_is_refused(tmp_path, weights):
    pytest.importorskip("zarr")
    args = ("-o", tmp_path / "out.zarr", "--model", SMALL, "--weights", weights[0], "--tile", 48)
    run("segment", tmp_path / "in.tif", *args, code=0)
    tifffile.imwrite(tmp_path / "other.tif", np.zeros((2, 30, 30), np.uint8),
                     photometric="minisblack")
    assert "(not this run's: the input)" in one_line(
        run("segment", tmp_path / "other.tif", *args))


def test_overwrite_removes_zarr_arrays_only(tmp_path, weights):
    pytest.importorskip("zarr")
    (tmp_path / "notes.zarr").mkdir()
    (tmp_path / "notes.zarr" / "mine.txt").write_text("keep me")
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "notes.zarr",
                        "--model", SMALL, "--weights", weights[0], "--overwrite"))
    assert "notes.zarr: --overwrite removes zarr arrays only, and this is not one" in line
    assert (tmp_path / "notes.zarr" / "mine.txt").exists()


# ---------------------------------------------------------------- paths
def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path, weights):
    pytest.importorskip("zarr")
    import zarr
    zarr.create_array(str(tmp_path / "vol.zarr"), shape=(1, 30, 30), dtype=np.uint8)
    common = ("--model", SMALL, "--weights", weights[0])
    line = one_line(run("segment", tmp_path / "vol.zarr", "-o", tmp_path / "vol.zarr", *common))
    assert "vol.zarr: -o and IMAGE name the same path; an output must not overwrite the " \
           "input or another output" in line
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "same.tif",
                        "--probabilities", tmp_path / "same.tif", *common))
    assert "same.tif: --probabilities and -o name the same path" in line
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "in.tif", *common))
    assert "in.tif: -o and IMAGE name the same path" in line
    line = one_line(run("weightmap", tmp_path / "in.tif", "-o", tmp_path / "in.tif"))
    assert "in.tif: -o and LABELS name the same path" in line


def test_an_output_named_for_another_format_is_refused(tmp_path, weights):
    common = ("--model", SMALL, "--weights", weights[0])
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "out.png", *common))
    assert "out.png: -o is written as a TIFF; name it *.tif (or *.zarr for -o" in line
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "out.tif",
                        "--probabilities", tmp_path / "p.npy", *common))
    assert "p.npy: --probabilities is written as a TIFF" in line
    assert "w.png: -o is written as a TIFF" in run("weightmap", tmp_path / "in.tif", "-o",
                                                   tmp_path / "w.png")
    assert "v.tif: -o is written as HDF5; name it *.h5" in run(
        "prepare-volume", tmp_path / "in.tif", tmp_path / "l.tif", "-o", tmp_path / "v.tif")
    assert "w.png: name the output *.caffemodel (binary) or *.caffemodel.h5" in run(
        "convert", weights[0], "-o", tmp_path / "w.png")
    assert not list(tmp_path.glob("out.*")) and not (tmp_path / "w.png").exists()


# ---------------------------------------------------------------- faults
def test_a_full_disk_leaves_no_partial_segmentation(tmp_path, weights, monkeypatch):
    def full(*args, **kwargs):
        raise FULL_DISK
    monkeypatch.setattr(tifffile, "imwrite", full)
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "out.tif", "--model",
                        SMALL, "--weights", weights[0]))
    assert line.endswith("out.tif: cannot write it: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "w0.caffemodel.h5",
                                                           "w1.caffemodel.h5"]


def test_a_full_disk_stops_a_chunked_segmentation_in_one_line(tmp_path, weights, monkeypatch):
    pytest.importorskip("zarr")
    from unetcore.inference import chunked

    def full(*args):
        raise FULL_DISK
    monkeypatch.setattr(chunked, "write_chunk", full)
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "out.zarr", "--model",
                        SMALL, "--weights", weights[0], "--tile", 48))
    assert line.endswith("out.zarr: cannot write it: No space left on device")


class FillingDisk:
    """A file on a disk that fills up after the first bytes written."""

    def __init__(self, path, mode, **kwargs):
        self.file = open(path, mode, **kwargs)

    def write(self, data):
        self.file.write(data[:8])
        self.file.flush()
        raise FULL_DISK

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.file.close()


@pytest.mark.parametrize("output,command", [
    ("out.svg", ("plot-log", "train.log", "-o", "out.svg")),
    ("out.dot", ("draw", SMALL, "-o", "out.dot")),
    ("out.onnx", ("export", SMALL, "--weights", "w0.caffemodel.h5", "-o", "out.onnx")),
    ("out.zip", ("export", SMALL, "--weights", "w0.caffemodel.h5", "--bioimageio", "out.zip",
                 "--author", "A. Tester")),
])
def test_a_full_disk_leaves_no_partial_file_of_plots_drawings_or_exports(
        tmp_path, weights, monkeypatch, output, command):
    if command[0] == "export":
        pytest.importorskip("onnx")
    from unetcore import files
    (tmp_path / "train.log").write_text("Iteration 0 (0 iter/s), loss = 0.7\n")
    before = sorted(tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(files, "open", FillingDisk, raising=False)
    line = one_line(run(*command))
    assert line == f"unetcore: error: {output}: cannot write it: No space left on device"
    assert sorted(tmp_path.iterdir()) == before


def small_solver(tmp_path, fields):
    momentum = "" if "momentum" in fields else "momentum: 0.9"
    text = f'net: "{SMALL_TRAIN}" base_lr: 0.01 {momentum} {fields}'
    return unetcore.get_solver(parse(text, "SolverParameter"))


def test_a_failed_snapshot_leaves_the_last_good_one(tmp_path, monkeypatch):
    prefix = tmp_path / "snap"
    solver = small_solver(tmp_path, f'max_iter: 2 snapshot: 1 snapshot_prefix: "{prefix}"')
    good = (tmp_path / "snap_iter_1.caffemodel.h5", tmp_path / "snap_iter_1.solverstate.h5")
    original = h5py.Group.create_dataset

    def full_after_the_first(group, *args, **kwargs):
        if solver.iter == 2:
            raise FULL_DISK
        return original(group, *args, **kwargs)
    monkeypatch.setattr(h5py.Group, "create_dataset", full_after_the_first)
    with pytest.raises(unetcore.UnetcoreError,
                       match=r"snap_iter_2.caffemodel.h5: cannot write it: No space left"):
        solver.solve()
    assert all(path.exists() for path in good)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in good)
    monkeypatch.undo()
    resumed = small_solver(tmp_path, f'max_iter: 2 snapshot_prefix: "{prefix}"')
    resumed.restore(str(good[1]))
    assert resumed.iter == 1


def test_a_snapshot_prefix_on_a_pseudo_file_system_is_refused_at_start():
    if not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    with pytest.raises(unetcore.UnetcoreError, match=r"snapshot_prefix '/proc/snap': cannot "
                                                     r"write in its folder /proc: "):
        small_solver(None, 'max_iter: 2 snapshot_prefix: "/proc/snap"')


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, weights):
    if not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    line = one_line(run("segment", tmp_path / "in.tif", "-o", "/proc/out.tif", "--model",
                        SMALL, "--weights", weights[0]))
    assert "/proc/out.tif: cannot write in its folder /proc" in line


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_named_in_one_line(tmp_path, weights):
    pytest.importorskip("dask.distributed")
    address = f"tcp://127.0.0.1:{free_port()}"
    with config.using_sizes(scheduler_timeout="1s"):
        line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "out.zarr",
                            "--model", SMALL, "--weights", weights[0], "--tile", 48,
                            "--scheduler", address))
    assert f"--scheduler {address}: no dask scheduler answers there" in line
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "out.zarr", "--model",
                        SMALL, "--weights", weights[0], "--workers", 2, "--scheduler", address))
    assert "give --workers N (a local cluster) or --scheduler ADDRESS (a running one), not " \
           "both" in line


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("args,message", [
    (("prepare-volume", "i.tif", "l.tif", "-o", "v.h5", "--element-size", 0, 1, 1),
     "--element-size 0 1 1: pixel sizes must be finite and > 0"),
    (("prepare-volume", "i.tif", "l.tif", "-o", "v.h5", "--element-size", -3, 1, 1),
     "--element-size -3 1 1: pixel sizes must be finite and > 0"),
    (("segment", "i.tif", "-o", "o.tif", "--weights", "w", "--element-size", 0, 0),
     "--element-size 0 0: pixel sizes must be finite and > 0"),
    (("train", "--element-size", 1, "inf"), "--element-size 1 inf: pixel sizes must be finite"),
    (("segment", "i.tif", "-o", "o.tif", "--weights", "w", "--memory", -5),
     "--memory -5: the memory budget must be > 0 MiB"),
    (("test", "i.tif", "l.tif", "--model", SMALL, "--weights", "w", "--memory", -5),
     "--memory -5: the memory budget must be > 0 MiB"),
    (("test", "i.tif", "l.tif", "--model", SMALL, "--weights", "w", "--memory", 0),
     "--memory 0: the memory budget must be > 0 MiB"),
    (("test", "i.tif", "l.tif", "--model", SMALL, "--weights", "w", "--tile", 0),
     "--tile 0: the input size must be a positive number of pixels"),
    (("draw", SMALL, "-o", "o.svg", "--size", -5),
     "--size -5: the input size must be a positive number of pixels"),
    (("segment", "i.tif", "-o", "o.tif", "--weights", "w", "--scale", "inf"),
     "--scale inf: must be a finite number"),
    (("weightmap", "l.tif", "-o", "w.tif", "--sigma", 0),
     "--sigma 0: the border width sigma must be finite and > 0"),
    (("weightmap", "l.tif", "-o", "w.tif", "--sigma", -5), "--sigma -5: the border width"),
    (("weightmap", "l.tif", "-o", "w.tif", "--w0", -100),
     "--w0 -100: the border weight w0 must be finite and >= 0"),
    (("prepare-volume", "i.tif", "l.tif", "-o", "v.h5", "--classes", 1),
     "--classes 1: a segmentation has at least 2 classes"),
])
def test_out_of_range_options_are_refused_with_the_reason(args, message):
    assert message in one_line(run(*args))


def test_bits_do_not_apply_to_a_fiji_model(tmp_path):
    line = one_line(run("segment", "i.tif", "-o", tmp_path / "o.tif", "--modeldef", "m.h5",
                        "--weights", "w", "--bits", 12))
    assert "--scale, --mean and --bits do not apply with --modeldef" in line


def test_a_too_small_tile_says_use_a_larger_one(tmp_path, weights):
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "o.tif", "--model",
                        SMALL, "--weights", weights[0], "--tile", 12))
    assert "--tile 12 is too small for" in line
    assert "use a larger --tile (the smallest it takes is " in line


def test_a_misaligned_tile_is_named_and_its_neighbours_are_not_refused_for_memory(
        tmp_path, weights, monkeypatch):
    """Tile 98 fits in 0.95 MiB, 101 and larger do not: the nearest valid sizes are looked
    for within the budget, not refused for a size the user did not give."""
    monkeypatch.setenv("UNETCORE_MAX_MEMORY", "0.95")
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "o.tif", "--model",
                        SMALL, "--weights", weights[0], "--tile", 98))
    assert "input size 98x98 makes pooling layer" in line
    assert line.endswith("nearest valid sizes: 92, 96, 100")


def test_a_memory_refusal_prints_the_need_visibly_above_the_budget(monkeypatch):
    from unetcore.memory import require_bytes
    monkeypatch.setenv("UNETCORE_MAX_MEMORY", str(47 * 2 ** 9))        # 23.5 GiB
    with pytest.raises(unetcore.UnetcoreError) as caught:
        require_bytes(47 * 2 ** 29 + 2 ** 20, "the blobs")
    assert str(caught.value) == ("the blobs would take 24,065 MiB, more than the 24,064 MiB "
                                 "allowed by UNETCORE_MAX_MEMORY")


def convolution(name, bottom, outputs):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f'convolution_param {{ num_output: {outputs} kernel_size: 3 }} }}\n')


def test_parameters_too_large_together_are_refused_before_any_is_drawn(tmp_path, monkeypatch):
    """Each (300, 300, 3, 3) weight takes 3.1 MiB, within the 5 MiB; the two do not fit."""
    import unetcore.layer
    monkeypatch.setenv("UNETCORE_MAX_MEMORY", "5")
    monkeypatch.setattr(unetcore.layer, "fill", lambda *args: pytest.fail("drew a parameter"))
    model = tmp_path / "wide.prototxt"
    model.write_text('name: "wide"\nlayer { name: "in" type: "Input" top: "data" '
                     'input_param { shape { dim: 1 dim: 1 dim: 9 dim: 9 } } }\n' +
                     convolution("a", "data", 300) + convolution("b", "a", 300) +
                     convolution("c", "b", 300))
    line = one_line(run("shapes", model))
    assert "the parameter blobs of net 'wide' would take " in line
    assert line.endswith(" MiB, more than the 5 MiB allowed by UNETCORE_MAX_MEMORY")


def test_a_huge_prototxt_is_refused_before_it_is_parsed(tmp_path):
    from unetcore.formats.prototxt import MAX_PROTOTXT_CHARS
    model = tmp_path / "huge.prototxt"
    model.write_text("#" * MAX_PROTOTXT_CHARS + "\n")
    line = one_line(run("shapes", model))
    assert "huge.prototxt:0:0: more than 2 MiB of text, far more than a net or solver " \
           "prototxt takes" in line


def test_a_license_unknown_to_bioimage_io_is_refused_before_anything_is_written(
        tmp_path, weights):
    pytest.importorskip("bioimageio.spec")
    for package in ("pkg", "pkg.zip"):
        line = one_line(run("export", SMALL, "--weights", weights[0], "--bioimageio",
                            tmp_path / package, "--author", "A. Tester", "--license", "cc-by-4"))
        assert "the license 'cc-by-4' is not an SPDX license identifier " \
               "(https://spdx.org/licenses); did you mean 'CC-BY-4.0'?" in line
        assert not (tmp_path / package).exists()


def test_a_chunk_is_rounded_with_a_note_and_never_beyond_the_image(tmp_path, weights):
    pytest.importorskip("zarr")
    import zarr
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "in.tif"), "-o",
                                       str(tmp_path / "out.zarr"), "--model", SMALL,
                                       "--weights", str(weights[0]), "--tile", "48",
                                       "--chunk", "5000"])
    assert result.exit_code == 0, result.output
    assert "--chunk 5000: chunks of 32 px, the nearest multiple of the tile step 8 px " \
           "within the image" in result.output
    assert zarr.open_array(str(tmp_path / "out.zarr")).chunks == (1, 32, 32)


def test_synth_counts_one_slice_in_the_singular(tmp_path):
    out = run("synth", "-o", tmp_path, "--train", 1, "--test", 1, "--size", 32, code=0)
    assert "1 slice of 32x32" in out and "1 slices" not in out


# ---------------------------------------------------------------- solver fields
@pytest.mark.parametrize("fields,message", [
    ("max_iter: 0", r"max_iter must be > 0 \(the iterations to train\), got 0"),
    ("max_iter: -5", "max_iter must be > 0"),
    ("max_iter: 5 momentum: 2", r"momentum must be in \[0, 1\) .* got 2"),
    ("max_iter: 5 weight_decay: -1", "weight_decay must be >= 0 .* got -1"),
    ("max_iter: 5 test_iter: 0 test_interval: 5", r"test_iter must be > 0 .* got \[0\]"),
    ('max_iter: 5 lr_policy: "fixd"', "unknown lr_policy 'fixd'; did you mean 'fixed'?"),
])
def test_solver_fields_are_checked_before_the_first_iteration(fields, message):
    solver = small_solver(None, fields)
    solver.callbacks.append(lambda s: pytest.fail("an iteration ran"))
    with pytest.raises(SolverError, match=message):
        solver.solve()


# ---------------------------------------------------------------- odd inputs
def test_fractional_labels_are_refused_for_fine_tuning_a_fiji_model(tmp_path):
    modeldef = write_plugin_modeldef(tmp_path / "m.modeldef.h5")
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((64, 64), np.uint8))
    tifffile.imwrite(tmp_path / "l.tif", np.where(np.eye(64) > 0, 0.6, 0.0))
    line = one_line(run("train", "--modeldef", modeldef, "--images", tmp_path / "i.tif",
                        "--labels", tmp_path / "l.tif"))
    assert "l.tif: label values must be whole class numbers, found [0.6]" in line


def test_complex_images_are_refused(tmp_path):
    from unetcore.data.stacks import read_tiff
    tifffile.imwrite(tmp_path / "c.tif", np.ones((4, 4), np.complex64))
    with pytest.raises(DataError, match=r"c.tif: holds complex image values \(complex64\)"):
        read_tiff(tmp_path / "c.tif")


def test_an_hdf5_group_is_not_a_volume(tmp_path, weights):
    pytest.importorskip("zarr")
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["em/raw"] = np.zeros((1, 30, 30), np.uint8)
    line = one_line(run("segment", f"{tmp_path / 'v.h5'}:em", "-o", tmp_path / "o.zarr",
                        "--model", SMALL, "--weights", weights[0]))
    assert "v.h5: 'em' is a group, not a dataset; name one of its datasets (raw)" in line


def test_an_unknown_layer_type_suggests_the_known_one_case_aside():
    text = Path(SMALL).read_text().replace('type: "ReLU"', 'type: "Relu"', 1)
    with pytest.raises(NetError, match="has unknown type 'Relu'; did you mean 'ReLU'?"):
        unetcore.Net(parse(text))


def test_an_empty_prototxt_is_refused(tmp_path):
    (tmp_path / "empty.prototxt").write_text("")
    line = one_line(run("shapes", tmp_path / "empty.prototxt"))
    assert "empty.prototxt: the net has no layers" in line


def test_a_binary_file_as_a_net_says_what_it_is(tmp_path):
    (tmp_path / "m.modeldef.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(unetcore.UnetcoreError, match=r"not a text prototxt \(binary data at "
                                                     r"byte 0\); a Fiji model"):
        unetcore.Net(str(tmp_path / "m.modeldef.h5"))


# ---------------------------------------------------------------- the weight map
def plain_nearest_two(instances, sampling=None):
    """The weight map's distances as first written: one EDT per cell over the whole image."""
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    for index in np.unique(instances):
        if index == 0:
            continue
        d = ndimage.distance_transform_edt(instances != index, sampling=sampling)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    return d1, d2


def plain_weight_map(labels, w0, sigma, element_size=None):
    from unetcore.data.weightmap import class_balance, instances_of
    instances = instances_of(labels)
    weights = class_balance((instances > 0).astype(np.int64))
    d1, d2 = plain_nearest_two(instances, element_size)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma ** 2))
    return (weights + np.where(instances == 0, border, 0.0)).astype(np.float32)


def random_cells(rng, shape, cells):
    """Instance labels: `cells` random boxes (ids not consecutive, some overlapping)."""
    labels = np.zeros(shape, np.int64)
    for index in rng.choice(10 ** 6, cells, replace=False) + 1:
        corner = [rng.integers(0, n - 2) for n in shape]
        size = [rng.integers(1, max(2, n // 4)) for n in shape]
        labels[tuple(slice(c, c + s) for c, s in zip(corner, size))] = index
    return labels


@pytest.mark.parametrize("seed,w0,sigma", [(0, 10.0, 5.0), (1, 10.0, 2.0), (2, 50.0, 8.0),
                                           (3, 1.0, 25.0)])
def test_the_fast_weight_map_equals_an_edt_per_cell_over_the_whole_image(seed, w0, sigma):
    rng = np.random.default_rng(seed)
    labels = random_cells(rng, (120, 97), 30)
    np.testing.assert_allclose(weight_map(labels, w0, sigma), plain_weight_map(labels, w0, sigma),
                               rtol=1e-6)
    mask = (ndimage.binary_erosion(labels > 0) * 255).astype(np.uint8)
    np.testing.assert_allclose(weight_map(mask, w0, sigma), plain_weight_map(mask, w0, sigma),
                               rtol=1e-6)


def test_the_fast_weight_map_equals_the_plain_one_in_3d_with_anisotropic_voxels():
    labels = random_cells(np.random.default_rng(4), (9, 40, 44), 12)
    np.testing.assert_allclose(weight_map(labels, 10.0, 5.0, element_size=(3.0, 1.0, 1.0)),
                               plain_weight_map(labels, 10.0, 5.0, (3.0, 1.0, 1.0)), rtol=1e-6)


def test_bits_that_would_be_ignored_or_cannot_fit_the_type_are_refused(tmp_path, weights):
    common = ("-o", tmp_path / "o.tif", "--model", SMALL, "--weights", weights[0])
    line = one_line(run("segment", tmp_path / "in.tif", *common, "--bits", 12))
    assert "in.tif: --bits 12 is not a bit depth of its uint8 values (1..8)" in line
    tifffile.imwrite(tmp_path / "f.tif", np.ones((30, 30), np.float32))
    line = one_line(run("segment", tmp_path / "f.tif", *common, "--bits", 8))
    assert "f.tif: --bits is for unsigned integer images; this one holds float32 values" in line
    line = one_line(run("segment", tmp_path / "in.tif", *common, "--bits", 8, "--scale", 2))
    assert "--bits and --scale exclude each other" in line


def test_zero_bits_are_refused_not_taken_for_none(tmp_path, weights):
    line = one_line(run("test", tmp_path / "in.tif", tmp_path / "in.tif", "--model", SMALL,
                        "--weights", weights[0], "--bits", 0))
    assert "--bits 0: a bit depth is at least 1 (leave --bits out to infer it)" in line


def test_a_text_file_given_as_weights_says_so(tmp_path, weights):
    (tmp_path / "w.txt").write_text('layer { name: "conv" }\n')
    line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "o.tif", "--model",
                        SMALL, "--weights", tmp_path / "w.txt"))
    assert "w.txt: is a text file, not weights: weights are a binary .caffemodel or an HDF5" \
           in line


def test_an_overflowing_scale_is_one_line_without_a_raw_warning(tmp_path, weights):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        line = one_line(run("segment", tmp_path / "in.tif", "-o", tmp_path / "o.tif", "--model",
                            SMALL, "--weights", weights[0], "--scale", "1e38"))
    assert "NaN or infinite grey values (after --scale / --mean, if given)" in line


def test_atomic_writes_take_a_temporary_name_of_their_own_and_the_usual_mode(tmp_path):
    """Two writers of one file never share a temporary file, and the result has the mode
    the umask gives (not a temporary file's 0600)."""
    import os
    import stat
    from unetcore.files import atomic_file
    target = tmp_path / "out.txt"
    with atomic_file(target) as first, atomic_file(target) as second:
        assert first.name != second.name
        first.write(b"first")
        second.write(b"second")
    assert target.read_bytes() == b"first"
    assert list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_shapes_of_a_size_larger_than_memory_allocate_nothing_and_print(monkeypatch):
    """`shapes` reads shapes only, so the blobs' size does not stop it (time would)."""
    from click.testing import CliRunner
    from unetcore.cli import main
    monkeypatch.setenv("UNETCORE_MAX_MEMORY", "1000")     # MiB: the weights fit, the blobs not
    deploy = str(REPO / "prototxt" / "unet-deploy.prototxt")
    result = CliRunner().invoke(main, ["shapes", deploy, "--size", "4060"])
    assert result.exit_code == 0, result.output
    assert "conv_u0d-score          Convolution       score         1x2x3876x3876" in result.output
    assert "valid input sizes near 4060x4060: y 4012, 4028, 4044" in result.output
