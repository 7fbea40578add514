"""RMSProp (Tieleman & Hinton 2012), Caffe's form:
    H <- rms_decay * H + (1 - rms_decay) g^2,    W <- W - lr * g / (sqrt(H) + delta)
"""
from unetcore.solvers.solver import Solver, register


@register
class RMSPropSolver(Solver):
    type = "RMSProp"

    def compute_update(self, i, blob, rate):
        decay = self.dtype.type(self.param.rms_decay)
        h, g = self.history[0][i], blob.diff
        h *= decay
        h += (1 - decay) * g * g
        blob.diff[...] = self.dtype.type(rate) * g / (self.xp.sqrt(h) + self.dtype.type(self.param.delta))
