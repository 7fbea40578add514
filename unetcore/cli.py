"""The `unetcore` command line (Caffe's tool verbs, and the U-Net's own).

Every error the user can cause is an UnetcoreError; it is printed as one line
("unetcore: error: ...") with exit status 1, never as a traceback.
"""
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from .errors import UnetcoreError
from .inference import copy_all_weights, deploy_net, require_image_input, square_input


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


def _writable_parent(path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnetcoreError(f"{path}: cannot create its folder: {err.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise UnetcoreError(f"{path}: its folder {path.parent} is not writable")


@click.group(cls=_Group)
@click.version_option(package_name="unetcore")
def main():
    """unetcore: the original U-Net, Caffe-style, on NumPy and CuPy."""


def _phase(value):
    return value.upper()


def _set_engine(ctx, param, value):
    from . import config
    config.set_engine(value)


def _engine_option(f):
    """--engine: which implementation runs layers that have several (unetcore.config)."""
    from .layer import engine_names
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
    from .net import Net
    net = Net(model, _phase(phase))
    square_input(net, model, size)
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
        _print_valid_sizes(net)


def _print_valid_sizes(net):
    """The input sizes near the current one that the net takes, per spatial axis."""
    from .sizes import nearest_sizes_per_axis
    shape = net.blobs[net.image_input].shape[2:]
    sizes = nearest_sizes_per_axis(net, net.image_input, count=3)
    click.echo("valid input sizes near " + "x".join(map(str, shape)) + ": " + "; ".join(
        f"{axis} {', '.join(map(str, near))}" for axis, near in zip("zyx"[-len(shape):], sizes)))


def _print_receptive_field(net, model):
    from .receptive import receptive_field
    from .tiling import pooling_grid
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


def _modeldef_solver(path, images_path, labels_path, element_size, folder):
    """The Fiji plugin's fine-tuning set-up for a .modeldef.h5: the training blobs of every
    image (the plugin's labels, weights and sampling pdf) in HDF5 files under `folder`, and
    the model's solver with its net reading them."""
    import h5py

    from .data.stacks import read_stack, to_classes
    from .modeldef import read_modeldef, rescale, training_blobs
    from .prototxt import parse
    model = read_modeldef(path)
    net_param = parse(model.model_prototxt, "NetParameter", f"{path}:/model_prototxt")
    feeders = [layer for layer in net_param.layer if layer.type == "HDF5Data"]
    if not feeders:
        raise UnetcoreError(f"{path}: the model has no HDF5Data layer for training data")
    tops = list(feeders[0].top)
    images = _read_model_images(images_path, 1, model, element_size)
    labels, num_classes = read_stack(labels_path, "label"), max(len(model.class_names), 2)
    if num_classes > 2:
        labels = to_classes(labels, num_classes, labels_path)
    if len(labels) != len(images):
        raise UnetcoreError(f"{labels_path}: {len(labels)} label image(s) for {len(images)} "
                            f"image(s) in {images_path}")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, (image, label) in enumerate(zip(images, labels)):
        if element_size:
            scale = tuple(a / b for a, b in zip(element_size, model.element_size_um))
            label = np.rint(rescale(label[None].astype(np.float32), scale, order=0)[0])
        if label.shape != image.shape[-2:]:
            raise UnetcoreError(f"{labels_path}: label image {k} is {label.shape}, its image "
                                f"{image.shape[-2:]}")
        blobs = [image] + [b[None] for b in training_blobs(label.astype(int), model)]
        files.append(folder / f"train-{k}.h5")
        with h5py.File(files[-1], "w") as f:
            for name, blob in zip(tops, blobs):
                f[name] = blob[None].astype(np.float32)
    (folder / "input_files.txt").write_text("".join(f"{p.resolve()}\n" for p in files))
    feeders[0].hdf5_data_param.set("source", str(folder / "input_files.txt"))
    solver = parse(model.solver_prototxt, "SolverParameter", f"{path}:/solver_prototxt")
    for field in ("net", "train_net", "train_net_param", "test_net", "test_net_param",
                  "test_iter"):
        solver.clear(field)
    return solver.set("net_param", net_param).set("test_interval", 0)


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--solver", "solver_path", type=click.Path(dir_okay=False),
              help="Solver prototxt (or give a solver or net prototxt as MODEL).")
@click.option("--modeldef", type=click.Path(dir_okay=False),
              help="Fine-tune a Fiji U-Net plugin model (.modeldef.h5) on --images and "
                   "--labels, as the plugin does.")
@click.option("--images", type=click.Path(dir_okay=False), help="With --modeldef: TIFF images.")
@click.option("--labels", type=click.Path(dir_okay=False),
              help="With --modeldef: TIFF labels: for a 2-class model a mask (0/255 or 0/1) or "
                   "instance labels (object k = k), else a class per pixel (0 background).")
@click.option("--element-size", type=float, nargs=2, default=None,
              help="With --modeldef: the images' pixel size in um (y x).")
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
def train(model, solver_path, modeldef, images, labels, element_size, weights, resume, gpu,
          log_path, sigint_effect, sighup_effect, snapshot_every, **flags):
    """Train a net (Caffe's `caffe train`), logging in Caffe's format."""
    from .logs import log_to
    from .solvers.solver import get_solver, signal_actions
    if weights and resume:
        raise UnetcoreError("give --weights or --snapshot, not both")
    if modeldef:
        if model or solver_path or not (images and labels):
            raise UnetcoreError("--modeldef takes --images and --labels, and no other net")
        stem = Path(flags["snapshot_prefix"] or Path(modeldef).name.split(".")[0])
        param = _modeldef_solver(modeldef, images, labels, element_size,
                                 stem.parent / f"{stem.name}-training-data")
        flags["snapshot_prefix"] = str(stem)
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

    from .logs import LOGGER
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
    import tifffile

    from .data.synth import synth_stack
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if volume:
        return _synth_volumes(out, (slices, size or 128, size or 128), relsize_z, seed,
                              cell_size)
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = synth_stack(n, size or 256, split_seed, cell_size)
        tifffile.imwrite(out / f"{split}-volume.tif", images, photometric="minisblack")
        tifffile.imwrite(out / f"{split}-labels.tif", labels, photometric="minisblack")
        click.echo(f"wrote {out / f'{split}-volume.tif'} and {split}-labels.tif: "
                   f"{n} slices of {size or 256}x{size or 256}")


def _synth_volumes(out, shape, relsize_z, seed, cell_size):
    """synth --3d: a training and a test volume, and the training HDF5 file."""
    import tifffile

    from .data.synth import synth_volume
    from .data.training_volume import write_training_volume
    for split, split_seed in (("test", seed + 1), ("train", seed)):
        image, labels = synth_volume(shape, relsize_z, split_seed, cell_size)
        tifffile.imwrite(out / f"volume3d-{split}.tif", image, photometric="minisblack")
        tifffile.imwrite(out / f"volume3d-{split}-labels.tif", labels, photometric="minisblack")
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
    from .prototxt import parse_file, to_text
    from .upgrade import upgrade_v1_net
    param = parse_file(model)
    if not param.layers:
        raise UnetcoreError(f"{model}: has no V1 'layers'; it needs no upgrade")
    Path(output).write_text(to_text(upgrade_v1_net(param)) + "\n")
    click.echo(f"wrote {output}: {len(param.layers)} layers upgraded")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="OUT.caffemodel (binary) or OUT.caffemodel.h5 (HDF5): by its name.")
