"""Weights and solver state in HDF5, written atomically.

Weights use Caffe's HDF5 layout, so Caffe and caffe_unet load them and we load theirs:
one group per layer under /data, with datasets "0" (weights), "1" (bias), ...
Every file is written to a temporary name beside the target and renamed over it,
so a crash or Ctrl-C never leaves a half-written snapshot in place of a good one.
"""
import os
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from .backend import to_numpy
from .errors import DataError


@contextmanager
def atomic_h5(path):
    """Open `path`'s temporary twin for writing; rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def open_h5(path, what="weights"):
    """Open an HDF5 file for reading, with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such {what} file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        hint = " (a binary .caffemodel must first be converted to HDF5)" \
            if path.suffix == ".caffemodel" else ""
        raise DataError(f"{path}: not a readable HDF5 {what} file{hint}: {err}") from None


def save_weights(net, path):
    with atomic_h5(path) as f:
        data = f.create_group("data")
        for name, blobs in net.params.items():
            group = data.create_group(name)
            for i, blob in enumerate(blobs):
                group.create_dataset(str(i), data=to_numpy(blob.data))


def load_weights(net, path):
    """Copy the layers of the file that the net has; the names of the layers copied."""
    copied = []
    with open_h5(path) as f:
        if "data" not in f:
            raise DataError(f"{path}: no /data group; this is not a weights file in Caffe's "
                            "HDF5 layout")
        for name, blobs in net.params.items():
            if name in f["data"]:
                _copy_layer(f["data"][name], name, blobs, path)
                copied.append(name)
    return copied


def _copy_layer(group, name, blobs, path):
    if len(group) != len(blobs):
        raise DataError(f"{path}: layer '{name}' has {len(group)} blob(s) in the file but "
                        f"{len(blobs)} in the net")
    for i, blob in enumerate(blobs):
        values = np.asarray(group[str(i)])
        if values.shape != blob.shape:
            if values.size != blob.count:
                raise DataError(f"{path}: layer '{name}' blob {i} has shape {values.shape} in the "
                                f"file but {blob.shape} in the net; the weights do not fit this "
                                "prototxt")
            values = values.reshape(blob.shape)   # Caffe also accepts legacy 4-d bias shapes
        blob.data[...] = blob.xp.asarray(values, dtype=blob.dtype)
