"""Where a training tile samples its source image: an elastic deformation, then caffe_unet's
affine part (mirroring, rotation, offset). Coordinates outside the image read its mirror
image, so a tile can sit anywhere and every image size gives full tiles (the overlap-tile
border rule).

A deformation map holds, for each output pixel (y, x), the source position it reads. It is
built in the output's own pixel grid and then moved onto the source:

1. p = (y, x) + d(y, x), with d an elastic displacement field, one of:
   - the paper's (unetcore's fields deform_std, grid_points): N(0, deform_std^2) vectors on a
     grid_points x grid_points grid spanning the tile, interpolated by a cubic spline;
   - caffe_unet's (random_elastic_grid_spacing, random_elastic_deform_magnitude): N(0, m^2)
     values on control points `spacing` px apart, n // spacing + 4 per axis, smoothed by the
     uniform cubic B-spline, which approximates its control values rather than passing
     through them.
2. source = R(angle) M (p - n_out / 2) + n_source / 2 + offset, as caffe_unet's
   CreateDeformation computes it (create_deformation_layer.cpp): R rotates by `angle` degrees,
   M mirrors the axes whose random_mirror_flag drew a flip.

Every function works where its arrays live (`xp`: NumPy, or CuPy on a GPU, with
cupyx.scipy.ndimage for the interpolation). The random numbers come from a NumPy generator
on the host in either case, so a GPU run draws the same tiles as a CPU run.
"""
import math
from functools import lru_cache

import numpy as np

from ..backend import array_module, ndimage_for


def paper_displacements(shape, rng, grid_points=3, std=10.0, xp=np):
    """The paper's smooth (2, h, w) displacement field: N(0, std^2) vectors on a
    grid_points^2 grid, interpolated bicubically (a cubic spline through the grid values)."""
    h, w = shape
    if std == 0:
        return xp.zeros((2, h, w))
    grid = xp.asarray(rng.normal(0.0, std, size=(2, grid_points, grid_points)))
    rows = xp.linspace(0, grid_points - 1, h)
    cols = xp.linspace(0, grid_points - 1, w)
    at = xp.stack(xp.meshgrid(rows, cols, indexing="ij"))
    interpolate = ndimage_for(xp).map_coordinates
    return xp.stack([interpolate(g, at, order=3, mode="nearest") for g in grid])


def bspline_weights(t):
    """The four uniform cubic B-spline weights at fraction t of a segment (they sum to 1)."""
    return ((1 - t) ** 3 / 6, (3 * t ** 3 - 6 * t ** 2 + 4) / 6,
            (-3 * t ** 3 + 3 * t ** 2 + 3 * t + 1) / 6, t ** 3 / 6)


