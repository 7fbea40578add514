"""Train the U-Net on real EM data and measure it: ISBI 2012 slices 1-20 for training, 21-25 for
testing (../shared/data/isbi2012 or --data). Prints pixel, Rand and warping error (best over
the challenge's thresholds) and both classes' IoU at each checkpoint, beside an Otsu-threshold
baseline on the raw image, and draws the training curve as SVG.

    python bench/isbi.py                          # the README demo's thinned net, 600 iterations
    python bench/isbi.py --channels 64 --size 572 --checkpoints 1000,5000 --gpu 0   # the paper's net
"""
import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import tifffile

from unetcore import TEST, Net
from unetcore.data.stacks import normalize_grey
from unetcore.metrics import evaluate, iou
from unetcore.plotlog import plot_svg
from unetcore.prototxt import parse, parse_file
from unetcore.solvers.solver import get_solver
from unetcore.tiling import as_channel_images, segment, softmax
from unetcore.unet import deploy_text, solver_text, tiff_train_text

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SLICES, TEST_SLICES = slice(0, 20), slice(20, 25)


def write_split(data, folder):
    """data/train-* (slices 1-20) and data/test-* (21-25), the layout the TiffData nets read."""
    volume = tifffile.imread(data / "train-volume.tif")
    labels = tifffile.imread(data / "train-labels.tif")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, part in (("train", TRAIN_SLICES), ("test", TEST_SLICES)):
        tifffile.imwrite(folder / "data" / f"{split}-volume.tif", volume[part])
        tifffile.imwrite(folder / "data" / f"{split}-labels.tif", labels[part])
    return volume[TEST_SLICES], labels[TEST_SLICES] > 0


def otsu_threshold(image):
    """Otsu (1979): the grey level that maximizes the between-class variance
    w0 w1 (mu0 - mu1)^2 of the histogram split."""
    counts = np.bincount(image.ravel(), minlength=256).astype(float)
    levels = np.arange(256)
    w0 = np.cumsum(counts)
    w1 = w0[-1] - w0
    mu0 = np.cumsum(counts * levels) / np.maximum(w0, 1)
    mu1 = (np.sum(counts * levels) - np.cumsum(counts * levels)) / np.maximum(w1, 1)
    return int(np.argmax(w0 * w1 * (mu0 - mu1) ** 2))


def otsu_row(images, truth):
    """Membranes are dark: a pixel is cell where it is brighter than its slice's Otsu level."""
    cells = np.stack([im > otsu_threshold(im) for im in images])
    (row,), _ = evaluate(cells.astype(np.float32), truth, thresholds=[0.5])
    row["warping_at_rand"] = row["warping_error"]          # one segmentation: one threshold
    row["iou"] = iou(cells.astype(int), truth.astype(int))
    return row


def network_row(deploy, images, truth):
    """Segment by overlap-tile with the deploy net (its weights are the solver's), score."""
    probabilities = np.stack([softmax(segment(deploy, im)) for im in images])
    rows, best = evaluate(probabilities[:, 1], truth)
    row = {m: value for m, (value, _) in best.items()}
    # The best warping error over thresholds can be the empty prediction's (threshold 1.0: all
    # membrane, no topology to break), so also report it where the Rand error is best.
    rand_threshold = best["rand_error"][1]
    row["warping_at_rand"] = next(r["warping_error"] for r in rows
                                  if r["threshold"] == rand_threshold)
    row["iou"] = iou(probabilities.argmax(axis=1), truth.astype(int))
    return row


def format_row(name, row, seconds=None):
    wall = f"{seconds:8.0f}" if seconds is not None else f"{'':>8}"
    return (f"| {name:<24} | {row['pixel_error']:.4f} | {row['rand_error']:.4f} | "
            f"{row['warping_error']:.6f} | {row['warping_at_rand']:.6f} | "
            f"{row['iou'][0]:.4f} | {row['iou'][1]:.4f} | {wall} |")


def host():
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    cpu = platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, commit {commit}"


def device_name(gpu):
    if gpu is None:
        return "CPU"
    from unetcore.backend import gpu_module
    name = gpu_module(gpu).cuda.runtime.getDeviceProperties(gpu)["name"]
    return name.decode() if isinstance(name, bytes) else name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/isbi2012")
    ap.add_argument("--out", type=Path, default=Path("bench-isbi"))
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--size", type=int, default=316, help="training tile edge")
    ap.add_argument("--tile", type=int, default=572, help="overlap-tile edge at test")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--checkpoints", default="200,600")
    ap.add_argument("--gpu", type=int, default=None, help="CUDA device number (default: CPU)")
    args = ap.parse_args()
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    out = args.out.resolve()
    images, truth = write_split(args.data.resolve(), out)
    os.chdir(out)                                   # the nets read data/... relative paths
    Path("train.prototxt").write_text(tiff_train_text("isbi", 4, args.channels, args.size))
    Path("solver.prototxt").write_text(solver_text("train.prototxt", args.lr, checkpoints[-1],
                                                   checkpoints[-1], "snapshots/isbi"))
    solver = get_solver(parse_file("solver.prototxt", "SolverParameter"), gpu=args.gpu)
    deploy = Net(parse(deploy_text("isbi", 4, args.channels, size=args.tile), "NetParameter"), TEST,
                 gpu=args.gpu)
    deploy.release_activations = True
    solver.share_weights(deploy)                    # the deploy net reads the weights as they train
    grey = as_channel_images(normalize_grey(images, path="test-volume"), 1, "test-volume")
    curve = []
    solver.callbacks.append(lambda s: record_smoothed_loss(s, curve))

    print(f"# ISBI 2012, train slices 1-20, test 21-25; {host()}; on {device_name(args.gpu)}")
    print(f"# net: depth 4, {args.channels} base channels, {args.size} px tiles, "
          f"lr {args.lr}, momentum 0.99")
    print("| method                   | pixel  | Rand   | warping  | warping at Rand's threshold "
          "| IoU membrane | IoU cell | train s |")
    print(format_row("Otsu threshold (raw)", otsu_row(images, truth)))
    start, done = time.perf_counter(), 0
    for checkpoint in checkpoints:
        solver.step(checkpoint - done)
        done = checkpoint
        seconds = time.perf_counter() - start
        print(format_row(f"unetcore, iter {checkpoint}", network_row(deploy, grey, truth), seconds),
              flush=True)
        start = time.perf_counter() - seconds        # evaluation time is not training time
        if curve:                                    # drawn at each checkpoint: a run cut
            plot_svg({"loss": curve, "lr": []}, "isbi-curve.svg")   # short keeps its curve
    print(f"# training curve (loss, mean of {solver.param.average_loss} iterations): "
          f"{out / 'isbi-curve.svg'}")


def record_smoothed_loss(solver, curve):
    """The solver's own smoothed loss (the mean over its average_loss window, as Caffe logs
    it), once per window."""
    if solver.iter % solver.param.average_loss == 0:
        curve.append((solver.iter, solver.smoothed_loss))


if __name__ == "__main__":
    main()
