"""Segmentation throughput: one image by overlap-tile, as `unetcore segment` runs it, at
several tile sizes, and PyTorch running the same tiles in the same batches (issue 23, item 5).

unetcore: `unetcore.inference.tiling.segment` on the deploy net with random weights (the time does not
depend on them), tiles batched as `--memory` allows, as the command does. PyTorch (a child
process in a Python that has torch): ../shared/bench/torch_unet.py's U-Net with the same
channels, in eval mode without gradients, on the same tiles (the mirrored image cut at the
same origins), in the same batches. Medians of the repeats after one warm-up.

    python bench/segment.py [--model prototxt/unet-demo-deploy.prototxt] [--size 2048]
                            [--tiles 316 572 1084 auto] [--torch-python /tmp/torchvenv/bin/python]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import unetcore  # noqa: F401  (before NumPy: OpenBLAS threads sleep, as in the command)
except ImportError:  # the PyTorch child runs in a Python without unetcore
    pass
import numpy as np

from host import describe, sgemm_rate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TORCH_SCRIPT = REPO.parent / "shared" / "bench" / "torch_unet.py"


def unetcore_net(model, tile, size, memory_mb):
    """The deploy net at `tile`, or at the tile `auto_tile` picks for a size x size image."""
    from unetcore.inference.deploy import square_input
    from unetcore.net import Net
    from unetcore.inference.tiling import auto_tile
    net = Net(model, "TEST", seed=0)
    net.release_activations = True
    if tile == "auto":
        tile = auto_tile(net, [(1, size, size)], memory_mb * 2 ** 20)
    square_input(net, model, int(tile))
    return net, int(tile)


def time_unetcore(model, tile, size, memory_mb, repeats):
    """(tile, seconds per repeat, tiles, batch) of segmenting a size x size image."""
    from unetcore.inference.tiling import segment, tile_geometry, tile_origins, tiles_per_batch
    net, tile = unetcore_net(model, tile, size, memory_mb)
    image = np.random.default_rng(0).random((1, size, size), dtype=np.float32)
    step = tile_geometry(net, net.image_input, net.outputs[0])[3]
    count = len(tile_origins((size, size), (step, step)))
    batch = tiles_per_batch(net, net.image_input, memory_mb * 2 ** 20, count)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        segment(net, image, batch)
        times.append(time.perf_counter() - start)
    return tile, times[1:], count, batch, channels_of(net)


def channels_of(net):
    """The base channel count (the first convolution's outputs) and the depth."""
    convs = [l for l in net.layers if l.type == "Convolution"]
    pools = [l for l in net.layers if l.type == "Pooling"]
    return convs[0].num_output, len(pools)


def torch_child(spec_path, out_path):
    """In the PyTorch Python: time the same tiles through torch_unet's U-Net."""
    import torch
    sys.path.insert(0, str(TORCH_SCRIPT.parent))
    import torch_unet
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    base, depth = spec["channels"]
    torch_unet.CHANNELS = tuple(base * 2 ** i for i in range(depth + 1))
    model = torch_unet.UNet().eval()
    tile, size, step, batch = spec["tile"], spec["size"], spec["step"], spec["batch"]
    margin = (tile - spec["out"]) // 2
    rows = -(-size // step)
    needed = (rows - 1) * step + tile
    image = np.random.default_rng(0).random((1, size, size), dtype=np.float32)
    after = needed - size - margin
    padded = np.pad(image, [(0, 0), (margin, after), (margin, after)], mode="reflect")
    origins = [(y, x) for y in range(0, size, step) for x in range(0, size, step)]
    times = []
    with torch.no_grad():
        for _ in range(spec["repeats"] + 1):
            start = time.perf_counter()
            for first in range(0, len(origins), batch):
                group = origins[first:first + batch]
                tiles = np.stack([padded[:, y:y + tile, x:x + tile] for y, x in group])
                model(torch.from_numpy(tiles)).numpy()
            times.append(time.perf_counter() - start)
    Path(out_path).write_text(json.dumps(times[1:]))


def time_torch(python, spec):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        subprocess.run([python, __file__, "--torch-child", str(Path(tmp) / "spec.json"),
                        str(Path(tmp) / "out.json")], check=True)
        return json.loads((Path(tmp) / "out.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(REPO / "prototxt" / "unet-demo-deploy.prototxt"))
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tiles", nargs="+", default=["316", "572", "1084", "auto"])
    ap.add_argument("--memory", type=int, default=1024, help="MiB, as segment's --memory")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-python")
    ap.add_argument("--torch-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        torch_child(*args.torch_child)
        return
    print(f"# {describe(sgemm_rate())}; {Path(args.model).name}, a {args.size} x {args.size} "
          f"image, --memory {args.memory}, {args.threads} threads, medians of {args.repeats}")
    print("| tile | tiles | batch | unetcore s | Mpx/s | PyTorch s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for asked in args.tiles:
        tile, times, count, batch, channels = time_unetcore(args.model, asked, args.size,
                                                            args.memory, args.repeats)
        ours = statistics.median(times)
        theirs, ratio = float("nan"), float("nan")
        if args.torch_python:
            from unetcore.models.unet import output_size
            out = output_size(tile, channels[1])
            step = 2 ** channels[1] * (out // 2 ** channels[1])
            spec = {"tile": tile, "out": out, "step": step, "size": args.size, "batch": batch,
                    "channels": channels, "threads": args.threads, "repeats": args.repeats}
            theirs = statistics.median(time_torch(args.torch_python, spec))
            ratio = ours / theirs
        label = f"{tile} (auto)" if asked == "auto" else str(tile)
        print(f"| {label} | {count} | {batch} | {ours:.2f} | {args.size ** 2 / ours / 1e6:.2f} | "
              f"{theirs:.2f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
