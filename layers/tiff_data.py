"""TiffData: random training tiles from TIFF stacks in the ISBI layout (unetcore's data layer).

Tops: data (N, 1, tile, tile), label (N, 1, L, L), weights (N, 1, L, L), with L = label_size,
the net's output size (a U-Net's output is smaller than its input). Each forward draws, per
batch item, a random slice and a random tile position (anywhere: the image is mirror-extended
beyond its border), then the augmentation of create_deformation_param (rotation, mirroring,
elastic deformation) and value_augmentation_param (grey-value shift and scale). Image tiles are
interpolated bicubically, labels and weights by nearest neighbour, from one shared coordinate
map, so they stay aligned. Weight maps come from the `weight` stack, or are computed from the
labels at setup (unetcore.data.weightmap, w0 and sigma). On a GPU the stacks are copied to the
device once, at setup, and the tiles are sampled there (cupyx.scipy.ndimage).
"""
import numpy as np

from unetcore.data import deformation as deform
from unetcore.data.stacks import check_same_shape, normalize_grey, read_stack, to_classes
from unetcore.data.weightmap import weight_stack
from unetcore.layer import Layer, register


@register
class TiffDataLayer(Layer):
    type = "TiffData"
    exact_bottoms = 0
    min_tops = 1
    max_tops = 3

    def setup(self, bottom, top):
        p = self.param.tiff_data_param
        if not p.image:
            raise self.error("tiff_data_param needs image: the path of a TIFF stack")
        if p.tile_size <= 0:
            raise self.error("tiff_data_param needs tile_size > 0: the net's input edge length")
        self.tile, self.batch = p.tile_size, p.batch_size
        self.check_augmentation()
        self.label_size = p.label_size or p.tile_size
        if self.label_size > self.tile:
            raise self.error(f"label_size {self.label_size} exceeds tile_size {self.tile}")
        images = normalize_grey(read_stack(p.image, "image"), p.scale, p.mean, p.image)
        labels = self._read_labels(p, images) if len(top) > 1 else None
        weights = self._read_weights(p, images, labels) if len(top) > 2 else None
        # The stacks move to the net's device once; each forward then samples them there.
        self.images, self.labels, self.weights = (
            None if stack is None else self.xp.asarray(stack)
            for stack in (images, labels, weights))

    def _read_labels(self, p, images):
        if not p.label:
            raise self.error("tiff_data_param needs label: a TIFF stack for the 'label' top")
        labels = read_stack(p.label, "label")
        check_same_shape(images, labels, p.image, p.label, "label")
        return to_classes(labels, p.num_classes, p.label)

    def _read_weights(self, p, images, labels):
        if not p.weight:
            return weight_stack(labels, p.w0, p.sigma, p.num_classes)
        weights = read_stack(p.weight, "weight").astype(np.float32)
        check_same_shape(images, weights, p.image, p.weight, "weight")
        return weights

    def reshape(self, bottom, top):
        sizes = [self.tile, self.label_size, self.label_size]
        for t, size in zip(top, sizes):
            t.reshape((self.batch, 1, size, size))

    def forward(self, bottom, top):
        for n in range(self.batch):
            index = int(self.rng.integers(len(self.images)))
            coords = self.tile_coordinates(self.images.shape[1:])
            label_coords = deform.center_crop(coords, self.label_size)
            top[0].data[n, 0] = self.augment_values(deform.sample(self.images[index], coords, 3))
            for t, stack in zip(top[1:], (self.labels, self.weights)):
                t.data[n, 0] = deform.sample(stack[index], label_coords, 0)

    def tile_coordinates(self, image_shape):
        """A random tile position (its centre anywhere in the image) and augmentation; without
        a create_deformation_param there is no elastic deformation (its deform_std defaults
        to 10)."""
        corner = [self.rng.integers(-(self.tile // 2), s - self.tile // 2 + 1) for s in image_shape]
        center = [c + (self.tile - 1) / 2.0 for c in corner]
        return deform.random_tile_coordinates(self.rng, self.param.create_deformation_param,
                                              self.tile, center,
                                              self.param.has("create_deformation_param"), self.xp)

    def check_augmentation(self):
        """Refuse the caffe_unet fields this layer does not implement, rather than ignore them."""
        unsupported = [f"value_augmentation_param.{name}"
                       for name in ("slope_min", "slope_max", "lut_size")
                       if self.param.value_augmentation_param.has(name)]
        unsupported += [f"create_deformation_param.{name}" for name in (
            "nz", "random_elastic_grid_spacing", "random_elastic_deform_magnitude",
            "grid_spacing") if self.param.create_deformation_param.has(name)]
        if unsupported:
            raise self.error(f"{', '.join(unsupported)}: not supported by TiffData, which "
                             "deforms on a grid_points x grid_points grid with deform_std and "
                             "shifts grey values linearly (black_from/to, white_from/to)")

    def augment_values(self, grey):
        """Caffe_unet's value augmentation, as a linear ramp: v -> black + (white - black) v."""
        if not self.param.has("value_augmentation_param"):
            return grey
        p = self.param.value_augmentation_param
        black = self.rng.uniform(p.black_from, p.black_to)
        white = self.rng.uniform(p.white_from, p.white_to)
        return black + (white - black) * grey
