"""unetcore: the original U-Net (Ronneberger, Fischer & Brox 2015), Caffe-style.

pycaffe-shaped API::

    import unetcore
    net = unetcore.Net("prototxt/unet-deploy.prototxt", unetcore.TEST, weights="w.caffemodel.h5")
    out = net.forward(data=image)            # {output blob name: array}
"""
import os

# OpenBLAS's worker threads spin between GEMMs, by default for about 0.1 s, on a core that
# the single-threaded NumPy work between GEMMs (im2col copies, ReLU, pooling) needs too.
# On a 2-core virtual machine that made the flat im2col copies 5x slower at times
# (docs/benchmarks.md). 4 lets them sleep at once. It takes effect when NumPy is imported
# after unetcore (as in the `unetcore` command) and the user has not chosen a value.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from unetcore import layers  # noqa: E402, F401  (fills the registry of layer types)
from unetcore.errors import UnetcoreError  # noqa: E402
from unetcore.net import TEST, TRAIN, Net  # noqa: E402
from unetcore.solvers import get_solver  # noqa: E402

__all__ = ["Net", "TRAIN", "TEST", "UnetcoreError", "get_solver"]
__version__ = "0.1.0"
