"""Exercise 1 of docs/coding-exercises.md: the backward pass of a naive convolution.

conv_forward is given: the definition of the layer, one output pixel at a time (CS231n's
"naive" layer). Write conv_backward. Check your version with

    .venv/bin/python docs/exercises/harness.py conv_backward YOUR_FILE.py

This file holds the answer; docs/coding-exercises.md shows the skeleton (generated from it).
"""
import numpy as np

GIVEN = ["conv_forward"]            # shown in full on the page
EXERCISE = ["conv_backward"]        # shown as a signature and a docstring: write the body


def conv_forward(x, w, b, stride=1, pad=0):
    """y = the convolution of x with w, plus b.

    x: (N, C, H, W) images; w: (O, C, kh, kw) weights, o the output channel and c the
    input channel; b: (O,) biases. With xp = x padded by `pad` zeros on each side,

        y[n, o, i, j] = b[o] + sum over c, p, q of w[o, c, p, q] * xp[n, c, i*s + p, j*s + q]

    (s the stride). Returns y: (N, O, H_out, W_out), H_out = (H + 2 pad - kh) // s + 1."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h_out, w_out = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


def conv_backward(x, w, dy, stride=1, pad=0):
    """The gradients of conv_forward's y with respect to x, w and b.

    dy: (N, O, H_out, W_out), dL/dy for a scalar loss L. Returns (dx, dw, db), each of the
    shape of what it is the gradient of: dx (N, C, H, W), dw (O, C, kh, kw), db (O,)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)                  # the gradient of the padded image
    dw = np.zeros_like(w)
    db = dy.sum(axis=(0, 2, 3))              # b[o] is added to every y[n, o, i, j]
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            rows = slice(i * stride, i * stride + kh)
            cols = slice(j * stride, j * stride + kw)
            g = dy[:, :, i, j]                                         # (N, O)
            # the term w[o, c, p, q] xp[n, c, rows, cols] of y[n, o, i, j]:
            dw += np.tensordot(g, xp[:, :, rows, cols], axes=([0], [0]))   # (O, C, kh, kw)
            dxp[:, :, rows, cols] += np.tensordot(g, w, axes=([1], [0]))  # (N, C, kh, kw)
    # += above: windows overlap, and a pixel read by several windows sums their terms
    return dxp[:, :, pad:pad + h, pad:pad + wd], dw, db