@lru_cache(maxsize=32)
def _bspline_matrix(length, spacing, xp):
    """(length, length // spacing + 4) matrix A: A @ control values = the B-spline at every
    pixel. Pixel j lies in segment j // spacing at fraction (j % spacing) / spacing, and
    reads that segment's four control points."""
    a = np.zeros((length, length // spacing + 4))
    for j in range(length):
        segment, t = divmod(j, spacing)
        a[j, segment:segment + 4] = bspline_weights(t / spacing)
    return xp.asarray(a)


def bspline_displacements(shape, rng, spacing, magnitude, xp=np):
    """caffe_unet's (2, h, w) elastic field: for each component, N(0, magnitude[c]^2) values
    on the control grid, upsampled along y and then x: d_c = A_y @ G_c @ A_x^T."""
    a_y, a_x = (_bspline_matrix(n, s, xp) for n, s in zip(shape, spacing))
    grids = [rng.normal(0.0, m, size=(a_y.shape[1], a_x.shape[1])) for m in magnitude]
    return xp.stack([a_y @ xp.asarray(g) @ a_x.T for g in grids])


# caffe_unet's vector fields and their sizes in 2-d.
VECTOR_SIZES = (("random_elastic_grid_spacing", 2), ("random_elastic_deform_magnitude", 2),
                ("random_rotate_from", 1), ("random_rotate_to", 1), ("random_offset_from", 2),
                ("random_offset_to", 2), ("random_mirror_flag", 2))


def check_parameters(p):
    """Raise ValueError for a CreateDeformationParameter that cannot describe a 2-d map."""
    for name, size in VECTOR_SIZES:
        _vector(getattr(p, name), size, name)
    if any(s < 1 for s in p.random_elastic_grid_spacing.v):
        raise ValueError("random_elastic_grid_spacing must be at least 1 px, got "
                         f"{list(p.random_elastic_grid_spacing.v)}")


def paper_elastic(p):
    """Whether `p` asks for the paper's grid-point deformation (unetcore's own fields)."""
    return not p.random_elastic_grid_spacing.v and (p.has("deform_std") or p.has("grid_points"))


def _vector(field, size, what):
    """The values of a VectorFloat/VectorInt32 field for `size` axes, or None if unset."""
    values = list(field.v)
    if not values:
        return None
    if len(values) != size:
        raise ValueError(f"{what} needs {size} value(s) in 2-d, got {len(values)}")
    return values


def random_affine(rng, p):
    """caffe_unet's random draws for one map: (angle in degrees, mirror flags, offset)."""
    rotate_from = _vector(p.random_rotate_from, 1, "random_rotate_from")
    rotate_to = _vector(p.random_rotate_to, 1, "random_rotate_to") or rotate_from
    angle = rng.uniform(rotate_from[0], rotate_to[0]) if rotate_from else 0.0
    flags = _vector(p.random_mirror_flag, 2, "random_mirror_flag") or [0, 0]
    mirror = [bool(flag) and rng.random() < 0.5 for flag in flags]
    offset_from = _vector(p.random_offset_from, 2, "random_offset_from")
    offset_to = _vector(p.random_offset_to, 2, "random_offset_to") or offset_from
    offset = [rng.uniform(a, b) for a, b in zip(offset_from, offset_to)] if offset_from \
        else [0.0, 0.0]
    return angle, mirror, offset


def deformation_map(rng, p, out_shape, source_shape, shift=(0.0, 0.0), xp=np):
    """(2, ny, nx) source positions of an out_shape tile, for the CreateDeformationParameter
    `p`: an elastic field (caffe_unet's if random_elastic_grid_spacing is set, the paper's if
    deform_std or grid_points is), then the random mirroring, rotation and offset, plus
    `shift` (where the caller places the tile)."""
    ny, nx = out_shape
    yy, xx = xp.meshgrid(xp.arange(ny, dtype=np.float64), xp.arange(nx, dtype=np.float64),
                         indexing="ij")
    points = xp.stack([yy, xx])
    spacing = _vector(p.random_elastic_grid_spacing, 2, "random_elastic_grid_spacing")
    if spacing:
        magnitude = _vector(p.random_elastic_deform_magnitude, 2,
                            "random_elastic_deform_magnitude") or [0.0, 0.0]
        points = points + bspline_displacements(out_shape, rng, spacing, magnitude, xp)
    elif paper_elastic(p):
        points = points + paper_displacements(out_shape, rng, p.grid_points, p.deform_std, xp)
    angle, mirror, offset = random_affine(rng, p)
    center = [(s_src / 2.0 + o + s) for s_src, o, s in zip(source_shape, offset, shift)]
    return affine_map(points, out_shape, angle, mirror, center)


def affine_map(points, out_shape, angle, mirror, center):
    """source = R(angle) M (p - n_out / 2) + center: M flips the axes in `mirror`, R turns
    by `angle` degrees (y' = cos y - sin x, x' = sin y + cos x, caffe_unet's m_rotate3D)."""
    y = points[0] - out_shape[0] / 2.0
    x = points[1] - out_shape[1] / 2.0
    if mirror[0]:
        y = -y
    if mirror[1]:
        x = -x
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return array_module(points).stack([center[0] + c * y - s * x, center[1] + s * y + c * x])


def sample(image, coords, order):
    """Read `image` at `coords` (order 3: bicubic for grey values; 0: nearest for labels and
    weights), reflecting about the border pixels outside the image."""
    interpolate = ndimage_for(array_module(image)).map_coordinates
    return interpolate(image, coords, order=order, mode="mirror")


def center_crop(coords, size):
    """The coordinates of the central part of a tile (the label tile); `size` is an edge
    length or (height, width)."""
    height, width = (size, size) if isinstance(size, int) else size
    top, left = (coords.shape[1] - height) // 2, (coords.shape[2] - width) // 2
    return coords[:, top:top + height, left:left + width]
