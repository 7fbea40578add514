"""Exercise 4 of docs/coding-exercises.md: a strided convolution's dx, by dilating dy.

For stride 1 the data gradient of a convolution is the convolution of dy, padded by k - 1
zeros, with the kernel turned by 180 degrees (docs/backprop.md). For stride s, Goodfellow,
Bengio and Courville (Deep Learning, section 9.5) reduce it to the same: put s - 1 zeros
between neighbouring entries of dy first. Write dilate and strided_dx. Check with

    .venv/bin/python docs/exercises/harness.py strided_dx YOUR_FILE.py
"""
import numpy as np

from conv_backward import conv_forward      # noqa: F401  (docs/exercises/, on sys.path)

GIVEN = []
EXERCISE = ["dilate", "strided_dx"]


def dilate(dy, stride):
    """dy (N, O, H, W) with stride - 1 zeros between neighbouring entries along H and W:
    shape (N, O, s (H - 1) + 1, s (W - 1) + 1), s the stride."""
    n, o, h, wd = dy.shape
    out = np.zeros((n, o, stride * (h - 1) + 1, stride * (wd - 1) + 1))
    out[:, :, ::stride, ::stride] = dy
    return out


def strided_dx(dy, w, stride, input_size):
    """dx of conv_forward(x, w, b, stride, pad=0), given dy (N, O, H_out, W_out), without
    a loop over the output pixels: dilate dy, pad it by k - 1 zeros on each side, and
    convolve it (stride 1) with the kernel turned by 180 degrees, its input and output
    channels swapped. input_size: (H, W) of x. Returns dx (N, C, H, W)."""
    kh, kw = w.shape[2:]
    d = np.pad(dilate(dy, stride), ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    turned = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)                   # (C, O, kh, kw)
    full = conv_forward(d, turned, np.zeros(turned.shape[0]))             # stride 1
    dx = np.zeros((dy.shape[0], w.shape[1], *input_size))
    # the last (H - kh) % s rows (and columns) were read by no window: their gradient is 0
    dx[:, :, :full.shape[2], :full.shape[3]] = full
    return dx
