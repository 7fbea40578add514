"""Segmenting volumes larger than memory, chunk by chunk: in this process, or on a dask cluster.

The output is cut into chunks of (1, S, S) voxels for a 2-d net, or (S_z, S, S) for a 3-d net,
each edge a multiple of the net's tile step on its axis, so that every chunk's tiles are
exactly the tiles that unetcore.inference.tiling.segment would run over the whole slice, or the whole
volume (same origins, same mirrored context). A chunk reads only its input region,
with the net's margin of context, and mirrors where that region passes the volume's border,
as the whole slice would be mirrored. So a chunked result equals the in-process one, and the
chunks are independent: any process can run any of them, in any order.

Resumable: a chunk is finished when its marker file exists in OUTPUT/.unetcore-done, and the
marker is written after the chunk's data. A rerun skips every finished chunk and writes the
others whole. A chunk cut off mid-write has no marker, so the rerun writes it again. The
markers are trusted only for the job that wrote them: OUTPUT/.unetcore-job.json records what
made the output (the input's path, shape, type, size and time; digests of the weights and
the net; the grey-value scaling, tile, chunks and probability array), and a rerun with
anything else is refused, or starts over with --overwrite.

Inputs: a zarr array (a directory), an HDF5 dataset (FILE.h5:DATASET, or the file's only
dataset) or a TIFF stack, all read lazily, as (Z, H, W) or (H, W). Output: a zarr array of
uint8 labels (0/255 for two classes), chunked as the computation is; with probabilities, a
second zarr array of float32 (Z, classes, H, W).
"""
import itertools
import json
import math
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetcore import config
from unetcore.errors import DataError, UnetcoreError
from unetcore.files import sha256, write_errors, write_text

DONE_FOLDER = ".unetcore-done"
JOB_RECORD = ".unetcore-job.json"


def require_cluster_extra():
    """dask.distributed and zarr, or one clear line on how to install them."""
    try:
        import dask.distributed  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as err:
        raise UnetcoreError(f"chunked volumes need the 'cluster' extra ({err.name} is missing): "
                            "pip install 'unetcore[cluster]'") from None


# ---------------------------------------------------------------- lazy volumes
def open_volume(source):
    """A lazily read (Z, H, W) array-like of a zarr array, HDF5 dataset or TIFF stack."""
    path, dataset = hdf5_path(str(source))
    if not path.exists():
        raise DataError(f"{path}: no such volume")
    try:
        if path.suffix in (".h5", ".hdf5"):
            array = hdf5_dataset(path, dataset)
        elif path.is_dir():
            import zarr
            array = zarr.open_array(str(path), mode="r")
        else:
            import tifffile
            import zarr
            array = zarr.open_array(tifffile.imread(path, aszarr=True), mode="r")
    except UnetcoreError:
        raise
    except Exception as err:
        raise DataError(f"{source}: not a readable volume (zarr, HDF5 or TIFF): {err}") from None
    if array.ndim == 2:
        return Slices2d(array)
    if array.ndim != 3 or 0 in array.shape:
        raise DataError(f"{source}: a volume must be (Z, H, W) or (H, W) grey values with "
                        f"pixels, got shape {array.shape}")
    return array


def hdf5_path(text):
    """(file, dataset name) of 'FILE.h5:DATASET' (.hdf5 too); (path, '') for any other path."""
    head, colon, name = text.rpartition(":")
    if colon and Path(head).suffix in (".h5", ".hdf5"):
        return Path(head), name
    return Path(text), ""


def hdf5_dataset(path, name):
    """The dataset `name` of an HDF5 file, or its only dataset when no name is given."""
    import h5py
    handle = h5py.File(path, "r")
    if not name:
        names = []
        handle.visititems(lambda key, item: names.append(key)
                          if isinstance(item, h5py.Dataset) else None)
        if len(names) != 1:
            raise DataError(f"{path}: holds {len(names)} datasets ({', '.join(names[:5])}); "
                            f"name one as {path}:DATASET")
        name = names[0]
    if name not in handle:
        raise DataError(f"{path}: has no dataset '{name}'")
    if not isinstance(handle[name], h5py.Dataset):
        raise DataError(f"{path}: '{name}' is a group, not a dataset; name one of its datasets "
                        f"({', '.join(list(handle[name])[:5])}) as {path}:{name}/DATASET")
    return handle[name]