def convert(source, output):
    """Convert weights between a binary .caffemodel and a .caffemodel.h5, either way."""
    _output_path(output)
    from .caffemodel import write_caffemodel
    from .snapshot import weight_layers, write_h5_weights
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
              show_default=True, help="Voxel spacing z y x (any unit): the weight map's "
                                      "distances are measured in it, sigma in its y unit.")
@click.option("--w0", default=10.0, show_default=True, help="Border weight w0.")
@click.option("--sigma", default=5.0, show_default=True, help="Border width sigma.")
@click.option("--classes", "num_classes", default=2, show_default=True)
@click.option("--bits", type=int, default=None,
              help="Bit depth of unsigned integer images (default: inferred, with a note).")
def prepare_volume(image, labels, output, element_size, w0, sigma, num_classes, bits):
    """Write a 3-d image stack and its labels as a training volume for 3-d nets: HDF5
    data, labels, and the eq. 2 weights computed in 3-d."""
    _output_path(output)
    from .data.stacks import check_same_shape, normalize_grey, read_stack, to_classes
    from .data.training_volume import write_training_volume
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
@click.option("--w0", default=10.0, show_default=True, help="Border weight w0.")
@click.option("--sigma", default=5.0, show_default=True, help="Border width sigma (px).")
@click.option("--classes", "num_classes", default=2, show_default=True)
def weightmap(labels, output, w0, sigma, num_classes):
    """Write the U-Net loss weight map of a label image or stack (float32 TIFF)."""
    _output_path(output)
    import tifffile

    from .data.stacks import read_stack
    from .data.weightmap import weight_stack
    stack = read_stack(labels, "label")
    if num_classes > 2 and stack.max() >= num_classes:
        raise UnetcoreError(f"{labels}: label value {int(stack.max())} is not a class of "
                            f"0..{num_classes - 1}")
    weights = weight_stack(stack, w0, sigma, num_classes)
    tifffile.imwrite(output, weights if len(weights) > 1 else weights[0],
                     photometric="minisblack")
    click.echo(f"wrote {output}: weights {weights.min():.3g}..{weights.max():.3g}")


