"""The ISBI 2012 measures' speed (issue 31): every measure (pixel, Rand and warping error,
V_Rand and V_Info) at every threshold, as `unetcore score` computes them, on 5 slices of
512 x 512. Target: at most 10 s on the 2-core host of docs/benchmarks.md.

The maps scored: the cell probabilities that the demo net trained 3000 iterations on slices
1-20 (tests/data) predicts for slices 21-25 of ../shared/data/isbi2012, and the same map
thresholded at 0.5 (a binary map: every pixel ties, the warp's slowest order). Without the
ISBI data, 5 synthetic slices (`unetcore synth`) and their blurred, noisy labels. Medians of
the repeats; the segmentation that makes the map is not timed.

    python bench/score.py [--data ../shared/data/isbi2012] [--repeats 3]
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from host import describe
from unetcore.measures.isbi import MEASURES, evaluate

REPO = Path(__file__).resolve().parents[1]
SLICES = slice(20, 25)


def net_map(data):
    """(cell probabilities, labels) of ISBI slices 21-25, from the demo net in tests/data."""
    from unetcore.data.stacks import normalize_grey
    from unetcore.net import Net
    from unetcore.inference.tiling import as_channel_images, segment, softmax
    images = tifffile.imread(data / "train-volume.tif")[SLICES]
    labels = tifffile.imread(data / "train-labels.tif")[SLICES] > 0
    net = Net(REPO / "prototxt" / "unet-demo-deploy.prototxt", "TEST",
              weights=REPO / "tests" / "data" / "isbi-demo_iter_3000.caffemodel.h5")
    net.release_activations = True
    grey = as_channel_images(normalize_grey(images, path="train-volume.tif"), 1)
    return np.stack([softmax(segment(net, image))[1] for image in grey]), labels


def synthetic_map():
    """(blurred labels with smooth noise, labels) of 5 synthetic 512 x 512 slices."""
    from unetcore.data.synth import synth_stack
    _, labels = synth_stack(5, 512, seed=0)
    labels = labels > 0
    noise = np.random.default_rng(0).normal(size=labels.shape)
    blurred = np.stack([ndimage.gaussian_filter(c * 1.0, 2) for c in labels])
    smooth = np.stack([ndimage.gaussian_filter(n, 4) for n in noise])
    return np.clip(blurred + smooth, 0, 1).astype(np.float32), labels


def median_seconds(probabilities, labels, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, best = evaluate(probabilities, labels)
        times.append(time.perf_counter() - start)
    return statistics.median(times), best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "isbi2012")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    isbi = (args.data / "train-labels.tif").exists()
    probabilities, labels = net_map(args.data) if isbi else synthetic_map()
    source = "ISBI 2012 slices 21-25, the demo net's map" if isbi else "synthetic slices"
    print(f"# {describe()}; {source}, {labels.shape[0]} x {labels.shape[1]} x "
          f"{labels.shape[2]}, medians of {args.repeats}")
    print("| map | seconds | pixel error | Rand error | warping error | V_Rand | V_Info |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, cells in (("probabilities", probabilities),
                        ("thresholded at 0.5", (probabilities > 0.5).astype(np.float32))):
        seconds, best = median_seconds(cells, labels, args.repeats)
        values = " | ".join(f"{best[m][0]:.6f} ({best[m][1]:.1f})" for m in MEASURES)
        print(f"| {name} | {seconds:.2f} | {values} |", flush=True)


if __name__ == "__main__":
    main()
