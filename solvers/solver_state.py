"""Snapshots and resume: a solver's weights and state written atomically, and read back so
that a resumed run continues bit for bit (Caffe's Solver::Snapshot and Solver::Restore).

The state holds the iteration, the update history (Caffe's layout: one blob per learnable
parameter and history set), the learning-rate step, the weights file's name and the state of
every random generator that shapes the run."""
import json
from pathlib import Path

from unetcore import backend
from unetcore.formats.caffemodel import encode_solverstate
from unetcore.errors import SolverError
from unetcore.logs import log
from unetcore.formats.weights import atomic_file, atomic_h5, read_state, save_binary_weights, save_weights


def snapshot_paths(solver):
    prefix = solver.param.snapshot_prefix or solver.net.name
    stem = f"{prefix}_iter_{solver.iter}"
    if solver.param.snapshot_format == "BINARYPROTO":
        return Path(stem + ".caffemodel"), Path(stem + ".solverstate")
    return Path(stem + ".caffemodel.h5"), Path(stem + ".solverstate.h5")


def write_snapshot(solver):
    """Weights and solver state, each atomically: HDF5 (unetcore's default and caffe_unet's),
    or with snapshot_format: BINARYPROTO Caffe's binary protobuf."""
    model, state = snapshot_paths(solver)
    history = [backend.to_numpy(h) for per_set in solver.history for h in per_set]
    rng_states = json.dumps(random_states(solver))
    if solver.param.snapshot_format == "BINARYPROTO":
        log(f"Snapshotting to binary proto file {model}")
        save_binary_weights(solver.net, model)
        log(f"Snapshotting solver state to binary proto file {state}")
        with atomic_file(state) as f:
            f.write(encode_solverstate(solver.iter, str(model), history,
                                       current_step(solver), rng_states))
    else:
        log(f"Snapshotting to HDF5 file {model}")
        save_weights(solver.net, model)
        log(f"Snapshotting solver state to HDF5 file {state}")
        with atomic_h5(state) as f:
            f["iter"] = solver.iter
            f["learned_net"] = str(model)
            f["current_step"] = current_step(solver)
            group = f.create_group("history")
            for i, h in enumerate(history):
                group.create_dataset(str(i), data=h)
            f.attrs["rng_states"] = rng_states
    solver.unproven_snapshot = (model, state)
    return model, state


def current_step(solver):
    p = solver.param
    if p.lr_policy == "step" and p.stepsize > 0:
        return solver.iter // p.stepsize
    return sum(1 for v in p.stepvalue if solver.iter >= v)


def random_states(solver):
    """Every random generator that shapes the run, so a resumed run is bit-identical."""
    states = {"solver": solver.rng.bit_generator.state}
    states.update((key, layer.rng.bit_generator.state) for key, layer in all_layers(solver))
    return states


def all_layers(solver):
    """("train/<layer>" or "test<k>/<layer>", layer) for every layer of every net."""
    nets = [("train", solver.net)] + [(f"test{k}", n) for k, n in enumerate(solver.test_nets)]
    return [(f"{tag}/{layer.name}", layer) for tag, net in nets for layer in net.layers]


def restore_state(solver, path):
    """Resume from a solver state (HDF5 or binary): iteration, history, weights and
    random state."""
    log(f"Restoring previous solver status from {path}")
    state = read_state(path)
    solver.iter = state["iter"]
    restore_history(solver, state["history"], path)
    model = Path(state["learned_net"])
    if not model.exists():
        model = Path(path).parent / model.name
    solver.net.copy_from(model)
    restore_random_states(solver, json.loads(state["rng_states"]) if state["rng_states"] else {})


def restore_history(solver, saved, path):
    flat = [h for per_set in solver.history for h in per_set]
    if len(saved) != len(flat):
        raise SolverError(f"{path}: holds {len(saved)} history blobs, this {solver.type} solver "
                          f"on this net needs {len(flat)}; was it written for another net "
                          "or solver type?")
    for i, (values, h) in enumerate(zip(saved, flat)):
        if values.shape != h.shape:
            raise SolverError(f"{path}: history blob {i} has shape {values.shape}, the net's "
                              f"parameter has {h.shape}")
        h[...] = solver.xp.asarray(values)


def restore_random_states(solver, states):
    if "solver" in states:
        solver.rng.bit_generator.state = states["solver"]
    for key, layer in all_layers(solver):
        if key in states:
            layer.rng.bit_generator.state = states[key]
