"""Array backends: NumPy on the CPU, CuPy on a GPU.

Layers ask ``array_module(x)`` for the module (``xp``) that owns their arrays and
write one expression for both. ``gpu_module(device)`` imports CuPy and selects a
device, or raises ``BackendError`` saying why no GPU can be used.
The column workspace that every Convolution and Deconvolution layer shares lives
here too: one grow-only buffer per backend and dtype instead of one per layer, and one set
of them per thread, so that nets running in two threads never write into each other's.
"""
import functools
import threading

import numpy as np

from unetcore.errors import BackendError

_per_thread = threading.local()      # .workspaces: (module, dtype, slot) -> flat buffer


def gpu_module(device=0):
    """Import CuPy and make `device` current; a clear error when that is impossible."""
    try:
        import cupy
    except ImportError:
        raise BackendError("a GPU was asked for but CuPy is not installed: "
                           "pip install 'unetcore[gpu]' (needs an NVIDIA GPU and CUDA), "
                           "or leave out --gpu to run on the CPU") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:   # CUDA driver missing or broken
        raise BackendError(f"CuPy is installed but sees no CUDA device ({err}); "
                           "leave out --gpu to run on the CPU") from None
    if not 0 <= device < count:
        raise BackendError(f"GPU {device} was asked for but CuPy sees {count} device(s)")
    cupy.cuda.Device(device).use()
    return cupy


def xp_for(gpu=None):
    """The array module for a device: NumPy for None, CuPy for a GPU id."""
    return np if gpu is None else gpu_module(gpu)


def array_module(array):
    """NumPy or CuPy, whichever owns `array`."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return np
    import cupy
    return cupy.get_array_module(array)


def on_gpu(array):
    """Whether `array` lives on a GPU (a CuPy array): how every op chooses its twin."""
    return not isinstance(array, np.ndarray)


def ndimage_for(xp):
    """scipy.ndimage for NumPy, cupyx.scipy.ndimage (the same functions, on the GPU) for CuPy."""
    if xp is np:
        from scipy import ndimage
        return ndimage
    import cupyx.scipy.ndimage
    return cupyx.scipy.ndimage


def to_numpy(array):
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    return array if isinstance(array, np.ndarray) else array.get()


def matmul_into(xp, a, b, out):
    """out[...] = a @ b. NumPy's BLAS writes a strided `out` (a band of rows) directly;
    cuBLAS (through CuPy) writes a contiguous `out` directly, and a strided one by a copy."""
    if xp is np or out.flags.c_contiguous:
        xp.matmul(a, b, out=out)
    else:
        out[...] = xp.matmul(a, b)


def rectify(xp, x, out):
    """out = max(x, 0), the ReLU (NaN stays NaN). NumPy's SIMD loop for maximum takes two
    arrays; against a scalar it runs an element at a time, 2-4x as slow (NumPy 2.4: 54
    against 13 us on 32 x 4338 float32, 83 against 47 on 16 x 64 x 4 x 53). So on the CPU
    the 0 is a row of zeros as long as x's last axis, broadcast over the others."""
    if xp is np and x.ndim:
        np.maximum(x, zero_row(x.dtype, x.shape[-1]), out=out)
    else:
        xp.maximum(x, 0, out=out)


@functools.lru_cache(maxsize=64)
def zero_row(dtype, length):
    """A read-only row of `length` zeros, shared by every thread."""
    row = np.zeros(length, dtype)
    row.flags.writeable = False
    return row


def _workspaces():
    """This thread's scratch buffers."""
    if not hasattr(_per_thread, "workspaces"):
        _per_thread.workspaces = {}
    return _per_thread.workspaces


def workspace(xp, dtype, count, slot="columns"):
    """A flat scratch array of at least `count` elements, shared by all layers that run in
    this thread. Each `slot` is a separate buffer, for a layer that needs two at once."""
    key = (xp.__name__, np.dtype(dtype).str, slot)
    buffers = _workspaces()
    buf = buffers.get(key)
    if buf is None or buf.size < count:
        buf = xp.empty(count, dtype=dtype)
        buffers[key] = buf
    return buf[:count]


def release_workspaces():
    """Free this thread's scratch buffers (they are re-made on demand)."""
    _workspaces().clear()
