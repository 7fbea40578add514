// Pixel-weighted softmax cross-entropy (SoftmaxWithLoss with the release's weight bottom).
//
// prob: (outer, classes, inner) softmax probabilities; label, weight: (outer, inner).
// Forward, per pixel:  loss = -w * log(max(prob[label], FLT_MIN)),  count = 1
// Backward, per pixel: dscore[c] = w * (prob[c] - [c == label])
// Pixels whose label is ignore_label (when has_ignore) get loss 0, count 0, gradient 0.
// has_weight = 0 means w = 1.

template <typename T>
__device__ void loss_forward(const T* prob, const T* label, const T* weight, int outer,
                             int classes, int inner, int has_ignore, int ignore_label,
                             int has_weight, T* loss, T* count) {
  const int n = outer * inner;
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < n;
       index += blockDim.x * gridDim.x) {
    const int o = index / inner, s = index % inner;
    const int l = static_cast<int>(label[index]);
    if (has_ignore && l == ignore_label) {
      loss[index] = 0;
      count[index] = 0;
      continue;
    }
    const T p = prob[(o * classes + l) * inner + s];
    const T w = has_weight ? weight[index] : T(1);
    loss[index] = -w * log(max(p, T(1.17549435e-38)));
    count[index] = 1;
  }
}

template <typename T>
__device__ void loss_backward(const T* prob, const T* label, const T* weight, int outer,
                              int classes, int inner, int has_ignore, int ignore_label,
                              int has_weight, T* dscore) {
  const int n = outer * inner;
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < n;
       index += blockDim.x * gridDim.x) {
    const int o = index / inner, s = index % inner;
    const int l = static_cast<int>(label[index]);
    const bool ignored = has_ignore && l == ignore_label;
    const T w = ignored ? T(0) : (has_weight ? weight[index] : T(1));
    for (int c = 0; c < classes; ++c) {
      const int at = (o * classes + c) * inner + s;
      dscore[at] = w * (prob[at] - (c == l ? T(1) : T(0)));
    }
  }
}

#define LOSS_ARGS int outer, int classes, int inner, int has_ignore, int ignore_label, \
    int has_weight
#define LOSS_PASS outer, classes, inner, has_ignore, ignore_label, has_weight

extern "C" __global__ void softmax_loss_forward_float(const float* prob, const float* label,
    const float* weight, LOSS_ARGS, float* loss, float* count) {
  loss_forward<float>(prob, label, weight, LOSS_PASS, loss, count);
}
extern "C" __global__ void softmax_loss_forward_double(const double* prob, const double* label,
    const double* weight, LOSS_ARGS, double* loss, double* count) {
  loss_forward<double>(prob, label, weight, LOSS_PASS, loss, count);
}
extern "C" __global__ void softmax_loss_backward_float(const float* prob, const float* label,
    const float* weight, LOSS_ARGS, float* dscore) {
  loss_backward<float>(prob, label, weight, LOSS_PASS, dscore);
}
extern "C" __global__ void softmax_loss_backward_double(const double* prob,
    const double* label, const double* weight, LOSS_ARGS, double* dscore) {
  loss_backward<double>(prob, label, weight, LOSS_PASS, dscore);
}