def _modeldef_net(path, weights, tile, gpu):
    """The deploy net of a Fiji plugin model (.modeldef.h5), its weights, and the model."""
    from .modeldef import read_modeldef
    from .net import Net
    from .prototxt import parse
    model = read_modeldef(path)
    if model.padding != "mirror":
        raise UnetcoreError(f"{path}: padding '{model.padding}' is not supported yet; unetcore "
                            "extends images by mirroring only")
    net = Net(parse(model.model_prototxt, "NetParameter", f"{path}:/model_prototxt"), "TEST",
              gpu=gpu)
    if model.input_blob_name not in net.inputs:
        raise UnetcoreError(f"{path}: input_blob_name '{model.input_blob_name}' is not an input "
                            f"of the model's TEST net (its inputs: {', '.join(net.inputs) or 'none'})")
    square_input(net, path, tile or max(model.default_tile()))
    copy_all_weights(net, weights)
    net.release_activations = True
    return net, model


def _read_images(path, channels, scale, mean, bits=None):
    from .data.stacks import normalize_grey, read_tiff
    from .tiling import as_channel_images
    stack = read_tiff(path, "image")
    return as_channel_images(normalize_grey(stack, scale, mean, path, bits), channels, path)


def _read_inputs(path, net, scale, mean, bits=None):
    """What _segment_all segments: a 2-d net's images (slices, C, H, W), or for a 3-d net the
    stack as one volume, [(C, D, H, W)]."""
    channels = net.blobs[net.image_input].shape[1]
    if not _is_3d(net):
        return _read_images(path, channels, scale, mean, bits)
    from .data.stacks import normalize_grey, read_tiff
    from .tiling import as_channel_volume
    volume = normalize_grey(read_tiff(path, "image"), scale, mean, path, bits)
    return as_channel_volume(volume, channels, path)[None]


def _is_3d(net):
    return len(net.blobs[net.image_input].shape) == 5


def _read_model_images(path, channels, model, element_size):
    """The images as the Fiji plugin feeds them to `model`: float, rescaled to its pixel
    size, normalized by its normalization_type."""
    from .data.stacks import read_tiff
    from .modeldef import prepare_image
    from .tiling import as_channel_images
    stack = as_channel_images(read_tiff(path, "image").astype(np.float32), channels, path)
    return [prepare_image(image, model, element_size) for image in stack]


def _choose_tile(net, source, image_shapes, tile, memory_mb):
    """With no --tile, reshape the net to the tile with the fewest multiply-adds for images of
    these shapes within --memory (tiling.auto_tile), and say which."""
    if tile is not None:
        return
    if _is_3d(net):
        shape = "x".join(map(str, net.blobs[net.image_input].shape[2:]))
        click.echo(f"tile {shape}: the prototxt's input shape (a 3-d net's tile)", err=True)
        return
    from .tiling import auto_tile
    chosen = auto_tile(net, image_shapes, memory_mb * 2 ** 20)
    square_input(net, source, chosen)
    click.echo(f"tile {chosen} x {chosen}: the fewest multiply-adds for these images within "
               f"--memory {memory_mb} MiB (--tile sets another)", err=True)


