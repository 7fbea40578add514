"""Weight fillers with Caffe's names and parameters.

Fan-in and fan-out follow Caffe: for a blob of shape (a, b, ...), fan_in = count / a
and fan_out = count / b. For a Convolution weight (C_out, C_in, kh, kw) fan_in is
C_in*kh*kw; for a Deconvolution weight (C_in, C_out, kh, kw) it is C_out*kh*kw.
Values are drawn on the CPU from the net's NumPy generator, so a seed gives the
same weights on every backend.
"""
import numpy as np

from unetcore.errors import NetError


def fill(filler, shape, rng, dtype=np.float32):
    """A NumPy array of `shape` filled as the FillerParameter `filler` says."""
    kind = filler.type
    if kind not in FILLERS:
        raise NetError(f"unknown filler type '{kind}' ({filler.location()}); "
                       f"known: {', '.join(sorted(FILLERS))}")
    return np.asarray(FILLERS[kind](filler, tuple(shape), rng), dtype=dtype)


def _fans(shape):
    count = int(np.prod(shape))
    fan_in = count // shape[0] if shape and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _variance_scale(filler, shape):
    """n of the Xavier/MSRA formulas: fan_in, fan_out or their mean (variance_norm)."""
    fan_in, fan_out = _fans(shape)
    return {"FAN_IN": fan_in, "FAN_OUT": fan_out,
            "AVERAGE": (fan_in + fan_out) / 2.0}[filler.variance_norm]


def _constant(f, shape, rng):
    return np.full(shape, f.value)


def _uniform(f, shape, rng):
    return rng.uniform(f.min, f.max, shape)


def _gaussian(f, shape, rng):
    values = rng.normal(f.mean, f.std, shape)
    if f.sparse >= 0:                      # keep each weight with probability sparse / num_outputs
        keep = rng.random(shape) < f.sparse / shape[1 if len(shape) > 1 else 0]
        values *= keep
    return values


def _xavier(f, shape, rng):
    limit = np.sqrt(3.0 / _variance_scale(f, shape))        # Var = 1/n (Glorot & Bengio 2010)
    return rng.uniform(-limit, limit, shape)


def _msra(f, shape, rng):
    std = np.sqrt(2.0 / _variance_scale(f, shape))          # Var = 2/n (He et al. 2015)
    return rng.normal(0.0, std, shape)


def _bilinear(f, shape, rng):
    """Bilinear interpolation kernels for a Deconvolution that upsamples by its stride."""
    if len(shape) != 4 or shape[2] != shape[3]:
        raise NetError("the bilinear filler needs a 4-d blob with square kernels, "
                       f"not shape {shape}")
    k = shape[3]
    factor = np.ceil(k / 2.0)
    center = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    ramp = 1 - np.abs(np.arange(k) / factor - center)
    return np.broadcast_to(np.outer(ramp, ramp), shape).copy()


FILLERS = {"constant": _constant, "uniform": _uniform, "gaussian": _gaussian,
           "xavier": _xavier, "msra": _msra, "bilinear": _bilinear}