class Slices2d:
    """A 2-d image as a volume of one slice."""
    def __init__(self, array):
        self.array, self.shape, self.dtype, self.ndim = array, (1,) + array.shape, array.dtype, 3

    def __getitem__(self, key):
        z, rows, cols = key
        return self.array[rows, cols][None] if isinstance(z, slice) else self.array[rows, cols]


def value_scaling(volume, scale, mean, bits, path):
    """(mean, scale, bits) for normalize_grey, the same for every chunk of the volume:
    - with --scale: (v - mean) * scale;
    - unsigned integers: v / (2^bits - 1), bits given or inferred from the volume's largest
      value (normalize_grey refuses a chunk whose values do not fit);
    - else the volume's range to [0, 1].
    The volume is read once, slice by slice, where a rule needs its range."""
    from unetcore.data.stacks import bit_depth, check_bits
    check_bits(volume.dtype, bits, scale, path)
    unsigned = np.issubdtype(volume.dtype, np.unsignedinteger)
    if scale:
        return mean, scale, None
    if unsigned and bits:
        return 0.0, 0.0, bits
    low = high = None
    for z in range(volume.shape[0]):
        values = np.asarray(volume[z, :, :])
        low = values.min() if low is None else min(low, values.min())
        high = values.max() if high is None else max(high, values.max())
    if unsigned:
        return 0.0, 0.0, bit_depth(np.array([high], volume.dtype), None, path)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(f"{path}: holds NaN or infinite grey values; fix or mask them first")
    return float(low), 1.0 / (float(high) - float(low) if high > low else 1.0), None


# ---------------------------------------------------------------- the chunk plan
@dataclass(frozen=True)
class ChunkPlan:
    """Output chunks over a (Z, H, W) volume, for a net's tile geometry: tile, margin, step and
    chunk edge per axis (z, y, x). A 2-d net's chunks are one slice thick and read no
    context in z (tile 1, margin 0, step 1 there); a 3-d net's are edge[0] slices deep."""
    shape: tuple
    tile: tuple
    margin: tuple
    step: tuple
    edge: tuple
    volumetric: bool            # a 3-d net: the chunk's canvas is one volume, not slices

    @classmethod
    def for_net(cls, net, shape, edge=None):
        """The plan for `net`, with chunk edges near `edge` px in y and x (by default
        config.sizes().chunk_edge) and chunk_slices slices in z for a 3-d net, no larger than
        the volume, rounded to the tile steps."""
        from unetcore.inference.tiling import axis_geometry
        geometry = axis_geometry(net, net.image_input, net.outputs[0])
        volumetric = len(geometry) == 3
        if not volumetric:
            geometry = [(1, 1, 0, 1)] + geometry
        tile, _, margin, step = zip(*geometry)
        target = config.sizes()
        square = min(edge or target.chunk_edge, max(shape[1:]))      # square chunks in y and x
        targets = (min(target.chunk_slices, shape[0]) if volumetric else 1,) + (square,) * 2
        edges = tuple(s * max(1, round(t / s)) for s, t in zip(step, targets))
        return cls(tuple(shape), tile, margin, step, edges, volumetric)

    def chunks(self):
        """(z, row, col) of every chunk, in index units."""
        counts = [math.ceil(n / e) for n, e in zip(self.shape, self.edge)]
        return list(itertools.product(*map(range, counts)))

    def output_window(self, chunk):
        """(z, rows, cols) slices of the output that `chunk` writes."""
        return tuple(slice(i * e, min(n, (i + 1) * e))
                     for i, e, n in zip(chunk, self.edge, self.shape))

    def canvas_indices(self, axis, start, length):
        """Volume indices, along `axis`, of the mirrored canvas that a chunk's tiles read:
        from start - margin, for the tiles at start, start + step, ... covering `length`
        outputs; reflected about the border voxels as numpy's 'reflect' padding does."""
        return reflect(self._canvas_positions(axis, start, length), self.shape[axis])

    def canvas_inside(self, axis, start, length):
        """Which positions of canvas_indices lie inside the volume (not mirrored)."""
        positions = self._canvas_positions(axis, start, length)
        return (positions >= 0) & (positions < self.shape[axis])

    def _canvas_positions(self, axis, start, length):
        tiles = math.ceil(length / self.step[axis])
        first = start - self.margin[axis]
        return np.arange(first, first + (tiles - 1) * self.step[axis] + self.tile[axis])


