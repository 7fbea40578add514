"""CPU benchmark of a 3-d U-Net: unetcore, and the same net in PyTorch (Conv3d) in the same run.

Prints the host (CPU model, vector extensions, same-run SGEMM rate) and, for one tile,
batch 1, float32, N threads, the forward and train step (forward, backward, SGD update)
medians, peak resident memory (each mode in its own child process), GFLOP/s from the
multiply-adds the net does, and the ratios. Default: the snemi_v6-style EM net
(prototxt/unet3d-em-*, depth 4, 32 channels, two 1x3x3 levels) at its 44 x 268 x 268 tile;
--isotropic runs the net isotropic at Çiçek et al.'s 3D U-Net tile (depth 3, 32 channels,
every level 3x3x3 with 2x2x2 pooling, 116 x 132 x 132 -> 28 x 44 x 44; Çiçek's net also
doubles the channels within each level and has batch normalization). The two frameworks
take turns, --rounds times.

Usage:  python bench/unet3d.py [--isotropic] [--threads 2] [--rounds 2]
                               [--torch-python /tmp/torchvenv/bin/python]
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import unetcore  # noqa: F401  (before NumPy, as in the unetcore command)
import numpy as np

from host import describe, sgemm_rate, thread_env

HERE = Path(__file__).resolve().parent
EM = dict(tile=(44, 268, 268), depth=4, channels=32, flat_levels=2)
ISOTROPIC = dict(tile=(116, 132, 132), depth=3, channels=32, flat_levels=0)


def measure(mode, net_spec, repeats):
    """Run in a child: the median of one mode of unetcore, its peak RSS and FLOP count."""
    from unetcore.models import unet3d
    from unetcore.net import Net
    from unetcore.formats.prototxt import parse
    from unetcore.tools.timing import net_macs
    text = unet3d.inputs_train_text("bench", **net_spec)
    rng = np.random.default_rng(0)
    if mode == "forward":
        net = Net(parse(unet3d.deploy_text("bench", **net_spec), "NetParameter"), "TEST")
        net.set_inputs({"d0a": rng.random((1, 1, *net_spec["tile"]))})
        net.release_activations = True
        run, flops = net.forward_layers, 2 * net_macs(net)
    else:
        from unetcore.formats.prototxt import Message
        from unetcore.solvers import get_solver
        param = Message("SolverParameter")
        param.set("net_param", parse(text, "NetParameter"))
        # It never snapshots, but the prefix must not be a folder (the net's name, "bench",
        # is one where this runs from the repository's root).
        for field, value in (("base_lr", 1e-4), ("momentum", 0.99), ("random_seed", 0),
                             ("snapshot_prefix", str(Path(tempfile.gettempdir()) / "unet3d"))):
            param.set(field, value)
        solver = get_solver(param)
        out = solver.net.blobs["label"].shape
        solver.net.set_inputs({"d0a": rng.random((1, 1, *net_spec["tile"])),
                               "label": rng.integers(0, 2, out),
                               "weights": 1 + 9 * rng.random(out)})
        run, flops = (lambda: solver.step(1)), 3 * 2 * net_macs(solver.net)   # noqa: E731
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        run()
        if i:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"median_s": median, "times_s": times, "gflops": flops / median / 1e9,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ours(mode, spec_name, threads, repeats):
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--net", spec_name,
                          "--repeats", str(repeats)], env=thread_env(threads),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def theirs(python, mode, spec, threads, repeats):
    out = subprocess.run([python, str(HERE / "unet3d_torch.py"), "--mode", mode, "--tile",
                          *map(str, spec["tile"]), "--depth", str(spec["depth"]),
                          "--channels", str(spec["channels"]), "--flat-levels",
                          str(spec["flat_levels"]), "--threads", str(threads), "--repeats",
                          str(repeats)], env=thread_env(threads), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isotropic", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--torch-python", help="a python that has torch (separate venv)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--net", default="em", help=argparse.SUPPRESS)
    args = ap.parse_args()
    spec_name = "isotropic" if args.isotropic else args.net
    spec = {"em": EM, "isotropic": ISOTROPIC}[spec_name]
    if args.child:
        print(json.dumps(measure(args.child, spec, args.repeats)))
        return
    print(f"host: {describe(sgemm_rate())}")
    print(f"3-d U-Net {spec}, batch 1, float32, {args.threads} threads, {args.rounds} rounds")
    print(f"{'mode':<9}{'who':<10}{'median s':>10}{'GFLOP/s':>9}{'RSS MB':>9}{'ratio':>8}")
    for mode in ("forward", "train"):
        runs = {"unetcore": [], "torch": []}
        for _ in range(args.rounds):
            runs["unetcore"].append(ours(mode, spec_name, args.threads, args.repeats))
            if args.torch_python:
                runs["torch"].append(theirs(args.torch_python, mode, spec, args.threads,
                                            args.repeats))
        ratios = [a["median_s"] / b["median_s"] for a, b in zip(runs["unetcore"], runs["torch"])]
        for who, rows in runs.items():
            if not rows:
                continue
            median = statistics.median(t for r in rows for t in r["times_s"])
            rate = statistics.median(r["gflops"] * r["median_s"] for r in runs["unetcore"])
            ratio = f"{statistics.median(ratios):.2f}x" if who == "unetcore" and ratios else ""
            print(f"{mode:<9}{who:<10}{median:>10.3f}{rate / median:>9.1f}"
                  f"{max(r['rss_mb'] for r in rows):>9.0f}{ratio:>8}")


if __name__ == "__main__":
    main()
