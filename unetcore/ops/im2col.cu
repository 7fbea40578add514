// im2col and col2im on the GPU (Caffe's im2col_gpu / col2im_gpu), for one image.
//
// col has shape (channels * kh * kw, out_h * out_w):
//   col[(c, p, q), (i, j)] = x[c, i*sh - ph + p*dh, j*sw - pw + q*dw]   (0 outside the image)
// col2im is its adjoint: every x pixel gathers the col entries that read it, so no two
// threads write the same address and no atomics are needed.
// x may be a band of rows of a larger image: plane_stride is the distance between channels.

template <typename T>
__device__ void im2col_kernel(const T* x, int plane_stride, int channels, int height, int width,
                              int kh, int kw, int ph, int pw, int sh, int sw, int dh, int dw,
                              int out_h, int out_w, T* col) {
  const int n = channels * out_h * out_w;
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < n;
       index += blockDim.x * gridDim.x) {
    const int j = index % out_w;
    const int i = (index / out_w) % out_h;
    const int c = index / (out_w * out_h);
    const int y0 = i * sh - ph, x0 = j * sw - pw;
    T* out = col + (c * kh * kw) * (out_h * out_w) + i * out_w + j;
    const T* plane = x + c * plane_stride;
    for (int p = 0; p < kh; ++p) {
      for (int q = 0; q < kw; ++q) {
        const int y = y0 + p * dh, xx = x0 + q * dw;
        *out = (y >= 0 && y < height && xx >= 0 && xx < width) ? plane[y * width + xx] : T(0);
        out += out_h * out_w;
      }
    }
  }
}

template <typename T>
__device__ void col2im_kernel(const T* col, int plane_stride, int channels, int height, int width,
                              int kh, int kw, int ph, int pw, int sh, int sw, int dh, int dw,
                              int out_h, int out_w, T* x) {
  const int n = channels * height * width;
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < n;
       index += blockDim.x * gridDim.x) {
    const int xx = index % width + pw;
    const int y = (index / width) % height + ph;
    const int c = index / (width * height);
    T sum = 0;
    for (int p = 0; p < kh; ++p) {
      for (int q = 0; q < kw; ++q) {
        const int dy = y - p * dh, dx = xx - q * dw;   // the output pixel whose patch reads it
        if (dy % sh == 0 && dx % sw == 0) {
          const int i = dy / sh, j = dx / sw;
          if (dy >= 0 && dx >= 0 && i < out_h && j < out_w) {
            sum += col[((c * kh + p) * kw + q) * out_h * out_w + i * out_w + j];
          }
        }
      }
    }
    x[c * plane_stride + (y - ph) * width + (xx - pw)] += sum;
  }
}

#define IM2COL_ARGS int plane_stride, int channels, int height, int width, int kh, int kw, int ph, int pw, \
    int sh, int sw, int dh, int dw, int out_h, int out_w
#define IM2COL_PASS plane_stride, channels, height, width, kh, kw, ph, pw, sh, sw, dh, dw, out_h, out_w

extern "C" __global__ void im2col_float(const float* x, IM2COL_ARGS, float* col) {
  im2col_kernel<float>(x, IM2COL_PASS, col);
}
extern "C" __global__ void im2col_double(const double* x, IM2COL_ARGS, double* col) {
  im2col_kernel<double>(x, IM2COL_PASS, col);
}
extern "C" __global__ void col2im_float(const float* col, IM2COL_ARGS, float* x) {
  col2im_kernel<float>(col, IM2COL_PASS, x);
}
extern "C" __global__ void col2im_double(const double* col, IM2COL_ARGS, double* x) {
  col2im_kernel<double>(col, IM2COL_PASS, x);
}