def reflect(index, size):
    """numpy.pad's 'reflect' for any width: indices mirrored about 0 and size - 1, repeatedly."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def chunk_canvas(volume, plan, chunk, to_grey, padding="mirror"):
    """The input region that `chunk`'s tiles read, as grey values: (1, rows, cols) for a 2-d
    net, (1, slices, rows, cols) for a 3-d net, mirrored past the volume's border (padding
    "zero": zeros there, after the grey-value scaling, as a Fiji model pads). One contiguous
    read of the volume, then the mirror's index map."""
    windows = plan.output_window(chunk)
    indices = [plan.canvas_indices(axis, window.start, window.stop - window.start)
               for axis, window in enumerate(windows)]
    lows = [index.min() for index in indices]
    region = np.asarray(volume[tuple(slice(low, index.max() + 1)
                                     for low, index in zip(lows, indices))])
    canvas = to_grey(region[np.ix_(*(index - low for index, low in zip(indices, lows)))])
    if padding == "zero":
        z, rows, cols = (plan.canvas_inside(axis, window.start, window.stop - window.start)
                         for axis, window in enumerate(windows))
        canvas = canvas * (z[:, None, None] & rows[None, :, None] & cols[None, None, :])
    return canvas[None] if plan.volumetric else canvas


def segment_chunk(net, volume, plan, chunk, to_grey, batch, padding="mirror"):
    """Class probabilities (classes, slices, rows, cols) of one output chunk."""
    from unetcore.inference.tiling import segment_canvas, softmax
    window = plan.output_window(chunk)
    axes = range(3) if plan.volumetric else range(1, 3)       # the net's spatial axes
    sizes = [window[axis].stop - window[axis].start for axis in axes]
    counts = tuple(math.ceil(n / plan.step[axis]) for n, axis in zip(sizes, axes))
    scores = segment_canvas(net, chunk_canvas(volume, plan, chunk, to_grey, padding), counts,
                            batch)
    probabilities = softmax(scores[(slice(None),) + tuple(slice(0, n) for n in sizes)])
    return probabilities if plan.volumetric else probabilities[:, None]


# ---------------------------------------------------------------- output and markers
def create_outputs(path, plan, classes, probabilities):
    """The label array (uint8, (Z, H, W)) and, if asked, the probability array (float32,
    (Z, classes, H, W)), chunked as the plan. An existing output of the same shape is opened
    as it is, for a rerun to finish."""
    with write_errors(path):
        arrays = [open_or_create(path, plan.shape, plan.edge, np.uint8)]
        Path(path, DONE_FOLDER).mkdir(exist_ok=True)
    if probabilities:
        shape = (plan.shape[0], classes) + plan.shape[1:]
        with write_errors(probabilities):
            arrays.append(open_or_create(probabilities, shape,
                                         (plan.edge[0], classes) + plan.edge[1:], np.float32))
    return arrays


def open_or_create(path, shape, chunks, dtype):
    import zarr
    if Path(path).exists():
        array = zarr.open_array(str(path), mode="r+")
        if array.shape != tuple(shape) or array.chunks != tuple(chunks) or array.dtype != dtype:
            raise DataError(f"{path}: exists with shape {array.shape}, chunks {array.chunks} and "
                            f"type {array.dtype}, not those of this run ({tuple(shape)}, "
                            f"{tuple(chunks)}, {np.dtype(dtype)}); remove it or write elsewhere")
        return array
    return zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0)


def marker(path, chunk):
    return Path(path, DONE_FOLDER, "-".join(map(str, chunk)))


# ---------------------------------------------------------------- what made an output
def job_record(job, plan, volume):
    """What made an output, in words a rerun can compare: {what: value}."""
    return {"the input": input_identity(job.source, volume),
            "the weights": sha256(job.weights) if job.weights else "",
            "the net": sha256(job.model) if job.model else "",
            "the model definition": sha256(job.modeldef) if job.modeldef else "",
            "the grey-value scaling": [job.offset, job.scale, job.bits] if not job.modeldef
            else [[float(offset), float(divisor)] for offset, divisor in job.slice_scaling],
            "the tile": job.tile,
            "the chunks": list(plan.edge),
            "the probability array": os.path.realpath(job.probabilities)
            if job.probabilities else None}


