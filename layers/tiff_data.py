"""TiffData: random training tiles from TIFF stacks in the ISBI layout (unetcore's data layer).

Tops: data (N, 1, tile, tile), label (N, 1, L, L), weights (N, 1, L, L), with L = label_size,
the net's output size (a U-Net's output is smaller than its input). Each forward draws, per
batch item, a random slice and a random tile position (anywhere: the image is mirror-extended
beyond its border), then the augmentation of create_deformation_param (elastic deformation,
mirroring, rotation and offset, as CreateDeformation) and value_augmentation_param (a random
grey-value curve, as ValueAugmentation). Image tiles are
interpolated bicubically, labels and weights by nearest neighbour, from one shared coordinate
map, so they stay aligned. Weight maps come from the `weight` stack, or are computed from the
labels at setup (unetcore.data.weightmap, w0 and sigma). On a GPU the stacks are copied to the
device once, at setup, and the tiles are sampled there (cupyx.scipy.ndimage).
"""
import numpy as np

from unetcore.data import deformation as deform
from unetcore.data import value_augmentation as values
from unetcore.data.stacks import check_same_shape, normalize_grey, read_stack, to_classes
from unetcore.data.weightmap import weight_stack
from unetcore.layer import Layer, register

from unetcore.layers.value_augmentation import lut_setup


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
        self.lut_matrix = self.check_augmentation()
        self.label_size = p.label_size or p.tile_size
        if self.label_size > self.tile:
            raise self.error(f"label_size {self.label_size} exceeds tile_size {self.tile}")
        images = normalize_grey(read_stack(p.image, "image"), p.scale, p.mean, p.image, p.bits)
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
        """A random tile position (its centre anywhere in the image) and the augmentation of
        create_deformation_param (unetcore.data.deformation), placed so that without
        augmentation the tile reads the image from `corner` on."""
        corner = [self.rng.integers(-(self.tile // 2), s - self.tile // 2 + 1)
                  for s in image_shape]
        shift = [c + self.tile / 2.0 - s / 2.0 for c, s in zip(corner, image_shape)]
        return deform.deformation_map(self.rng, self.param.create_deformation_param,
                                      (self.tile, self.tile), image_shape, shift, self.xp)

    def check_augmentation(self):
        """Refuse what a 2-d tile source cannot do; the LUT matrix of value augmentation."""
        p = self.param.create_deformation_param
        if p.nz:
            raise self.error("create_deformation_param.nz: 3-d deformation is not supported")
        try:
            deform.check_parameters(p)
        except ValueError as err:
            raise self.error(f"create_deformation_param: {err}") from None
        if self.param.has("value_augmentation_param"):
            return lut_setup(self, self.param.value_augmentation_param)
        return None

    def augment_values(self, grey):
        """caffe_unet's value augmentation: grey values through a random smooth curve."""
        if self.lut_matrix is None:
            return grey
        lut = values.random_lut(self.rng, self.param.value_augmentation_param, self.lut_matrix)
        return values.apply_lut(lut, grey, self.xp)
