"""The stop at the first non-finite value: the check after each step, and the report that
names where the NaN or Inf first appeared and which snapshot is still good."""
import math

import numpy as np

from unetcore import backend
from unetcore.formats.weights import weight_layers


def gradients_finite(net):
    """A sum is NaN or Inf when any term is: one reduction per blob, summed in float64
    where the arrays live, and one scalar read (on a GPU, one wait for the device)."""
    total = sum(b.diff.sum(dtype=np.float64) for b in net.learnable_params)
    return math.isfinite(float(total))


def first_non_finite(net):
    """Where the first non-finite value is: a layer's output (forward) or, searched from the
    loss down, a gradient (backward)."""
    xp = net.xp
    for layer, spec, top in zip(net.layers, net.specs, net.top_vecs):
        bad = [n for n, b in zip(spec.tops, top) if not xp.isfinite(b.data).all()]
        if bad:
            return f"forward: top '{bad[0]}' of layer '{layer.name}' ({layer.type})"
    for i in reversed(range(len(net.layers))):
        layer = net.layers[i]
        blobs = [(f"parameter blob {k}", b) for k, b in enumerate(layer.blobs)] + \
            [(f"bottom '{n}'", b) for n, b, need in zip(
                net.specs[i].bottoms, net.bottom_vecs[i], net.bottom_need_backward[i]) if need]
        bad = [what for what, b in blobs                  # (released gradients were finite)
               if b.has_diff and not xp.isfinite(b.diff).all()]
        if bad:
            return f"backward: gradient of {bad[0]} of layer '{layer.name}' ({layer.type})"
    return "no layer output; check the input data"


def non_finite_report(solver, loss):
    """The one line the training stops with."""
    where = first_non_finite(solver.net)
    unproven = solver.unproven_snapshot
    if unproven and not holds_current_weights(solver.net, unproven[0]):
        solver.last_snapshot = unproven                 # its weights were changed since
    kept = f"the last good snapshot is {solver.last_snapshot[0]}" if solver.last_snapshot else \
        "no snapshot whose weights gave a finite step was written"
    if unproven and solver.last_snapshot != unproven:
        kept += f"; {unproven[0]} holds the weights that gave this non-finite value"
    return (f"iteration {solver.iter}: loss = {loss:g}, training stopped at the first non-finite "
            f"value, in the {where}. Nothing was saved ({kept}). Lower base_lr, set "
            "clip_gradients, or check the data for NaN.")


def holds_current_weights(net, path):
    """Whether the weights file holds exactly the net's current weights."""
    saved = {name: arrays for name, arrays, _ in weight_layers(path)}
    return all(name in saved and all(np.array_equal(a, backend.to_numpy(b.data))
                                     for a, b in zip(saved[name], blobs))
               for name, blobs in net.params.items())
