"""A Fiji U-Net plugin model from Python: `load` a .modeldef.h5, then build its TEST net,
segment an image or fine-tune it as the plugin does.

    from unetcore.fiji.model import load
    model = load("2d_cell_net_v0.modeldef.h5")
    probabilities = model.segment(image, "2d_cell_net_v0.caffemodel.h5")

The file itself is read and written by unetcore.fiji.modeldef; this class adds the plugin's
workflows to what the file says.
"""
from dataclasses import dataclass, fields

import numpy as np

from unetcore.fiji.finetune import prepare_finetuning
from unetcore.fiji.images import prepare_image, scale_to_model
from unetcore.fiji.modeldef import ModelDefinition, caffe_unet_net, read_modeldef
from unetcore.fiji.predict import covering_tile, modeldef_net, probabilities_at
from unetcore.solvers import get_solver


def load(path):
    """The model file (.modeldef.h5) at `path`, as a FijiModel."""
    definition = read_modeldef(path)
    return FijiModel(**{f.name: getattr(definition, f.name) for f in fields(definition)})


@dataclass
class FijiModel(ModelDefinition):
    """A model definition with the plugin's workflows: test_net, segment, finetune."""

    def test_net(self, channels=1, input_tile=None, gpu=None):
        """The model's TEST net (caffe_unet's) for images of `channels` channels, at an input
        tile (default: the plugin's segmentation tile)."""
        return caffe_unet_net(self, channels, input_tile or self.segmentation_tile(), gpu)

    def segment(self, image, weights, element_size_um=None, averaging=None, gpu=None):
        """The class probabilities (classes, *spatial) of one image, (*spatial) or
        (channels, *spatial), at the image's own pixels, as the plugin computes them: the
        image rescaled from its pixel size (([z,] y, x) um; default 1 um, the plugin's for
        an uncalibrated image) to the model's and normalized, caffe_unet's TEST net with
        the model's padding, the scores averaged over the passes of `averaging` (None,
        "mirror": flipped in x and y, never in z, or "rotate": turned in the y-x plane).
        A 3-d model's image is a volume, (Z, Y, X) or (channels, Z, Y, X)."""
        image = self._with_channels(image)
        element_size_um = element_size_um or (1.0,) * self.n_dims
        prepared = prepare_image(image, self, element_size_um)
        net = modeldef_net(self, str(weights), gpu=gpu, channels=len(image),
                           input_shape=covering_tile(self, prepared.shape[1:]))
        return probabilities_at(net, prepared, image.shape[1:],
                                scale_to_model(element_size_um, self), self, averaging)

    def finetune(self, images, labels, job, weights=None, element_size_um=None, gpu=None,
                 validation=(), **options):
        """Fine-tune the model as the plugin does on images, (*spatial) or (channels,
        *spatial) each, and their labels (0 ignore, 1 background, 2.. classes), all of one
        pixel size (default 1 um); `validation` holds (image, labels) pairs. The plugin's
        files, the fine-tuned model (<job>.modeldef.h5) and its weights
        (<job>_iter_N.caffemodel.h5) go under the path prefix `job`. `options` are
        prepare_finetuning's (tile, base_lr, iterations, labels_are_classes, ...).
        Returns (the fine-tuned ModelDefinition, the weights' path)."""
        element_size_um = element_size_um or (1.0,) * self.n_dims

        def samples(pairs):
            return [(self._with_channels(image), np.asarray(label), element_size_um)
                    for image, label in pairs]

        solver_path, tuned = prepare_finetuning(
            self, samples(zip(images, labels)), job, gpu=gpu,
            validation=samples(validation), **options)
        solver = get_solver(str(solver_path), gpu=gpu, snapshot_prefix=str(job))
        if weights:
            solver.net.copy_from(str(weights), resize_channels=True)
        solver.solve()
        return tuned, f"{job}_iter_{solver.iter}.caffemodel.h5"

    def _with_channels(self, image):
        """A float32 image with its channel axis first: (channels, *spatial)."""
        image = np.asarray(image, np.float32)
        return image[None] if image.ndim == self.n_dims else image
