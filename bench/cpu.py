"""CPU benchmark of the 2015 U-Net: unetcore, and PyTorch in the same run where available.

Prints, for one tile (default 572 -> 388), batch 1, float32, N threads:
  forward and train step (forward + backward + SGD update) medians, GFLOP/s from the
  multiply-adds the net does, peak resident memory (each mode in its own child process),
  the machine's SGEMM rate and the best and median forward rate of the convolution layers
  as a fraction of it; and with --torch-python (a python with torch, e.g. a separate venv)
  the same figures for ../shared/bench/torch_unet.py's U-Net and the ratios.

On a shared machine the speed of both frameworks drifts over minutes. With --rounds R
the two take turns, R times, mode by mode: each ratio is the median over the rounds of
the ratio of two medians measured back to back, and the medians pool every round's runs.

With --contention it measures the train step instead quiet, then beside a CPU-bound process
(a busy loop), for unetcore and PyTorch, and prints each one's slowdown.

Usage:  python bench/cpu.py [--tile 572] [--threads 2] [--rounds 3] [--contention]
                            [--torch-python /tmp/torchvenv/bin/python]
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import unetcore  # noqa: F401  (before NumPy, as in the unetcore command: OpenBLAS threads sleep)
import numpy as np

from host import describe, thread_env

REPO = Path(__file__).resolve().parent.parent
TORCH_SCRIPT = REPO.parent / "shared" / "bench" / "torch_unet.py"


NET = str(REPO / "prototxt" / "unet-train-inputs.prototxt")


def fill_inputs(net, tile):
    out = tile - 184
    rng = np.random.default_rng(0)
    net.set_inputs({"data": rng.random((1, 1, tile, tile)),
                    "label": rng.integers(0, 2, (1, 1, out, out)),
                    "weights": 1 + 9 * rng.random((1, 1, out, out))})
    return net


def measure(mode, tile, repeats, warmup=1):
    """Run in a child: medians of one mode, its peak RSS, and its FLOP count."""
    from unetcore.net import Net
    from unetcore.tools.timing import net_macs
    if mode == "forward":
        net = fill_inputs(Net(NET, "TEST", seed=0), tile)
        net.release_activations = True           # forward only, as unetcore segment runs
        run, flops = net.forward_layers, 2 * net_macs(net)
    elif mode == "train":
        from unetcore.formats.prototxt import Message
        from unetcore.solvers import get_solver
        param = Message("SolverParameter")
        for field, value in (("net", NET), ("base_lr", 1e-4), ("momentum", 0.99),
                             ("random_seed", 0)):
            param.set(field, value)
        solver = get_solver(param)
        net = fill_inputs(solver.net, tile)
        first = net.layers[1].blobs[0]                 # conv_d0a-b: no gradient of the data
        run = lambda: solver.step(1)                   # noqa: E731
        flops = 2 * net_macs(net) * 3 - 2 * first.count * (tile - 2) ** 2
    elif mode == "layers":
        from unetcore.tools.timing import layer_macs, time_layers
        net = fill_inputs(Net(NET, "TRAIN", seed=0), tile)
        times = time_layers(net, repeats)
        rates = [2 * layer_macs(l, b, t) / times[l.name][0] / 1e9 for l, b, t in
                 zip(net.layers, net.bottom_vecs, net.top_vecs) if l.type == "Convolution"]
        return {"conv_forward_gflops": rates, "rss_mb": peak_rss_mb()}
    elif mode == "sgemm":
        a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
        run, flops = (lambda: a @ a), 2 * 2048 ** 3
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        run()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "n": repeats, "times_s": times, "gflops": flops / statistics.median(times) / 1e9,
            "rss_mb": peak_rss_mb()}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(mode, tile, repeats, threads):
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--tile", str(tile),
                          "--repeats", str(repeats)], env=thread_env(threads),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_figures(python, mode, tile, threads, repeats):
    """One mode of ../shared/bench/torch_unet.py, in the same format as `measure`."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([python, str(TORCH_SCRIPT), "--tiles", str(tile), "--threads",
                        str(threads), "--modes", mode, "--repeats", str(repeats),
                        "--train-repeats", str(repeats), "--json", f.name], check=True,
                       capture_output=True, text=True)
        r = json.load(open(f.name))["results"][0]
    return {"median_s": r["median_s"], "min_s": r["min_s"], "max_s": r["max_s"],
            "times_s": r["times_s"], "gflops": r["gflops_per_s_median"],
            "rss_mb": r["peak_rss_mib"]}


