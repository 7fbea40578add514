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

In 3-d (caffe_unet's nz > 0, ncomponents 3) the same steps run on (z, y, x): the B-spline
field is smoothed along all three axes, and the rotation is caffe_unet's m_rotate3D: angle 0
turns the (y, x) plane (as in 2-d), angle 1 the (z, x) plane, angle 2 the (z, y) plane,
applied in that order to coordinates whose z is first scaled by voxel_relsize_z (the z
spacing over the xy spacing), so that the rotation is one of physical space.

Every function works where its arrays live (`xp`: NumPy, or CuPy on a GPU, with
cupyx.scipy.ndimage for the interpolation). The random numbers come from a NumPy generator
on the host in either case, so a GPU run draws the same tiles as a CPU run.
"""
import math
from functools import lru_cache

import numpy as np

from unetcore.backend import array_module, ndimage_for


def paper_displacements(shape, rng, grid_points=3, std=10.0, xp=np):
    """The paper's smooth (axes, *shape) displacement field: N(0, std^2) vectors on a grid of
    grid_points per axis, interpolated by a cubic spline through the grid values."""
    axes = len(shape)
    if std == 0:
        return xp.zeros((axes, *shape))
    grid = xp.asarray(rng.normal(0.0, std, size=(axes,) + (grid_points,) * axes))
    at = xp.stack(xp.meshgrid(*(xp.linspace(0, grid_points - 1, n) for n in shape),
                              indexing="ij"))
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
    """caffe_unet's (axes, *shape) elastic field: for each component, N(0, magnitude[c]^2)
    values on the control grid, upsampled along each axis in turn by its B-spline matrix
    (in 2-d: d_c = A_y @ G_c @ A_x^T)."""
    matrices = [_bspline_matrix(n, s, xp) for n, s in zip(shape, spacing)]
    fields = []
    for m in magnitude:
        field = xp.asarray(rng.normal(0.0, m, size=tuple(a.shape[1] for a in matrices)))
        for axis, a in enumerate(matrices):       # contract the control axis with A
            field = xp.moveaxis(xp.tensordot(a, field, axes=([1], [axis])), 0, axis)
        fields.append(field)
    return xp.stack(fields)


def vector_sizes(axes):
    """caffe_unet's vector fields and their sizes: one value per axis, except the rotation,
    one angle in 2-d and three in 3-d."""
    return (("random_elastic_grid_spacing", axes), ("random_elastic_deform_magnitude", axes),
            ("random_rotate_from", 2 * axes - 3), ("random_rotate_to", 2 * axes - 3),
            ("random_offset_from", axes), ("random_offset_to", axes),
            ("random_mirror_flag", axes))


def check_parameters(p, axes=2):
    """Raise ValueError for a CreateDeformationParameter that cannot describe an
    `axes`-d map."""
    for name, size in vector_sizes(axes):
        _vector(getattr(p, name), size, name, axes)
    if any(s < 1 for s in p.random_elastic_grid_spacing.v):
        raise ValueError("random_elastic_grid_spacing must be at least 1 px, got "
                         f"{list(p.random_elastic_grid_spacing.v)}")


def paper_elastic(p):
    """Whether `p` asks for the paper's grid-point deformation (unetcore's own fields)."""
    return not p.random_elastic_grid_spacing.v and (p.has("deform_std") or p.has("grid_points"))


def _vector(field, size, what, axes=2):
    """The values of a VectorFloat/VectorInt32 field for `size` values, or None if unset."""
    values = list(field.v)
    if not values:
        return None
    if len(values) != size:
        raise ValueError(f"{what} needs {size} value(s) in {axes}-d, got {len(values)}")
    return values


def random_affine(rng, p, axes=2):
    """caffe_unet's random draws for one map: (angles in degrees, mirror flags, offset)."""
    sizes = dict(vector_sizes(axes))
    value = lambda name: _vector(getattr(p, name), sizes[name], name, axes)   # noqa: E731
    rotate_from = value("random_rotate_from")
    rotate_to = value("random_rotate_to") or rotate_from
    angles = [rng.uniform(a, b) for a, b in zip(rotate_from, rotate_to)] if rotate_from \
        else [0.0] * sizes["random_rotate_from"]
    flags = value("random_mirror_flag") or [0] * axes
    mirror = [bool(flag) and rng.random() < 0.5 for flag in flags]
    offset_from = value("random_offset_from")
    offset_to = value("random_offset_to") or offset_from
    offset = [rng.uniform(a, b) for a, b in zip(offset_from, offset_to)] if offset_from \
        else [0.0] * axes
    return angles, mirror, offset


