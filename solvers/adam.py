"""Adam (Kingma & Ba 2015), Caffe's form, beta1 = momentum, beta2 = momentum2, eps = delta:
    m <- beta1 m + (1 - beta1) g          v <- beta2 v + (1 - beta2) g^2
    W <- W - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps),   t = iteration + 1
"""
import math

from unetcore.solvers.solver import Solver, register


@register
class AdamSolver(Solver):
    type = "Adam"
    history_sets = 2

    def compute_update(self, i, blob, rate):
        b1, b2 = self.param.momentum, self.param.momentum2
        t = self.iter + 1
        correction = math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m, v, g = self.history[0][i], self.history[1][i], blob.diff
        m *= self.dtype.type(b1)
        m += self.dtype.type(1 - b1) * g
        v *= self.dtype.type(b2)
        v += self.dtype.type(1 - b2) * g * g
        blob.diff[...] = self.dtype.type(rate * correction) * m / (
            self.xp.sqrt(v) + self.dtype.type(self.param.delta))
