"""SGD with momentum, Caffe's form: the learning rate lives inside the momentum buffer.

    V <- momentum * V + lr * g           W <- W - V

(g already holds weight decay; see Solver.regularize.) With the paper's momentum 0.99 a
gradient keeps contributing for about 1 / (1 - 0.99) = 100 iterations.
"""
from .solver import Solver, register


@register
class SGDSolver(Solver):
    type = "SGD"

    def compute_update(self, i, blob, rate):
        v = self.history[0][i]
        v *= self.dtype.type(self.param.momentum)
        v += self.dtype.type(rate) * blob.diff
        blob.diff[...] = v
