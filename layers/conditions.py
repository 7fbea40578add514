"""The conditions under which the engines of (De)Convolution run, in one place: each engine's
`can_run` (unetcore.layer) is a sentence over these. A condition reads the layer's parameters
and its bottoms' shapes only; an invalid parameter makes it false, and the reference layer's
setup then says why.
"""
from unetcore.errors import NetError
from unetcore.ops.im2col import geometry_from_param


def parsed_geometry(param, bottom_shapes=(), dimensions=(2,)):
    """The geometry of a (De)Convolution's parameters, for an engine's conditions; None where
    they are invalid (the reference layer's setup then says why) or where the bottoms' number
    of spatial axes is not among the engine's `dimensions` (2-d, unless it says more)."""
    axes = len(bottom_shapes[0]) - 2 if bottom_shapes else 2
    if axes not in dimensions:
        return None
    try:
        return geometry_from_param(param.convolution_param, NetError, axes)
    except NetError:
        return None


def unit_stride_unpadded(param, bottom_shapes, dimensions=(2,)):
    """Stride 1, no padding, no dilation, one group, and not 1x1 (pointwise serves that), on
    bottoms with a number of spatial axes among `dimensions` (2-d, unless the engine says)."""
    geom = parsed_geometry(param, bottom_shapes, dimensions)
    return (geom is not None and set(geom.stride) == {1} and not any(geom.pad)
            and set(geom.dilation) == {1} and param.convolution_param.group == 1
            and set(geom.kernel) != {1})
