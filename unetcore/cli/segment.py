"""unetcore segment: overlap-tile segmentation of an image, a stack or a volume larger than
memory (-o OUT.zarr), with a prototxt and weights or with a Fiji plugin model (--modeldef)."""
import click
import numpy as np

from unetcore.cli.app import main, progress_bar
from unetcore.cli.options import (BITS, FINITE, MEMORY, PIXEL_SIZES, distinct_paths,
                                  engine_option, output_array_path, output_path, runtime_option,
                                  tiff_name)
from unetcore.errors import UnetcoreError
from unetcore.files import write_tiff
from unetcore.inference.deploy import deploy_net
from unetcore.inference.runtimes import with_runtime
from unetcore.inference.segmentation import (choose_tile, class_labels, is_3d, read_inputs,
                                             segment_images)


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
                   "model's (default: the TIFF's calibration, 1 um if none, as the Fiji "
                   "plugin). With -o OUT.zarr it must be the model's (the default there).")
@click.option("--z-spacing", type=float, default=None, callback=PIXEL_SIZES,
              help="With a 3-d --modeldef: the stack's z spacing in um (default: the TIFF's, "
                   "ImageJ's voxel depth, 1 um if none); y x are --element-size's.")
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
@engine_option
@runtime_option
def segment(image, output, model, modeldef, weights, tile, probabilities, gpu, memory_mb, scale,
            mean, bits, element_size, z_spacing, average_mirror, average_rotate, workers,
            scheduler, chunk, overwrite, runtime):
    """Segment a 2-d image or a stack of any size by overlap-tile with mirrored borders; with
    -o OUT.zarr, a volume of any size chunk by chunk, here or on a dask cluster."""
    if average_rotate and not modeldef:
        raise UnetcoreError("--average-rotate needs --modeldef (caffe_unet's averaging of a "
                            "Fiji plugin model)")
    if average_rotate and average_mirror:
        raise UnetcoreError("--average-mirror and --average-rotate exclude each other, as in "
                            "caffe_unet")
    _require_one_net(model, modeldef, scale, mean, bits, element_size, z_spacing)
    if output.endswith(".zarr"):
        if average_mirror or average_rotate:
            raise UnetcoreError("-o OUT.zarr segments without --average-mirror or "
                                "--average-rotate")
        if z_spacing:
            raise UnetcoreError("--z-spacing is for 3-d models, and -o OUT.zarr segments with "
                                "2-d models only: segment a 3-d model's volume into a TIFF")
        return _segment_volume(image, output, model, modeldef, weights, tile, probabilities,
                               gpu, memory_mb, scale, mean, bits, element_size, workers,
                               scheduler, chunk, overwrite, runtime)
    if workers or scheduler or chunk or overwrite:
        raise UnetcoreError("--workers, --scheduler, --chunk and --overwrite segment chunk by "
                            "chunk into a zarr array: give -o OUT.zarr")
    distinct_paths({"IMAGE": image, "-o": output, "--probabilities": probabilities})
    for option, path in (("-o", output), ("--probabilities", probabilities)):
        if path:
            tiff_name(path, option)
            output_path(path)
    if modeldef:
        averaging = "mirror" if average_mirror else "rotate" if average_rotate else None
        from unetcore.fiji.predict import segment_tiff
        with progress_bar() as bar:
            probs, net, note = segment_tiff(image, modeldef, weights, tile, gpu, memory_mb,
                                            element_size, averaging, bar.update, z_spacing,
                                            runtime)
        if note:
            click.echo(note, err=True)
    else:
        net = deploy_net(model, weights, tile, gpu)
        images = read_inputs(image, net, scale, mean, bits)
        if tile is None:
            click.echo(choose_tile(net, model, [im.shape for im in images], memory_mb),
                       err=True)
        with progress_bar() as bar:
            probs = segment_images(with_runtime(net, runtime), images, memory_mb,
                                   average_mirror, bar.update)
    labels = class_labels(probs)
    write_tiff(output, labels if len(labels) > 1 else labels[0])
    if probabilities:
        write_tiff(probabilities, probs.astype(np.float32))
    click.echo(f"wrote {output}: {len(labels)} slice(s) of {labels.shape[1]}x{labels.shape[2]}"
               + (", segmented as one volume by the 3-d net" if is_3d(net) else ""))


def _require_one_net(model, modeldef, scale, mean, bits, element_size, z_spacing):
    """The net is a prototxt or a Fiji model file, and each option goes with its kind: the
    grey-value options with a prototxt, the pixel sizes with a model file."""
    if bool(model) == bool(modeldef):
        raise UnetcoreError("give the net as --model DEPLOY.prototxt or --modeldef M.modeldef.h5")
    if modeldef and (scale or mean or bits):
        raise UnetcoreError("--scale, --mean and --bits do not apply with --modeldef: the "
                            "model definition says how to normalize (normalization_type)")
    if not modeldef and (element_size or z_spacing):
        option = "--element-size" if element_size else "--z-spacing"
        raise UnetcoreError(f"{option} needs --modeldef (a prototxt has no pixel size)")


def _segment_volume(image, output, model, modeldef, weights, tile, probabilities, gpu,
                    memory_mb, scale, mean, bits, element_size, workers, scheduler, chunk,
                    overwrite, runtime):
    """segment -o OUT.zarr: inference.chunked, chunk by chunk, resumable."""
    from unetcore.inference.chunked import (chunk_size_words, hdf5_path, prepare_job,
                                            require_cluster_extra, segment_volume)
    require_cluster_extra()
    if workers and scheduler:
        raise UnetcoreError("give --workers N (a local cluster) or --scheduler ADDRESS (a "
                            "running one), not both")
    distinct_paths({"IMAGE": str(hdf5_path(image)[0]), "-o": output,
                    "--probabilities": probabilities})
    if probabilities and not probabilities.endswith(".zarr"):
        raise UnetcoreError("with -o OUT.zarr, --probabilities must name a zarr array too "
                            "(P.zarr)")
    for path in (output, probabilities):
        if path:
            output_array_path(path)
    job, plan, notes = prepare_job(image, output, model, weights, probabilities=probabilities,
                                   tile=tile, gpu=gpu, memory_mb=memory_mb, scale=scale,
                                   mean=mean, bits=bits, chunk=chunk, overwrite=overwrite,
                                   modeldef=modeldef, element_size=element_size,
                                   runtime=runtime)
    for note in notes:
        click.echo(note, err=True)
    chunks = len(plan.chunks())
    with progress_bar(chunks, "chunk") as bar:
        run, skipped = segment_volume(job, plan, workers, scheduler, bar.update, click.echo)
    click.echo(f"wrote {output}: {plan.shape[0]} slice(s) of {plan.shape[1]}x{plan.shape[2]}, "
               f"{chunks} chunks of {chunk_size_words(plan)}: {run} segmented, {skipped} "
               "already written")
