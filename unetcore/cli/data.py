"""The verbs that write data: synth (the embedded default data), prepare-volume (a 3-d
training volume for HDF5Data) and weightmap (the paper's loss weights)."""
import sys
from pathlib import Path

import click

from unetcore.cli.app import main
from unetcore.cli.options import (BITS, CLASSES, PIXEL_SIZES, SIGMA, W0, distinct_paths,
                                  output_path, tiff_name)
from unetcore.errors import UnetcoreError
from unetcore.files import write_tiff


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
    distinct_paths({"IMAGE": image, "LABELS": labels, "-o": output})
    if Path(output).suffix.lower() not in (".h5", ".hdf5"):
        raise UnetcoreError(f"{output}: -o is written as HDF5; name it *.h5")
    output_path(output)
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
    distinct_paths({"LABELS": labels, "-o": output})
    tiff_name(output, "-o")
    output_path(output)
    stack = read_stack(labels, "label")
    if num_classes > 2 and stack.max() >= num_classes:
        raise UnetcoreError(f"{labels}: label value {int(stack.max())} is not a class of "
                            f"0..{num_classes - 1}")
    with tqdm(total=len(stack), unit="slice", disable=len(stack) == 1 or
              not sys.stderr.isatty()) as bar:
        weights = weight_stack(stack, w0, sigma, num_classes, bar.update)
    write_tiff(output, weights if len(weights) > 1 else weights[0])
    click.echo(f"wrote {output}: weights {weights.min():.3g}..{weights.max():.3g}")
