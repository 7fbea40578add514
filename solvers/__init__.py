"""Caffe's solvers and the training loop (installed as unetcore.solvers)."""
from unetcore.solvers import adadelta, adagrad, adam, nesterov, rmsprop, sgd  # noqa: F401  (register the types)
from unetcore.solvers.solver import SOLVERS, Solver, get_solver

__all__ = ["SOLVERS", "Solver", "get_solver"]
