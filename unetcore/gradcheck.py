"""A Caffe-style gradient checker, in float64 with central differences.

For an objective E, the analytic gradient from backward is compared with

    dE/dx_i ~ (E(x + h e_i) - E(x - h e_i)) / (2h)          (error O(h^2))

element by element. A pair passes when |analytic - numeric| <= threshold * max(|analytic|,
|numeric|, 1) (Caffe's GradientChecker scales by the same max; its threshold is the
caller's, unetcore's default 1e-6). For a single layer, E is a random linear function of its
tops, E = sum_k <c_k, top_k>, so every top element's gradient path is exercised; for a whole
net, E is the net's weighted loss. Layers that draw random numbers (Dropout) get the same draws
on every evaluation, so E is a fixed function.
"""
import copy
from dataclasses import dataclass

import numpy as np

from unetcore import layers  # noqa: F401  (fills the registry of layer types)
from unetcore.backend import to_numpy
from unetcore.errors import NetError


@dataclass
class BlobCheck:
    """The comparison for one blob: worst errors over the checked elements."""
    name: str
    checked: int
    max_abs_error: float
    max_scaled_error: float
    threshold: float

    @property
    def passed(self):
        return self.max_scaled_error <= self.threshold

    def line(self):
        verdict = "ok" if self.passed else "FAILED"
        return (f"{self.name:<40} {self.checked:>7} checked  max abs err {self.max_abs_error:.3e}  "
                f"max rel err {self.max_scaled_error:.3e}  {verdict}")


def _rng_states(layers):
    return [copy.deepcopy(l.rng.bit_generator.state) for l in layers]


def _restore_rngs(layers, states):
    for layer, state in zip(layers, states):
        layer.rng.bit_generator.state = copy.deepcopy(state)


def _compare(name, array, analytic, objective, step, threshold, indices):
    flat, grad = array.reshape(-1), to_numpy(analytic).reshape(-1)
    worst_abs = worst_scaled = 0.0
    for i in indices:
        original = float(flat[i])
        flat[i] = original + step
        plus = objective()
        flat[i] = original - step
        minus = objective()
        flat[i] = original
        numeric = (plus - minus) / (2 * step)
        error = abs(grad[i] - numeric)
        worst_abs = max(worst_abs, error)
        worst_scaled = max(worst_scaled, error / max(abs(grad[i]), abs(numeric), 1.0))
    return BlobCheck(name, len(indices), worst_abs, worst_scaled, threshold)


def _indices(size, max_checks, rng):
    if max_checks is None or size <= max_checks:
        return range(size)
    return np.sort(rng.choice(size, max_checks, replace=False))


def check_layer(layer, bottom, top, check_bottoms=None, step=1e-6, threshold=1e-6,
                max_checks=None, seed=0):
    """Check every bottom in `check_bottoms` (default: all) and every parameter of `layer`.

    `layer` must be built in float64; `bottom` holds its input Blobs with data set.
    Returns a list of BlobCheck.
    """
    rng = np.random.default_rng(seed)
    layer.check_blob_counts(bottom, top)
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    states = _rng_states([layer])
    layer.forward(bottom, top)
    coeffs = [layer.xp.asarray(rng.standard_normal(t.shape)) for t in top]
    check_bottoms = range(len(bottom)) if check_bottoms is None else check_bottoms

    def objective():
        _restore_rngs([layer], states)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        return sum(float((c * t.data).sum()) for c, t in zip(coeffs, top))

    objective()
    for c, t in zip(coeffs, top):
        t.diff[...] = c
    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.backward(top, [i in check_bottoms for i in range(len(bottom))], bottom)
    analytic = [(f"bottom[{i}]", bottom[i].data, bottom[i].diff.copy()) for i in check_bottoms]
    analytic += [(f"{layer.name} param[{i}]", b.data, b.diff.copy())
                 for i, b in enumerate(layer.blobs)]
    return [_compare(name, data, grad, objective, step, threshold,
                     _indices(data.size, max_checks, rng)) for name, data, grad in analytic]


