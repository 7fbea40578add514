"""SoftmaxWithLoss: softmax + multinomial cross entropy, optionally weighted per pixel.

Bottoms: scores x (N, C, H, W) with classes on `axis`, labels l (N, 1, H, W) or (N, H, W),
and, as in the original U-Net release, an optional third bottom of per-pixel weights w
(paper eq. 1: E = sum_x w(x) log p_l(x)(x)). Tops: the loss, and optionally the probabilities.

    p = softmax(x),   loss = -1/Z sum_pixels w * log(max(p_l, FLT_MIN))   (ignored pixels skipped)

Z is the normalizer: FULL = N*H*W, VALID = number of non-ignored pixels (N*H*W when no
ignore_label is set), BATCH_SIZE = N, NONE = 1; the legacy `normalize: true|false` means
VALID|BATCH_SIZE. With a weights bottom, VALID (the default) is caffe_unet's normalizer: the
sum of the weights of the non-ignored pixels, so Z = N*H*W * mean(w) without ignored pixels.
Z is at least 1 (Caffe's guard against empty batches); a weight sum of 0 gives loss 0.
Backward (d/dx_k of -log p_l = p_k - [k == l]):   dx = loss_weight / Z * w * (p - onehot(l)).

caffe_unet differs in two corners, where its forward and backward disagree: with weights, its
backward divides by the weight sum whatever the normalization, and its forward truncates the
weight sum to an integer. Here both passes use the same Z, so the gradient is the loss's.

The maths is here (weighted_log_loss and loss_gradient, on the CPU); where the probabilities
live on a GPU the layer calls their CUDA twins instead (unetcore/ops/softmax_loss.py).
"""
import numpy as np

from unetcore.backend import on_gpu
from unetcore.layer import Layer, register
from unetcore.ops.softmax_loss import loss_gradient_gpu, weighted_log_loss_gpu

from unetcore.layers.softmax import softmax

FLT_MIN = np.finfo(np.float32).tiny


def weighted_log_loss(prob, labels, weights):
    """-sum over pixels of w * log(max(p_l, FLT_MIN)), on (outer, classes, inner)
    probabilities, (outer, 1, inner) labels and weights: -E of the paper's eq. 1, before
    the normalizer Z."""
    p_true = np.take_along_axis(prob, labels, axis=1)
    return -(weights * np.log(np.maximum(p_true, prob.dtype.type(FLT_MIN)))).sum()


def loss_gradient(prob, labels, weights):
    """w * (p - onehot(l)): d/dx_k of -log p_l is p_k - [k == l]."""
    grad = prob.copy()
    np.put_along_axis(grad, labels, np.take_along_axis(grad, labels, axis=1) - 1, axis=1)
    grad *= weights
    return grad


@register
class SoftmaxWithLossLayer(Layer):
    type = "SoftmaxWithLoss"
    min_bottoms = 2
    max_bottoms = 3
    min_tops = 1
    max_tops = 2
    is_loss = True

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0          # labels and weights get no gradient

    def setup(self, bottom, top):
        p = self.param.loss_param
        self.ignore_label = p.ignore_label if p.has("ignore_label") else None
        self.normalization = p.normalization
        if p.has("normalize"):
            self.normalization = "VALID" if p.normalize else "BATCH_SIZE"

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        axis = self.param.softmax_param.axis
        self.axis = axis + len(shape) if axis < 0 else axis
        self.outer = int(np.prod(shape[:self.axis]))
        self.inner = int(np.prod(shape[self.axis + 1:]))
        for i, b in enumerate(bottom[1:], 1):
            if b.count != self.outer * self.inner:
                raise self.error(f"bottom '{self.bottom_name(i)}' has shape {b.shape} ({b.count} values) but the "
                                 f"scores {shape} need {self.outer * self.inner}: one per pixel")
        top[0].reshape(())
        if len(top) == 2:
            top[1].reshape(shape)

    def normalizer(self, valid_count, weight_sum):
        """Z for the layer's normalization; weight_sum is None without a weights bottom."""
        if self.normalization == "VALID" and weight_sum is not None:
            return max(1.0, weight_sum) if weight_sum else 0.0     # caffe_unet
        z = {"FULL": self.outer * self.inner, "BATCH_SIZE": self.outer, "NONE": 1,
             "VALID": valid_count if self.ignore_label is not None
             else self.outer * self.inner}[self.normalization]
        return max(1.0, float(z))

    def forward(self, bottom, top):
        xp = self.xp
        classes = bottom[0].shape[self.axis]
        self.prob = softmax(xp, bottom[0].data, self.axis).reshape(self.outer, classes, self.inner)
        labels = bottom[1].data.reshape(self.outer, 1, self.inner).astype(xp.int64)
        self.valid = (labels != self.ignore_label) if self.ignore_label is not None \
            else xp.ones(labels.shape, dtype=bool)
        bad = self.valid & ((labels < 0) | (labels >= classes))
        self.labels = xp.where(self.valid, labels, 0)
        self.pixel_weights = self.valid.astype(self.dtype)
        if len(bottom) == 3:
            self.pixel_weights *= bottom[2].data.reshape(self.outer, 1, self.inner)
        counts = xp.stack([bad.sum(), self.valid.sum(), self.pixel_weights.sum(dtype=np.float64)])
        bad_count, valid_count, weight_sum = counts.tolist()      # one read from a GPU
        if bad_count:
            raise self.error(f"label {int(labels[bad][0])} in '{self.bottom_name(1)}' is outside "
                             f"0..{classes - 1} (the scores have {classes} classes)")
        self.z = self.normalizer(int(valid_count), weight_sum if len(bottom) == 3 else None)
        log_loss = weighted_log_loss_gpu if on_gpu(self.prob) else weighted_log_loss
        loss = log_loss(self.prob, self.labels, self.pixel_weights)
        top[0].data[...] = loss / self.z if self.z else 0
        if len(top) == 2:
            top[1].data[...] = self.prob.reshape(top[1].shape)

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and any(propagate_down[1:]):
            raise self.error("cannot backpropagate to the labels or weights; "
                             "set propagate_down: false for them")
        if not propagate_down[0]:
            return
        gradient = loss_gradient_gpu if on_gpu(self.prob) else loss_gradient
        grad = gradient(self.prob, self.labels, self.pixel_weights)
        grad *= top[0].diff.reshape(()) / self.z if self.z else 0
        bottom[0].diff[...] = grad.reshape(bottom[0].shape)
