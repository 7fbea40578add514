"""Weights and solver state, in HDF5 or Caffe's binary protobuf, written atomically.

HDF5 weights use Caffe's layout, so Caffe and caffe_unet load them and we load theirs:
one group per layer under /data, with datasets "0" (weights), "1" (bias), ...
Binary .caffemodel and .solverstate files are Caffe's own (unetcore.formats.caffemodel).
Every file is written to a temporary name beside the target and renamed over it,
so a crash or Ctrl-C never leaves a half-written snapshot in place of a good one.
"""
from pathlib import Path

import h5py
import numpy as np

from unetcore.backend import to_numpy
from unetcore.errors import DataError
from unetcore.files import atomic_file, atomic_h5


def open_h5(path, what="weights"):
    """Open an HDF5 file for reading, with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such {what} file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 {what} file: {err}") from None


def save_weights(net, path):
    write_h5_weights(path, [(name, [to_numpy(b.data) for b in blobs])
                            for name, blobs in net.params.items()])


def write_h5_weights(path, layers):
    """(layer name, [arrays]) pairs in Caffe's HDF5 layout, /data/<layer>/0, 1, ..."""
    with atomic_h5(path) as f:
        data = f.create_group("data")
        for name, arrays in layers:
            group = data.create_group(name)
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=array)


def weight_layers(path):
    """(layer name, [arrays], where) for every layer with weights in an HDF5 weights file
    (Caffe's layout) or a binary .caffemodel; `where` locates the layer in the file."""
    from unetcore.formats.caffemodel import is_hdf5, read_caffemodel
    if not Path(path).exists():
        raise DataError(f"{path}: no such weights file")
    if not is_hdf5(path):
        return [(name, arrays, f"byte {offset}") for name, arrays, offset
                in read_caffemodel(path) if arrays]
    with open_h5(path) as f:
        if "data" not in f:
            raise DataError(f"{path}: no /data group; this is not a weights file in Caffe's "
                            "HDF5 layout")
        return [(name, [np.asarray(group[str(i)]) for i in range(len(group))], f"/data/{name}")
                for name, group in f["data"].items() if len(group)]


def load_weights(net, path, strict=False, resize_channels=False):
    """Copy the file's layers into the net's layers of the same name; the names copied.
    A layer of the file that the net lacks is skipped and logged, as Caffe's
    CopyTrainedLayersFrom does; with `strict` (weights for inference) it is an error.
    With `resize_channels`, a (De)Convolution whose channel counts differ from the file's
    takes the overlapping part, as caffe_unet's CopyTrainedLayersFromHDF5 does."""
    from unetcore.logs import log
    layers = {layer.name: layer for layer in net.layers}
    copied = []
    for name, arrays, where in weight_layers(path):
        if name not in net.params:
            if strict:
                raise DataError(f"{path}: {where}: layer '{name}' has weights but the net has "
                                "no learnable layer of that name; these weights belong to "
                                "another net")
            log(f"Ignoring source layer {name}")
            continue
        _copy_layer(arrays, layers[name], path, resize_channels)
        log(f"Copying source layer {name}")
        copied.append(name)
    return copied


def _without_leading_ones(shape):
    """A shape without the leading 1s that Caffe's legacy 4-d blobs add ((1, 1, 1, N) ~ (N,))."""
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


# What the first two axes of a weight blob count, by layer type (a bias has the outputs).
CHANNEL_AXES = {"Convolution": ("output", "input"), "Deconvolution": ("input", "output")}


def _copy_layer(arrays, layer, path, resize_channels=False):
    name, blobs = layer.name, layer.blobs
    if len(arrays) != len(blobs):
        raise DataError(f"{path}: layer '{name}' has {len(arrays)} blob(s) in the file but "
                        f"{len(blobs)} in the net")
    for i, (values, blob) in enumerate(zip(arrays, blobs)):
        if values.shape != blob.shape:
            if _without_leading_ones(values.shape) == _without_leading_ones(blob.shape):
                values = values.reshape(blob.shape)   # Caffe's legacy 4-d shapes: (1, 1, 1, N)
            elif resize_channels and _only_channels_differ(layer, values.shape, blob.shape):
                _copy_overlap(values, blob)
                if i == 0:
                    _log_channel_change(layer, values.shape, blob.shape)
                continue
            else:
                tolerated = " (only a Convolution's or Deconvolution's channel counts may " \
                            "differ)" if resize_channels else ""
                raise DataError(f"{path}: layer '{name}' blob {i} has shape {values.shape} in the "
                                f"file but {blob.shape} in the net; the weights do not fit this "
                                f"prototxt{tolerated}")
        blob.data[...] = blob.xp.asarray(values, dtype=blob.dtype)


def _only_channels_differ(layer, file_shape, net_shape):
    """Whether a (De)Convolution's blob differs from the file's only in its first two axes
    (the channels; a bias in its one axis), which caffe_unet tolerates."""
    return layer.type in CHANNEL_AXES and len(file_shape) == len(net_shape) and \
        file_shape[2:] == net_shape[2:]


def _copy_overlap(values, blob):
    """The channels both have, copied whole; the net's other channels keep their filler
    values. (caffe_unet copies a kernel's element count in bytes, a quarter of each float
    kernel; here every element of the overlapping kernels is copied.)"""
    overlap = tuple(slice(0, min(a, b)) for a, b in zip(values.shape, blob.shape))
    blob.data[overlap] = blob.xp.asarray(values[overlap], dtype=blob.dtype)


def _log_channel_change(layer, file_shape, net_shape):
    """caffe_unet's line for each changed channel count of a layer's weights."""
    from unetcore.logs import log
    for axis, meaning in enumerate(CHANNEL_AXES[layer.type]):
        if file_shape[axis] != net_shape[axis]:
            log(f"Changing number of {meaning} channels of layer {layer.name} from "
                f"{file_shape[axis]} (weights) to {net_shape[axis]} (model); the channels "
                f"beyond {min(file_shape[axis], net_shape[axis])} keep their filler values")


def save_binary_weights(net, path):
    """The net's weights as a binary .caffemodel (Caffe's NetParameter with V2 layers)."""
    from unetcore.formats.caffemodel import encode_net
    layers = [(layer.name, layer.type, [to_numpy(b.data) for b in layer.blobs])
              for layer in net.layers if layer.blobs]
    with atomic_file(path) as f:
        f.write(encode_net(layers, net.name))


def read_state(path):
    """{iter, learned_net, history, current_step, rng_states} of an HDF5 or binary solver
    state."""
    from unetcore.formats.caffemodel import is_hdf5, read_solverstate
    if not Path(path).exists():
        raise DataError(f"{path}: no such solver state file")
    if not is_hdf5(path):
        return read_solverstate(path)
    with open_h5(path, "solver state") as f:
        missing = [k for k in ("iter", "learned_net", "history") if k not in f]
        if missing:
            raise DataError(f"{path}: not a solver state file (no {', '.join(missing)})")
        learned = f["learned_net"][()]
        return {"iter": int(f["iter"][()]),
                "learned_net": learned.decode() if isinstance(learned, bytes) else str(learned),
                "history": [np.asarray(f["history"][str(i)]) for i in range(len(f["history"]))],
                "current_step": int(f["current_step"][()]) if "current_step" in f else 0,
                "rng_states": f.attrs.get("rng_states", "")}
