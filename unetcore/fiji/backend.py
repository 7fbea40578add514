"""The Fiji U-Net plugin's backend: `caffe_unet` and `caffe`, as the unmodified plugin runs
them (CaffeJob, SegmentationJob, FinetuneJob), computed by unetcore.

`unetcore fiji-backend DIR` writes DIR/caffe_unet and DIR/caffe, two scripts that run
`python -m unetcore.fiji.backend caffe_unet|caffe ARGS` with this installation's Python.

caffe_unet COMMAND [flags]
    device_query                  what the GPU is (-gpu k)
    check_model_and_weights_h5    -model M.modeldef.h5 -weights W [-n_channels C] [-gpu k]:
                                  exit 0 when W fits M (W's /.unet-ident equals M's, or the
                                  TEST net runs one forward at the smallest tile with W,
                                  whose channel counts may differ, as caffe_unet copies them)
    tiled_predict                 -infileH5 F -outfileH5 F -model M -weights W [-iterations n]
                                  TILING [-average_mirror | -average_rotate] [-gpu k]; W must
                                  fit the net exactly (caffe_unet would score channels the
                                  file lacks with their random filler values)
caffe train -solver S [-weights W | -snapshot S.solverstate.h5] [-gpu k]
            [-sigint_effect stop|snapshot|none] [-sighup_effect ...]
            W's (De)Convolutions may differ in channel counts (RGB images on a 1-channel
            model, another class count): the channels both have are copied, the others keep
            their fillers, and a line names each such layer (caffe_unet's HDF5 copy). With
            validation layers (IoU, F1) the test passes log what the plugin plots.
caffe device_query [-gpu k]

Flags are gflags': `-flag value`, `-flag=value`, `--flag`, a bare boolean `-flag`,
`-noflag`; an unknown flag is an error. Logs go to stderr in glog's format; stdout carries
only tiled_predict's progress lines, "Processing batch b/B, tile t/T", which the plugin
parses whole. An error is one "F... Check failed: ..." line and exit status 1; it says
"out of memory" or "invalid device ordinal" where the plugin looks for them.
"""
import logging
import sys
from pathlib import Path

import numpy as np

from unetcore.errors import BackendError, UnetcoreError
from unetcore.files import write_text
from unetcore.logs import log, log_to

CAFFE_UNET_FLAGS = {"gpu": "", "model": "", "weights": "", "iterations": 50, "infileH5": "",
                    "outfileH5": "", "gpu_mem_available_MB": "", "mem_available_px": "",
                    "n_tiles": "", "tile_size": "", "average_mirror": False,
                    "average_rotate": False, "n_channels": 1}
CAFFE_FLAGS = {"gpu": "", "solver": "", "model": "", "snapshot": "", "weights": "",
               "iterations": 50, "sigint_effect": "stop", "sighup_effect": "snapshot",
               "phase": "", "level": 0, "stage": ""}
USAGE = {"caffe_unet": "usage: caffe_unet <command> <args>\n\ncommands:\n"
                       "  tiled_predict                score a model in overlap-tile strategy\n"
                       "  check_model_and_weights_h5   check given model (hdf5) and weights\n"
                       "  device_query                 show GPU diagnostic information",
         "caffe": "usage: caffe <command> <args>\n\ncommands:\n"
                  "  train           train or finetune a model\n"
                  "  device_query    show GPU diagnostic information"}
SCRIPT = """#!/bin/sh
# The Fiji U-Net plugin's {tool}, run by unetcore (written by `unetcore fiji-backend`).
# OpenBLAS's idle threads sleep at once instead of spinning (as in the unetcore command).
OPENBLAS_THREAD_TIMEOUT="${{OPENBLAS_THREAD_TIMEOUT:-4}}" {runtime}\\
    exec {python} -m unetcore.fiji.backend {tool} "$@"
"""


class FlagError(UnetcoreError):
    """A command line that gflags would refuse."""


# ---------------------------------------------------------------- gflags


def parse_flags(argv, defaults):
    """(flags, positional arguments) from a gflags-style command line."""
    flags, positional, args = dict(defaults), [], list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            positional += args
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if name not in defaults and name.startswith("no") and \
                isinstance(defaults.get(name[2:]), bool) and not has_value:
            flags[name[2:]] = False
            continue
        if name not in defaults:
            raise FlagError(f"ERROR: unknown command line flag '{name}'")
        if isinstance(defaults[name], bool):
            flags[name] = _boolean(name, value) if has_value else True
            continue
        if not has_value:
            if not args:
                raise FlagError(f"ERROR: flag '-{name}' is missing its argument")
            value = args.pop(0)
        flags[name] = _typed(name, value, defaults[name])
    return flags, positional


