"""MAX pooling's GPU twins: the CUDA kernels of ops/pooling.cu for 2-d images, launched by
unetcore.ops.cuda.

They compute what the reference in layers/pooling.py computes (max_pool_forward and
max_pool_backward, any number of axes, either device): y = the maximum of each window and
argmax, the flat index h * W + w of the first maximum in scan order (Caffe's); then
dx[argmax] += dy. The layer calls these on a GPU with a 2-d kernel.
"""
from unetcore.ops import cuda


def max_pool_forward_gpu(x, y, kernel, stride, pad):
    """ops/pooling.cu: one thread per output; returns the argmax."""
    import cupy
    argmax = cupy.empty(y.shape, dtype=cupy.int32)
    cuda.max_pool_forward(x, y, argmax, kernel, stride, pad)
    return argmax


def max_pool_backward_gpu(dy, argmax, dx, kernel, stride, pad):
    """ops/pooling.cu: each input gathers the dy of the windows whose maximum it is."""
    cuda.max_pool_backward(dy, argmax, dx, kernel, stride, pad)
