"""A deploy net ready to segment: built for the CPU or a GPU, squared to a tile size, with
every learnable layer's weights (the commands' and the cluster workers' common start)."""
import numpy as np

from unetcore.errors import NetError, UnetcoreError


def deploy_net(model, weights, tile, gpu):
    """The TEST net of `model` on the CPU (gpu None) or a GPU, at a `tile` x `tile` input (None:
    the prototxt's), with `weights` for every learnable layer, forward only."""
    from unetcore.net import Net
    net = Net(model, "TEST", gpu=gpu)
    require_image_input(net, model)
    square_input(net, model, tile)
    if weights:
        copy_all_weights(net, weights)
    net.release_activations = True          # forward only: keep just what later layers read
    return net


def copy_all_weights(net, path):
    """Load weights for inference, refusing a file that leaves a learnable layer random."""
    uncovered = sorted(set(net.params) - set(net.copy_from(path, strict=True)))
    if uncovered:
        raise UnetcoreError(f"{path}: has no weights for layer(s) {', '.join(uncovered)} of the "
                            "net; these weights belong to another net")


def require_image_input(net, model):
    if net.image_input is None:
        raise UnetcoreError(f"{model}: the net has no image input blob (N, C, H, W) or "
                            "volume input blob (N, C, D, H, W)")


def square_input(net, model, size, option="--tile"):
    """Reshape the net to a size x size image input (refused if it misaligns a pool, if it
    is too small for the net's valid convolutions, or if its blobs would not fit in memory:
    Net.reshape checks); `option` is the user's name for the size."""
    if size is None:
        return
    if size < 1:
        raise UnetcoreError(f"{option} {size}: the input size must be a positive number of "
                            "pixels")
    require_image_input(net, model)
    from unetcore.memory import require_blob_bytes
    blob = net.blobs[net.image_input]
    if len(blob.shape) != 4:
        raise UnetcoreError(f"{model}: a 3-d net's tile (D, H, W) is its prototxt's input shape; "
                            "a square --size/--tile is for 2-d nets (`unetcore shapes` lists "
                            "the valid sizes per axis)")
    shape = blob.shape[:2] + (size, size)
    require_blob_bytes(int(np.prod(shape)) * net.dtype.itemsize, f"a {size} x {size} input")
    original = blob.shape
    blob.reshape(shape)
    try:
        net.reshape()
    except NetError as err:
        blob.reshape(original)
        net.reshape()
        raise NetError(f"{option} {size} is too small for {model}: use a larger {option}"
                       f"{smallest_hint(net, size)}; at {size} px, {err}") from None
    net.check_input_size()
    net.set_inputs({net.image_input: np.zeros(shape)})


def smallest_hint(net, size):
    """' (the smallest it takes is N)' for a net that takes a size in the next 512 px."""
    from unetcore.sizes import valid_sizes
    larger = valid_sizes(net, net.image_input, size + 1, size + 512)
    return f" (the smallest it takes is {larger[0]})" if larger else ""
