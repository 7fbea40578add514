"""Where does the time go? Every convolution of the 2015 U-Net's train step, unetcore beside
PyTorch, layer by layer, against the SGEMM rate measured in the same run (issue 23, item 1).

unetcore: `unetcore.tools.timing.time_layers` on the train net (each layer's forward and backward as
the net runs them, with the engine "auto" picks). PyTorch (a child process in a Python that has
torch): the same convolution alone, F.conv2d or F.conv_transpose2d on the same shapes, forward
and autograd backward (input and weight gradients). Medians of the repeats after one warm-up.

    python bench/layers.py --torch-python /tmp/torchvenv/bin/python [--tile 572] [--repeats 3]

`--forward` times the deploy net's forward instead (issue 34: where the NumPy forward loses to
PyTorch and ONNX Runtime), on `--model` (default the 2015 net, prototxt/unet-deploy.prototxt;
prototxt/unet-demo-deploy.prototxt is the README's demo net) at `--tile`, batch 1, random
weights. The layers are grouped as each runtime runs them: a convolution with its ReLU (and
the Split that feeds a pool), a pool, an up-convolution with its ReLU, a crop with its
concat. unetcore: each layer's reshape + forward in the Net's order (Net.forward_layers, so
a convolution that folds the following ReLU in, Net.fused_rectifiers, is timed with it and
the ReLU as 0), the engine of each convolution as the net picked it; the
group's non-convolution layers (ReLU, Split, Concat) are shown apart. ONNX Runtime: the
session `--runtime onnxruntime` builds (`OnnxRuntimeNet`), with SessionOptions.enable_profiling:
each node's kernel time, mapped to a group by the layer name its node keeps (a fused
Conv+Relu NCHWc node keeps the ReLU's name); its layout nodes (ReorderInput/ReorderOutput)
and the crop's shape nodes are counted in the group they follow. PyTorch (a child process
in a Python with torch): ../shared/bench/torch_unet.py's U-Net with the same channels, in
eval mode without gradients, its forward walked step by step with a clock around each
module or function (conv, ReLU, max_pool2d, up-convolution, crop + cat). The runtimes run
one after another, each `--repeats` times after one warm-up; each time is a median.

    python bench/layers.py --forward [--model prototxt/unet-demo-deploy.prototxt] [--tile 876]
                           --torch-python /tmp/torchvenv/bin/python [--repeats 5] [--threads 2]
"""
import argparse
import json
import statistics
import subprocess
import os
import tempfile
import time
from pathlib import Path

# As the `unetcore` command does (unetcore/__main__.py), before NumPy loads: OpenBLAS's
# threads sleep between GEMMs instead of spinning on the cores the NumPy work (and the
# forward's band workers) need. Runs before 437ac57's profile were made without it.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
from host import describe, sgemm_rate, thread_env  # noqa: E402

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


KINDS = {"Convolution": "conv", "Deconvolution": "upconv", "Pooling": "pool", "Crop": "concat"}


def forward_groups(net):
    """[(kind, first layer's name, [layer indices])]: the net's layers grouped as every runtime
    runs them. A Convolution, Deconvolution, Pooling or Crop opens a group; the other layers
    (ReLU, Split, Concat, Dropout) join the group before them; Input layers none."""
    groups = []
    for i, layer in enumerate(net.layers):
        if layer.type in KINDS:
            groups.append((KINDS[layer.type], layer.name, [i]))
        elif groups:
            groups[-1][2].append(i)
    return groups


def unetcore_forward(net, repeats):
    """{layer index: median forward seconds} of each layer, reshape included, after a warm-up."""
    import numpy as np
    net.blobs[net.image_input].data[...] = np.random.default_rng(0).random(
        net.blobs[net.image_input].shape, dtype=np.float32)
    times = {i: [] for i in range(len(net.layers))}
    for r in range(repeats + 1):
        i = 0
        while i < len(net.layers):          # a convolution with the ReLU it folds in: one time
            stop = net.fused_rectifiers.get(i, i) + 1
            start = time.perf_counter()
            net.forward_layers(i, stop)
            if r:
                times[i].append(time.perf_counter() - start)
                times.update({j: times[j] + [0.0] for j in range(i + 1, stop)})
            i = stop
    return {i: statistics.median(t) for i, t in times.items()}


