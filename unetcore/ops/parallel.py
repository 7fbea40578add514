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
- A band is computed the same way whichever thread runs it, and the band boundaries are the
  engine's, whatever the worker count: a single-threaded GEMM sums each output in the same
  order as a multi-threaded one on these shapes (it splits the output, never the inner
  dimension, which is short here), so the answers do not depend on the thread count
  (tests/engine/test_parallel.py compares them).
- One parallel region at a time per process: the thread count is the process's. A second
  thread that asks while another region runs (two nets in two threads) runs its bands
  itself, one after another: the same answers, without changing the count under the other.
- Each worker thread keeps its own scratch buffers (backend.workspace is per thread), and
  runs its band in a copy of the calling thread's context: config.sizes(), the engine and
  the device are the caller's.
- Where NumPy's OpenBLAS is not found (another BLAS), the bands run one after another.
"""
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from unetcore.threads import numpy_openblas

_region = threading.Lock()        # held while a parallel region runs
_pool_lock = threading.Lock()     # guards the making of the pool
_pool = {}                        # "executor", "workers", "blas": made on first use


def blas():
    """NumPy's OpenBLAS (its thread count), looked up once."""
    if "blas" not in _pool:
        _pool["blas"] = numpy_openblas()
    return _pool["blas"]


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
    channels = array.shape[1]
    if array.size < PARALLEL_MIN_ELEMENTS:
        return [(0, channels)]
    step = -(-channels // min(pieces, channels))
    return [(c, min(channels, c + step)) for c in range(0, channels, step)]


def fill_zeros(array):
    """array[...] = 0; on the CPU, (N, C, ...) arrays in channel chunks on all cores."""
    if not isinstance(array, np.ndarray) or array.ndim < 2:
        array.fill(0)
        return
    run_bands(lambda chunk: array[:, chunk[0]:chunk[1]].fill(0), channel_chunks(array))


def copy(dst, src):
    """dst[...] = src for arrays of one shape; on the CPU, (N, C, ...) arrays in channel
    chunks on all cores."""
    if not isinstance(dst, np.ndarray) or dst.ndim < 2:
        dst[...] = src
        return

    def copy_chunk(chunk):
        dst[:, chunk[0]:chunk[1]] = src[:, chunk[0]:chunk[1]]
    run_bands(copy_chunk, channel_chunks(dst))
