"""Fine-tuning a Fiji U-Net plugin model as the plugin sets it up (FinetuneJob.java), so that
`unetcore train --modeldef` and the plugin's own `caffe train` run the same thing.

The plugin writes, in its process folder, for a job <job>:
    <job>_train_<i>.h5        one per image: data (1, C, *spatial), labels, weights,
                              weights2 (the sampling pdf), each (1, 1, *spatial)
    <job>-trainfilelist.txt   their paths, one a line
    <job>-model.prototxt      the model's net with HDF5Data reading the list,
                              CreateDeformation cutting tiles of the chosen size, and the
                              score layer's num_output set to the number of classes
    <job>-solver.prototxt     the model's solver with type Adam, lr_policy fixed, base_lr
                              (default 1e-4), max_iter = snapshot = the iterations (default
                              1000), snapshot_prefix <job>-snapshot, snapshot_format HDF5
and the fine-tuned model's own .modeldef.h5: its ident with "-<job>" appended, the class
names, and the rewritten net (before any validation layers), the model's solver unchanged.

Given validation images, it also writes (FinetuneJob.run, TrainingSample.saveHDF5TiledBlob)
    <job>_valid_<i>_<j>.h5    image i cut into tiles j: /<input_blob_name> (1, C, *tile), the
                              input tile of the model; /labels and /weights (1, 1, *out), the
                              output tile they score, both mirrored past the image's edge,
                              the weights 0 there so that only the image's pixels count
    <job>-validfilelist.txt   their paths
and adds to the net's TEST phase HDF5Data `loaddata_valid` (at the top) reading them, then
`loss_valid` (SoftmaxWithLoss), `IoU` and the F1 layers `F1_detection` (EUCLIDEAN, 3 pixels)
and `F1_segmentation` (IOU, 0.5) on (score, labels, weights); and to the solver test_iter =
the number of tiles, test_interval = the validation step (the plugin's default: 1).
"""
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from unetcore.errors import DataError
from unetcore.files import atomic_h5, write_text
from unetcore.fiji.images import prepare_image, scale_to_model, training_blobs
from unetcore.fiji.modeldef import read_modeldef, write_modeldef
from unetcore.formats.prototxt import parse, to_text

# The plugin's fine-tuning defaults (the dialog's): Adam at a fixed 1e-4 for 1000 iterations,
# validated (when validation images are given) after every iteration.
BASE_LR = 1e-4
ITERATIONS = 1000
VALIDATION_STEP = 1
# The TEST-phase layers FinetuneJob.run adds for a validation set, after the model's own.
VALIDATION_LAYERS = (
    'name: "loss_valid" type: "SoftmaxWithLoss" bottom: "score" bottom: "labels" '
    'bottom: "weights" top: "loss_valid" include { phase: TEST }',
    'name: "IoU" type: "IoU" bottom: "score" bottom: "labels" bottom: "weights" top: "IoU" '
    'include { phase: TEST }',
    'name: "F1_detection" type: "F1" bottom: "score" bottom: "labels" bottom: "weights" '
    'top: "F1_detection" f1_param { distance_mode: EUCLIDEAN distance_threshold: 3 } '
    'include { phase: TEST }',
    'name: "F1_segmentation" type: "F1" bottom: "score" bottom: "labels" bottom: "weights" '
    'top: "F1_segmentation" include { phase: TEST }')


def class_names_for(model, labels):
    """The fine-tuned model's class names: the model's own if they cover the labels' classes,
    else "Background", "Class 1", ... up to the largest label (0 ignore, 1 background)."""
    largest = max(int(np.max(label)) for label in labels)
    if model.class_names and largest <= len(model.class_names):
        return list(model.class_names)
    return ["Background"] + [f"Class {k}" for k in range(1, max(largest, 2))]


def finetuning_net(model, train_list, tile, num_classes):
    """The model's net as the plugin rewrites it for fine-tuning (a NetParameter)."""
    net = parse(model.model_prototxt, "NetParameter", f"{model.path}:/model_prototxt")
    deformations = [layer for layer in net.layer if layer.type == "CreateDeformation"]
    if not deformations:
        raise DataError(f"{model.path}: the model has no CreateDeformation layer; the Fiji "
                        "plugin (and unetcore) fine-tune only models that cut their training "
                        "tiles with one")
    for layer in net.layer:
        if layer.type == "HDF5Data":
            layer.hdf5_data_param.set("source", str(train_list))
    for layer in deformations:
        param = layer.create_deformation_param
        for axis, size in zip(("nz", "ny", "nx")[-len(tile):], tile):
            param.set(axis, int(size))
    scores = [layer for layer in net.layer if "score" in layer.top]
    if not scores or not scores[0].has("convolution_param"):
        raise DataError(f"{model.path}: the model's scores must come from a Convolution layer "
                        "with top 'score' (the Fiji plugin sets its num_output to the number "
                        "of classes)")
    scores[0].convolution_param.set("num_output", num_classes)
    return net


