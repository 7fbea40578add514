"""Where a training tile samples its source image: shift, rotation, mirroring and the paper's
elastic deformation (random displacement vectors on a coarse 3x3 grid, std 10 px, bicubic
interpolation to every pixel). Coordinates outside the image read its mirror image, so a tile
can sit anywhere and every image size gives full tiles (the overlap-tile border rule).

Every function works where its arrays live (`xp`: NumPy, or CuPy on a GPU, with
cupyx.scipy.ndimage for the interpolation). The random numbers come from a NumPy generator
on the host in either case, so a GPU run draws the same tiles as a CPU run.
"""
import math

import numpy as np

from ..backend import array_module, ndimage_for


def elastic_displacements(shape, rng, grid_points=3, std=10.0, xp=np):
    """A smooth (2, h, w) displacement field: N(0, std^2) vectors on a grid_points^2 grid,
    interpolated bicubically (a cubic spline through the grid values)."""
    h, w = shape
    if std == 0:
        return xp.zeros((2, h, w))
    grid = xp.asarray(rng.normal(0.0, std, size=(2, grid_points, grid_points)))
    rows = xp.linspace(0, grid_points - 1, h)
    cols = xp.linspace(0, grid_points - 1, w)
    at = xp.stack(xp.meshgrid(rows, cols, indexing="ij"))
    interpolate = ndimage_for(xp).map_coordinates
    return xp.stack([interpolate(g, at, order=3, mode="nearest") for g in grid])


def tile_coordinates(size, center, angle=0.0, mirror=False, displacements=None, xp=np):
    """(2, size, size) source coordinates of a size x size tile centred at `center`:
    x_src = center + R(angle) . M . (x - c_tile) + displacement(x)."""
    offsets = xp.arange(size) - (size - 1) / 2.0
    dy, dx = xp.meshgrid(offsets, offsets, indexing="ij")
    if mirror:
        dx = -dx
    c, s = math.cos(angle), math.sin(angle)
    coords = xp.stack([center[0] + c * dy - s * dx, center[1] + s * dy + c * dx])
    if displacements is not None:
        coords = coords + displacements
    return coords


def random_tile_coordinates(rng, p, size, center, elastic=True, xp=np):
    """(2, size, size) source coordinates of a tile centred at `center`, with the random
    rotation (only when random_rotate_from..to is a range), mirroring and, if `elastic`,
    the elastic deformation that `p`, a CreateDeformationParameter, asks for."""
    angle = math.radians(rng.uniform(p.random_rotate_from, p.random_rotate_to)) \
        if p.random_rotate_to != p.random_rotate_from else 0.0
    mirror = bool(p.random_mirror and rng.random() < 0.5)
    shift = elastic_displacements((size, size), rng, p.grid_points, p.deform_std, xp) \
        if elastic else None
    return tile_coordinates(size, center, angle, mirror, shift, xp)


def sample(image, coords, order):
    """Read `image` at `coords` (order 3: bicubic for grey values; 0: nearest for labels and
    weights), reflecting about the border pixels outside the image."""
    interpolate = ndimage_for(array_module(image)).map_coordinates
    return interpolate(image, coords, order=order, mode="mirror")


def center_crop(coords, size):
    """The coordinates of the central size x size part of a tile (the label tile)."""
    start = (coords.shape[1] - size) // 2
    return coords[:, start:start + size, start:start + size]
