"""The layer types; importing this package registers them all (see unetcore.layer)."""
from . import (accuracy, apply_deformation, concat, convolution, create_deformation,  # noqa: F401
               crop, deconvolution, dropout, eltwise, hdf5_data, input, pooling, relu, softmax,
               softmax_loss, split, tiff_data, value_augmentation, value_transformation)