def pooled(runs):
    """One row of figures from the runs of several rounds: medians over all their times."""
    times = [t for run in runs for t in run["times_s"]]
    median = statistics.median(times)
    flops = runs[0]["gflops"] * runs[0]["median_s"]
    return {"median_s": median, "min_s": min(times), "max_s": max(times),
            "gflops": flops / median, "rss_mb": max(run["rss_mb"] for run in runs),
            "rounds": runs}


def take_turns(args):
    """Each mode, round after round: unetcore, then PyTorch right after (if given)."""
    runs = {(who, mode): [] for who in ("unetcore", "torch") for mode in ("forward", "train")}
    for _ in range(args.rounds):
        for mode, repeats in (("forward", args.repeats), ("train", args.train_repeats)):
            runs["unetcore", mode].append(in_child(mode, args.tile, repeats, args.threads))
            if args.torch_python:
                runs["torch", mode].append(torch_figures(args.torch_python, mode, args.tile,
                                                         args.threads, repeats))
    return {key: pooled(value) for key, value in runs.items() if value}


def contention(args):
    """The train step quiet and beside a CPU-bound process: each framework's slowdown."""
    rows = {}
    for state in ("quiet", "busy"):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) \
            if state == "busy" else None
        try:
            rows["unetcore", state] = in_child("train", args.tile, args.train_repeats,
                                               args.threads)
            if args.torch_python:
                rows["torch", state] = torch_figures(args.torch_python, "train", args.tile,
                                                     args.threads, args.train_repeats)
        finally:
            if hog:
                hog.kill()
                hog.wait()
    print(f"host: {describe()}")
    print(f"train step at {args.tile}, {args.threads} threads, quiet and beside a busy loop")
    print(f"{'':<10}{'quiet s':>9}{'busy s':>9}{'slowdown':>10}")
    for who in ("unetcore", "torch"):
        if (who, "quiet") in rows:
            quiet, busy = rows[who, "quiet"]["median_s"], rows[who, "busy"]["median_s"]
            print(f"{who:<10}{quiet:>9.3f}{busy:>9.3f}{busy / quiet:>9.2f}x")
    return {f"{who} {state}": r for (who, state), r in rows.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=572)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--torch-python", help="a python that has torch (separate venv)")
    ap.add_argument("--contention", action="store_true",
                    help="the train step quiet and beside a CPU-bound process, both frameworks")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.tile, args.repeats)))
        return
    if args.contention:
        figures = contention(args)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))
        return
    figures = {"environment": {"machine": platform.processor() or platform.machine(),
                               "cpus": os.cpu_count(), "numpy": np.__version__,
                               "python": platform.python_version(), "threads": args.threads}}
    ours = {m: in_child(m, args.tile, r, args.threads) for m, r in (("sgemm", 5), ("layers", 3))}
    turns = take_turns(args)
    for mode in ("forward", "train"):
        ours[mode] = turns["unetcore", mode]
    figures["unetcore"] = ours
    sgemm = ours["sgemm"]["gflops"]
    figures["host"] = describe(sgemm)
    print(f"host: {figures['host']}")
    print(f"environment: {figures['environment']}")
    print(f"U-Net {args.tile} -> {args.tile - 184}, batch 1, float32, {args.threads} threads")
    print(f"{'':<22}{'median s':>10}{'min s':>9}{'max s':>9}{'GFLOP/s':>9}{'peak MB':>9}")
    rows = [("unetcore forward", ours["forward"]), ("unetcore train step", ours["train"])]
    if args.torch_python:
        theirs = figures["torch"] = {mode: turns["torch", mode] for mode in ("forward", "train")}
        rows += [("torch forward", theirs["forward"]), ("torch train step", theirs["train"])]
    for name, r in rows:
        print(f"{name:<22}{r['median_s']:>10.3f}{r['min_s']:>9.3f}{r['max_s']:>9.3f}"
              f"{r['gflops']:>9.1f}{r['rss_mb']:>9.0f}")
    rates = ours["layers"]["conv_forward_gflops"]
    print(f"convolution layers, forward: best {max(rates):.1f} GFLOP/s "
          f"({max(rates) / sgemm:.0%} of SGEMM), median {statistics.median(rates):.1f} "
          f"({statistics.median(rates) / sgemm:.0%})")
    if args.torch_python:
        for mode, key in (("forward", "forward"), ("train step", "train")):
            ratios = [a["median_s"] / b["median_s"] for a, b in
                      zip(ours[key]["rounds"], theirs[key]["rounds"])]
            rounds = ", ".join(f"{r:.2f}" for r in ratios)
            spread = f" (rounds: {rounds})" if len(ratios) > 1 else ""
            print(f"ratio unetcore/torch {mode}: time {statistics.median(ratios):.2f}x{spread}, "
                  f"peak memory {ours[key]['rss_mb'] / theirs[key]['rss_mb']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
