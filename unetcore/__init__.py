"""unetcore: the original U-Net (Ronneberger, Fischer & Brox 2015), Caffe-style.

pycaffe-shaped API::

    import unetcore
    net = unetcore.Net("prototxt/unet-deploy.prototxt", unetcore.TEST, weights="w.caffemodel.h5")
    out = net.forward(data=image)            # {output blob name: array}
"""
from .errors import UnetcoreError
from .net import TEST, TRAIN, Net

__all__ = ["Net", "TRAIN", "TEST", "UnetcoreError"]
__version__ = "0.1.0"

from .solvers import get_solver  # noqa: E402  (after Net: the solvers build nets)

__all__.append("get_solver")
