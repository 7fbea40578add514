"""The README's main job and the tutorial's commands, scaled down, through the real CLI:
synth -> train (snapshot, resume) -> segment -> test -> plot-log, plus their bad-input errors."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cases import REPO
from unetcore.cli import main
from unetcore.net import Net



@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    shutil.copytree(REPO / "prototxt", tmp_path / "prototxt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def test_synth_train_resume_segment_test_plot(workdir):
    run("synth", "-o", "data", "--train", 2, "--test", 1, "--size", 96)
    assert tifffile.imread("data/train-volume.tif").shape == (2, 96, 96)
    solver = ["prototxt/unet-demo-solver.prototxt", "--max-iter", 4, "--snapshot-every", 2,
              "--display", 1]
    run("train", *solver, "--log", "train.log")
    log = Path("train.log").read_text()
    assert "Iteration 3, lr = 0.001" in log and "Optimization Done." in log
    snapshots = sorted(p.name for p in Path("snapshots").iterdir())
    assert snapshots == [f"unet-demo_iter_{i}.{kind}.h5" for i in (2, 4)
                         for kind in ("caffemodel", "solverstate")]
    run("train", *solver[:1], "--max-iter", 6, "--snapshot", "snapshots/unet-demo_iter_4.solverstate.h5")
    assert Path("snapshots/unet-demo_iter_6.caffemodel.h5").exists()
    weights = "snapshots/unet-demo_iter_6.caffemodel.h5"
    out = run("segment", "data/test-volume.tif", "-o", "seg.tif", "--model",
              "prototxt/unet-demo-deploy.prototxt", "--weights", weights, "--probabilities", "p.tif")
    assert "wrote seg.tif: 1 slice(s) of 96x96" in out
    assert set(np.unique(tifffile.imread("seg.tif")).tolist()) <= {0, 255}
    probabilities = tifffile.imread("p.tif")
    assert probabilities.shape == (1, 2, 96, 96)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    # one tile whose 100 px output covers the 96 px image: the least work
    assert "tile 284 x 284: the fewest multiply-adds for these images within --memory" in out
    run("segment", "data/test-volume.tif", "-o", "seg316.tif", "--model",
        "prototxt/unet-demo-deploy.prototxt", "--weights", weights, "--probabilities",
        "p316.tif", "--tile", 316)
    np.testing.assert_allclose(tifffile.imread("p316.tif"), probabilities, atol=1e-5)
    out = run("test", "data/test-volume.tif", "data/test-labels.tif", "--model",
              "prototxt/unet-demo-deploy.prototxt", "--weights", weights)
    assert "best rand error:" in out and "best warping error:" in out and "IoU per class" in out
    out = run("plot-log", "train.log", "-o", "curve.svg")
    assert Path("curve.svg").read_text().startswith("<svg")
    assert "wrote curve.svg: 4 loss points" in out


def test_weightmap_command(workdir):
    labels = np.zeros((5, 9), np.uint8)
    labels[:, :3] = labels[:, 6:] = 255
    tifffile.imwrite("labels.tif", labels)
    run("weightmap", "labels.tif", "-o", "w.tif")
    np.testing.assert_allclose(tifffile.imread("w.tif")[:, 4], 2 + 10 * np.exp(-16 / 50),
                               rtol=1e-6)


def test_cli_errors_are_one_line(workdir):
    out = run("train", "prototxt/unet-small-train.prototxt", code=1)
    assert out.startswith("unetcore: error: net 'unet-small': its data come from Input layers")
    out = run("segment", "missing.tif", "-o", "x.tif", "--model",
              "prototxt/unet-demo-deploy.prototxt", "--weights", "w.h5", code=1)
    assert "unetcore: error:" in out and "Traceback" not in out
    out = run("segment", "missing.tif", "-o", "x.tif", "--model",
              "prototxt/unet-demo-deploy.prototxt", "--weights", "w.h5", "--tile", 310, code=1)
    assert "nearest valid sizes: 284, 300, 316, 332" in out
    Path("bad.prototxt").write_text("base_lr: 0.1\nmomentum: oops\n")
    out = run("train", "bad.prototxt", code=1)
    assert "bad.prototxt:2:11:" in out
    run("synth", "-o", "data", "--train", 1, "--test", 1, "--size", 64)
    Net("prototxt/unet-small-deploy.prototxt").save("small.caffemodel.h5")
    out = run("segment", "data/test-volume.tif", "-o", "x.tif", "--model",
              "prototxt/unet-demo-deploy.prototxt", "--weights", "small.caffemodel.h5", code=1)
    assert "layer 'conv_d0a-b' blob 0 has shape (2, 1, 3, 3) in the file but (16, 1, 3, 3)" in out


def test_parse_log_script_writes_caffes_tables(tmp_path):
    import csv
    import subprocess
    import sys
    log = tmp_path / "train.log"
    log.write_text(
        "I1125 06:00:00.000001  1 solver.py:1] Iteration 0 (0 iter/s, 0.1s/2 iters), loss = 0.7\n"
        "I1125 06:00:00.000002  1 solver.py:2] Iteration 0, lr = 0.01\n"
        "I1125 06:00:01.000000  1 solver.py:3] Iteration 2, Testing net (#0)\n"
        "I1125 06:00:01.000001  1 solver.py:4]     Test net output #0: loss = 0.5 (* 1 = 0.5 loss)\n"
        "I1125 06:00:02.000000  1 solver.py:1] Iteration 2 (2 iter/s, 1s/2 iters), loss = 0.6\n")
    result = subprocess.run([sys.executable, str(REPO / "bin" / "parse_log.py"), str(log),
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    train = list(csv.reader(open(tmp_path / "train.log.train.csv")))
    assert train == [["NumIters", "LearningRate", "loss"], ["0", "0.01", "0.7"], ["2", "", "0.6"]]
    test = list(csv.reader(open(tmp_path / "train.log.test.csv")))
    assert test == [["NumIters", "loss"], ["2", "0.5"]]


def test_test_command_flags_a_one_class_best(workdir):
    # All-zero weights give p = 0.5 everywhere: every threshold calls every pixel one class,
    # so each best error is an empty segmentation's, and the command says so.
    net = Net("prototxt/unet-small-deploy.prototxt", "TEST")
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = 0
    net.save("zero.caffemodel.h5")
    labels = np.full((1, 24, 24), 255, np.uint8)
    labels[0, :, 12] = 0
    tifffile.imwrite("images.tif", np.random.default_rng(0).integers(0, 256, (1, 24, 24), np.uint8))
    tifffile.imwrite("labels.tif", labels)
    out = run("test", "images.tif", "labels.tif", "--model", "prototxt/unet-small-deploy.prototxt",
              "--weights", "zero.caffemodel.h5")
    assert out.count("; this ") == 5 and "is an empty segmentation's, not the net's" in out
