"""Bands of one layer's work on all the CPU's cores at once.

OpenBLAS runs a GEMM on every core, but NumPy's copies, transforms and elementwise passes run
on one. In a convolution engine those passes (im2col copies, Winograd's tile gathers and
scatters, bias and ReLU) take as long as the GEMMs, so half of a two-core CPU sat idle for
half of the layer (docs/benchmarks.md, issue 34). Here the layer's bands of output rows, which
write disjoint parts of the output, run on `workers` threads at once, each band whole on one
thread: its passes and its GEMM, with OpenBLAS on one thread meanwhile, so that the threads
add up to the count OpenBLAS had. NumPy lets go of the GIL inside its copies, ufuncs and
GEMMs, so the bands do run side by side.

- The workers are the OpenBLAS thread count of the moment (OPENBLAS_NUM_THREADS, or the
  count the thread tuner set), so `unetcore` never runs more threads than BLAS alone would.
- A band is computed the same way whichever worker runs it, with a one-thread OpenBLAS, and
  the band boundaries are the engine's, whatever the worker count: the bands' sums do not
  depend on the number of workers (tests/engine/test_parallel.py compares them). What
  OpenBLAS does with its own thread count is unchanged: with some of its kernels (Haswell's,
  measured) a GEMM on two threads rounds a few outputs otherwise than on one, by about 1e-7
  relative, in the layers that call it with the full count, and in bands that run in the
  calling thread (one worker, or another region running). With its SkylakeX kernel the two
  agree, and the README demo's digits did not move with the bands.
- One parallel region at a time per process: the thread count is the process's. A second
  thread that asks while another region runs (two nets in two threads) runs its bands
  itself, one after another: the same answers, without changing the count under the other.
- Each worker thread keeps its own scratch buffers (backend.workspace is per thread), and
  runs its band in a copy of the calling thread's context: config.sizes(), the engine and
  the device are the caller's.
- Where NumPy's OpenBLAS is not found (another BLAS), the bands run one after another.
"""
import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from unetcore.threads import numpy_openblas

_region = threading.Lock()        # held while a parallel region runs
_pool_lock = threading.Lock()     # guards the making of the pool
_pool = {}                        # "executor" and its "workers": made on first use


@functools.cache
def blas():
    """NumPy's OpenBLAS (its thread count), looked up once."""
    return numpy_openblas()


def split_range(start, stop, pieces):
    """(a, b) ranges that cut start:stop into up to `pieces` nearly equal, non-empty parts."""
    pieces = max(1, min(pieces, stop - start))
    bounds = [start + (stop - start) * k // pieces for k in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def executor(workers):
    with _pool_lock:
        if _pool.get("workers", 0) < workers:
            if "executor" in _pool:
                _pool["executor"].shutdown(wait=True)
            _pool["executor"] = ThreadPoolExecutor(workers, thread_name_prefix="unetcore-band")
            _pool["workers"] = workers
        return _pool["executor"]


def run_bands(work, bands):
    """Call work(band) for every band, on as many threads as OpenBLAS has, each band on one
    thread with a one-thread OpenBLAS; the bands must write disjoint outputs. Every band
    has ended when this returns; an exception of a band is raised here (the first band's,
    where several failed)."""
    bands = list(bands)
    library = blas()
    workers = min(library.threads if library is not None else 1, len(bands))
    if workers < 2 or not _region.acquire(blocking=False):
        for band in bands:
            work(band)
        return
    try:
        threads = library.threads
        library.threads = 1
        try:
            pool = executor(workers)     # each band in a copy of this thread's settings
            futures = [pool.submit(contextvars.copy_context().run, work, band)
                       for band in bands]
            wait(futures)
            for future in futures:
                future.result()
        finally:
            library.threads = threads
    finally:
        _region.release()


# Arrays smaller than this many elements are copied on one thread: starting the workers costs
# more than the copy.
PARALLEL_MIN_ELEMENTS = 2 ** 20


def channel_chunks(array, pieces=8):
    """(c0, c1) ranges that cut axis 1 (the channels) of an (N, C, ...) array into up to
    `pieces` chunks; one chunk where the array is too small to share out."""
    if array.size < PARALLEL_MIN_ELEMENTS:
        return [(0, array.shape[1])]
    return split_range(0, array.shape[1], pieces)


def in_channel_chunks(array, apply):
    """apply(region) for the channel chunks of an (N, C, ...) NumPy array on all cores, region
    an index of `array` (and of any array of its shape); apply(...) once, the whole array,
    for other arrays."""
    if not isinstance(array, np.ndarray) or array.ndim < 2:
        apply(...)
        return
    run_bands(lambda chunk: apply((slice(None), slice(*chunk))), channel_chunks(array))


def fill_zeros(array):
    """array[...] = 0, in channel chunks on all cores."""
    in_channel_chunks(array, lambda region: array[region].fill(0))


def copy(dst, src):
    """dst[...] = src for arrays of one shape, in channel chunks on all cores."""
    def copy_region(region):
        dst[region] = src[region]
    in_channel_chunks(dst, copy_region)