def input_identity(source, volume):
    """The input's path, shape and type, and the size and newest modification time of its
    file (of every file in a zarr array's folder)."""
    path, dataset = hdf5_path(source)
    files = [path] if path.is_file() else [Path(folder, name) for folder, _, names
                                           in os.walk(path) for name in names]
    stats = [f.stat() for f in files]
    return {"path": os.path.realpath(path), "dataset": dataset,
            "shape": [int(n) for n in volume.shape], "type": str(volume.dtype),
            "bytes": sum(st.st_size for st in stats),
            "modified": max((st.st_mtime_ns for st in stats), default=0)}


def claim_output(output, probabilities, record, overwrite):
    """Make `output` this job's: new, or left by the same job (its finished chunks are kept),
    or, with `overwrite`, removed with its probability array to start over. An output of
    another job, or one with finished chunks and no record, is refused in one line."""
    if overwrite:
        for path in (output, probabilities):
            remove_array(path)
    elif Path(output).exists():
        differing = recorded_differences(output, record)
        if differing:
            raise UnetcoreError(f"{output}: holds part of another job's result (not this "
                                f"run's: {differing}); rerun that job to finish it, give "
                                "--overwrite to start over, or write elsewhere")


def write_record(output, record):
    """The record of the job that writes `output`, before its first chunk."""
    write_text(Path(output, JOB_RECORD), json.dumps(record, indent=1) + "\n")


def recorded_differences(output, record):
    """What differs between `record` and the record in `output`, in words ('' if nothing);
    an output with finished chunks but no record differs in everything."""
    path = Path(output, JOB_RECORD)
    if not path.exists():
        done = Path(output, DONE_FOLDER)
        return "all its settings" if done.exists() and any(done.iterdir()) else ""
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return "all its settings"
    return ", ".join(key for key, value in record.items() if recorded.get(key) != value)


def remove_array(path):
    """Remove a zarr array that --overwrite replaces; refuse to remove anything else."""
    if not path or not Path(path).exists():
        return
    if not any(Path(path, name).exists() for name in ("zarr.json", ".zarray", DONE_FOLDER)):
        raise UnetcoreError(f"{path}: --overwrite removes zarr arrays only, and this is not "
                            "one; remove it yourself or write elsewhere")
    with write_errors(path):
        shutil.rmtree(path)


def write_chunk(outputs, plan, chunk, probabilities, marker_path):
    """The chunk's labels (and probabilities, (classes, slices, rows, cols)), then its marker:
    a chunk with a marker is whole."""
    slices, rows, cols = plan.output_window(chunk)
    labels = probabilities.argmax(axis=0).astype(np.uint8)
    if probabilities.shape[0] == 2:
        labels *= 255
    outputs[0][slices, rows, cols] = labels
    if len(outputs) > 1:
        outputs[1][slices, :, rows, cols] = probabilities.swapaxes(0, 1)
    marker_path.touch()


# ---------------------------------------------------------------- the job, anywhere
@dataclass(frozen=True)
class VolumeJob:
    """What any process needs to segment any chunk: small and picklable, sent to workers."""
    source: str
    output: str
    probabilities: str
    model: str
    weights: str
    tile: int           # a 2-d net's square tile; None: the prototxt's (a 3-d net's)
    memory_mb: int
    offset: float
    scale: float
    bits: int
    edge: int           # the chunk edge in y and x
    engine: str
    gpu: int = None
    run: str = ""       # one id per run of the command: what a process opened for one run
                        # (the volume, the outputs) is never reused by the next
    modeldef: str = None        # a Fiji plugin model (.modeldef.h5) instead of `model`,
    slice_scaling: tuple = ()   # with its normalization: (offset, divisor) of every slice,
    padding: str = "mirror"     # and its padding at the volume's border ("mirror", "zero")
    runtime: str = "numpy"      # what runs the forward passes (inference.runtimes)


