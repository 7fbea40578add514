"""Softmax-loss ops on (outer, classes, inner) probabilities p, integer labels l and pixel
weights w of shape (outer, 1, inner) (0 where a label is ignored):

    weighted_log_loss = -sum over pixels of w * log(max(p_l, FLT_MIN))
    loss_gradient     = w * (p - onehot(l))          (d/dx_k of -log p_l = p_k - [k == l])
"""
import numpy as np

from unetcore.ops import cuda
from unetcore.backend import on_gpu

FLT_MIN = np.finfo(np.float32).tiny


def weighted_log_loss(prob, labels, weights):
    if on_gpu(prob):
        return weighted_log_loss_gpu(prob, labels, weights)
    return weighted_log_loss_cpu(prob, labels, weights)


def loss_gradient(prob, labels, weights):
    if on_gpu(prob):
        return loss_gradient_gpu(prob, labels, weights)
    return loss_gradient_cpu(prob, labels, weights)


def weighted_log_loss_cpu(prob, labels, weights):
    p_true = np.take_along_axis(prob, labels, axis=1)
    return -(weights * np.log(np.maximum(p_true, prob.dtype.type(FLT_MIN)))).sum()


def loss_gradient_cpu(prob, labels, weights):
    grad = prob.copy()
    np.put_along_axis(grad, labels, np.take_along_axis(grad, labels, axis=1) - 1, axis=1)
    grad *= weights
    return grad


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
