"""unetcore test and unetcore score: the ISBI 2012 measures, as the challenge computed them,
of a net's segmentation (test) or of any tool's saved probability map (score)."""
import click

from unetcore.cli.app import main, progress_bar
from unetcore.cli.options import BITS, MEMORY, runtime_option
from unetcore.errors import UnetcoreError


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
@runtime_option
def test_command(images, labels, model, weights, tile, gpu, memory_mb, bits, as_json, runtime):
    """Segment IMAGES and score them against LABELS with the ISBI 2012 measures, as the
    challenge computed them (see `unetcore score`; a 3-d net segments the stack as one
    volume; the measures, 2-d, score it slice by slice)."""
    from unetcore.data.stacks import check_same_shape, read_stack, to_classes
    from unetcore.inference.deploy import deploy_net
    from unetcore.inference.runtimes import with_runtime
    from unetcore.inference.segmentation import choose_tile, is_3d, read_inputs, segment_images
    from unetcore.measures.isbi import iou, label_stack
    net = deploy_net(model, weights, tile, gpu)
    stack = read_inputs(images, net, bits=bits)
    classes = net.blobs[net.outputs[0]].shape[1]
    truth = to_classes(read_stack(labels, "label"), classes, labels)
    check_same_shape(stack[0, 0] if is_3d(net) else stack[:, 0], truth, images, labels,
                     "label")
    if tile is None:
        click.echo(choose_tile(net, model, [im.shape for im in stack], memory_mb), err=True)
    with progress_bar() as bar:
        probs = segment_images(with_runtime(net, runtime), stack, memory_mb,
                               progress=bar.update)
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
    from unetcore.measures.isbi import report_lines
    for line in report_lines(cell_probabilities, truth, as_json):
        click.echo(line)
