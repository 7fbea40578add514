"""The layer types and their engines; importing this package registers them all (see
unetcore.layer). unetcore.net and unetcore.gradcheck import it, so building a net or a layer
fills the registry. conditions.py holds the conditions under which the engines run."""
from unetcore.layers import (  # noqa: F401  (each module registers its types)
    accuracy, apply_deformation, concat, convolution, convolution_correlation, convolution_flat,
    convolution_pointwise, convolution_slices, convolution_winograd, create_deformation, crop,
    deconvolution, deconvolution_blocks, dropout, eltwise, f1, hdf5_data, input, iou, pooling,
    pooling_tiled, relu, softmax, softmax_loss, split, tiff_data, value_augmentation,
    value_transformation)
