"""The `unetcore` command line (Caffe's tool verbs, and the U-Net's own).

Every error the user can cause is an UnetcoreError; it is printed as one line
("unetcore: error: ...") with exit status 1, never as a traceback.
"""
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from unetcore.errors import UnetcoreError
from unetcore.files import require_writable_folder, same_file, write_text, write_tiff
from unetcore.inference.deploy import copy_all_weights, deploy_net, require_image_input, square_input


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UnetcoreError as err:
            click.echo(f"unetcore: error: {err}", err=True)
            sys.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:                 # a bug: still one line, unless debugging
            if os.environ.get("UNETCORE_DEBUG"):
                raise
            click.echo(f"unetcore: internal error: {type(err).__name__}: {err} (a bug in "
                       "unetcore: please report it with the command; UNETCORE_DEBUG=1 shows "
                       "the traceback)", err=True)
            sys.exit(2)


def _output_path(path):
    """Check an output file path before any work: not a directory, its folder creatable and
    writable (the folder is made if missing)."""
    path = Path(path)
    if path.is_dir():
        raise UnetcoreError(f"{path}: is a directory; give a file name")
    _writable_parent(path)
    return str(path)


def _output_array_path(path):
    """Check an output zarr array's path (a folder, created by zarr): not a file, its parent
    creatable and writable."""
    if Path(path).is_file():
        raise UnetcoreError(f"{path}: is a file; a zarr array is a folder")
    _writable_parent(Path(path))


def _tiff_name(path, option):
    """Refuse an output name whose extension says another format than the TIFF written."""
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        raise UnetcoreError(f"{path}: {option} is written as a TIFF; name it *.tif (or *.zarr "
                            "for -o, a chunked zarr array)")