def onnxruntime_forward(net, groups, repeats, threads):
    """[median seconds of each group], total median seconds (the sum of the node times per run)
    of the net in ONNX Runtime, from its profile."""
    import numpy as np
    import onnxruntime as ort
    from unetcore.export.onnx import onnx_model
    group_of = {net.layers[i].name: g for g, (_, _, members) in enumerate(groups)
                for i in members}
    for g, (_, _, members) in enumerate(groups):     # a graph output's node keeps its top's name
        for i in members:
            for top in net.specs[i].tops:
                group_of.setdefault(top, g)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(onnx_model(net).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random(net.blobs[net.image_input].shape, dtype=np.float32)
        for _ in range(repeats + 1):
            session.run(None, {session.get_inputs()[0].name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(nodes) // (repeats + 1)
    runs = []
    for r in range(1, repeats + 1):
        seconds, current = [0.0] * len(groups), 0
        for e in nodes[r * per_run:(r + 1) * per_run]:
            layer = e["name"][:-len("_kernel_time")].removesuffix("_nchwc").split("__")[0]
            current = group_of.get(layer, current)     # layout/shape nodes: the group before
            seconds[current] += e["dur"] / 1e6
        runs.append(seconds)
    return ([statistics.median(run[g] for run in runs) for g in range(len(groups))],
            statistics.median(sum(run) for run in runs))


def torch_forward(spec, repeats, threads):
    """In the torch child: [(kind, median seconds, median seconds of its ReLU/cat part)] of
    each step of torch_unet.UNet's forward, and the median total, walked as UNet.forward runs."""
    import sys
    import numpy as np
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, str(REPO.parent / "shared" / "bench"))
    import torch_unet
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base, depth = spec["channels"]
    torch_unet.CHANNELS = tuple(base * 2 ** i for i in range(depth + 1))
    model = torch_unet.UNet().eval()
    x0 = torch.from_numpy(np.random.default_rng(0).random(spec["input"], dtype=np.float32))

    def clock(steps, kind, first, second=None):
        start = time.perf_counter()
        y = first()
        middle = time.perf_counter()
        if second is not None:
            y = second(y)
        steps.append((kind, time.perf_counter() - start, time.perf_counter() - middle))
        return y

    def walk():
        steps, skips, x = [], [], x0
        for level, block in enumerate(model.down):
            for conv in (0, 2):
                x = clock(steps, "conv", lambda x=x: block[conv](x), block[conv + 1])
            if level < len(model.down) - 1:
                skips.append(x)
                x = clock(steps, "pool", lambda x=x: F.max_pool2d(x, 2, 2))
        for up, double, skip in zip(model.up, model.up_conv, reversed(skips)):
            x = clock(steps, "upconv", lambda x=x: up(x), lambda y: F.relu(y, inplace=True))
            x = clock(steps, "concat", lambda x=x: torch_unet.center_crop(skip, x.shape[-1]),
                      lambda s, x=x: torch.cat([x, s], dim=1))
            for conv in (0, 2):
                x = clock(steps, "conv", lambda x=x: double[conv](x), double[conv + 1])
        clock(steps, "conv", lambda x=x: model.score(x))
        return steps

    runs = []
    with torch.no_grad():
        for r in range(repeats + 1):
            start = time.perf_counter()
            steps = walk()
            if r:
                runs.append((steps, time.perf_counter() - start))
    kinds = [kind for kind, _, _ in runs[0][0]]
    return ([(kind, statistics.median(run[0][s][1] for run in runs),
              statistics.median(run[0][s][2] for run in runs)) for s, kind in enumerate(kinds)],
            statistics.median(run[1] for run in runs))


def forward_main(args):
    """The forward profile: one table, unetcore NumPy beside ONNX Runtime and PyTorch."""
    from unetcore.net import Net
    from unetcore.inference.deploy import square_input
    from unetcore.threads import numpy_openblas
    from unetcore.tools.timing import layer_macs
    blas = numpy_openblas()
    if blas is not None:
        blas.threads = args.threads
    rate = sgemm_rate()
    model = args.model or str(REPO / "prototxt" / "unet-deploy.prototxt")
    net = Net(model, "TEST", seed=0)
    square_input(net, model, args.tile)
    net.reshape()
    groups = forward_groups(net)
    load_start = os.getloadavg()
    ours = unetcore_forward(net, args.repeats)
    try:
        ort_groups, ort_total = onnxruntime_forward(net, groups, args.repeats, args.threads)
    except ImportError:
        ort_groups, ort_total = [float("nan")] * len(groups), float("nan")
    theirs, torch_total = [("", float("nan"), float("nan"))] * len(groups), float("nan")
    if args.torch_python:
        convs = [l for l in net.layers if l.type == "Convolution"]
        spec = {"input": list(net.blobs[net.image_input].shape),
                "channels": [convs[0].num_output,
                             sum(l.type == "Pooling" for l in net.layers)]}
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "spec.json").write_text(json.dumps(spec))
            subprocess.run([args.torch_python, __file__, "--forward", "--repeats",
                            str(args.repeats), "--threads", str(args.threads), "--torch-child",
                            str(Path(tmp) / "spec.json"), str(Path(tmp) / "out.json")],
                           check=True, env=thread_env(args.threads))
            theirs, torch_total = json.loads((Path(tmp) / "out.json").read_text())
        if [t[0] for t in theirs] != [g[0] for g in groups]:
            raise SystemExit(f"the PyTorch steps {[t[0] for t in theirs]} do not match the "
                             f"net's groups {[g[0] for g in groups]}")
    print(f"# {describe(rate)}; {Path(model).name} forward at {args.tile}, batch 1, "
          f"{args.threads} threads, medians of {args.repeats} after a warm-up; load average "
          + " ".join(f"{v:.1f}" for v in load_start) + " at the start, "
          + " ".join(f"{v:.1f}" for v in os.getloadavg()) + " at the end. GFLOP/s: the "
          "direct convolution's flops (2 a multiply-add) over the group's time, whatever "
          "the engine does. 'non-conv' is the part of the group that is not the "
          "convolution: unetcore's ReLU, Split and Concat layers, PyTorch's ReLU or cat.")
    print("| group | engine | output | GFLOP | NumPy ms (GFLOP/s) | of which non-conv ms | "
          "ONNX Runtime ms (GFLOP/s) | PyTorch ms (GFLOP/s) | of which non-conv ms | "
          "NumPy - PyTorch ms | NumPy / PyTorch |")
    print("| --- " * 11 + "|")
    sums = {"NumPy": 0.0, "ONNX Runtime": 0.0, "PyTorch": 0.0}
    by_kind = {}
    for g, ((kind, name, members), ort_s, (_, t_s, t_rest)) in enumerate(
            zip(groups, ort_groups, theirs)):
        head = net.layers[members[0]]
        flop = 2 * layer_macs(head, net.bottom_vecs[members[0]], net.top_vecs[members[0]]) / 1e9
        ours_s = sum(ours[i] for i in members)
        rest = ours_s if kind in ("pool", "concat") else ours_s - ours[members[0]]
        sums["NumPy"] += ours_s
        sums["ONNX Runtime"] += ort_s
        sums["PyTorch"] += t_s
        k = by_kind.setdefault(kind, [0.0, 0.0, 0.0, 0.0, 0.0])
        for j, v in enumerate((ours_s, ort_s, t_s, rest, t_rest if kind in ("conv", "upconv")
                                                              else t_s)):
            k[j] += v

        def cell(s):
            return f"{s * 1e3:.1f}" + (f" ({flop / s:.0f})" if flop and s > 0 else "")
        engine = getattr(head, "engine", "") if kind in ("conv", "upconv") else ""
        shape = net.top_vecs[members[0]][0].shape
        print(f"| {name} | {engine} | {shape[1]} x {shape[2]} | {flop:.1f} | {cell(ours_s)} | "
              f"{rest * 1e3:.1f} | {cell(ort_s)} | {cell(t_s)} | "
              f"{(t_rest if kind in ('conv', 'upconv') else t_s) * 1e3:.1f} | "
              f"{(ours_s - t_s) * 1e3:+.1f} | {ours_s / t_s:.2f} |")
    flop = 2 * sum(layer_macs(l, b, t) for l, b, t in
                   zip(net.layers, net.bottom_vecs, net.top_vecs)) / 1e9
    print(f"| all groups | | | {flop:.1f} | {sums['NumPy'] * 1e3:.0f} ({flop / sums['NumPy']:.0f}) | "
          f"| {sums['ONNX Runtime'] * 1e3:.0f} ({flop / sums['ONNX Runtime']:.0f}) | "
          f"{sums['PyTorch'] * 1e3:.0f} ({flop / sums['PyTorch']:.0f}) | | "
          f"{(sums['NumPy'] - sums['PyTorch']) * 1e3:+.0f} | "
          f"{sums['NumPy'] / sums['PyTorch']:.2f} |")
    print(f"# whole forward, medians: NumPy {sum(ours.values()) * 1e3:.0f} ms (the layers' sum), "
          f"ONNX Runtime {ort_total * 1e3:.0f} ms (its node times' sum), PyTorch "
          f"{torch_total * 1e3:.0f} ms (the walk, clocks included)")
    print("# by kind, ms: NumPy / ONNX Runtime / PyTorch, and the non-conv part NumPy / PyTorch")
    for kind, (a, b, c, d, e) in by_kind.items():
        print(f"#   {kind}: {a * 1e3:.0f} / {b * 1e3:.0f} / {c * 1e3:.0f}; non-conv "
              f"{d * 1e3:.0f} / {e * 1e3:.0f}; gap NumPy - PyTorch {(a - c) * 1e3:+.0f} ms")
    engines = {}
    for kind, name, members in groups:
        if kind in ("conv", "upconv"):
            head = net.layers[members[0]]
            e = engines.setdefault(head.engine, [0.0, 0.0])
            e[0] += ours[members[0]]
    for (kind, name, members), (_, t_s, t_rest) in zip(groups, theirs):
        if kind in ("conv", "upconv"):
            engines[net.layers[members[0]].engine][1] += t_s - t_rest
    print("# convolutions alone by unetcore engine, ms: NumPy / PyTorch's same convolutions: "
          + "; ".join(f"{e} {a * 1e3:.0f} / {b * 1e3:.0f}" for e, (a, b) in engines.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tile", type=int, default=572)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", default="auto", help="unetcore's engine (unetcore.config)")
    ap.add_argument("--torch-python")
    ap.add_argument("--forward", action="store_true",
                    help="the deploy net's forward, beside ONNX Runtime and PyTorch (issue 34)")
    ap.add_argument("--model", help="with --forward: the deploy prototxt (default "
                    "prototxt/unet-deploy.prototxt; prototxt/unet-demo-deploy.prototxt)")
    ap.add_argument("--torch-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child and args.forward:
        spec = json.loads(Path(args.torch_child[0]).read_text())
        Path(args.torch_child[1]).write_text(json.dumps(torch_forward(spec, args.repeats,
                                                                      args.threads)))
        return
    if args.forward:
        from unetcore import config
        with config.using_engine(args.engine):
            forward_main(args)
        return
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
