"""Volumes chunk by chunk (unetcore.inference.chunked): the chunked result equals the in-process one, here
and on a dask LocalCluster of two worker processes, and a run cut off mid-way resumes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from cases import REPO
from unetcore.cli import main
from unetcore.gradcheck import randomize_params
from unetcore.net import Net
from unetcore.inference.tiling import segment, softmax
from unetcore.inference.chunked import DONE_FOLDER, reflect

zarr = pytest.importorskip("zarr")
pytest.importorskip("dask.distributed")

SMALL = str(REPO / "prototxt" / "unet-small-deploy.prototxt")     # depth 2, pooling grid 4


@given(st.integers(1, 9), st.integers(0, 30), st.integers(0, 30))
def test_reflect_is_numpys_reflect_padding_at_any_width(size, before, after):
    padded = np.pad(np.arange(size), (before, after), mode="reflect")
    np.testing.assert_array_equal(reflect(np.arange(-before, size + after), size), padded)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "small.caffemodel.h5"
    net = Net(SMALL, "TEST")
    randomize_params(net, np.random.default_rng(0))
    net.save(str(path))
    return str(path)


def volume_file(tmp_path, shape, seed=0):
    """A uint8 volume as a zarr array, a TIFF stack and an HDF5 dataset."""
    import h5py
    import tifffile
    values = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=shape, chunks=(1, 17, 23),
                      dtype=np.uint8)[...] = values
    tifffile.imwrite(tmp_path / "in.tif", values, photometric="minisblack")
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("em/raw", data=values, chunks=(1, 16, 16))
    return values


def in_process_probabilities(values, weights, tile):
    """tiling.segment slice by slice: the path the chunked one must equal."""
    from unetcore.inference.deploy import deploy_net
    net = deploy_net(SMALL, weights, tile, None)
    return np.stack([softmax(segment(net, (s.astype(np.float32) / 255)[None], 2))
                     for s in values])


def run(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.mark.parametrize("source", ["in.zarr", "in.tif", "in.h5:em/raw", "in.h5"])
@settings(max_examples=3, deadline=None)
@given(st.integers(20, 70), st.integers(20, 70), st.sampled_from([1, 8, 20, 64]))
def test_chunked_equals_in_process(tmp_path_factory, weights, source, height, width, chunk):
    """Any chunk edge (rounded to the tile step), from zarr, TIFF or HDF5 (the dataset named,
    or the file's only one): the same probabilities."""
    tmp_path = tmp_path_factory.mktemp("volume")
    values = volume_file(tmp_path, (2, height, width))
    out = run("segment", tmp_path / source, "-o", tmp_path / "out.zarr", "--model", SMALL,
              "--weights", weights, "--tile", 48, "--chunk", chunk, "--probabilities",
              tmp_path / "p.zarr")
    assert "2 slice(s) of" in out and "0 already written" in out
    expected = in_process_probabilities(values, weights, 48)
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "p.zarr"))[...],
                               expected, atol=1e-5)
    labels = zarr.open_array(str(tmp_path / "out.zarr"))[...]
    np.testing.assert_array_equal(labels, expected.argmax(axis=1).astype(np.uint8) * 255)


def test_a_cut_off_run_resumes_and_rewrites_the_broken_chunk(tmp_path, weights, monkeypatch):
    """A run that dies while writing its third chunk (labels written, marker not) leaves two
    finished chunks; the rerun skips them, writes the others whole, and the result is right."""
    from unetcore.inference import chunked
    values = volume_file(tmp_path, (1, 60, 60))
    args = ("segment", tmp_path / "in.zarr", "-o", tmp_path / "out.zarr", "--model", SMALL,
            "--weights", weights, "--tile", 48, "--chunk", 16, "--probabilities",
            tmp_path / "p.zarr")
    written = []
    original = chunked.write_chunk

    def dies_on_the_third(outputs, plan, chunk, probabilities, marker_path):
        if len(written) == 2:
            outputs[0][plan.output_window(chunk)] = 7       # half a chunk, then the crash
            raise KeyboardInterrupt
        written.append(chunk)
        original(outputs, plan, chunk, probabilities, marker_path)
    monkeypatch.setattr(chunked, "write_chunk", dies_on_the_third)
    assert "Aborted" in run(*args, code=1)              # as after Ctrl-C
    assert len(list((tmp_path / "out.zarr" / DONE_FOLDER).iterdir())) == 2
    monkeypatch.setattr(chunked, "write_chunk", original)
    out = run(*args)
    chunks = 16                           # 60 px in chunks of 16 (the tile step): 4 x 4
    assert f"{chunks} chunks of 16 px: {chunks - 2} segmented, 2 already written" in out
    expected = in_process_probabilities(values, weights, 48)
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "p.zarr"))[...], expected,
                               atol=1e-5)
    assert run(*args).count("0 segmented, 16 already written") == 1


def test_two_worker_processes_equal_in_process_and_a_killed_job_resumes(tmp_path, weights):
    """A LocalCluster of 2 worker processes gives the in-process result. The job killed with
    its workers mid-run, then rerun, gives it too, without redoing the finished chunks."""
    values = volume_file(tmp_path, (6, 160, 160))        # 600 chunks: seconds of work
    command = [sys.executable, "-m", "unetcore", "segment", str(tmp_path / "in.zarr"), "-o",
               str(tmp_path / "out.zarr"), "--model", SMALL, "--weights", weights, "--tile", "48",
               "--chunk", "16", "--probabilities", str(tmp_path / "p.zarr"), "--workers", "2"]
    job = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = tmp_path / "out.zarr" / DONE_FOLDER
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None and \
            not (done.exists() and len(list(done.iterdir())) >= 20):
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    finished = len(list(done.iterdir()))
    total = 6 * 10 * 10                          # 160 px in chunks of 16
    assert 20 <= finished < total, "the job ended before it could be killed mid-run"
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dask dashboard: http" in result.stdout
    assert f"{total} chunks of 16 px: {total - finished} segmented, {finished} already written" \
        in result.stdout
    expected = in_process_probabilities(values, weights, 48)
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "p.zarr"))[...], expected,
                               atol=1e-5)


