// Max pooling with argmax (Caffe's MaxPoolForward / MaxPoolBackward).
//
// Forward: each output pixel scans its window (clipped to the image, Caffe's rule) and
// keeps the first maximum in scan order and its index y * width + x in the input plane.
// Backward gathers: each input pixel sums dy over the windows that cover it and chose it.

template <typename T>
__device__ void max_forward(const T* x, int planes, int height, int width, int out_h,
                           int out_w, int kh, int kw, int sh, int sw, int ph, int pw,
                           T* y, int* argmax) {
  const int n = planes * out_h * out_w;
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < n;
       index += blockDim.x * gridDim.x) {
    const int j = index % out_w;
    const int i = (index / out_w) % out_h;
    const int plane = index / (out_w * out_h);
    const int y0 = max(i * sh - ph, 0), x0 = max(j * sw - pw, 0);
    const int y1 = min(i * sh - ph + kh, height), x1 = min(j * sw - pw + kw, width);
    const T* in = x + plane * height * width;
    int best = y0 * width + x0;
    T value = in[best];
    for (int yy = y0; yy < y1; ++yy) {
      for (int xx = x0; xx < x1; ++xx) {
        if (in[yy * width + xx] > value) {
          best = yy * width + xx;
          value = in[best];
        }
      }
    }
    y[index] = value;
    argmax[index] = best;
  }
}

template <typename T>
__device__ void max_backward(const T* dy, const int* argmax, int planes, int height,
                            int width, int out_h, int out_w, int kh, int kw, int sh, int sw,
                            int ph, int pw, T* dx) {
  const int n = planes * height * width;
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < n;
       index += blockDim.x * gridDim.x) {
    const int xx = index % width, yy = (index / width) % height;
    const int plane = index / (width * height);
    // the output windows that contain (yy, xx)
    const int i0 = (yy + ph < kh) ? 0 : (yy + ph - kh) / sh + 1;
    const int i1 = min((yy + ph) / sh + 1, out_h);
    const int j0 = (xx + pw < kw) ? 0 : (xx + pw - kw) / sw + 1;
    const int j1 = min((xx + pw) / sw + 1, out_w);
    const int offset = plane * out_h * out_w;
    T sum = 0;
    for (int i = i0; i < i1; ++i) {
      for (int j = j0; j < j1; ++j) {
        if (argmax[offset + i * out_w + j] == yy * width + xx) {
          sum += dy[offset + i * out_w + j];
        }
      }
    }
    dx[index] = sum;
  }
}

#define POOL_ARGS int planes, int height, int width, int out_h, int out_w, int kh, int kw, \
    int sh, int sw, int ph, int pw
#define POOL_PASS planes, height, width, out_h, out_w, kh, kw, sh, sw, ph, pw

extern "C" __global__ void max_pool_forward_float(const float* x, POOL_ARGS, float* y,
                                                  int* argmax) {
  max_forward<float>(x, POOL_PASS, y, argmax);
}
extern "C" __global__ void max_pool_forward_double(const double* x, POOL_ARGS, double* y,
                                                   int* argmax) {
  max_forward<double>(x, POOL_PASS, y, argmax);
}
extern "C" __global__ void max_pool_backward_float(const float* dy, const int* argmax,
                                                   POOL_ARGS, float* dx) {
  max_backward<float>(dy, argmax, POOL_PASS, dx);
}
extern "C" __global__ void max_pool_backward_double(const double* dy, const int* argmax,
                                                    POOL_ARGS, double* dx) {
  max_backward<double>(dy, argmax, POOL_PASS, dx);
}
