"""caffe_unet's random grey-value curves (its ValueAugmentation layer).

Each draw is a smooth, increasing lookup table (LUT) from grey value [0, 1] to grey value:
1. control points: the ends, black ~ U(black_from, black_to) at 0 and white ~ U(white_from,
   white_to) at 1; then n_control_point_insertions rounds, each inserting a point between
   every two neighbours, drawn uniformly where both segments keep a slope within
   [slope_min, slope_max]. When no such value exists the draw fails and is drawn again.
2. the dense LUT of lut_size entries: the piecewise-linear curve through the control points,
   linearly extrapolated by lut_size // 2 entries on each side, then smoothed by a Gaussian
   of sigma = a quarter of the control points' spacing. Both steps are linear in the control
   points, so one (lut_size, points) matrix does them.
3. each grey value v reads the LUT at v (lut_size - 1), linearly interpolated, clamped at the
   ends.
"""
import numpy as np

# A parameter set whose draws fail more often than this is refused (caffe_unet's limit).
MAX_FAILURE_RATE = 0.5


def control_points(rng, p):
    """The drawn control points of one curve, or None when a slope limit cannot be met."""
    points = [rng.uniform(p.black_from, p.black_to), rng.uniform(p.white_from, p.white_to)]
    dx = 1.0
    for _ in range(p.n_control_point_insertions):
        dx /= 2
        refined = [points[0]]
        for left, right in zip(points, points[1:]):
            low = max(left + p.slope_min * dx, right - p.slope_max * dx)
            high = min(left + p.slope_max * dx, right - p.slope_min * dx)
            if low > high:
                return None
            refined += [rng.uniform(low, high), right]
        points = refined
    return np.array(points)


def lut_matrix(n_points, lut_size):
    """(lut_size, n_points) matrix from control points to the smoothed dense LUT."""
    extra = lut_size // 2
    dx_points, dx_lut = 1.0 / (n_points - 1), 1.0 / (lut_size - 1)
    x = (np.arange(lut_size + 2 * extra) - extra) * dx_lut       # the extended LUT positions
    linear = np.maximum(0.0, 1 - np.abs(x[:, None] - np.arange(n_points) * dx_points)
                        / dx_points)
    before, after = x < 0, x > 1
    linear[before] = 0
    linear[before, 0], linear[before, 1] = 1 - x[before] / dx_points, x[before] / dx_points
    past = (x[after] - 1) / dx_points
    linear[after] = 0
    linear[after, -2], linear[after, -1] = -past, 1 + past
    sigma = dx_points / 4
    gauss = np.exp(-0.5 * ((np.arange(lut_size) * dx_lut)[:, None] - x) ** 2 / sigma ** 2)
    return (gauss / gauss.sum(axis=1, keepdims=True)) @ linear


def failure_rate(p, draws=500):
    """The fraction of draws whose control points miss the slope limits."""
    rng = np.random.default_rng(0)
    return sum(control_points(rng, p) is None for _ in range(draws)) / draws


def random_lut(rng, p, matrix, tries=1000):
    """One dense LUT; draws again while the control points miss the slope limits."""
    for _ in range(tries):
        points = control_points(rng, p)
        if points is not None:
            return matrix @ points
    raise ValueError(f"no curve within slopes {p.slope_min}..{p.slope_max} in {tries} draws")


def apply_lut(lut, values, xp=np):
    """values -> the LUT read at values * (len(lut) - 1), linear between entries."""
    lut = xp.asarray(lut)
    return xp.interp(values * (len(lut) - 1), xp.arange(len(lut), dtype=lut.dtype), lut)
