"""unetcore train: Caffe's `caffe train`, and the Fiji plugin's fine-tuning (--modeldef)."""
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from unetcore.cli.app import main
from unetcore.cli.options import PIXEL_SIZES, engine_option
from unetcore.errors import UnetcoreError
from unetcore.solvers.training import SOLVER_FIELDS


def _solver_options(f):
    for field, kind in reversed(SOLVER_FIELDS.items()):
        f = click.option(f"--{field.replace('_', '-')}", field, type=kind, default=None,
                         help=f"Solver field {field} (overrides the solver file).")(f)
    return click.option("--snapshot-every", "snapshot_every", type=int, default=None,
                        help="Solver field snapshot: iterations between snapshots.")(f)


def _finetuning_solver(path, images, labels, element_size, tile, gpu, job, flags, validation,
                       validation_step, instance_labels):
    """train --modeldef: the Fiji plugin's fine-tuning files for the model at `path` under
    the prefix `job` (fiji.finetune), with the plugin's defaults unless flags say otherwise;
    the solver's path."""
    from unetcore.fiji.finetune import (BASE_LR, ITERATIONS, VALIDATION_STEP,
                                        finetuning_from_tiffs)
    solver, tuned = finetuning_from_tiffs(
        path, images, labels, job, element_size=element_size, validation=validation,
        validation_step=validation_step or VALIDATION_STEP,
        labels_are_classes=not instance_labels, tile_edge=tile, base_lr=flags["base_lr"] or BASE_LR, iterations=flags["max_iter"] or ITERATIONS,
        gpu=gpu)
    click.echo(f"wrote {tuned.path}: the fine-tuned model ('{tuned.ident}'); its weights "
               f"will be {job}_iter_N.caffemodel.h5", err=True)
    return str(solver)


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--solver", "solver_path", type=click.Path(dir_okay=False),
              help="Solver prototxt (or give a solver or net prototxt as MODEL).")
@click.option("--modeldef", type=click.Path(dir_okay=False),
              help="Fine-tune a Fiji U-Net plugin model (.modeldef.h5) on --images and "
                   "--labels, as the plugin does.")
@click.option("--images", type=click.Path(dir_okay=False), help="With --modeldef: TIFF images.")
@click.option("--labels", type=click.Path(dir_okay=False),
              help="With --modeldef: TIFF labels as the Fiji plugin's: 0 ignore, 1 "
                   "background, 2.. the classes (each class's 4-connected components are "
                   "its objects).")
@click.option("--instance-labels", is_flag=True,
              help="With --modeldef: the labels are instances, as the Fiji plugin's option: "
                   "every value from 2 up is one object of a single class.")
@click.option("--validation-images", type=click.Path(dir_okay=False),
              help="With --modeldef: TIFF images to validate on, as the Fiji plugin does "
                   "(tiled; IoU and F1 logged at every test interval).")
@click.option("--validation-labels", type=click.Path(dir_okay=False),
              help="With --modeldef: the validation images' labels (as --labels).")
@click.option("--validation-step", type=click.IntRange(1), default=None,
              help="With --validation-images: validate every this many iterations (the "
                   "solver's test_interval; default 1, the Fiji plugin's).")
@click.option("--element-size", type=float, nargs=2, default=None, callback=PIXEL_SIZES,
              help="With --modeldef: the images' pixel size in um (y x) (default: their "
                   "calibration; uncalibrated: 1 um per pixel, as in the Fiji plugin).")
@click.option("--tile", type=int, default=None,
              help="With --modeldef: the training tile edge (CreateDeformation's ny, nx; "
                   "default the Fiji plugin's: the smallest input tile plus 10 pooling steps).")
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
@engine_option
def train(model, solver_path, modeldef, images, labels, instance_labels, validation_images,
          validation_labels, validation_step, element_size, tile, weights, resume, gpu, log_path, sigint_effect,
          sighup_effect, snapshot_every, **flags):
    """Train a net (Caffe's `caffe train`), logging in Caffe's format."""
    from unetcore.logs import log_to
    from unetcore.solvers.solver import get_solver, signal_actions
    from unetcore.solvers.training import require_data_layer, solver_or_net
    if weights and resume:
        raise UnetcoreError("give --weights or --snapshot, not both")
    if modeldef:
        if model or solver_path or not (images and labels):
            raise UnetcoreError("--modeldef takes --images and --labels, and no other net")
        stem = Path(flags["snapshot_prefix"]
                    or Path(modeldef).name.split(".")[0] + "-finetuned")
        if validation_step and not validation_images:
            raise UnetcoreError("--validation-step needs --validation-images and "
                                "--validation-labels")
        param = _finetuning_solver(modeldef, images, labels, element_size, tile, gpu, stem,
                                   flags, (validation_images, validation_labels),
                                   validation_step, instance_labels)
        flags["snapshot_prefix"] = str(stem)
    elif (images or labels or validation_images or validation_labels or validation_step
          or instance_labels):
        raise UnetcoreError("--images, --labels, --validation-images, --validation-labels, "
                            "--validation-step and --instance-labels go with --modeldef")
    elif bool(model) == bool(solver_path):
        raise UnetcoreError("give a solver prototxt (--solver S or as MODEL) or a net prototxt")
    else:
        param = solver_or_net(solver_path or model)
    log_to(path=log_path)
    solver = get_solver(param, gpu=gpu, snapshot=snapshot_every, **flags)
    require_data_layer(solver.net)
    for path in (weights.split(",") if weights else []):
        solver.net.copy_from(path)
    with signal_actions(solver, sigint_effect, sighup_effect), _progress(solver):
        solver.solve(resume)


@contextmanager
def _progress(solver):
    """A tqdm bar over the iterations when stderr is a terminal; the log lines print above it."""
    if not sys.stderr.isatty():
        yield
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from unetcore.logs import LOGGER
    total = solver.param.max_iter
    with tqdm(total=total, initial=solver.iter, unit="iter") as bar, \
            logging_redirect_tqdm(loggers=[LOGGER]):
        solver.callbacks.append(lambda s: bar.update(s.iter - bar.n))
        yield