def _boolean(name, value):
    if value.lower() in ("true", "t", "yes", "y", "1"):
        return True
    if value.lower() in ("false", "f", "no", "n", "0"):
        return False
    raise FlagError(f"ERROR: illegal value '{value}' specified for bool flag '{name}'")


def _typed(name, value, default):
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise FlagError(f"ERROR: illegal value '{value}' specified for int32 flag "
                            f"'{name}'") from None
    return value


def gpu_device(flag):
    """-gpu k or -gpu all (the first is used; caffe_unet runs on one device); None: CPU."""
    if not flag:
        return None
    first = flag.split(",")[0]
    if first == "all":
        return 0
    try:
        return int(first)
    except ValueError:
        raise FlagError(f"-gpu {flag}: give a device number or 'all'") from None


def require_gpu(device):
    """Select the GPU; a device that is not there is refused in CUDA's words, which the
    plugin recognizes ("invalid device ordinal")."""
    from unetcore.backend import gpu_module
    try:
        return gpu_module(device)
    except BackendError as err:
        if "was asked for but CuPy sees" in str(err):
            raise BackendError(f"{err}: invalid device ordinal") from None
        raise


# ---------------------------------------------------------------- caffe_unet


def check_model_and_weights(flags):
    """caffe_unet check_model_and_weights_h5. Weights whose channel counts differ from the
    net's (-n_channels, a changed class count) fit, as caffe_unet's copy makes them fit: the
    plugin runs this check before fine-tuning, which trains the channels the file lacks."""
    from unetcore.fiji.modeldef import caffe_unet_net, read_modeldef
    if not flags["model"].endswith(".h5"):
        raise UnetcoreError(f"Check failed: -model '{flags['model']}' is not an HDF5 model "
                            "definition (.h5)")
    if not flags["weights"]:
        raise UnetcoreError("Check failed: Need model weights to check.")
    model = read_modeldef(flags["model"])
    log(f"Checking model {flags['model']} and weights {flags['weights']}")
    ident = _weights_ident(flags["weights"])
    if ident is not None:
        log(f"  unet ID (model) = '{model.ident}', unet ID (weights) = '{ident}'")
        if ident != model.ident:
            raise UnetcoreError("Check failed: Unet IDs do not match.")
        return
    device = gpu_device(flags["gpu"])
    if device is not None:
        require_gpu(device)
    net = caffe_unet_net(model, flags["n_channels"], model.check_tile(), gpu=device)
    copy_finetuning_weights(net, flags["weights"])
    net.forward()
    log("Model and weights fit")


def copy_finetuning_weights(net, path):
    """Load weights as caffe_unet does before fine-tuning (channel counts may differ, the
    missing channels keep their filler values); a learnable layer the file does not cover is
    refused, as for inference."""
    uncovered = sorted(set(net.params) - set(net.copy_from(path, strict=True,
                                                           resize_channels=True)))
    if uncovered:
        raise UnetcoreError(f"{path}: has no weights for layer(s) {', '.join(uncovered)} of the "
                            "net; these weights belong to another net")


def _weights_ident(path):
    """The /.unet-ident of an HDF5 weights file (caffe_unet's shortcut), else None."""
    from unetcore.fiji.modeldef import read_text
    from unetcore.formats.weights import open_h5
    if not path.endswith(".h5") or not Path(path).is_file():
        return None
    with open_h5(path, "weights") as f:
        return read_text(f["/.unet-ident"], f"{path}:/.unet-ident") if ".unet-ident" in f \
            else None


