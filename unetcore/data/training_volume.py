"""A 3-d training volume as caffe_unet's 3-d nets read it: one HDF5 file holding the datasets
data (1, 1, D, H, W) grey values, labels (1, 1, D, H, W) classes and weights (1, 1, D, H, W),
the eq. 2 weight map computed in 3-d with the voxel's element size, and a text file listing
it, the `source` of an HDF5Data layer (`unetcore prepare-volume`, `unetcore synth --3d`)."""
from pathlib import Path

import numpy as np

from unetcore.files import atomic_h5, write_text
from unetcore.data.weightmap import weight_map


def write_training_volume(path, grey, classes, labels, element_size, w0=10.0, sigma=5.0,
                          num_classes=2):
    """Write grey (D, H, W) floats, their classes and the weight map of `labels` (instances
    or a mask of cells, as weight_map takes) to the HDF5 file `path`, and list it in `path`
    with the suffix .txt. Returns the list's path."""
    path = Path(path)
    weights = weight_map(labels, w0, sigma, num_classes, element_size)
    with atomic_h5(path) as f:
        f["data"] = grey.astype(np.float32)[None, None]
        f["labels"] = classes.astype(np.float32)[None, None]
        f["weights"] = weights[None, None]
    listing = path.with_suffix(".txt")
    write_text(listing, f"{path.name}\n")
    return listing
