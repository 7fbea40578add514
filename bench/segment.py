"""Segmentation throughput: one image by overlap-tile, as `unetcore segment` runs it, at
several tile sizes, with the net's forward passes in unetcore's NumPy net, in ONNX Runtime
(`--runtime onnxruntime`), and in PyTorch on the same tiles in the same batches (issues 23
and 34).

unetcore: `unetcore.inference.tiling.segment` on the deploy net with random weights (the time
does not depend on them), tiles batched as `--memory` allows, as the command does; once with
the Net, once with `inference.runtimes.OnnxRuntimeNet` around it (the same tiling, mirroring
and stitching, ONNX Runtime's CPU provider for the forward passes). PyTorch: a child process
in a Python that has torch runs ../shared/bench/torch_unet.py's U-Net with the same channels,
in eval mode without gradients, on the same tiles (the mirrored image cut at the same
origins), in the same batches. All three use `--threads` threads.

The machine's speed drifts, so the three take turns: each round times NumPy, ONNX Runtime,
then PyTorch, after one warm-up each. ONNX Runtime's idle threads sleep (`spinning=False`):
spinning, they kept cores from the PyTorch run after them, which then took up to 1.4x as long
(docs/benchmarks.md). Each time is the median over the rounds; each ratio
the median over the rounds of the two times of the same round. Where that Python cannot
import torch, the two unetcore columns are printed, and PyTorch is said not to be measured.

    python bench/segment.py [--model prototxt/unet-demo-deploy.prototxt] [--size 2048]
                            [--tiles 316 572 1084 auto] [--rounds 3] [--threads 2]
                            [--torch-python /tmp/torchvenv/bin/python]

`--model prototxt/unet-deploy.prototxt --size 384 --tiles 572` times the 2015 net's forward
at 572: a 384 x 384 image is one 572 tile (its output, 388, covers it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# As the `unetcore` command does (unetcore/__main__.py), before NumPy loads: OpenBLAS's
# threads sleep between GEMMs instead of spinning on the cores the NumPy work between needs.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
import numpy as np  # noqa: E402

from host import describe, sgemm_rate, thread_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TORCH_SCRIPT = REPO.parent / "shared" / "bench" / "torch_unet.py"
RUNTIMES = ("NumPy", "ONNX Runtime", "PyTorch")


def benchmark_image(size):
    """The image every runtime segments: one channel, size x size, the same in each process."""
    return np.random.default_rng(0).random((1, size, size), dtype=np.float32)


def unetcore_net(model, tile, size, memory_mb):
    """The deploy net at `tile`, or at the tile `auto_tile` picks for a size x size image."""
    from unetcore.inference.deploy import square_input
    from unetcore.inference.tiling import auto_tile
    from unetcore.net import Net
    net = Net(model, "TEST", seed=0)
    net.release_activations = True
    if tile == "auto":
        tile = auto_tile(net, [(1, size, size)], memory_mb * 2 ** 20)
    square_input(net, model, int(tile))
    return net


def tiling_spec(net, size, memory_mb):
    """The tiles of a size x size image as the command cuts and batches them."""
    from unetcore.inference.tiling import tile_geometry, tile_origins, tiles_per_batch
    tile, out, _, step = tile_geometry(net, net.image_input, net.outputs[0])
    count = len(tile_origins((size, size), (step, step)))
    convs = [layer for layer in net.layers if layer.type == "Convolution"]
    depth = sum(layer.type == "Pooling" for layer in net.layers)
    return {"tile": tile, "out": out, "step": step, "size": size, "count": count,
            "batch": tiles_per_batch(net, net.image_input, memory_mb * 2 ** 20, count),
            "channels": [convs[0].num_output, depth]}


def use_blas_threads(threads):
    """NumPy's OpenBLAS at `threads` threads, as ONNX Runtime and PyTorch are given."""
    from unetcore.threads import numpy_openblas
    blas = numpy_openblas()
    if blas is not None:
        blas.threads = threads


def timer(function, *args):
    """A runner: a function that returns the seconds of one call of function(*args)."""
    def run():
        start = time.perf_counter()
        function(*args)
        return time.perf_counter() - start
    return run