def tiling_input_tile(flags, model, shape, on_gpu):
    """The input tile that caffe_unet's tiling flags choose for an image of `shape`."""
    from unetcore.fiji import predict as fp
    given = [k for k in ("gpu_mem_available_MB", "mem_available_px", "n_tiles", "tile_size")
             if flags[k]]
    if len(given) > 1 or (not on_gpu and len(given) != 1):
        raise UnetcoreError("Check failed: exactly one of -mem_available_px, -n_tiles or "
                            "-tile_size (or, on a GPU, -gpu_mem_available_MB or none) has to "
                            "be specified")
    option = given[0] if given else None
    if option == "tile_size":
        return fp.tile_for_shape(model, _numbers(flags["tile_size"], option))
    if option == "n_tiles":
        counts = _numbers(flags["n_tiles"], option)
        return fp.tile_for_count(model, shape, counts[0]) if len(counts) == 1 \
            else fp.tile_for_grid(model, shape, counts)
    if option == "mem_available_px":
        return fp.tile_for_pixels(model, shape, _numbers(flags[option], option)[0])
    if option == "gpu_mem_available_MB":
        megabytes = _numbers(flags[option], option)[0]
    else:
        free, _ = require_gpu(0).cuda.runtime.memGetInfo()
        megabytes = int(free // 2 ** 20)
    if on_gpu and option is None:
        log(f"gpu_mem_MB: {megabytes} (the free GPU memory)")
    return fp.tile_for_pixels(model, shape, fp.pixels_for_gpu_memory(model, megabytes))


def _numbers(text, option):
    try:
        values = [int(v) for v in text.split("x")]
    except ValueError:
        raise UnetcoreError(f"Check failed: -{option} {text}: give numbers joined by 'x'") \
            from None
    if min(values) < 1:
        raise UnetcoreError(f"Check failed: -{option} {text}: every number must be >= 1")
    return values


def tiled_predict(flags):
    """caffe_unet tiled_predict: the scores of every item of the input file, written to the
    output file (which the plugin names like the input) as its only members."""
    from unetcore import config
    from unetcore.fiji.modeldef import caffe_unet_net, read_modeldef
    from unetcore.formats.weights import atomic_h5
    from unetcore.inference.deploy import copy_all_weights
    from unetcore.inference.runtimes import with_runtime
    for key in ("infileH5", "outfileH5", "model"):
        if not flags[key]:
            raise UnetcoreError(f"Check failed: Need -{key}.")
    if flags["average_mirror"] and flags["average_rotate"]:
        raise UnetcoreError("Check failed: Options average_mirror and average_rotate are "
                            "mutually exclusive!")
    if flags["iterations"] < 0:
        raise UnetcoreError("Check failed: Number of iterations must be >= 0.")
    model = read_modeldef(flags["model"])
    if model.padding not in ("mirror", "zero"):
        raise UnetcoreError(f"Check failed: padding '{model.padding}': supported padding "
                            "options are 'zero' and 'mirror'.")
    data = _read_input(flags["infileH5"], model, flags["iterations"])
    device = gpu_device(flags["gpu"])
    if device is not None:
        require_gpu(device)
    tile = tiling_input_tile(flags, model, data.shape[2:], device is not None)
    log(f"Tile shape ([z] y x): input = {'x'.join(map(str, tile))}")
    net = caffe_unet_net(model, data.shape[1], tile, gpu=device)
    if flags["weights"]:
        copy_all_weights(net, flags["weights"])
    else:
        log("Warning: No model weights are given. Net will be initialized without model "
            "weights!")
    net.release_activations = True
    averaging = "mirror" if flags["average_mirror"] else \
        "rotate" if flags["average_rotate"] else None
    runtime = config.backend_runtime()
    if runtime != "numpy":
        log(f"Forward passes run in {runtime} (UNETCORE_RUNTIME)")
    scores = _passes_over(with_runtime(net, runtime), data, averaging, model.padding)
    log(f"Saving HDF5 output file {flags['outfileH5']}")
    with atomic_h5(flags["outfileH5"]) as f:
        f[net.outputs[0]] = scores


def _passes_over(net, data, averaging, padding):
    """The averaged raw scores (N, classes, *spatial) of every item, pass by pass as
    caffe_unet runs them, with its progress line on stdout after every tile."""
    from unetcore.fiji.predict import passes
    from unetcore.inference.tiling import axis_geometry, segment, tile_origins
    steps = [step for _, _, _, step in axis_geometry(net, net.image_input, net.outputs[0])]
    transforms = passes(averaging)
    batches = len(transforms) * len(data)
    total = None
    for k, (transform, inverse) in enumerate(transforms):
        for n, item in enumerate(data):
            image = np.ascontiguousarray(transform(item))
            line = ProgressLine(k * len(data) + n + 1, batches,
                                len(tile_origins(image.shape[1:], steps)))
            scores = inverse(segment(net, image, 1, line.advance, padding=padding))
            if total is None:
                total = np.zeros((len(data),) + scores.shape, np.float32)
            total[n] += scores
    return total / len(transforms)


class ProgressLine:
    """caffe_unet's progress on stdout, one whole line per tile, flushed at once."""

    def __init__(self, batch, batches, tiles):
        self.batch, self.batches, self.tiles, self.done = batch, batches, tiles, 0

    def advance(self, count):
        for _ in range(count):
            self.done += 1
            print(f"Processing batch {self.batch}/{self.batches}, tile {self.done}/"
                  f"{self.tiles}", flush=True)


def _read_input(path, model, iterations):
    """The first `iterations` items (0: all) of the input file's data, (N, C, *spatial)."""
    from unetcore.formats.weights import open_h5
    with open_h5(path, "input") as f:
        if model.input_dataset_name not in f:
            raise UnetcoreError(f"Check failed: {path} has no dataset "
                                f"'{model.input_dataset_name}'")
        data = np.asarray(f[model.input_dataset_name], np.float32)
    if data.ndim != model.n_dims + 2:
        raise UnetcoreError(f"Check failed: Model requires {model.n_dims}-D data, but the "
                            f"given input blob is {data.ndim - 2}-D.")
    return data[:iterations] if iterations > 0 else data


# ---------------------------------------------------------------- caffe


def caffe_train(flags):
    """caffe train: the plugin's rewritten solver, logging on stderr; SIGINT (the plugin's
    cancel, kill -2) snapshots and stops with -sigint_effect stop."""
    from unetcore.solvers.solver import get_solver, signal_actions
    if not flags["solver"]:
        raise UnetcoreError("Check failed: Need a solver definition to train.")
    if flags["weights"] and flags["snapshot"]:
        raise UnetcoreError("Check failed: Give a snapshot to resume training or weights to "
                            "finetune but not both.")
    for key in ("sigint_effect", "sighup_effect"):
        if flags[key] not in ("stop", "snapshot", "none"):
            raise UnetcoreError(f"Check failed: Invalid signal effect \"{flags[key]}\" was "
                                "specified")
    device = gpu_device(flags["gpu"])
    if device is not None:
        require_gpu(device)
    solver = get_solver(flags["solver"], gpu=device)
    for path in flags["weights"].split(",") if flags["weights"] else []:
        log(f"Finetuning from {path}")
        solver.net.copy_from(path, resize_channels=True)    # caffe_unet's HDF5 copy
    with signal_actions(solver, flags["sigint_effect"], flags["sighup_effect"]):
        solver.solve(flags["snapshot"] or None)


def device_query(flags):
    """What CuPy sees of the GPU given by -gpu (caffe's device_query)."""
    device = gpu_device(flags["gpu"]) or 0
    cupy = require_gpu(device)
    props = cupy.cuda.runtime.getDeviceProperties(device)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    log(f"Device id:                     {device}")
    log(f"Name:                          {name}")
    log(f"Major revision number:         {props['major']}")
    log(f"Minor revision number:         {props['minor']}")
    log(f"Total global memory:           {props['totalGlobalMem']}")


COMMANDS = {"caffe_unet": (CAFFE_UNET_FLAGS, {"device_query": device_query,
                                              "check_model_and_weights_h5":
                                                  check_model_and_weights,
                                              "tiled_predict": tiled_predict}),
            "caffe": (CAFFE_FLAGS, {"train": caffe_train, "device_query": device_query})}


def run(tool, argv):
    """One run of `tool` (caffe_unet or caffe) on its command line; the exit status."""
    defaults, commands = COMMANDS[tool]
    log_to(sys.stderr)
    try:
        flags, positional = parse_flags(argv, defaults)
    except FlagError as err:
        print(err, file=sys.stderr)
        return 1
    if len(positional) != 1:
        print(f"{tool}: command line brew\n{USAGE[tool]}", file=sys.stderr)
        return 0 if not positional else 1
    if positional[0] not in commands:
        log(f"Unknown action: {positional[0]}; available: {', '.join(commands)}", logging.ERROR)
        return 1
    try:
        commands[positional[0]](flags)
    except UnetcoreError as err:
        message = str(err)
        log(message if message.startswith("Check failed") else f"Check failed: {message}",
            logging.ERROR)
        return 1
    except Exception as err:                  # CuPy's OutOfMemoryError, MemoryError, a bug
        if isinstance(err, MemoryError) or "OutOfMemory" in type(err).__name__:
            log(f"Check failed: out of memory ({err})", logging.ERROR)
            return 1
        log(f"internal error: {type(err).__name__}: {err}", logging.ERROR)
        return 2
    return 0


def write_scripts(folder, runtime="numpy"):
    """DIR/caffe_unet and DIR/caffe, executables that run this installation's backend, whose
    tiled_predict runs its forward passes in `runtime` (inference.runtimes)."""
    import shlex

    from unetcore.inference.runtimes import RUNTIMES, onnxruntime_module
    if runtime not in RUNTIMES:
        raise UnetcoreError(f"unknown runtime '{runtime}': the runtimes are "
                            f"{', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        onnxruntime_module()                   # installed here, or one line on how to
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for tool in ("caffe_unet", "caffe"):
        path = folder / tool
        setting = f"UNETCORE_RUNTIME={runtime} " if runtime != "numpy" else ""
        write_text(path, SCRIPT.format(tool=tool, python=shlex.quote(sys.executable),
                                       runtime=setting))
        path.chmod(0o755)
        paths.append(path)
    return paths


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