def _writable_parent(path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnetcoreError(f"{path}: cannot create its folder: {err.strerror}") from None
    require_writable_folder(path.parent, path)


@click.group(cls=_Group)
@click.version_option(package_name="unetcore")
def main():
    """unetcore: the original U-Net, Caffe-style, on NumPy and CuPy."""


def _refuse_unless(rule, reason):
    """A click callback that refuses a value (each of an option's several) outside `rule`,
    with one line that names the option, the value and the reason."""
    def callback(ctx, param, value):
        values = value if isinstance(value, tuple) else (value,)
        if value is not None and not all(rule(v) for v in values):
            given = " ".join(f"{v:g}" for v in values)
            raise UnetcoreError(f"{param.opts[0]} {given}: {reason}")
        return value
    return callback


def _positive(v):
    return math.isfinite(v) and v > 0


PIXEL_SIZES = _refuse_unless(_positive, "pixel sizes must be finite and > 0")
SIGMA = _refuse_unless(_positive, "the border width sigma must be finite and > 0")
W0 = _refuse_unless(lambda v: math.isfinite(v) and v >= 0,
                    "the border weight w0 must be finite and >= 0 (0: no border term)")
CLASSES = _refuse_unless(lambda v: v >= 2, "a segmentation has at least 2 classes")
FINITE = _refuse_unless(math.isfinite, "must be a finite number")
MEMORY = _refuse_unless(_positive, "the memory budget must be > 0 MiB")
BITS = _refuse_unless(lambda v: v >= 1, "a bit depth is at least 1 (leave --bits out to infer it)")


def _phase(value):
    return value.upper()


def _set_engine(ctx, param, value):
    from unetcore import config
    config.set_engine(value)


def _engine_option(f):
    """--engine: which implementation runs layers that have several (unetcore.config)."""
    from unetcore.layer import engine_names
    return click.option("--engine", type=click.Choice(engine_names()), default="auto",
                        show_default=True, expose_value=False, callback=_set_engine,
                        help="auto: the fastest engine whose conditions hold; reference: the "
                             "reference layers only (docs/backprop.md); or one engine.")(f)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--size", type=int, help="Square input edge length (default: the prototxt's).")
@click.option("--phase", type=click.Choice(["train", "test"], case_sensitive=False),
              default="test", show_default=True)
@click.option("--receptive-field", is_flag=True,
              help="Print, for each output position on the pooling grid, the input pixels it "
                   "depends on.")
def shapes(model, size, phase, receptive_field):
    """Print every layer's output blob shapes (a shape walk-through of the net)."""
    from unetcore.memory import shapes_only
    from unetcore.net import Net
    with shapes_only():                         # shapes allocate nothing
        net = Net(model, _phase(phase))
        square_input(net, model, size, "--size")
    if receptive_field:
        _print_receptive_field(net, model)
        return
    click.echo(f"{'layer':<24}{'type':<18}{'top':<14}shape")
    for layer, spec, top in zip(net.layers, net.specs, net.top_vecs):
        for name, blob in zip(spec.tops, top):
            click.echo(f"{layer.name:<24}{layer.type:<18}{name:<14}{'x'.join(map(str, blob.shape))}")
    params = sum(b.count for b in net.learnable_params)
    click.echo(f"{len(net.layers)} layers, {params:,} learnable parameters")
    if net.image_input and any(layer.type == "Deconvolution" for layer in net.layers):
        with shapes_only():                     # it reshapes the net to other sizes
            _print_valid_sizes(net)


def _print_valid_sizes(net):
    """The input sizes near the current one that the net takes, per spatial axis."""
    from unetcore.sizes import nearest_sizes_per_axis
    shape = net.blobs[net.image_input].shape[2:]
    sizes = nearest_sizes_per_axis(net, net.image_input, count=3)
    click.echo("valid input sizes near " + "x".join(map(str, shape)) + ": " + "; ".join(
        f"{axis} {', '.join(map(str, near))}" for axis, near in zip("zyx"[-len(shape):], sizes)))


def _print_receptive_field(net, model):
    from unetcore.inference.receptive import receptive_field
    from unetcore.inference.tiling import pooling_grid
    require_image_input(net, model)
    if _is_3d(net):
        raise UnetcoreError(f"{model}: --receptive-field is for 2-d nets; a 3-d net's margins "
                            "per axis are in the table above and in docs/3d.md")
    grid = pooling_grid(net)
    output = net.blobs[net.outputs[0]].shape[-1]
    click.echo(f"output pixel (mod {grid})  input rows it depends on  size  centre offset")
    for position in range(min(grid, output)):
        first, last = receptive_field(net, (position, position))[0]
        centre = (first + last) / 2 - (position + (net.blobs[net.image_input].shape[-1]
                                                   - output) / 2)
        click.echo(f"{position:>21}  {first:>10} .. {last:<12}  {last - first + 1:>4}  "
                   f"{centre:+.1f}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--phase", type=click.Choice(["train", "test"], case_sensitive=False),
              default="train", show_default=True)
@click.option("--max-checks", type=int, default=50, show_default=True,
              help="Elements checked per blob (sampled); 0 checks every element.")
@click.option("--step", type=float, default=1e-6, show_default=True)
@click.option("--threshold", type=float, default=1e-6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_engine_option
def gradcheck(model, phase, max_checks, step, threshold, seed):
    """Check a net's backward against central differences in float64."""
    from unetcore.gradcheck import check_net, randomize_params, random_inputs
    from unetcore.net import Net, load_net_param
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
    from unetcore.errors import PrototxtError
    from unetcore.formats.prototxt import Message, parse_file
    try:
        return parse_file(path, "SolverParameter")
    except PrototxtError as solver_error:
        try:
            parse_file(path, "NetParameter")          # a net, if it parses as one
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


def _modeldef_solver(path, images_path, labels_path, element_size, tile, gpu, job, flags,
                     validation=(None, None), instance_labels=False):
    """The Fiji plugin's fine-tuning of a .modeldef.h5 on TIFF images and labels (0 ignore,
    1 background, 2.. classes; with instance_labels, 2.. the objects of one class), and
    optionally validation images and labels (TIFF paths): its training and validation files
    and solver under the prefix `job`, with the plugin's defaults (Adam, fixed, base_lr
    1e-4, 1000 iterations, its tile) unless flags say otherwise, and the fine-tuned model's
    own .modeldef.h5; the solver's path."""
    from unetcore.fiji.finetune import BASE_LR, ITERATIONS, prepare_finetuning
    from unetcore.fiji.modeldef import read_modeldef
    validation_images, validation_labels = validation
    if bool(validation_images) != bool(validation_labels):
        raise UnetcoreError("give --validation-images and --validation-labels together")
    model = read_modeldef(path)
    solver, tuned = prepare_finetuning(
        model, _modeldef_samples(images_path, labels_path, model, element_size), job,
        tile=(tile,) * model.n_dims if tile else None, base_lr=flags["base_lr"] or BASE_LR,
        iterations=flags["max_iter"] or ITERATIONS, gpu=gpu,
        labels_are_classes=not instance_labels,
        validation=_modeldef_samples(validation_images, validation_labels, model,
                                     element_size) if validation_images else ())
    click.echo(f"wrote {tuned.path}: the fine-tuned model ('{tuned.ident}'); its weights "
               f"will be {job}_iter_N.caffemodel.h5", err=True)
    return str(solver)


def _modeldef_samples(images_path, labels_path, model, element_size):
    """(image (C, H, W), labels, pixel size) of every image of a TIFF and its label TIFF."""
    from unetcore.data.stacks import read_stack, whole_labels
    images, size = _model_images(images_path, model, element_size)
    labels = whole_labels(read_stack(labels_path, "label"), labels_path)
    if len(labels) != len(images):
        raise UnetcoreError(f"{labels_path}: {len(labels)} label image(s) for {len(images)} "
                            f"image(s) in {images_path}")
    return [(image, label, size) for image, label in zip(images, labels)]


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
@_engine_option
def train(model, solver_path, modeldef, images, labels, instance_labels, validation_images,
          validation_labels, element_size, tile, weights, resume, gpu, log_path, sigint_effect,
          sighup_effect, snapshot_every, **flags):
    """Train a net (Caffe's `caffe train`), logging in Caffe's format."""
    from unetcore.logs import log_to
    from unetcore.solvers.solver import get_solver, signal_actions
    if weights and resume:
        raise UnetcoreError("give --weights or --snapshot, not both")
    if modeldef:
        if model or solver_path or not (images and labels):
            raise UnetcoreError("--modeldef takes --images and --labels, and no other net")
        stem = Path(flags["snapshot_prefix"]
                    or Path(modeldef).name.split(".")[0] + "-finetuned")
        param = _modeldef_solver(modeldef, images, labels, element_size, tile, gpu, stem,
                                 flags, (validation_images, validation_labels),
                                 instance_labels)
        flags["snapshot_prefix"] = str(stem)
    elif images or labels or validation_images or validation_labels or instance_labels:
        raise UnetcoreError("--images, --labels, --validation-images, --validation-labels and "
                            "--instance-labels go with --modeldef")
    elif bool(model) == bool(solver_path):
        raise UnetcoreError("give a solver prototxt (--solver S or as MODEL) or a net prototxt")
    else:
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

    from unetcore.logs import LOGGER
    total = solver.param.max_iter
    with tqdm(total=total, initial=solver.iter, unit="iter") as bar, \
            logging_redirect_tqdm(loggers=[LOGGER]):
        solver.callbacks.append(lambda s: bar.update(s.iter - bar.n))
        yield


@main.command()
@click.option("-o", "--output", "folder", default="data", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the TIFF stacks.")
@click.option("--train", "n_train", default=8, show_default=True, type=click.IntRange(1),
              help="Training slices.")
@click.option("--test", "n_test", default=2, show_default=True, type=click.IntRange(1),
              help="Test slices.")
@click.option("--size", default=None, type=click.IntRange(16, 16384),
              help="Slice edge length (px; default 256, 128 with --3d).")
@click.option("--cell-size", default=40, show_default=True, type=click.IntRange(4),
              help="Typical cell diameter (px).")
@click.option("--seed", default=0, show_default=True)
@click.option("--3d", "volume", is_flag=True,
              help="Write 3-d volumes instead: volume3d-{train,test}.tif with -labels.tif, and "
                   "the training volume as volume3d-train.h5 (data, labels, and the eq. 2 "
                   "weights in voxels) listed in volume3d-train.txt, for HDF5Data.")
@click.option("--slices", default=24, show_default=True, type=click.IntRange(1),
              help="With --3d: slices per volume.")
@click.option("--relsize-z", default=3.0, show_default=True, type=click.FloatRange(min=0.1),
              help="With --3d: the z spacing in units of the xy pixel size.")
def synth(folder, n_train, n_test, size, cell_size, seed, volume, slices, relsize_z):
    """Write a synthetic ISBI-like EM stack: train/test volume and label TIFFs."""
    from unetcore.data.synth import synth_stack
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if volume:
        return _synth_volumes(out, (slices, size or 128, size or 128), relsize_z, seed,
                              cell_size)
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = synth_stack(n, size or 256, split_seed, cell_size)
        write_tiff(out / f"{split}-volume.tif", images)
        write_tiff(out / f"{split}-labels.tif", labels)
        click.echo(f"wrote {out / f'{split}-volume.tif'} and {split}-labels.tif: "
                   f"{n} slice{'s' if n > 1 else ''} of {size or 256}x{size or 256}")


def _synth_volumes(out, shape, relsize_z, seed, cell_size):
    """synth --3d: a training and a test volume, and the training HDF5 file."""
    from unetcore.data.synth import synth_volume
    from unetcore.data.training_volume import write_training_volume
    for split, split_seed in (("test", seed + 1), ("train", seed)):
        image, labels = synth_volume(shape, relsize_z, split_seed, cell_size)
        write_tiff(out / f"volume3d-{split}.tif", image)
        write_tiff(out / f"volume3d-{split}-labels.tif", labels)
    write_training_volume(out / "volume3d-train.h5", image / 255.0, labels == 255, labels,
                          (relsize_z, 1.0, 1.0))
    click.echo(f"wrote {out / 'volume3d-train.tif'}, volume3d-test.tif (and -labels.tif): "
               f"{'x'.join(map(str, shape))} voxels, z spacing {relsize_z:g} px; "
               f"{out / 'volume3d-train.h5'} listed in volume3d-train.txt")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
def upgrade(model, output):
    """Write a V1 net (the 2015 release's format) as a V2 prototxt (Caffe's
    upgrade_net_proto_text)."""
    _output_path(output)
    from unetcore.formats.prototxt import parse_file, to_text
    from unetcore.formats.upgrade import upgrade_v1_net
    param = parse_file(model)
    if not param.layers:
        raise UnetcoreError(f"{model}: has no V1 'layers'; it needs no upgrade")
    write_text(output, to_text(upgrade_v1_net(param)) + "\n")
    click.echo(f"wrote {output}: {len(param.layers)} layers upgraded")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="OUT.caffemodel (binary) or OUT.caffemodel.h5 (HDF5): by its name.")
def convert(source, output):
    """Convert weights between a binary .caffemodel and a .caffemodel.h5, either way."""
    _distinct_paths({"SOURCE": source, "-o": output})
    if not output.endswith((".h5", ".caffemodel")):
        raise UnetcoreError(f"{output}: name the output *.caffemodel (binary) or "
                            "*.caffemodel.h5 (HDF5); the name says which is written")
    _output_path(output)
    from unetcore.formats.caffemodel import write_caffemodel
    from unetcore.formats.weights import weight_layers, write_h5_weights
    layers = weight_layers(source)
    if output.endswith(".h5"):
        write_h5_weights(output, [(name, arrays) for name, arrays, _ in layers])
    else:
        write_caffemodel(output, [(name, "", arrays) for name, arrays, _ in layers])
    click.echo(f"wrote {output}: {len(layers)} layers with weights")


@main.command(name="prepare-volume")
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The HDF5 file (.h5); a list naming it is written beside it (.txt), the "
                   "source of a 3-d train net's HDF5Data layer.")
@click.option("--element-size", type=float, nargs=3, default=(1.0, 1.0, 1.0),
              show_default=True, callback=PIXEL_SIZES,
              help="Voxel spacing z y x (any unit): the weight map's distances are "
                   "measured in it, sigma in its y unit.")
@click.option("--w0", default=10.0, show_default=True, callback=W0, help="Border weight w0.")
@click.option("--sigma", default=5.0, show_default=True, callback=SIGMA,
              help="Border width sigma.")
@click.option("--classes", "num_classes", default=2, show_default=True, callback=CLASSES)
@click.option("--bits", type=int, default=None, callback=BITS,
              help="Bit depth of unsigned integer images (default: inferred, with a note).")
def prepare_volume(image, labels, output, element_size, w0, sigma, num_classes, bits):
    """Write a 3-d image stack and its labels as a training volume for 3-d nets: HDF5
    data, labels, and the eq. 2 weights computed in 3-d."""
    _distinct_paths({"IMAGE": image, "LABELS": labels, "-o": output})
    if Path(output).suffix.lower() not in (".h5", ".hdf5"):
        raise UnetcoreError(f"{output}: -o is written as HDF5; name it *.h5")
    _output_path(output)
    from unetcore.data.stacks import check_same_shape, normalize_grey, read_stack, to_classes
    from unetcore.data.training_volume import write_training_volume
    grey = normalize_grey(read_stack(image, "image"), 0.0, 0.0, image, bits)
    label_stack = read_stack(labels, "label")
    check_same_shape(grey, label_stack, image, labels, "label")
    classes = to_classes(label_stack, num_classes, labels)
    scale = tuple(e / element_size[1] for e in element_size)
    listing = write_training_volume(output, grey, classes, label_stack, scale, w0, sigma,
                                    num_classes)
    click.echo(f"wrote {output} (data, labels, weights: {'x'.join(map(str, grey.shape))} "
               f"voxels, element size {' x '.join(f'{e:g}' for e in element_size)}) and "
               f"{listing}, its list for HDF5Data")


@main.command()
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--w0", default=10.0, show_default=True, callback=W0, help="Border weight w0.")
@click.option("--sigma", default=5.0, show_default=True, callback=SIGMA,
              help="Border width sigma (px).")
@click.option("--classes", "num_classes", default=2, show_default=True, callback=CLASSES)
def weightmap(labels, output, w0, sigma, num_classes):
    """Write the U-Net loss weight map of a label image or stack (float32 TIFF)."""
    from tqdm import tqdm

    from unetcore.data.stacks import read_stack
    from unetcore.data.weightmap import weight_stack
    _distinct_paths({"LABELS": labels, "-o": output})
    _tiff_name(output, "-o")
    _output_path(output)
    stack = read_stack(labels, "label")
    if num_classes > 2 and stack.max() >= num_classes:
        raise UnetcoreError(f"{labels}: label value {int(stack.max())} is not a class of "
                            f"0..{num_classes - 1}")
    with tqdm(total=len(stack), unit="slice", disable=len(stack) == 1 or
              not sys.stderr.isatty()) as bar:
        weights = weight_stack(stack, w0, sigma, num_classes, bar.update)
    write_tiff(output, weights if len(weights) > 1 else weights[0])
    click.echo(f"wrote {output}: weights {weights.min():.3g}..{weights.max():.3g}")


def _segment_modeldef(image, path, weights, tile, gpu, memory_mb, element_size,
                      averaging):
    """Probabilities (slices, classes, H, W) of a Fiji plugin model (.modeldef.h5) as the
    plugin computes them (its image preparation, caffe_unet's TEST net, padding and
    averaging: None, "mirror" or "rotate"), mapped back to the image's own pixels; and the
    net."""
    from tqdm import tqdm

    from unetcore.fiji.images import prepare_image, resample_to, scale_to_model
    from unetcore.fiji.predict import averaged_scores
    from unetcore.fiji.modeldef import caffe_unet_net, read_modeldef
    from unetcore.inference.tiling import softmax
    model = read_modeldef(path)
    if model.n_dims != 2:
        raise UnetcoreError(f"{path}: a 3-d model; segment --modeldef runs 2-d models (the "
                            "Fiji backend's caffe_unet tiled_predict runs 3-d ones)")
    images, size = _model_images(image, model, element_size)
    prepared = [prepare_image(im, model, size) for im in images]
    net = caffe_unet_net(model, len(images[0]), model.segmentation_tile(), gpu)
    copy_all_weights(net, weights)
    net.release_activations = True
    square_input(net, path, tile)
    _choose_tile(net, path, [im.shape for im in prepared], tile, memory_mb)
    scale = scale_to_model(size, model)
    with tqdm(unit="tile", disable=not sys.stderr.isatty()) as bar:
        probs = [resample_to(softmax(averaged_scores(net, im, averaging, model.padding,
                                                     bar.update)),
                             original.shape[1:], scale)
                 for im, original in zip(prepared, images)]
    return np.stack(probs), net


def _read_images(path, channels, scale, mean, bits=None):
    from unetcore.data.stacks import normalize_grey, read_tiff
    from unetcore.inference.tiling import as_channel_images
    stack = read_tiff(path, "image")
    return as_channel_images(normalize_grey(stack, scale, mean, path, bits), channels, path)


def _read_inputs(path, net, scale, mean, bits=None):
    """What _segment_all segments: a 2-d net's images (slices, C, H, W), or for a 3-d net the
    stack as one volume, [(C, D, H, W)]."""
    channels = net.blobs[net.image_input].shape[1]
    if not _is_3d(net):
        return _read_images(path, channels, scale, mean, bits)
    from unetcore.data.stacks import normalize_grey, read_tiff
    from unetcore.inference.tiling import as_channel_volume
    volume = normalize_grey(read_tiff(path, "image"), scale, mean, path, bits)
    return as_channel_volume(volume, channels, path)[None]


def _is_3d(net):
    return len(net.blobs[net.image_input].shape) == 5


def _model_images(path, model, element_size):
    """The images of a TIFF as the Fiji plugin reads them, float (C, H, W) each (an RGB
    image has a channel per colour), and their pixel size in um: --element-size, else the
    TIFF's calibration (uncalibrated: 1 um per pixel)."""
    from unetcore.data.stacks import read_tiff
    from unetcore.fiji.images import tiff_element_size_um
    from unetcore.inference.tiling import as_channel_images
    stack = read_tiff(path, "image").astype(np.float32)
    if stack.ndim == 3 and stack.shape[-1] in (3, 4) and min(stack.shape[:2]) > 4:
        images = [np.moveaxis(stack, -1, 0)]
    else:
        images = list(as_channel_images(stack, 1, path))
    size = tuple(element_size) if element_size else tiff_element_size_um(path, model.n_dims)
    _require_rescaling_memory(images, size, model, path)
    return images, size


def _require_rescaling_memory(images, size, model, path):
    """Refuse, before any allocation, images whose copies rescaled to the model's pixel size
    would not fit in memory (float32, with the plugin's padding and scores at most doubling
    it)."""
    from unetcore.fiji.images import scale_to_model
    from unetcore.memory import require_bytes
    scale = scale_to_model(size, model)
    pixels = sum(image.shape[0] * math.prod(math.ceil(n * s) for n, s in
                                            zip(image.shape[1:], scale)) for image in images)
    require_bytes(2 * 4 * pixels, f"{path} rescaled from {' x '.join(f'{e:g}' for e in size)} "
                                  f"um pixels to the model's")


def _choose_tile(net, source, image_shapes, tile, memory_mb):
    """With no --tile, reshape the net to the tile with the fewest multiply-adds for images of
    these shapes within --memory (tiling.auto_tile), and say which."""
    if tile is not None:
        return
    if _is_3d(net):
        shape = "x".join(map(str, net.blobs[net.image_input].shape[2:]))
        click.echo(f"tile {shape}: the prototxt's input shape (a 3-d net's tile)", err=True)
        return
    from unetcore.inference.tiling import auto_tile
    chosen = auto_tile(net, image_shapes, memory_mb * 2 ** 20)
    square_input(net, source, chosen)
    click.echo(f"tile {chosen} x {chosen}: the fewest multiply-adds for these images within "
               f"--memory {memory_mb} MiB (--tile sets another)", err=True)


def _segment_all(net, images, batch_budget_mb, average_mirror=False):
    """Probabilities (slices, classes, H, W) of the images; a 3-d net's volume is returned
    slice by slice too, so that the labels are written and scored as a stack."""
    from tqdm import tqdm

    from unetcore.inference.tiling import axis_geometry, segment, softmax, tile_origins, tiles_per_batch
    steps = [step for _, _, _, step in axis_geometry(net, net.image_input, net.outputs[0])]
    count = sum(len(tile_origins(im.shape[-len(steps):], steps)) for im in images)
    batch = tiles_per_batch(net, net.image_input, batch_budget_mb * 2 ** 20, count)
    with tqdm(total=count, unit="tile", disable=not sys.stderr.isatty()) as bar:
        probs = np.stack([softmax(segment(net, im, batch, bar.update, average_mirror))
                          for im in images])
    return probs[0].swapaxes(0, 1) if _is_3d(net) else probs


@main.command()
@click.argument("image", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Label TIFF: class per pixel (2 classes: 0 and 255, as ISBI masks). A name "
                   "ending in .zarr segments chunk by chunk into a zarr array, resumably: then "
                   "IMAGE may also be a zarr array or FILE.h5:DATASET, read lazily.")
@click.option("--model", type=click.Path(dir_okay=False), help="Deploy prototxt.")
@click.option("--modeldef", type=click.Path(dir_okay=False),
              help="A Fiji U-Net plugin model (.modeldef.h5) instead of --model: its net, "
                   "input normalization and pixel size.")
@click.option("--weights", required=True, type=click.Path(dir_okay=False))
@click.option("--tile", type=int, default=None,
              help="Input tile edge (default: the valid tile with the fewest multiply-adds "
                   "for these images whose blobs fit --memory; the result is the same for "
                   "every tile, docs/overlap-tile.md).")
@click.option("--probabilities", type=click.Path(),
              help="Also write class probabilities (float32 TIFF, slices x classes x H x W; "
                   "with -o OUT.zarr, a zarr array P.zarr).")
@click.option("--gpu", type=int, default=None)
@click.option("--memory", "memory_mb", default=1024, show_default=True,
              callback=MEMORY,
              help="MiB of activations per forward; several tiles are batched when they fit.")
@click.option("--scale", default=0.0, callback=FINITE,
              help="Grey values: (v - mean) * scale (default: to [0, 1]).")
@click.option("--mean", default=0.0, callback=FINITE)
@click.option("--bits", type=int, default=None, callback=BITS,
              help="Bit depth of unsigned integer images (default: the smallest of 8, 10, 12, "
                   "14, 16 that holds the largest value; a note says which).")
@click.option("--element-size", type=float, nargs=2, default=None, callback=PIXEL_SIZES,
              help="With --modeldef: the image's pixel size in um (y x); it is rescaled to the "
                   "model's (default: taken to be the model's, no rescaling).")
@click.option("--average-mirror", is_flag=True,
              help="Average each tile's scores over its mirror images (x, y, both).")
@click.option("--average-rotate", is_flag=True,
              help="With --modeldef: average the scores of the image rotated by 0, 90, 180 "
                   "and 270 degrees (caffe_unet's -average_rotate).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With -o OUT.zarr: run the chunks on a dask LocalCluster of this many "
                   "worker processes.")
@click.option("--scheduler", default=None,
              help="With -o OUT.zarr: run the chunks on the dask cluster at this address.")
@click.option("--chunk", type=click.IntRange(1), default=None,
              help="With -o OUT.zarr: output chunk edge in pixels, rounded to a multiple of the "
                   "tile step (default: near 1024).")
@click.option("--overwrite", is_flag=True,
              help="With -o OUT.zarr: remove an output that another job (other input, weights, "
                   "net, scaling, tile or chunks) began, and start over.")
@_engine_option
def segment(image, output, model, modeldef, weights, tile, probabilities, gpu, memory_mb, scale,
            mean, bits, element_size, average_mirror, average_rotate, workers, scheduler,
            chunk, overwrite):
    """Segment a 2-d image or a stack of any size by overlap-tile with mirrored borders; with
    -o OUT.zarr, a volume of any size chunk by chunk, here or on a dask cluster."""
    if average_rotate and not modeldef:
        raise UnetcoreError("--average-rotate needs --modeldef (caffe_unet's averaging of a "
                            "Fiji plugin model)")
    if average_rotate and average_mirror:
        raise UnetcoreError("--average-mirror and --average-rotate exclude each other, as in "
                            "caffe_unet")
    if output.endswith(".zarr"):
        return _segment_volume(image, output, model, modeldef, weights, tile, probabilities,
                               gpu, memory_mb, scale, mean, bits, average_mirror, workers,
                               scheduler, chunk, overwrite)
    if workers or scheduler or chunk or overwrite:
        raise UnetcoreError("--workers, --scheduler, --chunk and --overwrite segment chunk by "
                            "chunk into a zarr array: give -o OUT.zarr")
    _distinct_paths({"IMAGE": image, "-o": output, "--probabilities": probabilities})
    for option, path in (("-o", output), ("--probabilities", probabilities)):
        if path:
            _tiff_name(path, option)
            _output_path(path)
    if bool(model) == bool(modeldef):
        raise UnetcoreError("give the net as --model DEPLOY.prototxt or --modeldef M.modeldef.h5")
    if modeldef:
        if scale or mean or bits:
            raise UnetcoreError("--scale, --mean and --bits do not apply with --modeldef: the "
                                "model definition says how to normalize (normalization_type)")
        averaging = "mirror" if average_mirror else "rotate" if average_rotate else None
        probs, net = _segment_modeldef(image, modeldef, weights, tile, gpu, memory_mb,
                                       element_size, averaging)
    else:
        if element_size:
            raise UnetcoreError("--element-size needs --modeldef (a prototxt has no pixel size)")
        net = deploy_net(model, weights, tile, gpu)
        images = _read_inputs(image, net, scale, mean, bits)
        _choose_tile(net, model, [im.shape for im in images], tile, memory_mb)
        probs = _segment_all(net, images, memory_mb, average_mirror)
    labels = probs.argmax(axis=1).astype(np.uint8)
    if probs.shape[1] == 2:
        labels *= 255
    write_tiff(output, labels if len(labels) > 1 else labels[0])
    if probabilities:
        write_tiff(probabilities, probs.astype(np.float32))
    click.echo(f"wrote {output}: {len(labels)} slice(s) of {labels.shape[1]}x{labels.shape[2]}"
               + (", segmented as one volume by the 3-d net" if _is_3d(net) else ""))


def _segment_volume(image, output, model, modeldef, weights, tile, probabilities, gpu,
                    memory_mb, scale, mean, bits, average_mirror, workers, scheduler, chunk,
                    overwrite):
    """segment -o OUT.zarr: unetcore.inference.chunked, chunk by chunk, resumable."""
    import uuid

    from tqdm import tqdm

    from unetcore import config
    from unetcore.inference.chunked import (ChunkPlan, VolumeJob, claim_output, create_outputs, hdf5_path,
                         job_record, open_volume, require_cluster_extra, segment_volume,
                         value_scaling, write_record)
    require_cluster_extra()
    if modeldef or average_mirror:
        raise UnetcoreError("-o OUT.zarr takes a --model prototxt, without --average-mirror")
    if workers and scheduler:
        raise UnetcoreError("give --workers N (a local cluster) or --scheduler ADDRESS (a "
                            "running one), not both")
    _distinct_paths({"IMAGE": str(hdf5_path(image)[0]), "-o": output,
                     "--probabilities": probabilities})
    if probabilities and not probabilities.endswith(".zarr"):
        raise UnetcoreError("with -o OUT.zarr, --probabilities must name a zarr array too "
                            "(P.zarr)")
    for path in (output, probabilities):
        if path:
            _output_array_path(path)
    volume = open_volume(image)
    net = deploy_net(model, weights, tile, gpu)
    if net.blobs[net.image_input].shape[1] != 1:
        raise UnetcoreError(f"{model}: takes {net.blobs[net.image_input].shape[1]}-channel "
                            "images; chunked volumes (-o OUT.zarr) are grey, one channel")
    _choose_tile(net, model, [volume.shape if _is_3d(net) else volume.shape[1:]], tile,
                 memory_mb)
    tile = None if _is_3d(net) else net.blobs[net.image_input].shape[-1]
    plan = ChunkPlan.for_net(net, volume.shape, chunk)
    if chunk and chunk != plan.edge[-1]:
        click.echo(f"--chunk {chunk}: chunks of {plan.edge[-1]} px, the nearest multiple of "
                   f"the tile step {plan.step[-1]} px within the image", err=True)
    offset, factor, bits = value_scaling(volume, scale, mean, bits, image)
    job = VolumeJob(str(image), output, probabilities, model, weights, tile, memory_mb, offset,
                    factor, bits, plan.edge[-1], config.engine(), gpu, uuid.uuid4().hex)
    record = job_record(job, plan, volume)
    claim_output(output, probabilities, record, overwrite)
    create_outputs(output, plan, net.blobs[net.outputs[0]].shape[1], probabilities)
    write_record(output, record)
    chunks = len(plan.chunks())
    with tqdm(total=chunks, unit="chunk", disable=not sys.stderr.isatty()) as bar:
        run, skipped = segment_volume(job, plan, workers, scheduler, bar.update, click.echo)
    click.echo(f"wrote {output}: {plan.shape[0]} slice(s) of {plan.shape[1]}x{plan.shape[2]}, "
               f"{chunks} chunks of {_edge(plan)}: {run} segmented, {skipped} already written")


def _distinct_paths(paths):
    """Refuse, before any work, an output that is an input or another output:
    {option: path}, the input first."""
    named = [(option, path) for option, path in paths.items() if path]
    for i, (option, path) in enumerate(named):
        for other, earlier in named[:i]:
            if same_file(path, earlier):
                raise UnetcoreError(f"{path}: {option} and {other} name the same path; an "
                                    "output must not overwrite the input or another output")


def _edge(plan):
    """A chunk's size in words: '1024 px' (one slice of a 2-d net's), or '64x1024x1024'."""
    return "x".join(map(str, plan.edge)) if plan.volumetric else f"{plan.edge[-1]} px"


@main.command(name="test")
@click.argument("images", type=click.Path(dir_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--model", required=True, type=click.Path(dir_okay=False))
@click.option("--weights", required=True, type=click.Path(dir_okay=False))
@click.option("--tile", type=int, default=None,
              help="Input tile edge (default: as segment's, the fewest multiply-adds within "
                   "--memory).")
@click.option("--gpu", type=int, default=None)
@click.option("--memory", "memory_mb", default=1024, show_default=True, callback=MEMORY,
              help="MiB of activations per forward; several tiles are batched when they fit.")
@click.option("--bits", type=int, default=None, callback=BITS,
              help="Bit depth of unsigned integer images (default: inferred, with a note).")
@click.option("--json", "as_json", is_flag=True,
              help="Print only the best of each ISBI measure, as one JSON object.")
def test_command(images, labels, model, weights, tile, gpu, memory_mb, bits, as_json):
    """Segment IMAGES and score them against LABELS with the ISBI 2012 measures, as the
    challenge computed them (see `unetcore score`; a 3-d net segments the stack as one
    volume; the measures, 2-d, score it slice by slice)."""
    from unetcore.data.stacks import check_same_shape, read_stack, to_classes
    from unetcore.measures.isbi import iou, label_stack
    net = deploy_net(model, weights, tile, gpu)
    stack = _read_inputs(images, net, 0.0, 0.0, bits)
    classes = net.blobs[net.outputs[0]].shape[1]
    truth = to_classes(read_stack(labels, "label"), classes, labels)
    check_same_shape(stack[0, 0] if _is_3d(net) else stack[:, 0], truth, images, labels,
                     "label")
    _choose_tile(net, model, [im.shape for im in stack], tile, memory_mb)
    probs = _segment_all(net, stack, memory_mb)
    ious = iou(probs.argmax(axis=1), truth, classes)
    if classes != 2 and as_json:
        raise UnetcoreError(f"{model}: --json prints the ISBI 2012 measures, which score two "
                            f"classes (membrane, cell); this net has {classes}")
    if not as_json:
        click.echo("IoU per class (argmax): "
                   f"{', '.join(f'{c}: {v:.4f}' for c, v in enumerate(ious))}")
    if classes == 2:
        _print_measures(probs[:, 1], label_stack(truth, labels), as_json)


@main.command()
@click.argument("cell_probabilities", type=click.Path(dir_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="Print only the best of each measure, as one JSON object.")
def score(cell_probabilities, labels, as_json):
    """Score a saved map of CELL_PROBABILITIES from any tool against LABELS with the ISBI
    2012 measures, as the challenge computed them (Fiji's Trainable_Segmentation): pixel,
    Rand and warping error (the U-Net paper's Table 1) and the leaderboard's V_Rand and
    V_Info after border thinning, at each threshold 0.0..1.0, and the best of each.

    CELL_PROBABILITIES: a TIFF stack of values in [0, 1], 1 = cell (or the (slices, 2, H, W)
    file of `segment --probabilities`, whose channel 1 is cell). LABELS: 255 (or 1) = cell,
    0 = membrane, the same shape."""
    from unetcore.data.stacks import check_same_shape, read_stack, read_tiff
    from unetcore.measures.isbi import label_stack, probability_stack
    probabilities = probability_stack(read_tiff(cell_probabilities, "probability"),
                                      cell_probabilities)
    truth = label_stack(read_stack(labels, "label"), labels)
    check_same_shape(probabilities, truth, cell_probabilities, labels, "label")
    _print_measures(probabilities, truth, as_json)


def _print_measures(cell_probabilities, truth, as_json):
    """The ISBI 2012 measures at every threshold and the best of each, or (--json) only the
    best of each, as one JSON object."""
    from unetcore.measures.isbi import best_json, best_lines, evaluate, table_lines
    rows, best = evaluate(cell_probabilities, truth)
    for line in [best_json(best)] if as_json else table_lines(rows) + best_lines(rows, best):
        click.echo(line)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--weights", required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The ONNX model file to write.")
@click.option("--bioimageio", "package", type=click.Path(),
              help="Write a BioImage Model Zoo package (model spec 0.5) into this folder, or "
                   "into this .zip file.")
@click.option("--name", default="unetcore U-Net", show_default=True,
              help="With --bioimageio: the model's name.")
@click.option("--author", default=None, help="With --bioimageio: the author's name (required).")
@click.option("--license", "license_id", default="CC-BY-4.0", show_default=True,
              help="With --bioimageio: the SPDX license of the weights.")
@click.option("--data-citation", nargs=2, default=None, metavar="TEXT DOI_OR_URL",
              help="With --bioimageio: the training data's reference.")
def export(model, weights, output, package, name, author, license_id, data_citation):
    """Write a deploy net with its weights as ONNX (standard operators; any valid input size),
    or as a BioImage Model Zoo package. Needs pip install 'unetcore[export]'."""
    from unetcore.export.bioimageio import check_license, write_package, write_zip
    from unetcore.export.onnx import export_onnx
    from unetcore.net import Net
    if (output is None) == (package is None):
        raise UnetcoreError("give -o MODEL.onnx or --bioimageio FOLDER (one of them)")
    if package is not None and not author:
        raise UnetcoreError("--bioimageio needs --author NAME: the model spec requires one")
    if package is not None:
        check_license(license_id)
    output = _output_path(output) if output else None
    net = Net(model, "TEST")
    require_image_input(net, model)
    copy_all_weights(net, weights)
    if package is not None and package.endswith(".zip"):
        write_zip(net, _output_path(package), name, author, license_id, data_citation)
        click.echo(f"wrote {package}: rdf.yaml, model.onnx, test_input.npy, test_output.npy, "
                   "README.md")
        return
    if package is not None:
        rdf = write_package(net, package, name, author, license_id, data_citation)
        click.echo(f"wrote {rdf} with model.onnx, test_input.npy, test_output.npy, README.md")
        return
    export_onnx(net, output)
    click.echo(f"wrote {output}: input '{net.image_input}' "
               f"({net.blobs[net.image_input].shape[1]} channel(s), any size the net takes), "
               f"output {', '.join(net.outputs)}")


@main.command(name="plot-log")
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="An .svg file (drawn without extra packages).")
def plot_log(log, output):
    """Draw the loss (train and test) and learning-rate curves of a training log."""
    _output_path(output)
    from unetcore.tools.plotlog import parse_log, plot_svg
    if not output.endswith(".svg"):
        raise UnetcoreError(f"{output}: plot-log writes SVG; name the output *.svg")
    series = parse_log(log)
    plot_svg(series, output)
    click.echo(f"wrote {output}: {len(series['loss'])} loss points, "
               f"{sum(len(v) for k, v in series.items() if k.startswith('test'))} test points")


@main.command(name="time")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--size", type=int, default=None, help="Square input edge (default: the model's).")
@click.option("--iterations", default=10, show_default=True, type=click.IntRange(1))
@click.option("--phase", type=click.Choice(["train", "test"], case_sensitive=False),
              default="train", show_default=True)
@click.option("--gpu", type=int, default=None)
@_engine_option
def time_command(model, size, iterations, phase, gpu):
    """Per-layer forward/backward times, medians over iterations (Caffe's `caffe time`)."""
    from unetcore.net import Net
    from unetcore.tools.timing import layer_macs, time_layers
    net = Net(model, _phase(phase), gpu=gpu)
    square_input(net, model, size, "--size")
    times = time_layers(net, iterations)
    click.echo("Average time per layer (median):")
    for layer, bottom, top in zip(net.layers, net.bottom_vecs, net.top_vecs):
        f, b = times[layer.name]
        macs = layer_macs(layer, bottom, top)
        rate = f" {2 * macs / f / 1e9:8.1f} GFLOP/s forward" if macs and f > 0 else ""
        engine = f"  [{layer.engine}]" if layer.engine != "reference" else ""
        click.echo(f"{layer.name:>24}\tforward: {f * 1e3:9.3f} ms.\tbackward: "
                   f"{b * 1e3:9.3f} ms.{rate}{engine}")
    total_f = sum(f for f, _ in times.values())
    total_b = sum(b for _, b in times.values())
    click.echo(f"Average Forward pass: {total_f * 1e3:.1f} ms.")
    click.echo(f"Average Backward pass: {total_b * 1e3:.1f} ms.")
    click.echo(f"Average Forward-Backward: {(total_f + total_b) * 1e3:.1f} ms.")


@main.command()
@click.option("--gpu", type=int, default=0, show_default=True)
def device(gpu):
    """What CuPy sees of a GPU (Caffe's `caffe device_query`)."""
    from unetcore.backend import gpu_module
    cupy = gpu_module(gpu)
    props = cupy.cuda.runtime.getDeviceProperties(gpu)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    free, total = cupy.cuda.runtime.memGetInfo()
    for key, value in (("Device id", gpu), ("Name", name),
                       ("Compute capability", f"{props['major']}.{props['minor']}"),
                       ("Multiprocessors", props["multiProcessorCount"]),
                       ("Total global memory", f"{total / 2 ** 30:.1f} GiB"),
                       ("Free memory", f"{free / 2 ** 30:.1f} GiB"),
                       ("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion()),
                       ("CuPy", cupy.__version__)):
        click.echo(f"{key + ':':<22}{value}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help=".svg, .png (with Graphviz) or .dot")
@click.option("--size", type=int, default=None, help="Input edge for the shapes shown.")
@click.option("--phase", type=click.Choice(["train", "test"], case_sensitive=False),
              default="test", show_default=True)
def draw(model, output, size, phase):
    """Draw a net from its prototxt (Graphviz when installed, a built-in U layout otherwise)."""
    _output_path(output)
    from unetcore.tools.draw import render
    from unetcore.net import Net
    net = Net(model, _phase(phase))
    square_input(net, model, size, "--size")
    how = render(net, output)
    click.echo(f"wrote {output} ({how})")


@main.command(name="fiji-backend")
@click.argument("folder", type=click.Path(file_okay=False))
def fiji_backend(folder):
    """Write FOLDER/caffe_unet and FOLDER/caffe: the Fiji U-Net plugin's backend, run by this
    installation (point the plugin's caffe_unet setting at FOLDER/caffe_unet; docs/fiji.md)."""
    from unetcore.fiji.backend import write_scripts
    for path in write_scripts(folder):
        click.echo(f"wrote {path}")
