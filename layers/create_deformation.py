"""CreateDeformation (caffe_unet's type name): random sampling maps for data augmentation.

Top: (batch, ny, nx, 2), for each output pixel the (y, x) position it reads in the input,
from a random rotation (random_rotate_from..to, degrees), mirroring (random_mirror), offset
of the tile centre (random_offset_range_from..to, px) and the paper's elastic deformation
(grid_points x grid_points grid, deform_std px, bicubic). An optional bottom (the image to
deform) centres the maps on it. Feed the top to ApplyDeformation.
"""
from unetcore.data import deformation as deform
from unetcore.layer import Layer, register


@register
class CreateDeformationLayer(Layer):
    type = "CreateDeformation"
    max_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.param.create_deformation_param
        if p.nz:
            raise self.error("3-d deformation (nz) is not supported; unetcore is 2-d")
        if p.ny <= 0 or p.nx <= 0 or p.ny != p.nx:
            raise self.error(f"needs ny = nx > 0 (a square output tile), got ny {p.ny}, "
                             f"nx {p.nx}")
        if p.ncomponents != 2:
            raise self.error(f"ncomponents must be 2 (y, x) in 2-d, got {p.ncomponents}")

    def reshape(self, bottom, top):
        p = self.param.create_deformation_param
        batch = bottom[0].shape[0] if bottom else p.batch_size
        top[0].reshape((batch, p.ny, p.nx, 2))

    def forward(self, bottom, top):
        p = self.param.create_deformation_param
        size = p.ny
        source = bottom[0].shape[-2:] if bottom else (size, size)
        for n in range(top[0].shape[0]):
            offset = [self.rng.uniform(p.random_offset_range_from, p.random_offset_range_to)
                      * self.rng.choice((-1, 1)) for _ in range(2)]
            center = [(s - 1) / 2.0 + o for s, o in zip(source, offset)]
            coords = deform.random_tile_coordinates(self.rng, p, size, center, xp=self.xp)
            top[0].data[n] = self.xp.moveaxis(coords, 0, -1)
