"""Where does the time go? Every convolution of the 2015 U-Net's train step, unetcore beside
PyTorch, layer by layer, against the SGEMM rate measured in the same run (issue 23, item 1).

unetcore: `unetcore.tools.timing.time_layers` on the train net (each layer's forward and backward as
the net runs them, with the engine "auto" picks). PyTorch (a child process in a Python that has
torch): the same convolution alone, F.conv2d or F.conv_transpose2d on the same shapes, forward
and autograd backward (input and weight gradients). Medians of the repeats after one warm-up.

    python bench/layers.py --torch-python /tmp/torchvenv/bin/python [--tile 572] [--repeats 3]
"""
import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

try:
    import unetcore  # noqa: F401  (before NumPy: OpenBLAS threads sleep, as in the command)
except ImportError:  # the PyTorch child runs in a Python without unetcore
    pass
from host import describe, sgemm_rate  # noqa: E402  (after unetcore, which sets the threads)

REPO = Path(__file__).resolve().parents[1]


def unetcore_layers(tile, repeats):
    """[(name, spec for PyTorch, macs, forward s, backward s, engine)] of every convolution."""
    from unetcore import Net
    from unetcore.tools.timing import layer_macs, time_layers
    from unetcore.models.unet import output_size
    net = Net(REPO / "prototxt" / "unet-train-inputs.prototxt", "TRAIN")
    out = output_size(tile, 4)
    for name in net.inputs:                  # data at the tile, label and weights at the output
        size = tile if name == "data" else out
        net.blobs[name].reshape(net.blobs[name].shape[:2] + (size, size))
    net.reshape()
    times = time_layers(net, repeats)
    rows = []
    for layer, bottom, top in zip(net.layers, net.bottom_vecs, net.top_vecs):
        if layer.type not in ("Convolution", "Deconvolution"):
            continue
        spec = {"type": layer.type, "input": list(bottom[0].shape),
                "weight": list(layer.blobs[0].shape), "stride": list(layer.geom.stride)}
        rows.append((layer.name, spec, layer_macs(layer, bottom, top), *times[layer.name],
                     layer.engine))
    return rows


def torch_layers(specs, repeats, threads):
    """In the torch child: [(forward s, backward s)] of each spec."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    out = []
    for spec in specs:
        x = torch.rand(spec["input"], requires_grad=True)
        w = torch.randn(spec["weight"], requires_grad=True)
        conv = F.conv2d if spec["type"] == "Convolution" else F.conv_transpose2d
        forward, backward = [], []
        for i in range(repeats + 1):
            start = time.perf_counter()
            y = conv(x, w, stride=spec["stride"])
            middle = time.perf_counter()
            y.backward(torch.ones_like(y))
            end = time.perf_counter()
            if i:
                forward.append(middle - start)
                backward.append(end - middle)
            x.grad = w.grad = None
        out.append((statistics.median(forward), statistics.median(backward)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tile", type=int, default=572)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", default="auto", help="unetcore's engine (unetcore.config)")
    ap.add_argument("--torch-python")
    ap.add_argument("--torch-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        specs = json.loads(Path(args.torch_child[0]).read_text())
        Path(args.torch_child[1]).write_text(json.dumps(torch_layers(specs, args.repeats,
                                                                     args.threads)))
        return
    from unetcore import config
    rate = sgemm_rate()
    with config.using_engine(args.engine):
        rows = unetcore_layers(args.tile, args.repeats)
    theirs = [(float("nan"), float("nan"))] * len(rows)
    if args.torch_python:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "specs.json").write_text(json.dumps([r[1] for r in rows]))
            subprocess.run([args.torch_python, __file__, "--repeats", str(args.repeats),
                            "--threads", str(args.threads), "--torch-child",
                            str(Path(tmp) / "specs.json"), str(Path(tmp) / "out.json")],
                           check=True)
            theirs = json.loads((Path(tmp) / "out.json").read_text())
    print(f"# {describe(rate)}; {args.tile} px tile, {args.threads} threads, engine "
          f"{args.engine}. GFLOP/s are effective: the direct convolution's flops (2 a "
          "multiply-add, the backward twice the forward's) over the time, whatever the "
          "engine does; 'of SGEMM' is unetcore's forward + backward rate over the same-run "
          "SGEMM rate.")
    print("| layer | engine | input | unetcore fwd ms (GFLOP/s) | bwd ms (GFLOP/s) | of SGEMM | "
          "PyTorch fwd ms (GFLOP/s) | bwd ms (GFLOP/s) | fwd+bwd ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    total = [0.0, 0.0]
    for (name, spec, macs, fwd, bwd, engine), (t_fwd, t_bwd) in zip(rows, theirs):
        gf = 2 * macs / 1e9
        total[0] += fwd + bwd
        total[1] += t_fwd + t_bwd
        print(f"| {name} | {engine} | {spec['input'][1]} x {spec['input'][2]} | "
              f"{fwd * 1e3:.0f} ({gf / fwd:.0f}) | {bwd * 1e3:.0f} ({2 * gf / bwd:.0f}) | "
              f"{3 * gf / (fwd + bwd) / rate:.0%} | {t_fwd * 1e3:.0f} ({gf / t_fwd:.0f}) | {t_bwd * 1e3:.0f} ({2 * gf / t_bwd:.0f}) | "
              f"{(fwd + bwd) / (t_fwd + t_bwd):.2f} |")
    print(f"| all convolutions | | | {total[0] * 1e3:.0f} ms | | | {total[1] * 1e3:.0f} ms | | "
          f"{total[0] / total[1]:.2f} |")


if __name__ == "__main__":
    main()