def finetuning_solver(model, net_path, base_lr, iterations, prefix, gpu):
    """The model's solver as the plugin rewrites it (a SolverParameter)."""
    solver = parse(model.solver_prototxt, "SolverParameter", f"{model.path}:/solver_prototxt")
    for key, value in (("net", str(net_path)), ("base_lr", float(base_lr)),
                       ("snapshot", int(iterations)), ("max_iter", int(iterations)),
                       ("snapshot_prefix", str(prefix)), ("lr_policy", "fixed"),
                       ("type", "Adam"), ("snapshot_format", "HDF5"),
                       ("solver_mode", "CPU" if gpu is None else "GPU")):
        solver.set(key, value)
    return solver


def add_validation_layers(net, model, valid_list):
    """The TEST-phase layers FinetuneJob.run adds to the fine-tuning net for a validation
    set: the tiles' reader first, the losses and scores after the model's layers."""
    reader = parse(f'name: "loaddata_valid" type: "HDF5Data" top: "{model.input_blob_name}" '
                   f'top: "labels" top: "weights" hdf5_data_param {{ source: "{valid_list}" '
                   'batch_size: 1 shuffle: false } include { phase: TEST }',
                   "LayerParameter", "the plugin's validation reader")
    net.layer.insert(0, reader)
    for text in VALIDATION_LAYERS:
        net.set("layer", parse(text, "LayerParameter", "the plugin's validation layers"))


def add_validation_testing(solver, tiles, validation_step):
    """The solver's test settings for a validation set of `tiles` tiles (one test pass
    reads each once, as the plugin's test_iter says)."""
    solver.clear("test_iter")
    solver.set("test_iter", int(tiles))
    solver.set("test_interval", int(validation_step))


def reflected(index, size):
    """Indices mirrored about the first and last pixel, as often as needed (the plugin's
    tiling of validation images; no repeated edge pixel)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.abs(index) % period
    return np.where(index > size - 1, period - index, index)


def validation_tiles(data, labels, weights, input_tile, output_tile):
    """(data (C, *input_tile), labels, weights (*output_tile)) of every tile in scan order:
    output tiles side by side from the image's first pixel, ceil(size / output) per axis,
    each with the input tile centred on it (TrainingSample.saveHDF5TiledBlob)."""
    shape = labels.shape
    counts = [math.ceil(n / o) for n, o in zip(shape, output_tile)]
    for tile in np.ndindex(*counts):
        starts = [t * o for t, o in zip(tile, output_tile)]
        inputs = [reflected(np.arange(i) + s - (i - o) // 2, n)
                  for i, o, s, n in zip(input_tile, output_tile, starts, shape)]
        outputs = [np.arange(o) + s for o, s in zip(output_tile, starts)]
        inside = np.all(np.meshgrid(*(index < n for index, n in zip(outputs, shape)),
                                    indexing="ij"), axis=0)
        mirrored = np.ix_(*(reflected(index, n) for index, n in zip(outputs, shape)))
        yield (data[(slice(None),) + np.ix_(*inputs)], labels[mirrored],
               np.where(inside, weights[mirrored], 0.0))


def write_validation_files(job, model, tuned, samples, input_tile, labels_are_classes):
    """<job>_valid_<i>_<j>.h5 for every validation image i and tile j; their paths."""
    output_tile = model.output_tile(input_tile)
    if min(output_tile) < 1:
        raise DataError(f"the tile {tuple(input_tile)} leaves no output pixels for "
                        f"{model.path}; give a larger tile")
    paths = []
    for i, (image, labels, element_size) in enumerate(samples):
        if labels.shape != image.shape[1:]:
            raise DataError(f"validation label image {i} is {labels.shape}, its image "
                            f"{image.shape[1:]}")
        data = prepare_image(image, model, element_size)
        blob_labels, blob_weights, _ = training_blobs(
            labels, tuned, scale_to_model(element_size, model), labels_are_classes)
        for j, tile in enumerate(validation_tiles(data, blob_labels, blob_weights,
                                                  input_tile, output_tile)):
            paths.append(job.with_name(f"{job.name}_valid_{i}_{j}.h5"))
            write_tile_file(paths[-1], model, tile)
    return paths


def write_tile_file(path, model, tile):
    """One validation tile file: /<input_blob_name> (1, C, *input tile), /labels and
    /weights (1, 1, *output tile), the datasets loaddata_valid's tops read."""
    data, labels, weights = tile
    with atomic_h5(path) as f:
        for name, array in ((model.input_blob_name, data[None]),
                            ("labels", labels[None, None]), ("weights", weights[None, None])):
            f[name] = array.astype(np.float32)
            f[name].attrs["element_size_um"] = np.asarray(model.element_size_um, np.float64)


def write_training_file(path, model, image, blobs, element_size_um):
    """One <job>_train_<i>.h5: the image under the model's input_dataset_name, and the
    labels, weights and pdf, each with its element_size_um attribute."""
    with atomic_h5(path) as f:
        names = (model.input_dataset_name, "labels", "weights", "weights2")
        for name, array in zip(names, (image,) + tuple(b[None] for b in blobs)):
            f[name] = array[None].astype(np.float32)
            f[name].attrs["element_size_um"] = np.asarray(element_size_um, np.float64)


