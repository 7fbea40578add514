"""Nesterov's accelerated gradient, Caffe's form (Sutskever et al. 2013):

    V' = momentum * V + lr * g           W <- W - ((1 + momentum) V' - momentum V)
"""
from unetcore.solvers.solver import Solver, register


@register
class NesterovSolver(Solver):
    type = "Nesterov"

    def compute_update(self, i, blob, rate):
        m = self.dtype.type(self.param.momentum)
        v = self.history[0][i]
        previous = v.copy()
        v *= m
        v += self.dtype.type(rate) * blob.diff
        blob.diff[...] = (1 + m) * v - m * previous
