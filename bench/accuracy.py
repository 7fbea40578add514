"""Float32 accuracy of every engine, layer by layer, on the 2015 U-Net at its real sizes.

For each Convolution and Deconvolution of the net at `--tile` (572 by default) and each engine
that can run it, `unetcore.gradcheck.float32_errors`: the forward, the weight gradient and the
data gradient computed in float32 against the float64 reference on the same input, weights and
top gradient, each as max |float32 - float64| / max |float64|. Prints a row per layer and
engine, then each engine's range per product, with the host line. The rounding depends on
the BLAS kernel and its thread count, so the figures are the host's (tests/layers/test_accuracy.py
asserts the 1e-4 bound on every host).

With `--whole-net SEEDS`, also the whole 2015 train net at 188 px: the worst parameter
gradient of a float32 net against the float64 net with the same random weights and inputs,
for each seed, with the reference engine and with the engines "auto" picks. There rounding
flips ReLU and max-pool decisions, so the error is not the layers' (docs/winograd.md).

    python bench/accuracy.py [--tile 572] [--engines reference winograd ...] [--whole-net 6]
"""
import argparse
from pathlib import Path

import unetcore  # noqa: F401  (before NumPy: OpenBLAS threads sleep, as in the command)
from host import describe, sgemm_rate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def unet_layers(tile):
    """(name, param, bottom shape, top shape) of every (De)Convolution of the 2015 net at
    `tile`."""
    import numpy as np
    from unetcore import Net
    net = Net(REPO / "prototxt" / "unet-deploy.prototxt", "TEST")
    net.set_inputs({"data": np.zeros((1, 1, tile, tile), np.float32)})
    return [(layer.name, layer.param, bottom[0].shape, top[0].shape)
            for layer, bottom, top in zip(net.layers, net.bottom_vecs, net.top_vecs)
            if layer.type in ("Convolution", "Deconvolution")]


def train_net(dtype, engine, seed, size=188):
    """The 2015 train net at `size`; `seed` draws its dropout masks."""
    import numpy as np
    from unetcore import Net, config
    from unetcore.models.unet import output_size
    with config.using_engine(engine):
        net = Net(REPO / "prototxt" / "unet-train-inputs.prototxt", "TRAIN", dtype=dtype,
                  seed=seed)
    for name in net.inputs:                  # data at the tile, label and weights at the output
        edge = size if name == "data" else output_size(size, 4)
        net.blobs[name].reshape(net.blobs[name].shape[:2] + (edge, edge))
    net.reshape()
    for layer in net.layers:       # the same dropout masks in both precisions: float32 draws
        if layer.type == "Dropout":
            layer.uniform = lambda shape, rng=layer.rng: rng.random(shape, dtype=np.float32)
    return net


def whole_net_error(engine, seed):
    """The worst parameter gradient of the float32 net against the float64 one, relative to
    that blob's largest gradient."""
    import numpy as np
    from unetcore.gradcheck import randomize_params, random_inputs
    gradients = []
    for dtype in (np.float64, np.float32):
        net = train_net(dtype, engine, seed)
        randomize_params(net, np.random.default_rng(seed))
        random_inputs(net, np.random.default_rng(seed + 1000))
        net.forward_layers()
        net.backward()
        gradients.append([blob.diff.astype(np.float64) for blob in net.learnable_params])
    return max(float(np.abs(g32 - g64).max() / np.abs(g64).max())
               for g64, g32 in zip(*gradients))


def main():
    import numpy as np
    from unetcore.gradcheck import PRODUCTS, float32_errors
    from unetcore.layer import ENGINES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=572)
    registered = sorted({c.engine for kind in ("Convolution", "Deconvolution")
                         for c in ENGINES.get(kind, ())})
    parser.add_argument("--engines", nargs="+", default=["reference"] + registered)
    parser.add_argument("--whole-net", type=int, default=0, metavar="SEEDS")
    args = parser.parse_args()
    print(f"host: {describe(sgemm_rate())}")
    if args.whole_net:
        print("whole 2015 train net at 188 px, worst gradient error float32 vs float64:")
        for engine in ("reference", "auto"):
            errors = [whole_net_error(engine, seed) for seed in range(args.whole_net)]
            print(f"  {engine}: " + ", ".join(f"{e:.1e}" for e in errors), flush=True)
    print(f"| layer | C_in -> C_out | output | engine | {' | '.join(PRODUCTS)} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ranges = {}
    for name, param, shape, out in unet_layers(args.tile):
        for engine in args.engines:
            errors = float32_errors(param, shape, engine, np.random.default_rng(0))
            if errors is None:
                continue
            for product, error in errors.items():
                ranges.setdefault((engine, product), []).append(error)
            print(f"| {name} | {shape[1]} -> {out[1]} | {out[-1]} | {engine} | "
                  + " | ".join(f"{errors[p]:.1e}" for p in PRODUCTS) + " |", flush=True)
    print(f"\n| engine | {' | '.join(PRODUCTS)} |\n| --- | --- | --- | --- |")
    for engine in args.engines:
        cells = [ranges.get((engine, p)) for p in PRODUCTS]
        if cells[0]:
            print(f"| {engine} | " + " | ".join(f"{min(c):.1e} to {max(c):.1e}" for c in cells)
                  + " |")


if __name__ == "__main__":
    main()
