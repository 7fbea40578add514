"""`caffe_unet tiled_predict` as the Fiji U-Net plugin runs it, on one 512 x 512 image, with
LMB's 2d_cell_net_v0 model file (../shared/data/fiji-models) and random weights of its layout
(the trained ones are not public here). Wall time of the whole command (Python start, model,
weights, tiles, output) for the plugin's default tiling and for one tile, the median of
`--repeats` runs, with the host line.

    python bench/fiji.py [--repeats 3]
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import unetcore  # noqa: F401  (before NumPy: OpenBLAS threads sleep, as in the command)
from host import REPO, describe, sgemm_rate  # noqa: E402

MODEL = REPO.parent / "shared" / "data" / "fiji-models" / "2d_cell_net_v0.modeldef.h5"
TILINGS = {"-tile_size 164x164 (the plugin's default)": ["-tile_size", "164x164"],
           "-n_tiles 1": ["-n_tiles", "1"]}


def prepare(folder):
    """The backend's scripts, random weights of the model's layout, a 512 x 512 image."""
    import numpy as np
    from unetcore.gradcheck import randomize_params
    from unetcore.fiji.modeldef import caffe_unet_net, read_modeldef
    subprocess.run([sys.executable, "-m", "unetcore", "fiji-backend", str(folder / "bin")],
                   check=True, capture_output=True)
    net = caffe_unet_net(read_modeldef(MODEL), 1, (348, 348))
    randomize_params(net, np.random.default_rng(0))
    net.save(folder / "weights.caffemodel.h5")
    image = np.random.default_rng(1).random((1, 1, 512, 512), dtype=np.float32)
    return folder / "bin" / "caffe_unet", folder / "weights.caffemodel.h5", image


def run_once(caffe_unet, weights, image, tiling, folder):
    import h5py
    job = folder / "job.h5"
    with h5py.File(job, "w") as f:                 # the plugin's job file, rewritten each run
        f["data"] = image
        f["data"].attrs["element_size_um"] = [0.5, 0.5]
    start = time.perf_counter()
    subprocess.run([str(caffe_unet), "tiled_predict", "-infileH5", str(job), "-outfileH5",
                    str(job), "-model", str(MODEL), "-weights", str(weights), "-iterations",
                    "0", *tiling], check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not MODEL.exists():
        sys.exit(f"{MODEL} is missing: this benchmark needs LMB's model file")
    print(f"host: {describe(sgemm_rate())}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        caffe_unet, weights, image = prepare(folder)
        for name, tiling in TILINGS.items():
            times = [run_once(caffe_unet, weights, image, tiling, folder)
                     for _ in range(args.repeats)]
            print(f"{name}: median {statistics.median(times):.1f} s "
                  f"({', '.join(f'{t:.1f}' for t in times)})", flush=True)


if __name__ == "__main__":
    main()
