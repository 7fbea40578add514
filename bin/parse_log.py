#!/usr/bin/env python3
"""Turn a training log (unetcore's or Caffe's) into two CSV tables, as Caffe's
tools/extra/parse_log.py does: LOG.train.csv (NumIters, LearningRate, loss) and
LOG.test.csv (NumIters and one column per test output).

Usage:  python bin/parse_log.py train.log [OUTPUT_DIR]
"""
import csv
import sys
from pathlib import Path

from unetcore.errors import UnetcoreError
from unetcore.tools.plotlog import parse_log


def write_tables(log, folder):
    series = parse_log(log)
    rates = dict(series["lr"])
    folder.mkdir(parents=True, exist_ok=True)
    train = folder / f"{Path(log).name}.train.csv"
    with open(train, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["NumIters", "LearningRate", "loss"])
        for it, loss in series["loss"]:
            writer.writerow([it, rates.get(it, ""), loss])
    tests = {name[5:]: dict(values) for name, values in series.items() if name.startswith("test ")}
    test = folder / f"{Path(log).name}.test.csv"
    with open(test, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["NumIters"] + list(tests))
        for it in sorted({i for values in tests.values() for i in values}):
            writer.writerow([it] + [tests[name].get(it, "") for name in tests])
    return train, test


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    try:
        paths = write_tables(argv[1], Path(argv[2] if len(argv) == 3 else "."))
    except UnetcoreError as err:
        sys.exit(f"parse_log: error: {err}")
    print("wrote " + " and ".join(map(str, paths)))


if __name__ == "__main__":
    main(sys.argv)