class TorchChild:
    """PyTorch in a child process (the Python of `--torch-python`), holding the model and the
    mirrored image between rounds: each round() asks it for the seconds of one pass over
    the tiles. Idle, it waits on its input and takes no CPU."""

    def __init__(self, python, spec, threads):
        self.process = subprocess.Popen(
            [python, __file__, "--torch-child", json.dumps(dict(spec, threads=threads))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=thread_env(threads))

    def round(self):
        self.process.stdin.write("round\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def torch_child(spec):
    """In the PyTorch Python: build the U-Net and the tiles, then answer each line on stdin
    with the seconds of one pass over the tiles, until stdin closes."""
    import torch
    sys.path.insert(0, str(TORCH_SCRIPT.parent))
    import torch_unet
    torch.set_num_threads(spec["threads"])
    base, depth = spec["channels"]
    torch_unet.CHANNELS = tuple(base * 2 ** i for i in range(depth + 1))
    model = torch_unet.UNet().eval()
    tiles = torch_batches(spec)
    with torch.no_grad():
        for _ in sys.stdin:
            start = time.perf_counter()
            for batch in tiles:
                model(torch.from_numpy(np.stack(batch))).numpy()
            print(time.perf_counter() - start, flush=True)


def torch_batches(spec):
    """The tiles of the mirrored test image in the command's batches, as lists of views (the
    pass stacks each batch, as tiling.segment_canvas does)."""
    tile, size, step, batch = spec["tile"], spec["size"], spec["step"], spec["batch"]
    margin = (tile - spec["out"]) // 2
    after = (-(-size // step) - 1) * step + tile - size - margin
    padded = np.pad(benchmark_image(size), [(0, 0), (margin, after), (margin, after)],
                    mode="reflect")
    origins = [(y, x) for y in range(0, size, step) for x in range(0, size, step)]
    return [[padded[:, y:y + tile, x:x + tile] for y, x in origins[first:first + batch]]
            for first in range(0, len(origins), batch)]


def load():
    """The host's load averages over 1, 5 and 15 minutes: above the thread count, other work
    shares the cores and the figures are noisy."""
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def can_import_torch(python):
    return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0


def take_turns(runners, rounds):
    """{runtime: [seconds per round]}: each runner warmed up once, then all in turn."""
    for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            times[name].append(run())
    return times


def measure(args, asked, torch_python):
    """(tiling spec, {runtime: [seconds per round]}) of one tile size."""
    from unetcore.inference.runtimes import OnnxRuntimeNet
    from unetcore.inference.tiling import segment
    net = unetcore_net(args.model, asked, args.size, args.memory)
    spec = tiling_spec(net, args.size, args.memory)
    image, batch = benchmark_image(args.size), spec["batch"]
    runners = {"NumPy": timer(segment, net, image, batch)}
    if not args.without_onnxruntime:
        wrapped = OnnxRuntimeNet(net, threads=args.threads, spinning=False)
        runners["ONNX Runtime"] = timer(segment, wrapped, image, batch)
    child = TorchChild(torch_python, spec, args.threads) if torch_python else None
    if child:
        runners["PyTorch"] = child.round
    try:
        return spec, take_turns(runners, args.rounds)
    finally:
        if child:
            child.close()


def row(asked, spec, times, size):
    """One line of the table: medians, Mpx/s of the fastest unetcore runtime, ratios."""
    label = f"{spec['tile']} (auto)" if asked == "auto" else str(spec["tile"])
    ours = [name for name in RUNTIMES[:2] if name in times]
    medians = {name: statistics.median(times[name]) for name in RUNTIMES if name in times}
    cells = [label, spec["count"], spec["batch"]] + [f"{m:.2f}" for m in medians.values()]
    cells.append(f"{size ** 2 / min(medians[name] for name in ours) / 1e6:.2f}")
    if "PyTorch" in times:
        for name in ours:
            ratios = [a / b for a, b in zip(times[name], times["PyTorch"])]
            cells.append(f"{statistics.median(ratios):.2f}")
    return "| " + " | ".join(map(str, cells)) + " |"


def header(with_onnxruntime, with_torch):
    ours = ["NumPy", "ONNX Runtime"] if with_onnxruntime else ["NumPy"]
    columns = ["tile", "tiles", "batch"] + [f"{name} s" for name in ours]
    columns += ["PyTorch s"] if with_torch else []
    columns += ["Mpx/s (best unetcore)"]
    columns += [f"{name} / PyTorch" for name in ours] if with_torch else []
    return "| " + " | ".join(columns) + " |\n" + "| --- " * len(columns) + "|"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(REPO / "prototxt" / "unet-demo-deploy.prototxt"))
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tiles", nargs="+", default=["316", "572", "1084", "auto"])
    ap.add_argument("--memory", type=int, default=1024, help="MiB, as segment's --memory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-python", default=sys.executable,
                    help="a Python that has torch (default: this one)")
    ap.add_argument("--without-onnxruntime", action="store_true",
                    help="time NumPy and PyTorch only: a process that holds an ONNX Runtime "
                         "session slows the PyTorch child (docs/benchmarks.md)")
    ap.add_argument("--torch-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        torch_child(json.loads(args.torch_child))
        return
    use_blas_threads(args.threads)
    torch_python = args.torch_python if can_import_torch(args.torch_python) else None
    print(f"# {describe(sgemm_rate())}; {Path(args.model).name}, a {args.size} x {args.size} "
          f"image, --memory {args.memory}, {args.threads} threads, medians of {args.rounds} "
          f"rounds; {load()} at the start")
    if torch_python is None:
        print(f"# PyTorch not measured: {args.torch_python} cannot import torch "
              "(give --torch-python)")
    print(header(not args.without_onnxruntime, torch_python is not None))
    for asked in args.tiles:
        spec, times = measure(args, asked, torch_python)
        print(row(asked, spec, times, args.size), flush=True)
    print(f"# {load()} at the end")


if __name__ == "__main__":
    main()
