"""The solvers: each update rule and lr policy against its formula, the training loop's
bookkeeping (iter_size, clipping, regularization), snapshots, exact resume, NaN handling."""
import io
import math
import os
import re
import signal

import h5py
import numpy as np
import pytest

from cases import small_unet_solver, weights_of
import unetcore
from unetcore.errors import SolverError
from unetcore.logs import log_to
from unetcore.formats.prototxt import parse
from unetcore.solvers.lr_policies import learning_rate
from unetcore.solvers.solver import signal_actions

TINY_NET = """net_param {
  name: "tiny"
  layer { name: "input" type: "Input" top: "data" top: "label"
          input_param { shape { dim: 1 dim: 1 dim: 3 dim: 3 } shape { dim: 1 dim: 1 dim: 1 dim: 1 } } }
  layer { name: "fc" type: "Convolution" bottom: "data" top: "score"
          param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
          convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } } }
  layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
}
"""


def tiny_solver(options):
    return unetcore.get_solver(parse(TINY_NET + options, "SolverParameter"))


def reference_update(kind, p, g, w, state, t, rate):
    """The update rules written out once more, in float64, from Caffe's sgd_solvers."""
    m, d = p["momentum"], p.get("delta", 1e-8)
    if kind == "SGD":
        state["v"] = m * state.get("v", 0) + rate * g
        return state["v"]
    if kind == "Nesterov":
        prev = state.get("v", 0)
        state["v"] = m * prev + rate * g
        return (1 + m) * state["v"] - m * prev
    if kind == "AdaGrad":
        state["h"] = state.get("h", 0) + g * g
        return rate * g / (np.sqrt(state["h"]) + d)
    if kind == "RMSProp":
        state["h"] = p["rms_decay"] * state.get("h", 0) + (1 - p["rms_decay"]) * g * g
        return rate * g / (np.sqrt(state["h"]) + d)
    if kind == "AdaDelta":
        state["g2"] = m * state.get("g2", 0) + (1 - m) * g * g
        u = g * np.sqrt((state.get("u2", 0) + d) / (state["g2"] + d))
        state["u2"] = m * state.get("u2", 0) + (1 - m) * u * u
        return rate * u
    if kind == "Adam":
        b2 = p["momentum2"]
        state["m"] = m * state.get("m", 0) + (1 - m) * g
        state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
        correction = math.sqrt(1 - b2 ** t) / (1 - m ** t)
        return rate * correction * state["m"] / (np.sqrt(state["v"]) + d)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,momentum", [("SGD", 0.99), ("Nesterov", 0.9), ("AdaGrad", 0.0),
                                           ("RMSProp", 0.0), ("AdaDelta", 0.95),
                                           ("Adam", 0.9)])