def check_net(net, step=1e-6, threshold=1e-6, max_checks=None, seed=0):
    """Check the gradient of a float64 net's loss w.r.t. every learnable parameter and
    every input blob that backward reaches (all of them with force_backward)."""
    if not any(any(spec.loss_weights) for spec in net.specs):
        raise NetError(f"net '{net.name}' has no loss (no layer with a loss_weight), so there is "
                       "no gradient to check; add a loss layer, as a train net has")
    rng = np.random.default_rng(seed)
    states = _rng_states(net.layers)

    def objective():
        _restore_rngs(net.layers, states)
        return net.forward_layers()

    objective()
    net.clear_param_diffs()
    net.backward()
    names = {}
    for layer_name, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            names.setdefault(id(blob), f"{layer_name} param[{i}]")
    targets = [(names[id(b)], b.data, b.diff.copy()) for b in net.learnable_params]
    targets += [(f"input '{n}'", net.blobs[n].data, net.blobs[n].diff.copy())
                for n in net.inputs if net.blobs[n].has_diff]
    return [_compare(name, data, grad, objective, step, threshold,
                     _indices(data.size, max_checks, rng)) for name, data, grad in targets]


def randomize_params(net, rng, scale=None):
    """Random weights and biases, uniform in [-scale, scale], so that no ReLU sits exactly at
    its kink (zero biases on a dead region put whole maps at 0, where the derivative does
    not exist). By default scale 0.5, and for the weights of a wide layer sqrt(6 / fan-in)
    where that is less: variance 2 / fan-in (MSRA's, for ReLU nets), so activations keep
    their size through a wide net, and its loss stays where central differences are
    accurate."""
    for blob in net.learnable_params:
        fan_in = blob.count // blob.shape[0] if len(blob.shape) > 1 else 0
        bound = scale or (min(0.5, (6.0 / fan_in) ** 0.5) if fan_in else 0.5)
        blob.data[...] = net.xp.asarray(rng.uniform(-bound, bound, blob.shape))


def random_inputs(net, rng):
    """Fill a net's inputs for a check: labels as class indices, loss weights positive,
    everything else standard normal."""
    roles = _input_roles(net)
    for name in net.inputs:
        blob = net.blobs[name]
        role, classes = roles.get(name, ("data", 0))
        if role == "label":
            blob.data[...] = net.xp.asarray(rng.integers(0, classes, blob.shape))
        elif role == "weight":
            blob.data[...] = net.xp.asarray(rng.uniform(0.5, 2.0, blob.shape))
        else:
            blob.data[...] = net.xp.asarray(rng.standard_normal(blob.shape))


def _input_roles(net):
    """Input name -> ('label', classes) or ('weight', 0) for the loss layers' 2nd/3rd bottoms."""
    origin = {}
    for layer, spec in zip(net.layers, net.specs):
        for top in spec.tops:
            origin[top] = origin.get(spec.bottoms[0], spec.bottoms[0]) \
                if layer.type == "Split" else top
    roles = {}
    for layer, spec, bottom in zip(net.layers, net.specs, net.bottom_vecs):
        if layer.type in ("SoftmaxWithLoss", "Accuracy"):
            classes = bottom[0].shape[getattr(layer, "axis", 1)]
            if len(spec.bottoms) > 1:
                roles[origin.get(spec.bottoms[1], spec.bottoms[1])] = ("label", classes)
            if len(spec.bottoms) > 2:
                roles[origin.get(spec.bottoms[2], spec.bottoms[2])] = ("weight", 0)
    return roles


def layer_from_text(text, phase="TRAIN", dtype=np.float64, seed=0, bottom_shapes=(), xp=np):
    """One layer built from its prototxt text (a `layer { ... }` body), alone, as a net would
    build it for bottoms of `bottom_shapes` (which choose its engine, unetcore.config): for
    trying and checking a layer, your own included."""
    from unetcore.layer import layer_class
    from unetcore.formats.prototxt import parse
    param = parse(text, "LayerParameter")
    cls = layer_class(param, bottom_shapes, xp)
    return cls(param, phase, dtype, xp, np.random.default_rng(seed))


