"""The layer types; importing this package registers them all (see unetcore.layer)."""
from . import (accuracy, concat, convolution, crop, deconvolution, dropout,  # noqa: F401
               eltwise, input, pooling, relu, softmax, softmax_loss, split)