def test_each_solver_matches_its_update_rule(kind, momentum):
    p = dict(momentum=momentum, rms_decay=0.98, momentum2=0.999, delta=1e-6)
    solver = tiny_solver(f'type: "{kind}" base_lr: 0.1 momentum: {momentum} rms_decay: 0.98 '
                         f'delta: 1e-6 weight_decay: 0.01')
    rng = np.random.default_rng(0)
    weight, bias = solver.net.learnable_params
    w = [weight.data.astype(np.float64), bias.data.astype(np.float64)]
    states = [{}, {}]
    for t in range(1, 4):
        grads = [rng.normal(size=weight.shape), rng.normal(size=bias.shape)]
        weight.diff[...], bias.diff[...] = grads
        solver.apply_update()
        solver.iter += 1
        for i, (lr_mult, decay_mult) in enumerate([(1, 1), (2, 0)]):
            g = grads[i] + 0.01 * decay_mult * w[i]
            w[i] = w[i] - reference_update(kind, p, g, w[i], states[i], t, 0.1 * lr_mult)
        np.testing.assert_allclose(weight.data, w[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bias.data, w[1], rtol=1e-5, atol=1e-6)


def test_legacy_solver_type_enum_and_unknown_type():
    assert tiny_solver("solver_type: NESTEROV").type == "Nesterov"
    assert tiny_solver('type: "adam"').type == "Adam"
    with pytest.raises(SolverError, match="unknown solver type 'Adamm'.*SGD"):
        tiny_solver('type: "Adamm"')


POLICY_CASES = [
    ("fixed", "", lambda it: 0.1),
    ("step", "gamma: 0.5 stepsize: 10", lambda it: 0.1 * 0.5 ** (it // 10)),
    ("exp", "gamma: 0.99", lambda it: 0.1 * 0.99 ** it),
    ("inv", "gamma: 0.001 power: 0.75", lambda it: 0.1 * (1 + 0.001 * it) ** -0.75),
    ("multistep", "gamma: 0.1 stepvalue: 5 stepvalue: 20",
     lambda it: 0.1 * 0.1 ** ((it >= 5) + (it >= 20))),
    ("poly", "power: 2 max_iter: 40", lambda it: 0.1 * (1 - it / 40) ** 2),
    ("sigmoid", "gamma: -0.2 stepsize: 15", lambda it: 0.1 / (1 + math.exp(0.2 * (it - 15)))),
]


@pytest.mark.parametrize("policy,fields,formula", POLICY_CASES)
def test_lr_policies_follow_their_formulas(policy, fields, formula):
    p = parse(f'base_lr: 0.1 lr_policy: "{policy}" {fields}', "SolverParameter")
    for it in (0, 1, 4, 5, 9, 10, 19, 20, 33):
        assert learning_rate(p, it) == pytest.approx(formula(it), rel=1e-12)


def test_lr_policy_errors():
    with pytest.raises(SolverError, match="unknown lr_policy 'stepp'"):
        learning_rate(parse('lr_policy: "stepp"', "SolverParameter"), 0)
    with pytest.raises(SolverError, match="'step' needs stepsize > 0"):
        learning_rate(parse('lr_policy: "step"', "SolverParameter"), 0)


def test_l1_regularization_and_gradient_clipping():
    solver = tiny_solver("base_lr: 1 weight_decay: 0.5 regularization_type: 'L1' clip_gradients: 1")
    weight, bias = solver.net.learnable_params
    w0 = weight.data.copy()
    weight.diff[...] = 3.0
    bias.diff[...] = 4.0
    norm = math.sqrt(9 * weight.count + 16 * bias.count)
    solver.apply_update()
    expected = w0 - (3.0 / norm + 0.5 * np.sign(w0))       # clip first, then regularize
    np.testing.assert_allclose(weight.data, expected, rtol=1e-6, atol=1e-6)


def fill_tiny(net):
    net.set_inputs(dict(data=np.arange(9.0).reshape(1, 1, 3, 3) / 9, label=np.ones((1, 1, 1, 1))))


def test_iter_size_averages_accumulated_gradients():
    runs = []
    for iter_size in (1, 3):
        solver = tiny_solver(f"base_lr: 0.5 momentum: 0.9 random_seed: 3 iter_size: {iter_size}")
        fill_tiny(solver.net)
        solver.step(5)
        runs.append([b.data.copy() for b in solver.net.learnable_params])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_small_unet_learns_a_synthetic_task(tmp_path):
    # Seed 1: with only 2 channels per layer, about 3 seeds in 10 start with every ReLU of a
    # level dead and cannot learn at all; that is the tiny net, not the solver.
    solver = small_unet_solver(tmp_path)
    first = solver.net.forward_layers()
    solver.step(300)
    last = solver.net.forward_layers()
    assert first > 0.5 and last < 0.1 * first


def test_same_seed_same_run_bit_for_bit(tmp_path):
    a, b = small_unet_solver(tmp_path), small_unet_solver(tmp_path)
    a.step(5)
    b.step(5)
    for x, y in zip(weights_of(a), weights_of(b)):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("snapshot_format,names", [
    ("HDF5", ("small_iter_10.caffemodel.h5", "small_iter_10.solverstate.h5")),
    ("BINARYPROTO", ("small_iter_10.caffemodel", "small_iter_10.solverstate"))])
def test_resume_is_exact(tmp_path, snapshot_format, names):
    """Both snapshot formats resume bit for bit: HDF5, and Caffe's binary protobuf."""
    straight = small_unet_solver(tmp_path)
    straight.step(20)
    first = small_unet_solver(tmp_path, f"snapshot_format: {snapshot_format}")
    first.step(10)
    model, state = first.snapshot()
    assert (model.name, state.name) == names
    with open(model, "rb") as f:
        assert (f.read(8) == b"\x89HDF\r\n\x1a\n") == (snapshot_format == "HDF5")
    resumed = small_unet_solver(tmp_path)
    resumed.restore(state)
    assert resumed.iter == 10
    resumed.step(10)
    for x, y in zip(weights_of(straight), weights_of(resumed)):
        assert np.array_equal(x, y)


def test_snapshot_layout_is_caffes(tmp_path):
    solver = small_unet_solver(tmp_path, 'type: "Adam"')
    solver.step(2)
    model, state = solver.snapshot()
    assert model == tmp_path / "small_iter_2.caffemodel.h5"
    with h5py.File(model) as f:
        assert f["data/conv_d0a-b/0"].shape == (2, 1, 3, 3)
        assert f["data/conv_d0a-b/1"].shape == (2,)
    with h5py.File(state) as f:
        assert f["iter"][()] == 2
        assert f["learned_net"][()].decode() == str(model)
        n = len(solver.net.learnable_params)
        assert len(f["history"]) == 2 * n        # Adam: m then v, as Caffe stores them
    assert not list(tmp_path.glob("*.tmp"))


def test_restore_refuses_a_state_of_another_solver(tmp_path):
    solver = small_unet_solver(tmp_path, 'type: "Adam"')
    _, state = solver.snapshot()
    with pytest.raises(SolverError, match="holds .* history blobs, this SGD solver"):
        small_unet_solver(tmp_path).restore(state)


def test_nan_stops_training_naming_the_layer_and_saves_nothing(tmp_path):
    solver = small_unet_solver(tmp_path, "snapshot: 2")
    solver.step(2)
    good = solver.unproven_snapshot[0]        # written; its weights have not been stepped from
    stamp = good.stat().st_mtime_ns
    solver.net.layer("conv_d1b-c").blobs[0].data[0, 0, 0, 0] = np.nan
    with pytest.raises(SolverError) as err:
        solver.step(4)
    message = str(err.value)
    assert "iteration 2" in message
    assert "top 'd1c' of layer 'conv_d1b-c'" in message
    assert f"the last good snapshot is {good}" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "small_iter_2.caffemodel.h5", "small_iter_2.solverstate.h5"]
    assert good.stat().st_mtime_ns == stamp


def test_log_lines_are_caffes(tmp_path):
    stream = io.StringIO()
    log_to(stream)
    solver = small_unet_solver(tmp_path, "display: 5 max_iter: 10 snapshot_after_train: false")
    solver.solve()
    lines = stream.getvalue().splitlines()
    prefix = r"I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] "
    assert all(re.match(prefix, line) for line in lines)
    text = "\n".join(line.split("] ", 1)[1] for line in lines)
    assert "Solving unet-small" in text
    assert re.search(r"^Iteration 5 \([\d.e+-]+ iter/s, [\d.e+-]+s/5 iters\), loss = [\d.]+$",
                     text, re.M)
    assert re.search(r"^    Train net output #0: loss = ([\d.]+) \(\* 1 = \1 loss\)$", text, re.M)
    assert re.search(r"^Iteration 5, lr = 0.05$", text, re.M)
    assert text.endswith("Optimization Done.")


def test_sighup_snapshots_and_sigint_stops(tmp_path):
    solver = small_unet_solver(tmp_path, "max_iter: 50")

    def send(s):
        if s.iter == 3:
            os.kill(os.getpid(), signal.SIGHUP)
        if s.iter == 6:
            os.kill(os.getpid(), signal.SIGINT)
    solver.callbacks.append(send)
    before = signal.getsignal(signal.SIGINT)    # SIG_IGN where the tests run in the background
    with signal_actions(solver):
        solver.solve()
    assert solver.iter == 6 and solver.stopped_early
    assert sorted(p.name for p in tmp_path.glob("*.caffemodel.h5")) == [
        "small_iter_3.caffemodel.h5", "small_iter_6.caffemodel.h5"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_snapshot_whose_weights_give_the_nan_is_not_called_good(tmp_path):
    """Weights that blow up (finite, but huge) are saved by the snapshot just before the step
    that gives NaN: the report must not send the user back to them."""
    solver = small_unet_solver(tmp_path, "snapshot: 2")
    solver.step(2)
    first = solver.unproven_snapshot[0]
    solver.step(2)                                        # the iteration-2 weights gave a step
    assert solver.last_snapshot[0] == first
    solver.net.layer("conv_d1b-c").blobs[0].data[...] = 3e38    # then the weights blow up
    solver.snapshot()                                     # and are saved, at iteration 4
    with pytest.raises(SolverError) as err:
        solver.step(1)
    message = str(err.value)
    assert f"the last good snapshot is {first}" in message
    assert "small_iter_4.caffemodel.h5 holds the weights that gave this non-finite value" in message
