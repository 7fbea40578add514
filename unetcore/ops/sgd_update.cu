// One SGD step with momentum for one parameter blob, in one pass (Caffe's sgd_update_gpu,
// with the L2 weight decay of SGDSolver::Regularize and the W -= V of Net::Update folded in):
//
//   g <- g + decay * w        V <- momentum * V + rate * g        g <- V        w <- w - V
//
// solvers/solver.py and solvers/sgd.py take the same steps one array operation at a time.

template <typename T>
__device__ void sgd_update(int n, T* weight, T* grad, T* history, T momentum, T rate,
                           T decay) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    const T g = grad[i] + decay * weight[i];
    const T v = momentum * history[i] + rate * g;
    history[i] = v;
    grad[i] = v;
    weight[i] -= v;
  }
}

extern "C" __global__ void sgd_update_float(int n, float* weight, float* grad, float* history,
                                            float momentum, float rate, float decay) {
  sgd_update<float>(n, weight, grad, history, momentum, rate, decay);
}
extern "C" __global__ void sgd_update_double(int n, double* weight, double* grad,
                                             double* history, double momentum, double rate,
                                             double decay) {
  sgd_update<double>(n, weight, grad, history, momentum, rate, decay);
}
