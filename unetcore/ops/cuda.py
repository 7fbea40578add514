"""The CUDA kernels of unetcore/ops/*.cu, compiled by CuPy (NVRTC) and cached.

Each .cu file defines extern "C" kernels named <name>_float and <name>_double. They loop
with a grid stride, so any launch size covers any n; we use 256 threads per block.
"""
from functools import lru_cache
from pathlib import Path

import numpy as np

KERNELS = Path(__file__).parent
THREADS = 256


@lru_cache(maxsize=None)
def _module(source):
    import cupy
    return cupy.RawModule(code=(KERNELS / source).read_text(), options=("-std=c++14",))


def kernel(source, name, dtype):
    suffix = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]
    return _module(source).get_function(f"{name}_{suffix}")


def launch(function, n, args):
    blocks = max(1, min((n + THREADS - 1) // THREADS, 65535))
    function((blocks,), (THREADS,), args)


def i32(*values):
    return tuple(np.int32(v) for v in values)


def _band_args(band, geom, out_h, out_w):
    """The kernels' int arguments for a (C, rows, W) band of a padded image (a view)."""
    (kh, kw), (sh, sw), (dh, dw) = geom.kernel, geom.stride, geom.dilation
    channels, rows, width = band.shape
    return i32(band.strides[0] // band.itemsize, channels, rows, width, kh, kw, 0, 0,
               sh, sw, dh, dw, out_h, out_w)


def im2col(x_band, geom, out_h, out_w, col):
    """col (C*kh*kw, out_h*out_w) of a padded band x_band (C, rows, W)."""
    launch(kernel("im2col.cu", "im2col", x_band.dtype), x_band.shape[0] * out_h * out_w,
           (x_band, *_band_args(x_band, geom, out_h, out_w), col))


def col2im_add(col, geom, out_h, out_w, dx_band):
    """dx_band (C, rows, W), a band of a padded gradient, += the adjoint of im2col."""
    launch(kernel("im2col.cu", "col2im", dx_band.dtype), dx_band.size,
           (col, *_band_args(dx_band, geom, out_h, out_w), dx_band))


def max_pool_forward(x, y, argmax, kernel_size, stride, pad):
    n, c, h, w = x.shape
    oh, ow = y.shape[2:]
    launch(kernel("pooling.cu", "max_pool_forward", x.dtype), n * c * oh * ow,
           (x, *i32(n * c, h, w, oh, ow, *kernel_size, *stride, *pad), y, argmax))


def max_pool_backward(dy, argmax, dx, kernel_size, stride, pad):
    n, c, h, w = dx.shape
    oh, ow = dy.shape[2:]
    launch(kernel("pooling.cu", "max_pool_backward", dx.dtype), n * c * h * w,
           (dy, argmax, *i32(n * c, h, w, oh, ow, *kernel_size, *stride, *pad), dx))


def _softmax_loss(name, prob, label, weight, ignore_label, outputs):
    outer, classes, inner = prob.shape
    args = i32(outer, classes, inner, ignore_label is not None, ignore_label or 0,
               weight is not None)
    launch(kernel("softmax_loss.cu", name, prob.dtype), outer * inner,
           (prob, label, weight if weight is not None else label, *args, *outputs))


def softmax_loss_forward(prob, label, weight, ignore_label, loss, count):
    """Per-pixel weighted loss and valid count of (outer, classes, inner) probabilities."""
    _softmax_loss("softmax_loss_forward", prob, label, weight, ignore_label, (loss, count))


def softmax_loss_backward(prob, label, weight, ignore_label, dscore):
    """dscore = w (prob - onehot(label)), zero where the label is ignored."""
    _softmax_loss("softmax_loss_backward", prob, label, weight, ignore_label, (dscore,))


def sgd_update(weight, grad, history, momentum, rate, decay):
    """ops/sgd_update.cu: weight decay, momentum and the weight step in one pass."""
    scalar = weight.dtype.type
    launch(kernel("sgd_update.cu", "sgd_update", weight.dtype), weight.size,
           (np.int32(weight.size), weight, grad, history, scalar(momentum), scalar(rate),
            scalar(decay)))