def deformation_map(rng, p, out_shape, source_shape, shift=None, xp=np):
    """(axes, *out_shape) source positions of a tile, for the CreateDeformationParameter
    `p`: an elastic field (caffe_unet's if random_elastic_grid_spacing is set, the paper's if
    deform_std or grid_points is), then the random mirroring, rotation and offset, plus
    `shift` (where the caller places the tile)."""
    axes = len(out_shape)
    points = xp.stack(xp.meshgrid(*(xp.arange(n, dtype=np.float64) for n in out_shape),
                                  indexing="ij"))
    spacing = _vector(p.random_elastic_grid_spacing, axes, "random_elastic_grid_spacing", axes)
    if spacing:
        magnitude = _vector(p.random_elastic_deform_magnitude, axes,
                            "random_elastic_deform_magnitude", axes) or [0.0] * axes
        points = points + bspline_displacements(out_shape, rng, spacing, magnitude, xp)
    elif paper_elastic(p):
        points = points + paper_displacements(out_shape, rng, p.grid_points, p.deform_std, xp)
    angles, mirror, offset = random_affine(rng, p, axes)
    shift = shift or (0.0,) * axes
    center = [(s_src / 2.0 + o + s) for s_src, o, s in zip(source_shape, offset, shift)]
    if axes == 2:
        return affine_map(points, out_shape, angles[0], mirror, center)
    return affine_map_3d(points, out_shape, angles, mirror, center, p.voxel_relsize_z or 1.0)


def plane_rotation(angle, first, second):
    """The 3x3 matrix that turns the (first, second) axis plane by `angle` degrees:
    first' = cos first - sin second, second' = sin first + cos second."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    r = np.eye(3)
    r[first, first], r[first, second], r[second, first], r[second, second] = c, -s, s, c
    return r


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


def affine_map_3d(points, out_shape, angles, mirror, center, relsize_z):
    """source = S^-1 R S M (p - n_out / 2) + center, on (z, y, x): S scales z by relsize_z
    (to cubic voxels and back), R = R_zy(angles[2]) R_zx(angles[1]) R_yx(angles[0]) as
    caffe_unet's m_rotate3D composes it, M flips the axes in `mirror`."""
    xp = array_module(points)
    scale = np.diag([relsize_z, 1.0, 1.0])
    rotation = plane_rotation(angles[2], 0, 1) @ plane_rotation(angles[1], 0, 2) \
        @ plane_rotation(angles[0], 1, 2)
    matrix = np.linalg.inv(scale) @ rotation @ scale @ np.diag([-1.0 if m else 1.0
                                                                  for m in mirror])
    centred = points - xp.asarray([n / 2.0 for n in out_shape]).reshape(3, 1, 1, 1)
    moved = xp.tensordot(xp.asarray(matrix), centred, axes=([1], [0]))
    return moved + xp.asarray(center, dtype=moved.dtype).reshape(3, 1, 1, 1)


def sample(image, coords, order):
    """Read `image` at `coords` (order 3: bicubic for grey values; 0: nearest for labels and
    weights), reflecting about the border pixels outside the image."""
    interpolate = ndimage_for(array_module(image)).map_coordinates
    return interpolate(image, coords, order=order, mode="mirror")


def center_crop(coords, size):
    """The coordinates of the central part of a tile (the label tile); `size` is an edge
    length (for every axis) or one size per axis."""
    sizes = (size,) * (coords.ndim - 1) if isinstance(size, int) else tuple(size)
    return coords[(slice(None),) + tuple(slice((n - s) // 2, (n - s) // 2 + s)
                                         for n, s in zip(coords.shape[1:], sizes))]
