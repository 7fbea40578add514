"""The `unetcore` command line (Caffe's tool verbs, and the U-Net's own).

Every error the user can cause is an UnetcoreError; it is printed as one line
("unetcore: error: ...") with exit status 1, never as a traceback.
"""
import sys
from contextlib import contextmanager

import click
import numpy as np

from .errors import UnetcoreError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UnetcoreError as err:
            click.echo(f"unetcore: error: {err}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="unetcore")
def main():
    """unetcore: the original U-Net, Caffe-style, on NumPy and CuPy."""


def _phase(value):
    return value.upper()


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--size", type=int, help="Square input edge length (default: the prototxt's).")
@click.option("--phase", type=click.Choice(["train", "test"], case_sensitive=False),
              default="test", show_default=True)
def shapes(model, size, phase):
    """Print every layer's output blob shapes (a shape walk-through of the net)."""
    from .net import Net
    net = Net(model, _phase(phase))
    if size is not None:
        name = net.image_input
        if name is None:
            raise UnetcoreError(f"{model}: --size needs a net with a 4-d input blob")
        blob = net.blobs[name]
        blob.reshape(blob.shape[:-2] + (size, size))
        net.reshape()
        net.check_input_size()
    click.echo(f"{'layer':<24}{'type':<18}{'top':<14}shape")
    for layer, spec, top in zip(net.layers, net.specs, net.top_vecs):
        for name, blob in zip(spec.tops, top):
            click.echo(f"{layer.name:<24}{layer.type:<18}{name:<14}{'x'.join(map(str, blob.shape))}")
    params = sum(b.count for b in net.learnable_params)
    click.echo(f"{len(net.layers)} layers, {params:,} learnable parameters")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--phase", type=click.Choice(["train", "test"], case_sensitive=False),
              default="train", show_default=True)
@click.option("--max-checks", type=int, default=50, show_default=True,
              help="Elements checked per blob (sampled); 0 checks every element.")
@click.option("--step", type=float, default=1e-6, show_default=True)
@click.option("--threshold", type=float, default=1e-6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def gradcheck(model, phase, max_checks, step, threshold, seed):
    """Check a net's backward against central differences in float64."""
    from .gradcheck import check_net, randomize_params, random_inputs
    from .net import Net, load_net_param
    param = load_net_param(model)
    param.set("force_backward", True)
    net = Net(param, _phase(phase), dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    randomize_params(net, rng)
    random_inputs(net, rng)
    results = check_net(net, step, threshold, max_checks or None, seed)
    for r in results:
        click.echo(r.line())
    failed = [r for r in results if not r.passed]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


def _solver_or_net(path):
    """Read `path` as a solver prototxt, or as a net prototxt wrapped in a default solver."""
    from .errors import PrototxtError
    from .prototxt import Message, parse_file
    try:
        return parse_file(path, "SolverParameter")
    except PrototxtError as solver_error:
        try:
            net = parse_file(path, "NetParameter")
        except PrototxtError as net_error:
            raise max(solver_error, net_error, key=lambda e: (e.line, e.col)) from None
    solver = Message("SolverParameter")
    solver.set("net", str(path))
    return solver


SOLVER_FLAGS = {          # --flag -> SolverParameter field, for `unetcore train net.prototxt`
    "base_lr": float, "lr_policy": str, "gamma": float, "power": float, "stepsize": int,
    "momentum": float, "weight_decay": float, "max_iter": int, "iter_size": int,
    "display": int, "snapshot_prefix": str, "random_seed": int, "type": str,
    "clip_gradients": float}


def _solver_options(f):
    for field, kind in reversed(SOLVER_FLAGS.items()):
        f = click.option(f"--{field.replace('_', '-')}", field, type=kind, default=None,
                         help=f"Solver field {field} (overrides the solver file).")(f)
    return click.option("--snapshot-every", "snapshot_every", type=int, default=None,
                        help="Solver field snapshot: iterations between snapshots.")(f)


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--solver", "solver_path", type=click.Path(dir_okay=False),
              help="Solver prototxt (or give a solver or net prototxt as MODEL).")
@click.option("--weights", help="Initial weights (.caffemodel.h5); comma-separate several.")
@click.option("--snapshot", "resume", type=click.Path(dir_okay=False),
              help="Resume from a .solverstate.h5.")
@click.option("--gpu", type=int, default=None, help="CUDA device number (default: CPU).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False),
              help="Also write the log to this file.")
@click.option("--sigint-effect", type=click.Choice(["stop", "snapshot", "none"]), default="stop",
              show_default=True)
@click.option("--sighup-effect", type=click.Choice(["stop", "snapshot", "none"]),
              default="snapshot", show_default=True)
@_solver_options
def train(model, solver_path, weights, resume, gpu, log_path, sigint_effect, sighup_effect,
          snapshot_every, **flags):
    """Train a net (Caffe's `caffe train`), logging in Caffe's format."""
    from .logs import log_to
    from .solvers.solver import get_solver, signal_actions
    if weights and resume:
        raise UnetcoreError("give --weights or --snapshot, not both")
    if bool(model) == bool(solver_path):
        raise UnetcoreError("give a solver prototxt (--solver S or as MODEL) or a net prototxt")
    param = _solver_or_net(solver_path or model)
    log_to(path=log_path)
    solver = get_solver(param, gpu=gpu, snapshot=snapshot_every, **flags)
    _require_data_layer(solver.net)
    for path in (weights.split(",") if weights else []):
        solver.net.copy_from(path)
    with signal_actions(solver, sigint_effect, sighup_effect), _progress(solver):
        solver.solve(resume)


def _require_data_layer(net):
    sources = [layer.type for layer, spec in zip(net.layers, net.specs) if not spec.bottoms]
    if all(kind == "Input" for kind in sources):
        raise UnetcoreError(f"net '{net.name}': its data come from Input layers, which nothing "
                            "fills during training; use a data layer (TiffData, HDF5Data), as "
                            "prototxt/unet-train.prototxt does")


@contextmanager
def _progress(solver):
    """A tqdm bar over the iterations when stderr is a terminal; the log lines print above it."""
    if not sys.stderr.isatty():
        yield
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .logs import LOGGER
    total = solver.param.max_iter
    with tqdm(total=total, initial=solver.iter, unit="iter") as bar, \
            logging_redirect_tqdm(loggers=[LOGGER]):
        solver.callbacks.append(lambda s: bar.update(s.iter - bar.n))
        yield