def _segment_all(net, images, batch_budget_mb, average_mirror=False):
    """Probabilities (slices, classes, H, W) of the images; a 3-d net's volume is returned
    slice by slice too, so that the labels are written and scored as a stack."""
    from tqdm import tqdm

    from .tiling import axis_geometry, segment, softmax, tile_origins, tiles_per_batch
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
              help="MiB of activations per forward; several tiles are batched when they fit.")
@click.option("--scale", default=0.0, help="Grey values: (v - mean) * scale (default: to [0, 1]).")
@click.option("--mean", default=0.0)
@click.option("--bits", type=int, default=None,
              help="Bit depth of unsigned integer images (default: the smallest of 8, 10, 12, "
                   "14, 16 that holds the largest value; a note says which).")
@click.option("--element-size", type=float, nargs=2, default=None,
              help="With --modeldef: the image's pixel size in um (y x); it is rescaled to the "
                   "model's (default: taken to be the model's, no rescaling).")
@click.option("--average-mirror", is_flag=True,
              help="Average each tile's scores over its mirror images (x, y, both).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With -o OUT.zarr: run the chunks on a dask LocalCluster of this many "
                   "worker processes.")
@click.option("--scheduler", default=None,
              help="With -o OUT.zarr: run the chunks on the dask cluster at this address.")
@click.option("--chunk", type=click.IntRange(1), default=None,
              help="With -o OUT.zarr: output chunk edge in pixels, rounded to a multiple of the "
                   "tile step (default: near 1024).")
@_engine_option
def segment(image, output, model, modeldef, weights, tile, probabilities, gpu, memory_mb, scale,
            mean, bits, element_size, average_mirror, workers, scheduler, chunk):
    """Segment a 2-d image or a stack of any size by overlap-tile with mirrored borders; with
    -o OUT.zarr, a volume of any size chunk by chunk, here or on a dask cluster."""
    import tifffile
    if output.endswith(".zarr"):
        return _segment_volume(image, output, model, modeldef, weights, tile, probabilities,
                               gpu, memory_mb, scale, mean, bits, average_mirror, workers,
                               scheduler, chunk)
    if workers or scheduler or chunk:
        raise UnetcoreError("--workers, --scheduler and --chunk segment chunk by chunk into a "
                            "zarr array: give -o OUT.zarr")
    for path in (output, probabilities):
        if path:
            _output_path(path)
    if bool(model) == bool(modeldef):
        raise UnetcoreError("give the net as --model DEPLOY.prototxt or --modeldef M.modeldef.h5")
    if modeldef:
        if scale or mean:
            raise UnetcoreError("--scale and --mean do not apply with --modeldef: the model "
                                "definition says how to normalize (normalization_type)")
        net, definition = _modeldef_net(modeldef, weights, tile, gpu)
        images = _read_model_images(image, net.blobs[net.image_input].shape[1], definition,
                                    element_size)
    else:
        if element_size:
            raise UnetcoreError("--element-size needs --modeldef (a prototxt has no pixel size)")
        net = deploy_net(model, weights, tile, gpu)
        images = _read_inputs(image, net, scale, mean, bits)
    _choose_tile(net, modeldef or model, [im.shape for im in images], tile, memory_mb)
    probs = _segment_all(net, images, memory_mb, average_mirror)
    labels = probs.argmax(axis=1).astype(np.uint8)
    if probs.shape[1] == 2:
        labels *= 255
    tifffile.imwrite(output, labels if len(labels) > 1 else labels[0],
                     photometric="minisblack")
    if probabilities:
        tifffile.imwrite(probabilities, probs.astype(np.float32), photometric="minisblack")
    click.echo(f"wrote {output}: {len(labels)} slice(s) of {labels.shape[1]}x{labels.shape[2]}"
               + (", segmented as one volume by the 3-d net" if _is_3d(net) else ""))


