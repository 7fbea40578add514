"""The options the verbs share, and the checks of their values and output paths that run
before any work (a wrong value is one line naming the option, never a traceback)."""
import math
from pathlib import Path

import click

from unetcore import config
from unetcore import layers  # noqa: F401  (fills the registry that --engine lists)
from unetcore.errors import UnetcoreError
from unetcore.files import require_writable_folder, same_file
from unetcore.layer import engine_names


def output_path(path):
    """Check an output file path before any work: not a directory, its folder creatable and
    writable (the folder is made if missing)."""
    path = Path(path)
    if path.is_dir():
        raise UnetcoreError(f"{path}: is a directory; give a file name")
    _writable_parent(path)
    return str(path)


def output_array_path(path):
    """Check an output zarr array's path (a folder, created by zarr): not a file, its parent
    creatable and writable."""
    if Path(path).is_file():
        raise UnetcoreError(f"{path}: is a file; a zarr array is a folder")
    _writable_parent(Path(path))


def tiff_name(path, option):
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


def phase_name(value):
    return value.upper()


def _set_engine(ctx, param, value):
    config.set_engine(value)


def engine_option(f):
    """--engine: which implementation runs layers that have several (unetcore.config)."""
    return click.option("--engine", type=click.Choice(engine_names()), default="auto",
                        show_default=True, expose_value=False, callback=_set_engine,
                        help="auto: the fastest engine whose conditions hold; reference: the "
                             "reference layers only (docs/backprop.md); or one engine.")(f)


def runtime_option(f):
    """--runtime: what runs the forward passes of segmentation (unetcore.inference.runtimes)."""
    from unetcore.inference.runtimes import RUNTIMES
    return click.option("--runtime", type=click.Choice(RUNTIMES), default="numpy",
                        show_default=True,
                        help="numpy: unetcore's own layers; onnxruntime: the net exported to "
                             "ONNX in memory and run by ONNX Runtime (pip install "
                             "'unetcore[export]'), unetcore's tiling around it.")(f)


def distinct_paths(paths):
    """Refuse, before any work, an output that is an input or another output:
    {option: path}, the input first."""
    named = [(option, path) for option, path in paths.items() if path]
    for i, (option, path) in enumerate(named):
        for other, earlier in named[:i]:
            if same_file(path, earlier):
                raise UnetcoreError(f"{path}: {option} and {other} name the same path; an "
                                    "output must not overwrite the input or another output")
