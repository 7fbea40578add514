"""The softmax loss's GPU twins: the CUDA kernels of ops/softmax_loss.cu, launched by
unetcore.ops.cuda.

They compute what the reference in layers/softmax_loss.py computes, on (outer, classes,
inner) probabilities p, integer labels l and pixel weights w (outer, 1, inner):

    weighted_log_loss = -sum over pixels of w * log(max(p_l, FLT_MIN))
    loss_gradient     = w * (p - onehot(l))

The layer calls these where the probabilities live on a GPU.
"""
from unetcore.ops import cuda


def weighted_log_loss_gpu(prob, labels, weights):
    """ops/softmax_loss.cu: one thread per pixel."""
    import cupy
    loss = cupy.empty((prob.shape[0], prob.shape[2]), prob.dtype)
    cuda.softmax_loss_forward(cupy.ascontiguousarray(prob), labels.astype(prob.dtype), weights,
                             None, loss, cupy.empty_like(loss))
    return loss.sum()


def loss_gradient_gpu(prob, labels, weights):
    """ops/softmax_loss.cu: one thread per pixel, over its classes."""
    import cupy
    grad = cupy.empty_like(prob)
    cuda.softmax_loss_backward(cupy.ascontiguousarray(prob), labels.astype(prob.dtype), weights,
                              None, grad)
    return grad
