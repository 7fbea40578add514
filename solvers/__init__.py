"""Caffe's solvers and the training loop (installed as unetcore.solvers).

get_solver(path) builds the solver of the type the prototxt names; SGDSolver(path),
AdamSolver(path), ... build that type whatever the file says (pycaffe's classes)."""
from unetcore.solvers.adadelta import AdaDeltaSolver
from unetcore.solvers.adagrad import AdaGradSolver
from unetcore.solvers.adam import AdamSolver
from unetcore.solvers.nesterov import NesterovSolver
from unetcore.solvers.rmsprop import RMSPropSolver
from unetcore.solvers.sgd import SGDSolver
from unetcore.solvers.solver import SOLVERS, Solver, get_solver

__all__ = ["SOLVERS", "Solver", "get_solver", "SGDSolver", "NesterovSolver", "AdaGradSolver",
           "RMSPropSolver", "AdaDeltaSolver", "AdamSolver"]
