"""Train the U-Net on real EM data and measure it: ISBI 2012 slices 1-20 for training, 21-25 for
testing (../shared/data/isbi2012 or --data). Prints the ISBI 2012 measures as the challenge
computed them (pixel, Rand and warping error, V_Rand and V_Info, each the best over its
thresholds, with that threshold) and both classes' IoU at each checkpoint, beside an
Otsu-threshold baseline on the raw image, and draws the training curve as SVG.

    python bench/isbi.py                          # the README demo's thinned net, 600 iterations
    python bench/isbi.py --torch-python /tmp/torchvenv/bin/python   # and PyTorch on the same tiles
    python bench/isbi.py --channels 64 --size 572 --checkpoints 1000,5000 --gpu 0   # the paper's net
"""
import argparse
import os
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import tifffile

from host import describe
from unetcore import TEST, Net
from unetcore.backend import to_numpy
from unetcore.data.stacks import normalize_grey
from unetcore.measures.isbi import evaluate, iou
from unetcore.tools.plotlog import plot_svg
from unetcore.formats.prototxt import parse, parse_file
from unetcore.solvers.solver import get_solver
from unetcore.inference.tiling import as_channel_images, segment, softmax
from unetcore.models.unet import deploy_text, solver_text, tiff_train_text

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
    _, best = evaluate(cells.astype(np.float32), truth)     # a binary map: every threshold alike
    return dict(best, iou=iou(cells.astype(int), truth.astype(int)))


def network_row(deploy, images, truth):
    """Segment by overlap-tile with the deploy net (its weights are the solver's), score with
    the challenge's measures, each the best over its thresholds (unetcore.measures.isbi)."""
    probabilities = np.stack([softmax(segment(deploy, im)) for im in images])
    _, best = evaluate(probabilities[:, 1], truth)
    return dict(best, iou=iou(probabilities.argmax(axis=1), truth.astype(int)))


def format_row(name, row, seconds=None):
    wall = f"{seconds:8.0f}" if seconds is not None else f"{'':>8}"
    measures = " | ".join(f"{row[m][0]:.{digits}f} ({row[m][1]:.1f})" for m, digits in
                          (("pixel_error", 4), ("rand_error", 4), ("warping_error", 6),
                           ("v_rand", 4), ("v_info", 4)))
    return f"| {name:<24} | {measures} | {row['iou'][0]:.4f} | {row['iou'][1]:.4f} | {wall} |"


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
    ap.add_argument("--torch-python", help="a Python with torch and h5py: also train "
                    "bench/isbi_torch.py's PyTorch U-Net on the same tiles, from the same weights")
    args = ap.parse_args()
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    out = args.out.resolve()
    images, truth = write_split(args.data.resolve(), out)
    os.chdir(out)                                   # the nets read data/... relative paths
    Path("train.prototxt").write_text(tiff_train_text("isbi", 4, args.channels, args.size))
    Path("solver.prototxt").write_text(solver_text("train.prototxt", args.lr, checkpoints[-1],
                                                   checkpoints[-1], "snapshots/isbi"))
    solver = get_solver(parse_file("solver.prototxt", "SolverParameter"), gpu=args.gpu)
    deploy = deploy_net(args)
    solver.share_weights(deploy)                    # the deploy net reads the weights as they train
    grey = as_channel_images(normalize_grey(images, path="test-volume"), 1, "test-volume")
    curve = []
    solver.callbacks.append(lambda s: record_smoothed_loss(s, curve))
    if args.torch_python:
        solver.callbacks.append(TileRecorder("tiles.h5", solver, checkpoints[-1]))

    print(f"# ISBI 2012, train slices 1-20, test 21-25; {describe()}; on {device_name(args.gpu)}")
    print(f"# net: depth 4, {args.channels} base channels, {args.size} px tiles, "
          f"lr {args.lr}, momentum 0.99")
    print("| method (best (threshold)) | pixel error | Rand error | warping error | V_Rand "
          "| V_Info | IoU membrane | IoU cell | train s |")
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
    if args.torch_python:
        torch_row(args, grey, truth, solver.param.average_loss, checkpoints[-1])
    print(f"# training curve (loss, mean of {solver.param.average_loss} iterations): "
          f"{out / 'isbi-curve.svg'}")


