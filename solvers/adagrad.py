"""AdaGrad (Duchi et al. 2011), Caffe's form:   H <- H + g^2,   W <- W - lr * g / (sqrt(H) + delta)."""
from unetcore.solvers.solver import Solver, register


@register
class AdaGradSolver(Solver):
    type = "AdaGrad"

    def compute_update(self, i, blob, rate):
        h, g = self.history[0][i], blob.diff
        h += g * g
        blob.diff[...] = self.dtype.type(rate) * g / (self.xp.sqrt(h) + self.dtype.type(self.param.delta))
