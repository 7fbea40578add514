"""AdaDelta (Zeiler 2012), Caffe's form, with momentum as the decay rho:
    G <- rho G + (1 - rho) g^2
    u  = g * sqrt((U + delta) / (G + delta))
    U <- rho U + (1 - rho) u^2
    W <- W - lr * u
"""
from unetcore.solvers.solver import Solver, register


@register
class AdaDeltaSolver(Solver):
    type = "AdaDelta"
    history_sets = 2

    def compute_update(self, i, blob, rate):
        rho, delta = self.dtype.type(self.param.momentum), self.dtype.type(self.param.delta)
        grad_sq, update_sq, g = self.history[0][i], self.history[1][i], blob.diff
        grad_sq *= rho
        grad_sq += (1 - rho) * g * g
        update = g * self.xp.sqrt((update_sq + delta) / (grad_sq + delta))
        update_sq *= rho
        update_sq += (1 - rho) * update * update
        blob.diff[...] = self.dtype.type(rate) * update