class JobState:
    """What one process opens for a job: the net (built and loaded once), its batch of tiles,
    the volume, the chunk plan and the output arrays."""
    def __init__(self, job):
        from unetcore.fiji.predict import modeldef_net
        from unetcore.inference.deploy import deploy_net
        from unetcore.inference.runtimes import with_runtime
        from unetcore.inference.tiling import tiles_per_batch
        with config.using_engine(job.engine):
            net = modeldef_net(job.modeldef, job.weights, job.tile, job.gpu) \
                if job.modeldef else deploy_net(job.model, job.weights, job.tile, job.gpu)
        self.net = with_runtime(net, job.runtime)
        self.volume = open_volume(job.source)
        self.plan = ChunkPlan.for_net(self.net, self.volume.shape, job.edge)
        tiles = math.prod(math.ceil(e / s) for e, s in zip(self.plan.edge, self.plan.step))
        self.batch = tiles_per_batch(self.net, self.net.image_input, job.memory_mb * 2 ** 20,
                                     tiles)
        self.outputs = create_outputs(job.output, self.plan,
                                      self.net.blobs[self.net.outputs[0]].shape[1],
                                      job.probabilities)


_opened = threading.local()      # per thread: .job (the latest job and run), .state


def job_state(job):
    """This thread's JobState for `job`, opened on its first chunk, kept for the others. Per
    thread, as a Net runs in one thread at a time: a dask worker with several threads runs
    several chunks at once, each thread on a net of its own."""
    if getattr(_opened, "job", None) != job:
        _opened.job, _opened.state = job, JobState(job)
    return _opened.state


def run_chunk(job, chunk):
    """Segment and write one chunk (a task on a worker, or a step in this process)."""
    state = job_state(job)
    probabilities = segment_chunk(state.net, state.volume, state.plan, chunk,
                                  grey_values(job, chunk), state.batch, job.padding)
    with write_errors(job.output):
        write_chunk(state.outputs, state.plan, chunk, probabilities, marker(job.output, chunk))
    return chunk


def grey_values(job, chunk):
    """The function that turns a chunk's raw values into the net's input: the command's
    scaling (normalize_grey), or a Fiji model's normalization of the chunk's slice."""
    from unetcore.data.stacks import normalize_grey
    if job.modeldef:
        offset, divisor = job.slice_scaling[chunk[0]]
        return lambda values: (np.asarray(values, np.float32) - offset) / divisor
    return lambda values: normalize_grey(values, job.scale, job.offset, job.source, job.bits)


def worker_threads(workers):
    """The environment of local workers: the cores shared out among them as BLAS threads,
    unless the user chose a count."""
    import os
    if config.blas_threads_chosen():
        return {}
    return {"OPENBLAS_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}


def segment_volume(job, plan, workers=None, scheduler=None, progress=None, say=print):
    """Run every chunk without a marker: here, on a LocalCluster of `workers` processes, or
    on the cluster at `scheduler`. Returns (chunks run, chunks already done)."""
    chunks = plan.chunks()
    todo = [c for c in chunks if not marker(job.output, c).exists()]
    skipped = len(chunks) - len(todo)
    if not workers and not scheduler:
        for chunk in todo:
            run_chunk(job, chunk)
            if progress:
                progress(1)
        return len(todo), skipped
    from dask.distributed import LocalCluster, as_completed
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           memory_limit=0, env=worker_threads(workers)) if workers else None
    try:
        with connect(cluster, scheduler) as client:
            say(f"dask dashboard: {client.dashboard_link}")
            futures = client.map(run_chunk, [job] * len(todo), todo, pure=False)
            for future in as_completed(futures):
                future.result()             # a worker's error stops the run here, as raised
                if progress:
                    progress(1)
    finally:
        if cluster is not None:
            cluster.close()
    return len(todo), skipped


def connect(cluster, scheduler):
    """A dask Client of the local cluster, or of the scheduler at `scheduler`, or one line
    naming the address that does not answer."""
    from dask.distributed import Client
    if cluster is not None:
        return Client(cluster)
    try:
        return Client(scheduler, timeout=config.sizes().scheduler_timeout)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnetcoreError(f"--scheduler {scheduler}: no dask scheduler answers there "
                            f"({reason}); start one (dask scheduler) or check the "
                            "address") from None


