"""SGD with momentum, Caffe's form: the learning rate lives inside the momentum buffer.

    V <- momentum * V + lr * g           W <- W - V

(g already holds weight decay; see Solver.regularize.) With the paper's momentum 0.99 a
gradient keeps contributing for about 1 / (1 - 0.99) = 100 iterations.
"""
import numpy as np

from unetcore.solvers.solver import Solver, register


@register
class SGDSolver(Solver):
    type = "SGD"

    def compute_update(self, i, blob, rate):
        v = self.history[0][i]
        v *= self.dtype.type(self.param.momentum)
        v += self.dtype.type(rate) * blob.diff
        blob.diff[...] = v

    def update_params(self, rate):
        """On a GPU, ops/sgd_update.cu does the same steps for a blob in one pass
        (Caffe's sgd_update_gpu): one launch per blob instead of six array operations."""
        p = self.param
        if self.xp is np or p.iter_size != 1 or p.regularization_type != "L2":
            return super().update_params(rate)
        from unetcore.ops import cuda
        for i, blob in enumerate(self.net.learnable_params):
            cuda.sgd_update(blob.data, blob.diff, self.history[0][i], p.momentum,
                           rate * self.net.lr_mults[i], p.weight_decay * self.net.decay_mults[i])
