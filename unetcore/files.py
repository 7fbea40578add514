"""Writing files without losing any: atomically, and with one line when the disk refuses.

Every output is written to a temporary name in its own folder and renamed over the final
name (os.replace, atomic on one file system): a crash, Ctrl-C or full disk leaves the old
file, or none, never half a file under the final name. A write the operating system
refuses (a full disk, a read-only or pseudo file system such as /proc) is a UnetcoreError
naming the path.
"""
import hashlib
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from unetcore.errors import UnetcoreError, WriteError


@contextmanager
def write_errors(path):
    """Turn an OSError raised while writing `path` into one line naming it."""
    try:
        yield
    except OSError as err:
        raise WriteError(path, err.strerror or err) from None


@contextmanager
def atomic_file(path, opener=lambda p: open(p, "wb")):
    """Open a temporary twin of `path` for writing (a name of its own, so two writers never
    share one); rename it over `path` on success."""
    path = Path(path)
    tmp = None
    try:
        with write_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # umask's mode
            with opener(tmp) as f:
                yield f
            os.replace(tmp, path)
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def atomic_h5(path):
    """atomic_file for an HDF5 file."""
    import h5py
    return atomic_file(path, lambda p: h5py.File(p, "w"))


def write_tiff(path, array):
    """A grey TIFF (a stack when `array` has a first axis of slices), written atomically."""
    import tifffile
    with atomic_file(path) as f:
        tifffile.imwrite(f, array, photometric="minisblack")


def write_text(path, text):
    with atomic_file(path, lambda p: open(p, "w", encoding="utf-8")) as f:
        f.write(text)


def require_writable_folder(folder, what):
    """Refuse, before any work, a folder where no file can be created: one is created and
    removed there (os.access says yes to root on a read-only mount or under /proc)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UnetcoreError(f"{what}: cannot write in its folder {folder}: "
                            f"{err.strerror or err}") from None


def sha256(path):
    """The SHA-256 of a file's bytes, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def same_file(a, b):
    """Whether two paths name one file or folder (through links and '..'), existing or not."""
    return os.path.realpath(a) == os.path.realpath(b)
