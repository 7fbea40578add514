"""Exercise 2 of docs/coding-exercises.md: the backward pass of max pooling.

max_pool_forward is given. Write max_pool_backward, with Caffe's rule for ties: a window's
gradient goes to its *first* largest input, in scan order (row by row). Check your version
with

    .venv/bin/python docs/exercises/harness.py maxpool_backward YOUR_FILE.py
"""
import numpy as np

GIVEN = ["max_pool_forward"]
EXERCISE = ["max_pool_backward"]


def max_pool_forward(x, size=2, stride=2):
    """y[n, c, i, j] = the largest of x[n, c, i*s : i*s + size, j*s : j*s + size].

    x: (N, C, H, W). Only windows that lie inside the image (no padding): H_out =
    (H - size) // s + 1, s the stride. Returns y: (N, C, H_out, W_out)."""
    n, c, h, wd = x.shape
    h_out, w_out = (h - size) // stride + 1, (wd - size) // stride + 1
    y = np.empty((n, c, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            y[:, :, i, j] = window.max(axis=(2, 3))
    return y


def max_pool_backward(x, dy, size=2, stride=2):
    """dx = dL/dx, given x and dy = dL/dy (N, C, H_out, W_out) of max_pool_forward.

    Each window's dy goes to the input that won it: its first largest value in scan order
    (row by row), as Caffe picks it. Returns dx (N, C, H, W)."""
    n, c = x.shape[:2]
    dx = np.zeros_like(x)
    planes = np.arange(n)[:, None], np.arange(c)[None, :]
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            first = window.reshape(n, c, -1).argmax(axis=2)     # argmax: the first maximum
            p, q = np.divmod(first, size)
            # += : where windows overlap (stride < size) an input may win two of them
            np.add.at(dx, (*planes, i * stride + p, j * stride + q), dy[:, :, i, j])
    return dx