def test_volume_errors_are_one_line(tmp_path, weights):
    volume_file(tmp_path, (1, 30, 30))
    out = run("segment", tmp_path / "in.zarr", "-o", tmp_path / "x.tif", "--model", SMALL,
              "--weights", weights, "--workers", 2, code=1)
    assert "give -o OUT.zarr" in out
    out = run("segment", tmp_path / "missing.h5:data", "-o", tmp_path / "x.zarr", "--model",
              SMALL, "--weights", weights, code=1)
    assert "missing.h5: no such volume" in out
    out = run("segment", tmp_path / "in.zarr", "-o", tmp_path / "x.zarr", "--model", SMALL,
              "--weights", weights, "--probabilities", tmp_path / "p.tif", code=1)
    assert "--probabilities must name a zarr array too" in out
    zarr.create_array(str(tmp_path / "deep.zarr"), shape=(1, 30, 30), chunks=(1, 30, 30),
                      dtype=np.uint16)[...] = 4000
    out = run("segment", tmp_path / "deep.zarr", "-o", tmp_path / "y.zarr", "--model", SMALL,
              "--weights", weights, "--bits", 8, code=1)
    assert "--bits 8 does not hold its uint16 values (largest 4000)" in out
    out = run("segment", tmp_path / "deep.zarr", "-o", tmp_path / "w.zarr", "--model", SMALL,
              "--weights", weights, "--bits", 8, "--workers", 1, code=1)
    assert "unetcore: error:" in out and "--bits 8 does not hold" in out     # from a worker
    assert "Traceback" not in out
    args = ("segment", tmp_path / "in.zarr", "-o", tmp_path / "z.zarr", "--model", SMALL,
            "--weights", weights, "--tile", 48)
    run(*args, "--chunk", 16)
    out = run(*args, "--chunk", 32, code=1)
    assert "z.zarr: holds part of another job's result (not this run's: the chunks)" in out
    out = run("segment", tmp_path / "in.zarr", "-o", tmp_path / "z.zarr", "--model", SMALL,
              "--weights", weights, "--tile", 64, "--chunk", 16, code=1)
    assert "(not this run's: the tile" in out


def test_bad_volumes_and_nets_are_refused_in_one_line(tmp_path, weights):
    import h5py
    volume_file(tmp_path, (1, 30, 30))
    args = ("-o", tmp_path / "x.zarr", "--model", SMALL, "--weights", weights)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"], f["b"] = np.zeros((2, 9, 9)), np.zeros((2, 9, 9))
    out = run("segment", tmp_path / "two.h5", *args, code=1)
    assert "two.h5: holds 2 datasets (a, b); name one as" in out
    out = run("segment", f"{tmp_path / 'in.h5'}:nope", *args, code=1)
    assert "in.h5: has no dataset 'nope'" in out
    zarr.create_array(str(tmp_path / "4d.zarr"), shape=(1, 1, 9, 9), dtype=np.uint8)
    out = run("segment", tmp_path / "4d.zarr", *args, code=1)
    assert "a volume must be (Z, H, W) or (H, W) grey values with pixels, got shape " \
           "(1, 1, 9, 9)" in out
    (tmp_path / "text.tif").write_text("not a TIFF")
    out = run("segment", tmp_path / "text.tif", *args, code=1)
    assert "text.tif: not a readable volume (zarr, HDF5 or TIFF)" in out
    out = run("segment", tmp_path / "in.zarr", *args, "--average-mirror", code=1)
    assert "-o OUT.zarr segments without --average-mirror or --average-rotate" in out
    two_channels = tmp_path / "two-channel.prototxt"
    two_channels.write_text(Path(SMALL).read_text().replace("dim: 1 dim: 1", "dim: 1 dim: 2"))
    net = Net(str(two_channels), "TEST")
    net.save(str(tmp_path / "two.caffemodel.h5"))
    out = run("segment", tmp_path / "in.zarr", "-o", tmp_path / "y.zarr", "--model",
              two_channels, "--weights", tmp_path / "two.caffemodel.h5", code=1)
    assert "takes 2-channel images; chunked volumes (-o OUT.zarr) are grey, one channel" in out
    assert "Traceback" not in out


def test_a_worker_with_two_threads_equals_in_process(tmp_path, weights):
    """`--scheduler` to a dask worker that runs two chunks at once, in two threads (dask-worker's
    default is one thread per core): each thread segments on a net of its own, so the result
    is the in-process one."""
    from dask.distributed import LocalCluster
    values = volume_file(tmp_path, (2, 96, 96))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, memory_limit=0,
                      dashboard_address=None) as cluster:
        out = run("segment", tmp_path / "in.zarr", "-o", tmp_path / "out.zarr", "--model", SMALL,
                  "--weights", weights, "--tile", 48, "--chunk", 16, "--probabilities",
                  tmp_path / "p.zarr", "--scheduler", cluster.scheduler_address)
    assert "72 chunks of 16 px: 72 segmented" in out
    expected = in_process_probabilities(values, weights, 48)
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "p.zarr"))[...], expected,
                               atol=1e-5)
    labels = zarr.open_array(str(tmp_path / "out.zarr"))[...]
    np.testing.assert_array_equal(labels, expected.argmax(axis=1).astype(np.uint8) * 255)
