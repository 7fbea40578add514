"""GPU benchmark of the 2015 U-Net: unetcore on CuPy beside PyTorch (fp32, TF32 off, cuDNN),
measured in the same run on the same GPU.

Figures (medians of --repeats runs after warm-ups, timed with CUDA events):
- train step at 572 (forward + backward + SGD update), fed by Input blobs, and fed by the
  TiffData layer (random tiles of a 512 x 512 synthetic stack with elastic deformation and
  weight maps, all on the GPU);
- forward at 572 (a forward-only net, as `unetcore segment` runs it);
- a 512 x 512 image segmented by overlap-tile: four 572 tiles in one batch, and one 700 tile
  (its 516 px output covers the image); PyTorch runs the forward of the same tiles;
- the memory each mode holds at its peak: CuPy's pool, and PyTorch's allocated / reserved;
- the bandwidth of the CUDA kernels (im2col, col2im, max-pool, SGD update) as a fraction of
  a device-to-device copy, counting the fewest bytes each must read and write, and the rate
  of the three GEMMs of conv_d0b-c.

Usage:  python bench/gpu.py [--repeats 20] [--gpu 0] [--json out.json]
PyTorch's model is ../shared/bench/torch_unet.py (or a folder on PYTHONPATH holding it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO.parent / "shared" / "bench"))
MIB = 2 ** 20


def cuda_median(cupy, run, repeats, warmup=3):
    """Median ms of `run()` between two CUDA events, after `warmup` runs."""
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


def pool_peak_mib(cupy, make_and_run):
    """MiB that CuPy's pool holds after `make_and_run()`, starting from an empty pool (the pool
    keeps every block it was given, so what it holds at the end is its peak)."""
    pool = cupy.get_default_memory_pool()
    from unetcore.backend import release_workspaces
    release_workspaces()
    pool.free_all_blocks()
    result = make_and_run()
    return result, pool.total_bytes() / MIB


# ---------------------------------------------------------------- unetcore
def solver_for(net, gpu):
    from unetcore.formats.prototxt import Message
    from unetcore.solvers import get_solver
    param = Message("SolverParameter")
    for field, value in (("net", str(net)), ("base_lr", 1e-4), ("momentum", 0.99),
                         ("weight_decay", 0.0005), ("random_seed", 0)):
        param.set(field, value)
    return get_solver(param, gpu=gpu)


def unetcore_train(cupy, gpu, repeats):
    solver = solver_for(REPO / "prototxt" / "unet-train-inputs.prototxt", gpu)
    rng = np.random.default_rng(0)
    solver.net.set_inputs({"data": rng.random((1, 1, 572, 572)),
                           "label": rng.integers(0, 2, (1, 1, 388, 388)),
                           "weights": 1 + 9 * rng.random((1, 1, 388, 388))})
    return cuda_median(cupy, lambda: solver.step(1), repeats)


def unetcore_train_on_tiff_data(cupy, gpu, repeats, folder):
    import tifffile

    from unetcore.data.synth import synth_stack
    images, labels = synth_stack(4, 512, seed=0)
    tifffile.imwrite(folder / "train-volume.tif", images, photometric="minisblack")
    tifffile.imwrite(folder / "train-labels.tif", labels, photometric="minisblack")
    text = (REPO / "prototxt" / "unet-train.prototxt").read_text()
    net = folder / "net.prototxt"
    net.write_text(text.replace('"data/', f'"{folder}/').replace("test-", "train-"))
    solver = solver_for(net, gpu)
    return cuda_median(cupy, lambda: solver.step(1), repeats)


def deploy_net(gpu, tile):
    from unetcore.net import Net
    net = Net(str(REPO / "prototxt" / "unet-deploy.prototxt"), "TEST", gpu=gpu)
    net.release_activations = True
    net.set_inputs({"data": np.zeros((1, 1, tile, tile))})
    return net


def unetcore_forward(cupy, gpu, repeats):
    net = deploy_net(gpu, 572)
    net.set_inputs({"data": np.random.default_rng(0).random((1, 1, 572, 572))})
    return cuda_median(cupy, net.forward_layers, repeats)


def unetcore_segment(cupy, gpu, repeats, tile, batch):
    from unetcore.inference.tiling import segment
    net = deploy_net(gpu, tile)
    image = np.random.default_rng(0).random((1, 512, 512)).astype(np.float32)
    return cuda_median(cupy, lambda: segment(net, image, batch=batch), repeats)


def unetcore_figures(cupy, gpu, repeats):
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, run in (
                ("train_step", lambda: unetcore_train(cupy, gpu, repeats)),
                ("train_step_tiff_data",
                 lambda: unetcore_train_on_tiff_data(cupy, gpu, repeats, Path(folder))),
                ("forward", lambda: unetcore_forward(cupy, gpu, repeats)),
                ("segment_512_tiles_572",
                 lambda: unetcore_segment(cupy, gpu, repeats, 572, 4)),
                ("segment_512_tile_700",
                 lambda: unetcore_segment(cupy, gpu, repeats, 700, 1))):
            ms, peak = pool_peak_mib(cupy, run)
            figures[name] = {"ms": ms, "pool_mib": peak}
            print(f"unetcore {name}: {ms:.2f} ms, pool {peak:.0f} MiB", flush=True)
    return figures


# ---------------------------------------------------------------- kernel bandwidth
def copy_rate(cupy, repeats):
    """GB/s of a 1 GiB device-to-device copy, bytes read plus bytes written."""
    a = cupy.random.random(2 ** 28, dtype=np.float32)
    b = cupy.empty_like(a)
    ms = cuda_median(cupy, lambda: b.__setitem__(Ellipsis, a), repeats)
    return 2 * a.nbytes / ms / 1e6


def kernel_rates(cupy, repeats):
    """{kernel: (ms, GB/s)} at the shapes of conv_d0b-c and pool_d0c-1a (572 tile)."""
    from unetcore.ops import cuda
    from unetcore.ops.im2col import ConvGeometry
    rng = cupy.random.default_rng(0)
    geom = ConvGeometry((3, 3), (1, 1), (0, 0), (1, 1))
    x = rng.random((64, 572, 572), dtype=np.float32)
    col = cupy.empty((64 * 9, 570 * 570), np.float32)
    dx = cupy.zeros_like(x)
    y = rng.random((1, 64, 568, 568), dtype=np.float32)
    pooled = cupy.empty((1, 64, 284, 284), np.float32)
    argmax = cupy.empty(pooled.shape, np.int32)
    dy_pool = rng.random(pooled.shape, dtype=np.float32)
    dx_pool = cupy.empty_like(y)
    w = rng.random(1024 * 1024 * 9, dtype=np.float32)
    g, h = cupy.ones_like(w), cupy.zeros_like(w)
    cases = {   # name: (run, fewest bytes read + written)
        "im2col": (lambda: cuda.im2col(x, geom, 570, 570, col), col.nbytes + x.nbytes),
        "col2im": (lambda: cuda.col2im_add(col, geom, 570, 570, dx), col.nbytes + 2 * dx.nbytes),
        "max_pool_forward": (lambda: cuda.max_pool_forward(y, pooled, argmax, (2, 2), (2, 2),
                                                          (0, 0)),
                             y.nbytes + pooled.nbytes + argmax.nbytes),
        "max_pool_backward": (lambda: cuda.max_pool_backward(dy_pool, argmax, dx_pool, (2, 2),
                                                            (2, 2), (0, 0)),
                              dy_pool.nbytes + argmax.nbytes + dx_pool.nbytes),
        "sgd_update": (lambda: cuda.sgd_update(w, g, h, 0.99, 1e-9, 5e-4), 6 * w.nbytes)}
    rates = {}
    for name, (run, nbytes) in cases.items():
        ms = cuda_median(cupy, run, repeats)
        rates[name] = (ms, nbytes / ms / 1e6)
    return rates


# ---------------------------------------------------------------- PyTorch
def torch_figures(repeats, autotune):
    """PyTorch's figures; `autotune` sets torch.backends.cudnn.benchmark (cuDNN then times
    its algorithms and may take the ones with large workspaces)."""
    import torch
    from torch_unet import UNet, make_batch, weighted_cross_entropy
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = autotune
    model = UNet().cuda()
    x, labels, weights = (t.cuda() for t in make_batch(572))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.99, weight_decay=0.0005)

    def step():
        opt.zero_grad(set_to_none=False)
        weighted_cross_entropy(model(x), labels, weights).backward()
        opt.step()

    def timed(run):
        times = []
        for i in range(3 + repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            stop.record()
            torch.cuda.synchronize()
            if i >= 3:
                times.append(start.elapsed_time(stop))
        return statistics.median(times)

    def measured(name, run):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        ms = timed(run)
        figures[name] = {"ms": ms, "allocated_mib": torch.cuda.max_memory_allocated() / MIB,
                         "reserved_mib": torch.cuda.max_memory_reserved() / MIB}
        print(f"torch (cudnn.benchmark={autotune}) {name}: {ms:.2f} ms, allocated {figures[name]['allocated_mib']:.0f} "
              f"MiB, reserved {figures[name]['reserved_mib']:.0f} MiB", flush=True)

    figures = {}
    model.train()
    measured("train_step", step)
    opt = None
    model.eval()
    tiles_572 = torch.rand(4, 1, 572, 572, device="cuda")
    tile_700 = torch.rand(1, 1, 700, 700, device="cuda")
    with torch.no_grad():
        measured("forward", lambda: model(x))
        measured("segment_512_tiles_572", lambda: model(tiles_572))
        measured("segment_512_tile_700", lambda: model(tile_700))
    return figures


def gemm_rates(cupy, repeats):
    """{product: (ms, TFLOP/s)} for conv_d0b-c's three GEMMs (572 tile, the whole image as
    one band): forward W @ col, weight gradient dY @ col^T, column gradient W^T @ dY."""
    rng = cupy.random.default_rng(0)
    pixels, k = 570 * 570, 64 * 9
    w = rng.random((64, k), dtype=np.float32)
    col = rng.random((k, pixels), dtype=np.float32)
    dy = rng.random((64, pixels), dtype=np.float32)
    flops = 2 * 64 * k * pixels
    cases = {"forward W @ col": lambda: cupy.matmul(w, col),
             "weights dY @ col^T": lambda: cupy.matmul(dy, col.T),
             "columns W^T @ dY": lambda: cupy.matmul(w.T, dy)}
    rates = {}
    for name, run in cases.items():
        ms = cuda_median(cupy, run, repeats)
        rates[name] = (ms, flops / ms / 1e9)
    return rates


def torch_in_child(args, autotune):
    """PyTorch's figures from a child process of its own: a fresh cuDNN state for each
    setting, and none of CuPy's memory beside it."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, __file__, "--torch-only", "--gpu", str(args.gpu),
                   "--repeats", str(args.repeats), "--json", out.name]
        subprocess.run(command + (["--autotune"] if autotune else []), check=True,
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES=str(args.gpu)))
        return json.loads(Path(out.name).read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--autotune", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_only:
        Path(args.json).write_text(json.dumps(torch_figures(args.repeats, args.autotune)))
        return
    from unetcore.backend import gpu_module
    cupy = gpu_module(args.gpu)
    props = cupy.cuda.runtime.getDeviceProperties(args.gpu)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    figures = {"device": name, "cupy": cupy.__version__}
    for key, measure in (("copy_gb_s", lambda: copy_rate(cupy, args.repeats)),
                         ("kernels", lambda: kernel_rates(cupy, args.repeats)),
                         ("gemms", lambda: gemm_rates(cupy, args.repeats)),
                         ("unetcore", lambda: unetcore_figures(cupy, args.gpu, args.repeats)),
                         ("torch", lambda: torch_in_child(args, False)),
                         ("torch_autotuned", lambda: torch_in_child(args, True))):
        try:
            figures[key] = measure()
        except Exception as err:       # one failed part must not cost the others' figures
            traceback.print_exc()
            print(f"{key}: not measured ({type(err).__name__}: {err})")
            figures[key] = None
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


def report(figures):
    print(f"\ndevice: {figures['device']}, CuPy {figures['cupy']}; U-Net 572 -> 388, float32")
    for key, what in (("torch", "PyTorch, cuDNN defaults"),
                      ("torch_autotuned", "PyTorch, cudnn.benchmark = True")):
        print(f"\nagainst {what}:")
        comparison(figures["unetcore"] or {}, figures[key] or {})
    copy = figures["copy_gb_s"]
    if not copy:
        return
    print(f"\ndevice-to-device copy: {copy:.0f} GB/s (read + write)")
    for name, (ms, rate) in (figures["kernels"] or {}).items():
        print(f"{name:<18} {ms:8.3f} ms {rate:8.0f} GB/s  {rate / copy:6.1%} of the copy")
    for name, (ms, rate) in (figures["gemms"] or {}).items():
        print(f"{name:<18} {ms:8.3f} ms {rate:8.1f} TFLOP/s (conv_d0b-c, 572)")


def comparison(ours, theirs):
    print(f"{'mode':<24} {'unetcore ms':>11} {'pool MiB':>9} {'torch ms':>9} "
          f"{'alloc/reserved MiB':>19} {'time ratio':>10}")
    for mode, mine in ours.items():
        other = theirs.get(mode) or theirs.get(mode.replace("_tiff_data", ""))
        if other:
            print(f"{mode:<24} {mine['ms']:>11.2f} {mine['pool_mib']:>9.0f} {other['ms']:>9.2f} "
                  f"{other['allocated_mib']:>9.0f}/{other['reserved_mib']:<9.0f} "
                  f"{mine['ms'] / other['ms']:>9.2f}x")
        else:
            print(f"{mode:<24} {mine['ms']:>11.2f} {mine['pool_mib']:>9.0f}")


if __name__ == "__main__":
    main()