class TileRecorder:
    """A solver callback that writes every tile the train net's data layer draws (data,
    label, weights), with the initial weights, each parameter's lr_mult and decay_mult, the
    solver's settings and the loss of every iteration, to HDF5: the same run, replayable by
    another framework (bench/isbi_torch.py)."""

    def __init__(self, path, solver, iterations):
        net, self.iterations = solver.net, iterations
        self.file = h5py.File(path, "w")
        for name in ("data", "label", "weights"):
            self.file.create_dataset(name, (iterations,) + net.blobs[name].shape, "f4")
        self.file.create_dataset("loss", (iterations,), "f8")
        for layer, blobs in net.params.items():
            for i, blob in enumerate(blobs):
                self.file[f"init/{layer}/{i}"] = to_numpy(blob.data)
        index = {id(b): i for i, b in enumerate(net.learnable_params)}
        for layer, blobs in net.params.items():
            self.file[f"mults/{layer}"] = [[net.lr_mults[index[id(b)]],
                                            net.decay_mults[index[id(b)]]] for b in blobs]
        for field in ("base_lr", "momentum", "weight_decay"):
            self.file.attrs[field] = getattr(solver.param, field)

    def __call__(self, solver):
        i = solver.iter - 1
        if i >= self.iterations:
            return
        for name in ("data", "label", "weights"):
            self.file[name][i] = to_numpy(solver.net.blobs[name].data)
        self.file["loss"][i] = solver.net.loss
        if i == self.iterations - 1:
            self.file.close()


def window_means(losses, window):
    """(i, mean of losses[i - window:i]) for i = window, 2 window, ...: Caffe's smoothed loss
    at those iterations."""
    return [(i, float(np.mean(losses[i - window:i])))
            for i in range(window, len(losses) + 1, window)]


def deploy_net(args):
    """The forward-only net that segments the test slices by overlap-tile."""
    net = Net(parse(deploy_text("isbi", 4, args.channels, size=args.tile), "NetParameter"), TEST,
              gpu=args.gpu)
    net.release_activations = True
    return net


def torch_row(args, grey, truth, window, iterations):
    """Train bench/isbi_torch.py's U-Net on the recorded tiles, score it as unetcore's net is
    scored, and draw both loss curves in one picture."""
    script = ROOT / "bench" / "isbi_torch.py"
    done = subprocess.run([args.torch_python, str(script), "tiles.h5", "torch.h5"],
                          capture_output=True, text=True)
    if done.returncode:
        print(f"# PyTorch run failed: {done.stderr.strip().splitlines()[-1:]}")
        return
    print("# " + done.stdout.strip())
    torch_net = deploy_net(args)
    torch_net.copy_from("torch.h5", strict=True)
    with h5py.File("torch.h5", "r") as f:
        torch_losses, seconds = f["loss"][()], f.attrs["seconds"]
    with h5py.File("tiles.h5", "r") as f:
        our_losses = f["loss"][()]
    print(format_row(f"PyTorch, iter {iterations}", network_row(torch_net, grey, truth), seconds))
    plot_svg({"unetcore": window_means(our_losses, window),
              "PyTorch, same tiles": window_means(torch_losses, window), "lr": []},
             "isbi-curves-unetcore-pytorch.svg")
    gap = np.abs(np.array(window_means(our_losses, window)) -
                 np.array(window_means(torch_losses, window)))[:, 1]
    print(f"# loss curves (means of {window}): largest gap {gap.max():.4f}, median "
          f"{np.median(gap):.4f}; isbi-curves-unetcore-pytorch.svg")


def record_smoothed_loss(solver, curve):
    """The solver's own smoothed loss (the mean over its average_loss window, as Caffe logs
    it), once per window."""
    if solver.iter % solver.param.average_loss == 0:
        curve.append((solver.iter, solver.smoothed_loss))


if __name__ == "__main__":
    main()