def check_gradients(layer, *inputs, tops=1, check_bottoms=None, max_checks=None, seed=0):
    """Gradient-check `layer` (a layer, or its prototxt text) on the arrays `inputs`, one per
    bottom: [BlobCheck] for every bottom and parameter blob, each with `.passed` and
    `.line()`. The layer must compute in float64 (layer_from_text builds it so)."""
    from unetcore.blob import Blob
    if isinstance(layer, str):
        layer = layer_from_text(layer, bottom_shapes=[np.shape(a) for a in inputs])
    bottom = []
    for array in inputs:
        blob = Blob(np.shape(array), np.float64)
        blob.data[...] = array
        bottom.append(blob)
    top = [Blob((), np.float64) for _ in range(tops)]
    return check_layer(layer, bottom, top, check_bottoms=check_bottoms, max_checks=max_checks,
                       seed=seed)


# ---------------------------------------------------------------- float32 accuracy
PRODUCTS = ("forward", "weight gradient", "data gradient")


def float32_errors(param, bottom_shape, engine, rng):
    """How far `engine` computes one (De)Convolution layer in float32 from the float64
    reference on the same input x, weights W and top gradient dy: {product: error} for the
    forward y, the weight gradient dW and the data gradient dx, each
    max |float32 - float64| / max |float64|. x is uniform in [0, 1) (a ReLU's output), W
    normal with MSRA's variance 2 / fan-in, dy standard normal. None if `engine` cannot run
    this layer."""
    from unetcore import config
    from unetcore.layer import LAYER_TYPES, layer_class
    with config.using_engine(engine):
        fast_class = layer_class(param, [bottom_shape])
    if fast_class.engine != engine:
        return None
    reference_class = LAYER_TYPES[param.type]
    inputs = _product_inputs(reference_class, param, bottom_shape, rng)
    exact = _products(reference_class, param, np.float64, inputs)
    fast = _products(fast_class, param, np.float32, inputs)
    return {name: float(np.abs(fast[name] - exact[name]).max() / np.abs(exact[name]).max())
            for name in PRODUCTS}


def _built(cls, param, dtype, bottom_shape):
    from unetcore.blob import Blob
    layer = cls(param, "TRAIN", dtype)
    bottom, top = [Blob(bottom_shape, dtype)], [Blob((), dtype)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    return layer, bottom, top


def _product_inputs(cls, param, bottom_shape, rng):
    """x, W, b (None without a bias) and dy for one layer, in float64."""
    layer, _, top = _built(cls, param, np.float64, bottom_shape)
    weights = layer.blobs[0]
    fan_in = weights.count // weights.shape[0]             # Caffe's MSRA filler's
    bias = rng.standard_normal(layer.blobs[1].shape) * 0.1 if len(layer.blobs) > 1 else None
    return (rng.random(bottom_shape), rng.standard_normal(weights.shape) * np.sqrt(2 / fan_in),
            bias, rng.standard_normal(top[0].shape))


def _products(cls, param, dtype, inputs):
    """y, dW and dx of one layer of class `cls`, computed in `dtype`, as float64 arrays."""
    x, w, b, dy = inputs
    layer, bottom, top = _built(cls, param, dtype, x.shape)
    layer.blobs[0].data[...] = w
    if b is not None:
        layer.blobs[1].data[...] = b
    bottom[0].data[...] = x
    layer.forward(bottom, top)
    top[0].diff[...] = dy
    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.backward(top, [True], bottom)
    return {"forward": top[0].data.astype(np.float64),
            "weight gradient": layer.blobs[0].diff.astype(np.float64),
            "data gradient": bottom[0].diff.astype(np.float64)}
