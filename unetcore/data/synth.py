"""A synthetic, ISBI-2012-like EM stack with exact labels (`unetcore synth`).

Cells are the regions of a random Voronoi tessellation; a pixel is membrane where its
distances to the nearest and second-nearest cell centre differ by less than a membrane
width that varies smoothly over the image (1.5 to 4 px). Grey values: bright textured
cytoplasm, dark membranes, a few dark "vesicles" inside cells (which are not membrane, so a
threshold alone cannot segment the image), then blur and noise as an electron microscope
gives. Labels follow ISBI: 255 = cell, 0 = membrane. Deterministic for a seed.

`synth_volume` makes the same in 3-d: cells are the regions of a 3-d Voronoi tessellation in
physical space, sampled on voxels whose z spacing is `relsize_z` times their xy spacing (as
serial-section EM, where sections are thicker than pixels are wide).
"""
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


def smooth_noise(rng, shape, sigma):
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return field / (field.std() + 1e-12)


def membrane_mask(rng, size, cell_size):
    n_cells = max(2, int(size * size / cell_size ** 2))
    centers = rng.uniform(0, size, size=(n_cells, 2))
    grid = np.stack(np.mgrid[0:size, 0:size], axis=-1).reshape(-1, 2)
    distances, _ = cKDTree(centers).query(grid, k=2)
    gap = (distances[:, 1] - distances[:, 0]).reshape(size, size)
    width = 2.75 + 1.25 * np.tanh(smooth_noise(rng, (size, size), size / 8))
    return gap < width / 2 * 2          # |d2 - d1| is twice the distance to the bisector


def vesicles(rng, size, cells):
    """Small dark round blobs inside cells."""
    spots = np.zeros((size, size))
    count = max(1, size * size // 4000)
    ys, xs = rng.integers(0, size, count), rng.integers(0, size, count)
    for y, x in zip(ys, xs):
        if cells[y, x]:
            spots[y, x] = 1.0
    return ndimage.gaussian_filter(spots, 2.0) * 2 * np.pi * 4.0   # peak about 1


def synth_image(rng, size=256, cell_size=40):
    membrane = membrane_mask(rng, size, cell_size)
    cells = ~membrane
    grey = 0.7 + 0.08 * smooth_noise(rng, (size, size), 3) + 0.05 * smooth_noise(rng, (size, size), 30)
    grey = np.where(membrane, 0.25 + 0.05 * smooth_noise(rng, (size, size), 2), grey)
    grey = grey - 0.35 * np.clip(vesicles(rng, size, cells), 0, 1)
    grey = ndimage.gaussian_filter(grey, 1.0) + rng.normal(0, 0.05, (size, size))
    image = (np.clip(grey, 0, 1) * 255).round().astype(np.uint8)
    labels = np.where(cells, 255, 0).astype(np.uint8)
    return image, labels


def synth_stack(n=4, size=256, seed=0, cell_size=40):
    """(images, labels): uint8 stacks of shape (n, size, size)."""
    rng = np.random.default_rng(seed)
    pairs = [synth_image(rng, size, cell_size) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def synth_volume(shape=(24, 128, 128), relsize_z=3.0, seed=0, cell_size=40):
    """(image, labels): uint8 volumes of `shape` (D, H, W); the voxel spacing is relsize_z
    px in z and 1 px in y and x; membranes 1.5 to 4 px thick, measured in xy pixels."""
    rng = np.random.default_rng(seed)
    extent = np.array([shape[0] * relsize_z, shape[1], shape[2]])
    n_cells = max(2, int(np.prod(extent) / cell_size ** 3 * 2))
    centers = rng.uniform(0, 1, size=(n_cells, 3)) * extent
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    points = grid.reshape(-1, 3) * np.array([relsize_z, 1.0, 1.0])
    distances, _ = cKDTree(centers).query(points, k=2)
    gap = (distances[:, 1] - distances[:, 0]).reshape(shape)
    smooth = lambda sigma: smooth_noise(rng, shape, (sigma / relsize_z, sigma, sigma))  # noqa: E731
    membrane = gap < 2.75 + 1.25 * np.tanh(smooth(shape[1] / 8))
    grey = 0.7 + 0.08 * smooth(3) + 0.05 * smooth(30)
    grey = np.where(membrane, 0.25 + 0.05 * smooth(2), grey)
    grey = ndimage.gaussian_filter(grey, (1.0 / relsize_z, 1.0, 1.0)) + rng.normal(0, 0.05, shape)
    image = (np.clip(grey, 0, 1) * 255).round().astype(np.uint8)
    labels = np.where(membrane, 0, 255).astype(np.uint8)
    return image, labels
