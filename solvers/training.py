"""What `unetcore train` sets up before Solver.solve, callable from Python: a solver from a
solver prototxt or from a net prototxt alone (Caffe's defaults for every solver field), and
the check that the net has data to learn from.
"""
from unetcore.errors import PrototxtError, UnetcoreError
from unetcore.formats.prototxt import Message, parse_file

# --flag -> SolverParameter field and its type, for `unetcore train net.prototxt --flag v`
SOLVER_FIELDS = {
    "base_lr": float, "lr_policy": str, "gamma": float, "power": float, "stepsize": int,
    "momentum": float, "weight_decay": float, "max_iter": int, "iter_size": int,
    "display": int, "snapshot_prefix": str, "random_seed": int, "type": str,
    "clip_gradients": float}


def solver_or_net(path):
    """Read `path` as a solver prototxt, or as a net prototxt wrapped in a default solver.
    A file that is neither is refused with the error located furthest into the file (the
    reading that got further is the one the user meant)."""
    try:
        return parse_file(path, "SolverParameter")
    except PrototxtError as solver_error:
        try:
            parse_file(path, "NetParameter")
        except PrototxtError as net_error:
            raise max(solver_error, net_error, key=lambda e: (e.line, e.col)) from None
    solver = Message("SolverParameter")
    solver.set("net", str(path))
    return solver


def require_data_layer(net):
    """Refuse a train net whose data come only from Input layers, which nothing fills while
    training."""
    sources = [layer.type for layer, spec in zip(net.layers, net.specs) if not spec.bottoms]
    if all(kind == "Input" for kind in sources):
        raise UnetcoreError(f"net '{net.name}': its data come from Input layers, which nothing "
                            "fills during training; use a data layer (TiffData, HDF5Data), as "
                            "prototxt/unet-train.prototxt does")
