"""A memory guard: refuse an allocation the machine cannot hold, with the numbers, before
trying it (a 75 GiB array should be one clear line, not a crash or a swapping machine)."""
import os
from contextlib import contextmanager
from contextvars import ContextVar

from .errors import UnetcoreError

# UNETCORE_MAX_MEMORY (MiB) caps what one net may take, below the machine's memory.
LIMIT_VARIABLE = "UNETCORE_MAX_MEMORY"


_guarding = ContextVar("unetcore_memory_guard", default=True)


@contextmanager
def shapes_only():
    """Build and reshape nets inside the `with` block without the guard, for code that reads
    their shapes and allocates no blob (`unetcore shapes`)."""
    token = _guarding.set(False)
    try:
        yield
    finally:
        _guarding.reset(token)


def available_bytes():
    """The budget: UNETCORE_MAX_MEMORY if set, else the machine's physical memory."""
    limit = os.environ.get(LIMIT_VARIABLE)
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
    if not _guarding.get():
        return
    budget = available_bytes()
    if budget is None or count <= budget:
        return
    source = f"allowed by {LIMIT_VARIABLE}" if os.environ.get(LIMIT_VARIABLE) else \
        "of this machine's memory"
    raise UnetcoreError(f"{what} would take {count / 2 ** 30:.1f} GiB, more than the "
                        f"{budget / 2 ** 30:.1f} GiB {source}")
