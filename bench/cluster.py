"""Throughput of `unetcore segment` on a volume: the in-memory path (a TIFF stack, slice by
slice), the chunked path in this process (-o OUT.zarr), and dask LocalClusters of 1 and 2
worker processes (--workers), each a fresh run of the command on the same volume (issue 19).

The net is the README's demo net with random weights (the time does not depend on them); the
volume is random uint8 grey values. Each row is the command's wall time, start-up included,
the median of the repeats.

    python bench/cluster.py [--slices 4] [--size 1024] [--repeats 3]
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from host import describe, sgemm_rate

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "prototxt" / "unet-demo-deploy.prototxt"


def write_inputs(folder, slices, size):
    import tifffile
    import zarr

    from unetcore.gradcheck import randomize_params
    from unetcore.net import Net
    values = np.random.default_rng(0).integers(0, 256, (slices, size, size), dtype=np.uint8)
    tifffile.imwrite(folder / "in.tif", values, photometric="minisblack")
    zarr.create_array(str(folder / "in.zarr"), shape=values.shape, chunks=(1, 512, 512),
                      dtype=np.uint8)[...] = values
    net = Net(str(MODEL), "TEST")
    randomize_params(net, np.random.default_rng(0), scale=0.1)
    net.save(str(folder / "w.caffemodel.h5"))


def timed(command, folder, output):
    shutil.rmtree(folder / output, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tile", type=int, default=572)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base = [sys.executable, "-m", "unetcore", "segment", "--model", str(MODEL), "--weights",
            "w.caffemodel.h5", "--tile", str(args.tile), "--bits", "8"]
    runs = {"in memory (TIFF in and out)": base + ["in.tif", "-o", "out.tif"],
            "chunked, this process": base + ["in.zarr", "-o", "out.zarr"],
            "chunked, 1 worker": base + ["in.zarr", "-o", "out.zarr", "--workers", "1"],
            "chunked, 2 workers": base + ["in.zarr", "-o", "out.zarr", "--workers", "2"]}
    voxels = args.slices * args.size ** 2
    print(f"# {describe(sgemm_rate())}; {MODEL.name}, tile {args.tile}, a volume of "
          f"{args.slices} x {args.size} x {args.size} uint8, medians of {args.repeats}")
    print("| run | s | Mvoxel/s | against in memory |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder, args.slices, args.size)
        reference = None
        for name, command in runs.items():
            output = command[command.index("-o") + 1]
            seconds = statistics.median(timed(command, folder, output)
                                        for _ in range(args.repeats))
            reference = reference or seconds
            print(f"| {name} | {seconds:.2f} | {voxels / seconds / 1e6:.3f} | "
                  f"{seconds / reference:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