def prepare_job(image, output, model, weights, *, probabilities=None, tile=None, gpu=None,
                memory_mb=1024, scale=0.0, mean=0.0, bits=None, chunk=None, overwrite=False,
                modeldef=None, element_size=None, runtime="numpy"):
    """Open the volume at `image`, build the deploy net (of the prototxt `model`, or of the
    Fiji model file `modeldef`), plan the chunks and claim and create the zarr outputs
    (`output`, and `probabilities` if given), refusing an output that another job began
    unless `overwrite`; the forward passes will run in `runtime` (inference.runtimes).
    Returns (the VolumeJob, its ChunkPlan, notes: sentences for the user
    on the tile and chunk size chosen). segment_volume then runs it.

    A Fiji model segments each slice as the plugin segments an image: normalized as its
    normalization_type says, over the whole slice, and padded as its padding says. The volume
    must have the model's pixel size (`element_size`, y x in um, if given, must equal it)."""
    import uuid

    from unetcore.fiji.predict import modeldef_net, slice_normalizations
    from unetcore.inference.deploy import deploy_net
    from unetcore.inference.segmentation import choose_tile, is_3d
    volume = open_volume(image)
    if modeldef:
        fiji_model = require_model_pixel_size(modeldef, element_size)
        net = modeldef_net(fiji_model, weights, tile, gpu)
    else:
        net = deploy_net(model, weights, tile, gpu)
    if net.blobs[net.image_input].shape[1] != 1:
        raise UnetcoreError(f"{modeldef or model}: takes {net.blobs[net.image_input].shape[1]}"
                            "-channel images; chunked volumes (-o OUT.zarr) are grey, one "
                            "channel")
    notes = [] if tile else [choose_tile(net, modeldef or model,
                                         [volume.shape if is_3d(net) else volume.shape[1:]],
                                         memory_mb)]
    tile = None if is_3d(net) else net.blobs[net.image_input].shape[-1]
    plan = ChunkPlan.for_net(net, volume.shape, chunk)
    if chunk and chunk != plan.edge[-1]:
        notes.append(f"--chunk {chunk}: chunks of {plan.edge[-1]} px, the nearest multiple "
                     f"of the tile step {plan.step[-1]} px within the image")
    offset, factor, bits = (0.0, 0.0, None) if modeldef else \
        value_scaling(volume, scale, mean, bits, image)
    fiji = dict(modeldef=str(modeldef), padding=fiji_model.padding, slice_scaling=
                slice_normalizations(volume, fiji_model.normalization_type)) if modeldef else {}
    job = VolumeJob(str(image), output, probabilities, model, weights, tile, memory_mb, offset,
                    factor, bits, plan.edge[-1], config.engine(), gpu, uuid.uuid4().hex,
                    runtime=runtime, **fiji)
    record = job_record(job, plan, volume)
    claim_output(output, probabilities, record, overwrite)
    create_outputs(output, plan, net.blobs[net.outputs[0]].shape[1], probabilities)
    write_record(output, record)
    return job, plan, notes


def require_model_pixel_size(modeldef, element_size):
    """The 2-d Fiji model of `modeldef`, refused in one line if the volume's pixel size
    (`element_size`, y x in um; None: taken to be the model's) is another: the chunked path
    does not rescale."""
    from unetcore.fiji.modeldef import read_modeldef
    from unetcore.fiji.predict import require_2d_model
    model = require_2d_model(read_modeldef(modeldef))
    if element_size and tuple(map(float, element_size)) != tuple(model.element_size_um):
        size = " x ".join(f"{e:g}" for e in model.element_size_um)
        raise UnetcoreError(f"--element-size {' '.join(f'{e:g}' for e in element_size)}: -o "
                            f"OUT.zarr segments at the model's pixel size, {size} um, and does "
                            "not rescale; rescale the volume to it first, or segment into a "
                            "TIFF (which rescales as the plugin does)")
    return model


def chunk_size_words(plan):
    """A chunk's size in words: '1024 px' (one slice of a 2-d net's), or '64x1024x1024'."""
    return "x".join(map(str, plan.edge)) if plan.volumetric else f"{plan.edge[-1]} px"
