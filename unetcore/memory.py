"""A memory guard: refuse an allocation the machine cannot hold, with the numbers, before
trying it (a 75 GiB array should be one clear line, not a crash or a swapping machine)."""
import os
from contextlib import contextmanager
from contextvars import ContextVar

from unetcore import config
from unetcore.errors import UnetcoreError

# UNETCORE_MAX_MEMORY (MiB) caps what one net may take, below the machine's memory.
LIMIT_VARIABLE = config.MAX_MEMORY_VARIABLE


_blobs_guarded = ContextVar("unetcore_blobs_guarded", default=True)


@contextmanager
def shapes_only():
    """Inside the `with` block a net's blobs, and the input that would fill them, are not
    checked against the budget: for code that reads their shapes and never fills them
    (`unetcore shapes`). A blob's arrays are made when first used; parameter blobs are
    made (and filled) at once, so they are checked as ever."""
    token = _blobs_guarded.set(False)
    try:
        yield
    finally:
        _blobs_guarded.reset(token)


def require_blob_bytes(count, what):
    """require_bytes for the arrays of blobs, which shapes_only leaves unchecked."""
    if _blobs_guarded.get():
        require_bytes(count, what)


def available_bytes():
    """The budget: UNETCORE_MAX_MEMORY if set, else the machine's physical memory."""
    limit = config.max_memory_setting()
    if limit:
        try:
            return int(float(limit) * 2 ** 20)
        except ValueError:
            raise UnetcoreError(f"{LIMIT_VARIABLE}={limit!r} is not a number of MiB") from None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def require_bytes(count, what):
    """Raise an UnetcoreError when `count` bytes for `what` exceed the budget."""
    budget = available_bytes()
    if budget is None or count <= budget:
        return
    source = f"allowed by {LIMIT_VARIABLE}" if config.max_memory_setting() else \
        "of this machine's memory"
    need, have = visibly_different_sizes(count, budget)
    raise UnetcoreError(f"{what} would take {need}, more than the {have} {source}")


def visibly_different_sizes(larger, smaller):
    """Two byte counts printed in one unit, the coarsest of GiB, MiB and bytes in which they
    differ (23.5 GiB and 23.5 GiB would hide which is larger)."""
    for unit, name, digits in ((2 ** 30, "GiB", 1), (2 ** 20, "MiB", 0), (1, "bytes", 0)):
        printed = [f"{count / unit:,.{digits}f} {name}" for count in (larger, smaller)]
        if printed[0] != printed[1]:
            break
    return printed
