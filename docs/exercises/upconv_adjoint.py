"""Exercise 3 of docs/coding-exercises.md: the up-convolution as the adjoint of the convolution.

Write upconv_forward, the Deconvolution layer's forward, so that for every x and z

    <upconv_forward(x, w, s), z> = <x, conv_forward(z, w, 0, s)>

(conv_forward of exercise 1, with no bias). Then write upconv_backward. Check with

    .venv/bin/python docs/exercises/harness.py upconv_adjoint YOUR_FILE.py
"""
import numpy as np

from conv_backward import conv_forward      # noqa: F401  (docs/exercises/, on sys.path)

GIVEN = []
EXERCISE = ["upconv_forward", "upconv_backward"]


def upconv_forward(x, w, stride=2):
    """The up-convolution of x (Caffe's Deconvolution, no padding, no bias).

    x: (N, C_in, H, W); w: (C_in, C_out, k, k), stored as Caffe stores it, input channel
    first (the convolution it is the adjoint of reads it as (O, C) = (C_in, C_out)).
    Returns y: (N, C_out, s (H - 1) + k, s (W - 1) + k), s the stride."""
    n, c_in, h, wd = x.shape
    _, c_out, k, _ = w.shape
    y = np.zeros((n, c_out, stride * (h - 1) + k, stride * (wd - 1) + k))
    for i in range(h):
        for j in range(wd):
            # input pixel (i, j) scatters the kernel, scaled by its value, onto its window
            y[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += \
                np.tensordot(x[:, :, i, j], w, axes=([1], [0]))        # (N, C_out, k, k)
    return y


def upconv_backward(x, w, dy, stride=2):
    """The gradients of upconv_forward's y with respect to x and w, given dy = dL/dy
    (N, C_out, H_out, W_out). Returns (dx, dw) of the shapes of x and w."""
    k = w.shape[2]
    dx = conv_forward(dy, w, np.zeros(w.shape[0]), stride)   # the adjoint's adjoint
    dw = np.zeros_like(w)
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            window = dy[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            dw += np.tensordot(x[:, :, i, j], window, axes=([0], [0]))   # (C_in, C_out, k, k)
    return dx, dw
