"""BLAS threads that give way when another process wants the cores.

NumPy's OpenBLAS splits each GEMM over its threads and waits for the slowest one. When
another CPU-bound process takes one of the cores, every split GEMM waits for a thread that
the OS has put aside, and a training step slows down by far more than the lost core
(docs/benchmarks.md). So the solver measures rather than guesses: every `period` steps it
times one step with one BLAS thread fewer (or more), and keeps whichever count was faster
than the recent steps by a clear margin. On a quiet machine that stays at the full count;
under contention it drops, and it comes back once the other process is gone.

The thread count is set through OpenBLAS's own function in NumPy's bundled library, found
with ctypes. Where it is not found (another BLAS), or where the user set
OPENBLAS_NUM_THREADS, nothing is tuned.

It is off unless UNETCORE_ADAPT_THREADS=1: OpenBLAS splits a GEMM with a long inner dimension
(the weight gradients) along it, so its sums, and the training run, depend on the thread
count, and a run that adapts to the machine's load is no longer repeatable bit for bit.
"""
import ctypes
import statistics
import time
from pathlib import Path

import numpy as np

from unetcore import config
from unetcore.logs import log

# (setter, getter) names of OpenBLAS builds: NumPy's scipy-openblas (64-bit ints), plain.
SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
           ("openblas_set_num_threads", "openblas_get_num_threads"))


class OpenBLAS:
    """Get and set the thread count of the OpenBLAS that NumPy uses."""

    def __init__(self, library):
        for set_name, get_name in SYMBOLS:
            if hasattr(library, set_name) and hasattr(library, get_name):
                self._set, self._get = getattr(library, set_name), getattr(library, get_name)
                self._set.argtypes = [ctypes.c_int]
                return
        raise AttributeError("no OpenBLAS thread functions")

    @property
    def threads(self):
        return int(self._get())

    @threads.setter
    def threads(self, count):
        self._set(int(count))


def numpy_openblas():
    """NumPy's OpenBLAS, or None if NumPy uses another BLAS or it cannot be found."""
    folder = Path(np.__file__).parent.parent / "numpy.libs"
    for path in sorted(folder.glob("*openblas*.so*")) if folder.is_dir() else []:
        try:
            return OpenBLAS(ctypes.CDLL(str(path)))
        except (OSError, AttributeError):
            continue
    return None


class ThreadTuner:
    """Times solver steps and moves the BLAS thread count to the faster one.

    Call `before_step()` and `after_step()` around every step. Every `period` steps one
    step runs as a trial with a neighbouring thread count; the trial's count is kept when
    that step took less than `margin` times the median of the recent steps."""

    def __init__(self, blas, period=20, margin=0.85, clock=time.perf_counter):
        self.blas, self.period, self.margin, self.clock = blas, period, margin, clock
        self.most = blas.threads
        self.count = self.most
        self.recent, self.steps, self.trial, self.start = [], 0, None, None
        self.direction = -1                       # try fewer threads first

    def before_step(self):
        self.steps += 1
        if self.steps % self.period == 0 and len(self.recent) >= 3:
            candidate = self.count + self.direction
            if not 1 <= candidate <= self.most:
                self.direction = -self.direction
                candidate = self.count + self.direction
            if 1 <= candidate <= self.most and candidate != self.count:
                self.trial = candidate
                self.blas.threads = candidate
        self.start = self.clock()

    def after_step(self):
        seconds = self.clock() - self.start
        if self.trial is None:
            self.recent = (self.recent + [seconds])[-self.period:]
            return
        usual = statistics.median(self.recent)
        if seconds < self.margin * usual:
            log(f"BLAS threads {self.count} -> {self.trial}: a step took {seconds:.3f} s "
                f"against {usual:.3f} s")
            self.count, self.recent = self.trial, []
        else:
            self.blas.threads = self.count
            self.direction = -self.direction      # next time, try the other neighbour
        self.trial = None


def thread_tuner():
    """A ThreadTuner for NumPy's OpenBLAS when UNETCORE_ADAPT_THREADS=1, else None."""
    if not config.adapt_threads() or config.blas_threads_chosen():
        return None                               # off, or the user chose the count
    blas = numpy_openblas()
    if blas is None or blas.threads < 2:
        return None
    return ThreadTuner(blas)
