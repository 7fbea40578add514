"""unetcore: the original U-Net (Ronneberger, Fischer & Brox 2015), Caffe-style.

pycaffe's face: the calls of a pycaffe script, with `unetcore` for `caffe`::

    import unetcore
    unetcore.set_mode_cpu()                  # or set_mode_gpu(); set_device(0)
    net = unetcore.Net("prototxt/unet-deploy.prototxt", unetcore.TEST)   # TEST == 1
    net.copy_from("w.caffemodel.h5")         # or Net(model, weights, unetcore.TEST)
    out = net.forward(data=image, blobs=["d4c"])   # {"score": ..., "d4c": ...}
    net.params["conv_d0a-b"][0].data         # parameters by layer name; net.blobs by blob
    net.save_hdf5("w.caffemodel.h5")         # load_hdf5 reads it back

    solver = unetcore.SGDSolver("prototxt/unet-solver.prototxt")   # or get_solver(path)
    net.share_with(solver.net)               # net computes with the weights being trained
    solver.step(100)                         # solver.iter == 100; solver.solve() to the end

The names below load on first use (PEP 562), so that `import unetcore` costs nothing and
imports no NumPy: the `unetcore` command (unetcore.__main__) sets the process's OpenBLAS
settings before NumPy loads. Submodules load on first use too (`unetcore.formats.prototxt`).
"""
import importlib

_EXPORTS = {
    "Net": "unetcore.net", "TRAIN": "unetcore.net", "TEST": "unetcore.net",
    "set_mode_cpu": "unetcore.net", "set_mode_gpu": "unetcore.net", "set_device": "unetcore.net",
    "UnetcoreError": "unetcore.errors", "get_solver": "unetcore.solvers",
    "SGDSolver": "unetcore.solvers", "NesterovSolver": "unetcore.solvers",
    "AdaGradSolver": "unetcore.solvers", "RMSPropSolver": "unetcore.solvers",
    "AdaDeltaSolver": "unetcore.solvers", "AdamSolver": "unetcore.solvers"}

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    """An exported name, or a submodule, imported when first asked for."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        try:
            value = importlib.import_module(f"unetcore.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"unetcore.{name}":
                raise
            raise AttributeError(f"module 'unetcore' has no attribute '{name}'") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
