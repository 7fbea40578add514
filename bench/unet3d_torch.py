"""The same 3-d U-Net as unetcore.models.unet3d in PyTorch (Conv3d, MaxPool3d, ConvTranspose3d), timed
the way bench/unet3d.py times unetcore: a reference to measure against, never a dependency.

Run by bench/unet3d.py with --torch-python; prints one JSON line of figures.
Usage: python bench/unet3d_torch.py --mode forward|train --tile D H W --depth 4 --channels 32
                                     --flat-levels 2 [--threads 2] [--repeats 3]
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def level_kernels(level, flat_levels):
    return ((1, 3, 3), (1, 2, 2)) if level < flat_levels else ((3, 3, 3), (2, 2, 2))


def center_crop(x, shape):
    starts = [(n - s) // 2 for n, s in zip(x.shape[2:], shape)]
    return x[(slice(None), slice(None)) + tuple(slice(a, a + s) for a, s in zip(starts, shape))]


class UNet3d(nn.Module):
    def __init__(self, depth, channels, flat_levels, classes=2):
        super().__init__()
        self.depth, self.flat = depth, flat_levels
        self.down, self.up, self.upconv = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        inputs = 1
        for level in range(depth + 1):
            kernel, _ = level_kernels(level, flat_levels)
            width = channels * 2 ** level
            self.down.append(nn.ModuleList([nn.Conv3d(inputs, width, kernel),
                                            nn.Conv3d(width, width, kernel)]))
            inputs = width
        for level in reversed(range(depth)):
            kernel, pool = level_kernels(level, flat_levels)
            width = channels * 2 ** level
            self.upconv.append(nn.ConvTranspose3d(inputs, width, pool, stride=pool))
            self.up.append(nn.ModuleList([nn.Conv3d(2 * width, width, kernel),
                                          nn.Conv3d(width, width, kernel)]))
            inputs = width
        self.score = nn.Conv3d(inputs, classes, 1)

    def forward(self, x):
        skips = []
        for level, (a, b) in enumerate(self.down):
            x = F.relu(b(F.relu(a(x))))
            if level < self.depth:
                skips.append(x)
                _, pool = level_kernels(level, self.flat)
                x = F.max_pool3d(x, pool, pool)
        for (a, b), upconv, skip in zip(self.up, self.upconv, reversed(skips)):
            x = F.relu(upconv(x))
            x = torch.cat([x, center_crop(skip, x.shape[2:])], 1)
            x = F.relu(b(F.relu(a(x))))
        return self.score(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["forward", "train"], required=True)
    ap.add_argument("--tile", type=int, nargs=3, required=True)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--flat-levels", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet3d(args.depth, args.channels, args.flat_levels)
    x = torch.rand(1, 1, *args.tile)
    if args.mode == "forward":
        model.eval()

        def run():
            with torch.no_grad():
                return model(x)
    else:
        out = model(x).shape[2:]
        label = torch.randint(0, 2, (1, *out))
        weights = 1 + 9 * torch.rand(1, *out)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.99)

        def run():
            optimizer.zero_grad()
            loss = (F.cross_entropy(model(x), label, reduction="none") * weights).sum() \
                / weights.sum()
            loss.backward()
            optimizer.step()
    times = []
    for i in range(args.repeats + 1):
        start = time.perf_counter()
        run()
        if i:
            times.append(time.perf_counter() - start)
    print(json.dumps({"median_s": statistics.median(times), "times_s": times,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
