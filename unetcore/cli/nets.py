"""The verbs about a net itself: shapes, gradcheck, time, draw, device; and its files:
upgrade (V1 -> V2 prototxt), convert (binary <-> HDF5 weights), export (ONNX, BioImage),
plot-log (a training log's curves)."""
import sys

import click
import numpy as np

from unetcore.cli.app import main
from unetcore.cli.options import distinct_paths, engine_option, output_path, phase_name
from unetcore.errors import UnetcoreError
from unetcore.files import write_text
from unetcore.inference.deploy import copy_all_weights, require_image_input, square_input
from unetcore.inference.segmentation import is_3d


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
        net = Net(model, phase_name(phase))
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
    if is_3d(net):
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
@engine_option
def gradcheck(model, phase, max_checks, step, threshold, seed):
    """Check a net's backward against central differences in float64."""
    from unetcore.gradcheck import check_net, randomize_params, random_inputs
    from unetcore.net import Net, load_net_param
    param = load_net_param(model)
    param.set("force_backward", True)
    net = Net(param, phase_name(phase), dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    randomize_params(net, rng)
    random_inputs(net, rng)
    results = check_net(net, step, threshold, max_checks or None, seed)
    for r in results:
        click.echo(r.line())
    failed = [r for r in results if not r.passed]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
def upgrade(model, output):
    """Write a V1 net (the 2015 release's format) as a V2 prototxt (Caffe's
    upgrade_net_proto_text)."""
    output_path(output)
    from unetcore.formats.prototxt import parse_file, to_text
    from unetcore.formats.upgrade import upgrade_v1_net
    from unetcore.net import blob_shapes
    param = parse_file(model)
    if not param.layers:
        raise UnetcoreError(f"{model}: has no V1 'layers'; it needs no upgrade")
    write_text(output, to_text(upgrade_v1_net(param, blob_shapes)) + "\n")
    click.echo(f"wrote {output}: {len(param.layers)} layers upgraded")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="OUT.caffemodel (binary) or OUT.caffemodel.h5 (HDF5): by its name.")
def convert(source, output):
    """Convert weights between a binary .caffemodel and a .caffemodel.h5, either way."""
    distinct_paths({"SOURCE": source, "-o": output})
    if not output.endswith((".h5", ".caffemodel")):
        raise UnetcoreError(f"{output}: name the output *.caffemodel (binary) or "
                            "*.caffemodel.h5 (HDF5); the name says which is written")
    output_path(output)
    from unetcore.formats.caffemodel import write_caffemodel
    from unetcore.formats.weights import weight_layers, write_h5_weights
    layers = weight_layers(source)
    if output.endswith(".h5"):
        write_h5_weights(output, [(name, arrays) for name, arrays, _ in layers])
    else:
        write_caffemodel(output, [(name, "", arrays) for name, arrays, _ in layers])
    click.echo(f"wrote {output}: {len(layers)} layers with weights")


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
    output = output_path(output) if output else None
    net = Net(model, "TEST")
    require_image_input(net, model)
    copy_all_weights(net, weights)
    if package is not None and package.endswith(".zip"):
        write_zip(net, output_path(package), name, author, license_id, data_citation)
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
    output_path(output)
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
@engine_option
def time_command(model, size, iterations, phase, gpu):
    """Per-layer forward/backward times, medians over iterations (Caffe's `caffe time`)."""
    from unetcore.net import Net
    from unetcore.tools.timing import layer_macs, time_layers
    net = Net(model, phase_name(phase), gpu=gpu)
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
    output_path(output)
    from unetcore.tools.draw import render
    from unetcore.net import Net
    net = Net(model, phase_name(phase))
    square_input(net, model, size, "--size")
    how = render(net, output)
    click.echo(f"wrote {output} ({how})")
