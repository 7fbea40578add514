"""The ISBI run of bench/isbi.py in PyTorch, on the very tiles unetcore trained on.

Runs in a Python that has torch, numpy and h5py (a separate venv: torch is never a
dependency of unetcore). Reads the HDF5 file that `bench/isbi.py --torch-python` exports:
every tile, label and weight map unetcore's TiffData layer drew (elastic deformation and
all), unetcore's initial weights, each parameter's lr_mult and decay_mult, and the solver's
base_lr, momentum and weight_decay. It trains ../shared/bench/torch_unet.py's U-Net, at the
same width, from the same weights, with

- the same loss: pixel-weighted softmax cross-entropy over the sum of the weights
  (caffe_unet's normalizer, unetcore's SoftmaxWithLoss with a weights bottom);
- Caffe's SGD written out: g = grad + weight_decay * decay_mult * W,
  V = momentum * V + base_lr * lr_mult * g, W = W - V.

It writes the trained weights in Caffe's HDF5 layout (/data/<layer>/0 and 1), so that
bench/isbi.py scores both nets with the same code, and the loss of every iteration.

    python bench/isbi_torch.py TILES.h5 OUT.h5 [--torch-unet ../shared/bench]
"""
import argparse
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F


def layer_names(depth=4):
    """torch_unet's module names -> the Caffe release's layer names (unetcore/models/unet.py)."""
    names = {"score": "conv_u0d-score"}
    for level in range(depth + 1):
        names[f"down.{level}.0"] = f"conv_d{level}a-b"
        names[f"down.{level}.2"] = f"conv_d{level}b-c"
    for i in range(depth):
        level = depth - 1 - i
        source = f"d{depth}c" if i == 0 else f"u{level + 1}d"
        names[f"up.{i}"] = f"upconv_{source}_u{level}a"
        names[f"up_conv.{i}.0"] = f"conv_u{level}b-c"
        names[f"up_conv.{i}.2"] = f"conv_u{level}c-d"
    return names


def build_model(tiles, torch_unet):
    """torch_unet's U-Net at the exported width, holding the exported initial weights."""
    sys.path.insert(0, str(torch_unet))
    import torch_unet as reference
    base = tiles["init/conv_d0a-b/0"].shape[0]
    reference.CHANNELS = tuple(base * 2 ** k for k in range(5))
    model = reference.UNet()
    modules = dict(model.named_modules())
    with torch.no_grad():
        for module_name, layer in layer_names().items():
            modules[module_name].weight.copy_(torch.from_numpy(tiles[f"init/{layer}/0"][()]))
            modules[module_name].bias.copy_(torch.from_numpy(tiles[f"init/{layer}/1"][()]))
    return model, modules


def parameters_with_mults(tiles, modules):
    """(parameter, lr_mult, decay_mult, momentum buffer) for every learnable blob."""
    out = []
    for module_name, layer in layer_names().items():
        mults = tiles[f"mults/{layer}"][()]
        for blob, param in enumerate((modules[module_name].weight, modules[module_name].bias)):
            out.append((param, float(mults[blob, 0]), float(mults[blob, 1]),
                        torch.zeros_like(param)))
    return out


def caffe_sgd_step(params, base_lr, momentum, weight_decay):
    with torch.no_grad():
        for param, lr_mult, decay_mult, history in params:
            grad = param.grad + weight_decay * decay_mult * param
            history.mul_(momentum).add_(base_lr * lr_mult * grad)
            param.sub_(history)


def weighted_loss(logits, labels, weights):
    """sum(w * -log p_label) / max(1, sum(w)): SoftmaxWithLoss with caffe_unet's normalizer."""
    per_pixel = F.cross_entropy(logits, labels, reduction="none")
    return (per_pixel * weights).sum() / torch.clamp(weights.sum(), min=1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tiles")
    ap.add_argument("output")
    ap.add_argument("--torch-unet", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "bench")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with h5py.File(args.tiles, "r") as tiles:
        model, modules = build_model(tiles, args.torch_unet)
        params = parameters_with_mults(tiles, modules)
        solver = dict(tiles.attrs)
        iterations = tiles["data"].shape[0]
        losses = np.zeros(iterations)
        model.train()
        start = time.perf_counter()
        for i in range(iterations):
            x = torch.from_numpy(tiles["data"][i])
            labels = torch.from_numpy(tiles["label"][i]).long().reshape(x.shape[0], -1,
                                                                          tiles["label"].shape[-1])
            weights = torch.from_numpy(tiles["weights"][i]).reshape(labels.shape)
            model.zero_grad(set_to_none=False)
            loss = weighted_loss(model(x), labels, weights)
            loss.backward()
            caffe_sgd_step(params, solver["base_lr"], solver["momentum"], solver["weight_decay"])
            losses[i] = loss.item()
        seconds = time.perf_counter() - start
    with h5py.File(args.output, "w") as out:
        for module_name, layer in layer_names().items():
            out[f"data/{layer}/0"] = modules[module_name].weight.detach().numpy()
            out[f"data/{layer}/1"] = modules[module_name].bias.detach().numpy()
        out["loss"] = losses
        out.attrs["seconds"] = seconds
        out.attrs["torch"] = str(torch.__version__)
    print(f"PyTorch {torch.__version__}: {iterations} iterations in {seconds:.0f} s, "
          f"loss {losses[:20].mean():.4f} -> {losses[-20:].mean():.4f}")


if __name__ == "__main__":
    main()
