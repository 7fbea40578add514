"""GPU benchmark of the 2015 U-Net at a 572 tile: unetcore on CuPy, and PyTorch in the same run
where it is installed (float32, TF32 off, cuDNN as PyTorch chooses).

Prints forward ms, train step (forward + backward + SGD update) ms, the peak of CuPy's memory
pool, and the time to segment a 512x512 image by overlap-tile: medians of --repeats runs
after a warm-up, timed with CUDA events.

Usage:  python bench/gpu.py [--repeats 10] [--gpu 0] [--json out.json]
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO.parent / "shared" / "bench"))


def cuda_median(cupy, run, repeats, warmup=2):
    times = []
    for i in range(warmup + repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        if i >= warmup:
            times.append(cupy.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def unetcore_figures(gpu, repeats):
    import cupy

    from unetcore.prototxt import Message
    from unetcore.solvers import get_solver
    from unetcore.net import Net
    from unetcore.tiling import segment
    pool = cupy.get_default_memory_pool()
    param = Message("SolverParameter")
    for field, value in (("net", str(REPO / "prototxt" / "unet-train-inputs.prototxt")),
                         ("base_lr", 1e-4), ("momentum", 0.99), ("random_seed", 0)):
        param.set(field, value)
    solver = get_solver(param, gpu=gpu)
    rng = np.random.default_rng(0)
    solver.net.set_inputs({"data": rng.random((1, 1, 572, 572)),
                           "label": rng.integers(0, 2, (1, 1, 388, 388)),
                           "weights": 1 + 9 * rng.random((1, 1, 388, 388))})
    figures = {"train_step_ms": cuda_median(cupy, lambda: solver.step(1), repeats),
               "train_pool_peak_mib": pool.total_bytes() / 2 ** 20}
    deploy = Net(str(REPO / "prototxt" / "unet-deploy.prototxt"), "TEST", gpu=gpu)
    deploy.set_inputs({"data": rng.random((1, 1, 572, 572))})
    figures["forward_ms"] = cuda_median(cupy, deploy.forward_layers, repeats)
    image = rng.random((1, 512, 512)).astype(np.float32)
    figures["segment_512_ms"] = cuda_median(cupy, lambda: segment(deploy, image, batch=4),
                                            max(3, repeats // 3))
    figures["pool_peak_mib"] = pool.total_bytes() / 2 ** 20
    return figures


def torch_figures(repeats):
    import torch
    from torch_unet import UNet, make_batch, weighted_cross_entropy
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = UNet().cuda()
    x, labels, weights = (t.cuda() for t in make_batch(572))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.99)

    def step():
        opt.zero_grad(set_to_none=False)
        weighted_cross_entropy(model(x), labels, weights).backward()
        opt.step()

    def timed(run):
        times = []
        for i in range(2 + repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            stop.record()
            torch.cuda.synchronize()
            if i >= 2:
                times.append(start.elapsed_time(stop))
        return statistics.median(times)

    torch.cuda.reset_peak_memory_stats()
    model.train()
    train = timed(step)
    model.eval()
    with torch.no_grad():
        forward = timed(lambda: model(x))
    return {"forward_ms": forward, "train_step_ms": train,
            "peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    from unetcore.backend import gpu_module
    cupy = gpu_module(args.gpu)
    props = cupy.cuda.runtime.getDeviceProperties(args.gpu)
    figures = {"device": props["name"].decode() if isinstance(props["name"], bytes)
               else props["name"], "unetcore": unetcore_figures(args.gpu, args.repeats)}
    try:
        figures["torch"] = torch_figures(args.repeats)
    except ImportError:
        figures["torch"] = None
    ours, theirs = figures["unetcore"], figures["torch"]
    print(f"device: {figures['device']}; U-Net 572 -> 388, batch 1, float32")
    print(f"unetcore forward {ours['forward_ms']:.1f} ms, train step {ours['train_step_ms']:.1f} "
          f"ms, pool peak {ours['pool_peak_mib']:.0f} MiB, 512x512 segmentation "
          f"{ours['segment_512_ms']:.1f} ms")
    if theirs:
        print(f"torch    forward {theirs['forward_ms']:.1f} ms, train step "
              f"{theirs['train_step_ms']:.1f} ms, peak {theirs['peak_mib']:.0f} MiB")
        print(f"ratio unetcore/torch: forward {ours['forward_ms'] / theirs['forward_ms']:.2f}x, "
              f"train step {ours['train_step_ms'] / theirs['train_step_ms']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
