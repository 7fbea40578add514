"""The layer types and their engines; importing this package registers them all (see
unetcore.layer). unetcore/__init__ imports it, so any use of unetcore fills the registry."""
from unetcore.layers import (accuracy, apply_deformation, concat, convolution, convolution_correlation,  # noqa: F401
               convolution_flat, convolution_pointwise, convolution_slices, convolution_winograd,
               create_deformation, crop, deconvolution, deconvolution_blocks, dropout, eltwise,
               f1, hdf5_data, input, iou,
               pooling, pooling_tiled, relu, softmax, softmax_loss, split, tiff_data,
               value_augmentation, value_transformation)
