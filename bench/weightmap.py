"""The weight map's speed (issue 33): eq. 2 of the paper (w0 = 10, sigma = 5 px, the distances
to the two nearest cells) of one synthetic 1024 x 1024 label image (`unetcore synth`, cells
of about 40 px: 655 cells), as `unetcore weightmap` computes it. Target: at most 3 s.
The median of the repeats.

    python bench/weightmap.py [--size 1024] [--cell-size 40] [--repeats 3]
"""
import argparse
import statistics
import time

from scipy import ndimage

from host import describe
from unetcore.data.synth import synth_stack
from unetcore.data.weightmap import weight_map


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--cell-size", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _, labels = synth_stack(1, args.size, seed=0, cell_size=args.cell_size)
    cells = ndimage.label(labels[0] > 0)[1]
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        weight_map(labels[0])
        times.append(time.perf_counter() - start)
    print(describe())
    print(f"weight map of {args.size} x {args.size} px, {cells} cells: "
          f"{statistics.median(times):.2f} s (median of {args.repeats})")


if __name__ == "__main__":
    main()