def prepare_finetuning(model, samples, job, *, tile=None, base_lr=BASE_LR,
                       iterations=ITERATIONS, gpu=None, name=None, labels_are_classes=True,
                       validation=(), validation_step=VALIDATION_STEP):
    """Write the plugin's fine-tuning files for `samples` ((image (C, *spatial), labels
    (spatial), the image's element size in um) each) under the path prefix `job`, and the
    fine-tuned model's .modeldef.h5 as <job>.modeldef.h5; with `validation` (samples of the
    same form), the validation tiles, layers and test settings too. Returns (the solver
    prototxt's path, the fine-tuned ModelDefinition)."""
    job = Path(job)
    job.parent.mkdir(parents=True, exist_ok=True)
    # instance labels (2, 3, ... the objects of one class) have one foreground class
    classes = [labels if labels_are_classes else np.minimum(labels, 2) for _, labels, _ in samples]
    class_names = class_names_for(model, classes)
    tuned = replace(model, ident=f"{model.ident}-{job.name}", class_names=class_names,
                    name=name or f"{model.name} - finetuned")
    files = []
    for k, (image, labels, element_size) in enumerate(samples):
        if labels.shape != image.shape[1:]:
            raise DataError(f"label image {k} is {labels.shape}, its image {image.shape[1:]}")
        data = prepare_image(image, model, element_size)
        blobs = training_blobs(labels, tuned, scale_to_model(element_size, model),
                               labels_are_classes)
        files.append(job.with_name(f"{job.name}_train_{k}.h5"))
        write_training_file(files[-1], model, data, blobs, model.element_size_um)
    train_list = job.with_name(f"{job.name}-trainfilelist.txt")
    write_text(train_list, "".join(f"{p.resolve()}\n" for p in files))
    tile = tuple(tile or model.finetuning_tile())
    net = finetuning_net(model, train_list.resolve(), tile, len(class_names))
    # the model file keeps the net as it is before the validation layers (FinetuneJob.run)
    tuned = write_modeldef(replace(tuned, model_prototxt=to_text(net) + "\n"),
                           job.with_name(f"{job.name}.modeldef.h5"))
    valid_files = write_validation_files(job, model, tuned, validation, tile,
                                         labels_are_classes)
    if valid_files:
        valid_list = job.with_name(f"{job.name}-validfilelist.txt")
        write_text(valid_list, "".join(f"{p.resolve()}\n" for p in valid_files))
        add_validation_layers(net, model, valid_list.resolve())
    net_path = job.with_name(f"{job.name}-model.prototxt")
    write_text(net_path, to_text(net) + "\n")
    solver = finetuning_solver(model, net_path.resolve(), base_lr, iterations,
                               job.with_name(f"{job.name}-snapshot").resolve(), gpu)
    if valid_files:
        add_validation_testing(solver, len(valid_files), validation_step)
    solver_path = job.with_name(f"{job.name}-solver.prototxt")
    write_text(solver_path, to_text(solver) + "\n")
    return solver_path, tuned


def finetuning_from_tiffs(modeldef_path, images_path, labels_path, job, *, element_size=None,
                          validation=(None, None), labels_are_classes=True, tile_edge=None,
                          **options):
    """prepare_finetuning of the model at `modeldef_path` on TIFF files, as `unetcore train
    --modeldef` reads them: images, their labels (0 ignore, 1 background, 2.. classes; with
    labels_are_classes False, 2.. the objects of one class) and optionally validation images
    and labels. `element_size` (um, y x) overrides the TIFFs' calibration; `tile_edge` is the
    training tile's edge on every axis (default: the plugin's). Returns prepare_finetuning's
    (solver path, the fine-tuned ModelDefinition)."""
    validation_images, validation_labels = validation
    if bool(validation_images) != bool(validation_labels):
        raise DataError("give --validation-images and --validation-labels together")
    model = read_modeldef(modeldef_path)
    if tile_edge:
        options["tile"] = (tile_edge,) * model.n_dims
    return prepare_finetuning(
        model, tiff_samples(images_path, labels_path, model, element_size), job,
        labels_are_classes=labels_are_classes,
        validation=tiff_samples(validation_images, validation_labels, model, element_size)
        if validation_images else (), **options)


def tiff_samples(images_path, labels_path, model, element_size=None):
    """(image (C, H, W), labels, pixel size) of every image of a TIFF and its label TIFF."""
    from unetcore.data.stacks import read_stack, whole_labels
    from unetcore.fiji.images import read_model_images
    images, size = read_model_images(images_path, model, element_size)
    labels = whole_labels(read_stack(labels_path, "label"), labels_path)
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} label image(s) for {len(images)} "
                        f"image(s) in {images_path}")
    return [(image, label, size) for image, label in zip(images, labels)]
