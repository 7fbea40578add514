"""Per-layer forward and backward timing (Caffe's `caffe time`), and the work each layer does.

Backward runs every layer with every bottom gradient, as in training, whatever the net's
loss layers (a deploy net gets random output gradients), so a deploy prototxt times too.
"""
import statistics
import time

import numpy as np


def layer_macs(layer, bottom, top):
    """Multiply-accumulates of one forward of a Convolution or Deconvolution layer, else 0."""
    if layer.type == "Convolution":
        weights = layer.blobs[0]
        return top[0].count * int(np.prod(weights.shape[1:]))
    if layer.type == "Deconvolution":
        weights = layer.blobs[0]
        return bottom[0].count * int(np.prod(weights.shape[1:]))
    return 0


def net_macs(net):
    """Multiply-accumulates of one forward of the whole net at its current shapes."""
    return sum(layer_macs(layer, bottom, top)
               for layer, bottom, top in zip(net.layers, net.bottom_vecs, net.top_vecs))


def _synchronize(xp):
    if xp is not np:
        xp.cuda.Device().synchronize()


def time_layers(net, iterations=10, seed=0):
    """{layer name: (forward seconds, backward seconds)}, medians over the iterations. Every
    layer runs backward here, as in `caffe time`, so every forward keeps what its backward
    reads (backward_wanted), even in a deploy net."""
    for layer in net.layers:
        layer.backward_wanted = True
    rng = np.random.default_rng(seed)
    for name in net.inputs:
        blob = net.blobs[name]
        blob.data[...] = net.xp.asarray(rng.random(blob.shape), dtype=net.dtype)
    sources = {name for spec in net.specs if not spec.bottoms for name in spec.tops}
    forward = {l.name: [] for l in net.layers}
    backward = {l.name: [] for l in net.layers}
    for _ in range(iterations):
        for layer, bottom, top in zip(net.layers, net.bottom_vecs, net.top_vecs):
            start = time.perf_counter()
            layer.reshape(bottom, top)
            layer.forward(bottom, top)
            _synchronize(net.xp)
            forward[layer.name].append(time.perf_counter() - start)
        for name in net.outputs:
            diff = net.blobs[name].diff
            diff[...] = net.xp.asarray(rng.standard_normal(diff.shape), dtype=net.dtype)
        for i in reversed(range(len(net.layers))):
            layer = net.layers[i]
            down = [name not in sources for name in net.specs[i].bottoms]   # no grad for data
            start = time.perf_counter()
            layer.backward(net.top_vecs[i], down, net.bottom_vecs[i])
            _synchronize(net.xp)
            backward[layer.name].append(time.perf_counter() - start)
    return {name: (statistics.median(forward[name]), statistics.median(backward[name]))
            for name in forward}