def _segment_volume(image, output, model, modeldef, weights, tile, probabilities, gpu,
                    memory_mb, scale, mean, bits, average_mirror, workers, scheduler, chunk):
    """segment -o OUT.zarr: unetcore.volume, chunk by chunk, resumable."""
    import uuid

    from tqdm import tqdm

    from . import config
    from .volume import (ChunkPlan, VolumeJob, create_outputs, open_volume,
                         require_cluster_extra, segment_volume, value_scaling)
    require_cluster_extra()
    if modeldef or average_mirror:
        raise UnetcoreError("-o OUT.zarr takes a --model prototxt, without --average-mirror")
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
    offset, factor, bits = value_scaling(volume, scale, mean, bits, image)
    create_outputs(output, plan, net.blobs[net.outputs[0]].shape[1], probabilities)
    job = VolumeJob(str(image), output, probabilities, model, weights, tile, memory_mb, offset,
                    factor, bits, plan.edge[-1], config.engine(), gpu, uuid.uuid4().hex)
    chunks = len(plan.chunks())
    with tqdm(total=chunks, unit="chunk", disable=not sys.stderr.isatty()) as bar:
        run, skipped = segment_volume(job, plan, workers, scheduler, bar.update, click.echo)
    click.echo(f"wrote {output}: {plan.shape[0]} slice(s) of {plan.shape[1]}x{plan.shape[2]}, "
               f"{chunks} chunks of {_edge(plan)}: {run} segmented, {skipped} already written")


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
@click.option("--memory", "memory_mb", default=1024, show_default=True,
              help="MiB of activations per forward; several tiles are batched when they fit.")
@click.option("--bits", type=int, default=None,
              help="Bit depth of unsigned integer images (default: inferred, with a note).")
def test_command(images, labels, model, weights, tile, gpu, memory_mb, bits):
    """Segment IMAGES and score them against LABELS with the ISBI 2012 measures (a 3-d net
    segments the stack as one volume; the measures, 2-d, score it slice by slice)."""
    from .data.stacks import check_same_shape, read_stack, to_classes
    from .metrics import evaluate, iou
    net = deploy_net(model, weights, tile, gpu)
    stack = _read_inputs(images, net, 0.0, 0.0, bits)
    classes = net.blobs[net.outputs[0]].shape[1]
    truth = to_classes(read_stack(labels, "label"), classes, labels)
    check_same_shape(stack[0, 0] if _is_3d(net) else stack[:, 0], truth, images, labels,
                     "label")
    _choose_tile(net, model, [im.shape for im in stack], tile, memory_mb)
    probs = _segment_all(net, stack, memory_mb)
    ious = iou(probs.argmax(axis=1), truth, classes)
    click.echo(f"IoU per class (argmax): {', '.join(f'{c}: {v:.4f}' for c, v in enumerate(ious))}")
    if classes != 2:
        return
    rows, best = evaluate(probs[:, 1], truth.astype(bool))
    click.echo(f"{'threshold':>9} {'pixel error':>12} {'Rand error':>11} {'warping error':>14}")
    for r in rows:
        click.echo(f"{r['threshold']:>9.1f} {r['pixel_error']:>12.6f} {r['rand_error']:>11.6f} "
                   f"{r['warping_error']:>14.6f}")
    cell_fraction = {r["threshold"]: r["cell_fraction"] for r in rows}
    for name, (value, threshold) in best.items():
        click.echo(f"best {name.replace('_', ' ')}: {value:.6f} (threshold {threshold:.1f})")
        if cell_fraction[threshold] in (0.0, 1.0):
            click.echo(f"note: at threshold {threshold:.1f} every pixel is "
                       f"{'cell' if cell_fraction[threshold] else 'membrane'}; this "
                       f"{name.replace('_', ' ')} is an empty segmentation's, not the net's")


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
    from .bioimageio import write_package, write_zip
    from .export import export_onnx
    from .net import Net
    if (output is None) == (package is None):
        raise UnetcoreError("give -o MODEL.onnx or --bioimageio FOLDER (one of them)")
    if package is not None and not author:
        raise UnetcoreError("--bioimageio needs --author NAME: the model spec requires one")
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
    from .plotlog import parse_log, plot_svg
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
    from .net import Net
    from .timing import layer_macs, time_layers
    net = Net(model, _phase(phase), gpu=gpu)
    square_input(net, model, size)
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
    from .backend import gpu_module
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
    from .draw import render
    from .net import Net
    net = Net(model, _phase(phase))
    square_input(net, model, size)
    how = render(net, output)
    click.echo(f"wrote {output} ({how})")
