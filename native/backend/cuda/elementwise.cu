// The CUDA backend's memory-bound kernels, each forward beside its backward:
// RMSNorm, rotary, SwiGLU, GELU, sums, row copies, the embedding gradient and
// AdamW. They follow the CPU backend's formulas (cpu_backend.cpp) so the two
// agree to rounding; where the CPU accumulates in double, so do these. Each
// is a template on the element type T of its storage-type arrays: fp32
// instantiations are the kernels as they were; bf16 ones load into fp32,
// compute the same lines and round once on the store.
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.cuh"
#include "train/adamw.h"

namespace st::cuda {
namespace {

constexpr int kThreads = 256;
// Block-per-row kernels loop when there are more rows than this.
constexpr int64_t kMaxRowBlocks = int64_t(1) << 20;

unsigned row_blocks(int64_t rows) { return unsigned(std::min(rows, kMaxRowBlocks)); }

// ------------------------------------------------------------ column sums
// out[c] += sum_r f(r, c) for a [rows, cols] array, in two deterministic
// passes: chunks of rows into double partials, then the chunks in order.
// Used for the bias gradient and RMSNorm's weight gradient.

template <class T>
struct PlainValue {
  const T* x;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const { return to_f32(x[r * cols + c]); }
};

// dw[c] of RMSNorm: dy * x * inv_rms of the row, as the CPU backend sums it.
template <class T>
struct NormWeightValue {
  const T* x;
  const T* dy;
  const double* inv;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const {
    return double(to_f32(dy[r * cols + c])) * double(to_f32(x[r * cols + c])) * inv[r];
  }
};

constexpr int kColumnTile = 32, kColumnLanes = 8;

template <class F>
__global__ void column_partials_kernel(F f, int64_t rows, int64_t cols, int64_t rows_per_chunk, double* partial) {
  __shared__ double acc[kColumnLanes][kColumnTile + 1];
  const int64_t c = int64_t(blockIdx.x) * kColumnTile + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
  double s = 0.0;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColumnLanes) s += f(r, c);
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double total = 0.0;
    for (int j = 0; j < kColumnLanes; ++j) total += acc[j][threadIdx.x];
    partial[int64_t(blockIdx.y) * cols + c] = total;
  }
}

__global__ void column_finish_kernel(const double* partial, int64_t chunks, int64_t cols, float* out) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += int64_t(gridDim.x) * blockDim.x) {
    double total = 0.0;
    for (int64_t k = 0; k < chunks; ++k) total += partial[k * cols + c];
    out[c] += float(total);
  }
}

template <class F>
void column_sums(F f, int64_t rows, int64_t cols, float* out, cudaStream_t s, const char* op) {
  if (rows <= 0 || cols <= 0) return;
  int64_t chunks = std::min<int64_t>(64, std::max<int64_t>(1, (rows + 63) / 64));
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  Temp<double> partial(chunks * cols, s, op);
  const dim3 grid(unsigned((cols + kColumnTile - 1) / kColumnTile), unsigned(chunks));
  ST_LAUNCH(column_partials_kernel<F>, grid, dim3(kColumnTile, kColumnLanes), 0, s)(f, rows, cols, rows_per_chunk,
                                                                                    partial.get());
  check_launch(op);
  ST_LAUNCH(column_finish_kernel, grid_for(cols, kThreads), kThreads, 0, s)(partial.get(), chunks, cols, out);
  check_launch(op);
}

// ---------------------------------------------------------------- RMSNorm

template <class T>
__global__ void rmsnorm_forward_kernel(const T* x, const T* w, T* y, int64_t rows, int64_t dim, float eps) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum += to_f32(xr[i]) * to_f32(xr[i]);
    sum = block_sum(sum, scratch);
    const float inv = float(1.0 / sqrt(double(sum) / double(dim) + double(eps)));
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = from_f32<T>(to_f32(w[i]) * (to_f32(xr[i]) * inv));
  }
}

// dx = inv w dy - inv^3 / dim x (w dy . x) per row, in double as on the CPU;
// each row's inv is kept for the weight gradient.
template <class T>
__global__ void rmsnorm_backward_kernel(const T* x, const T* w, const T* dy, T* dx, double* inv_rows, int64_t rows,
                                        int64_t dim, float eps) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    double sum = 0.0, dot = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const float xi = to_f32(xr[i]);
      sum += double(xi) * xi;
      dot += double(to_f32(w[i])) * to_f32(dyr[i]) * xi;
    }
    sum = block_sum(sum, scratch);
    dot = block_sum(dot, scratch);
    const double inv = 1.0 / sqrt(sum / double(dim) + double(eps));
    if (threadIdx.x == 0) inv_rows[r] = inv;
    if (dx != nullptr) {
      const double k = inv * inv * inv / double(dim) * dot;
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        dx[r * dim + i] = from_f32<T>(float(inv * to_f32(w[i]) * to_f32(dyr[i]) - k * to_f32(xr[i])));
    }
  }
}

// ----------------------------------------------------------------- rotary
// x * cos + rotate_half(x) * sin per (row, head, i < half); the backward is
// the transposed rotation.

template <class T>
__global__ void rotary_forward_kernel(T* x, const float* cos, const float* sin, int64_t rows, int64_t heads,
                                      int64_t hd) {
  const int64_t half = hd / 2, total = rows * heads * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, rh = idx / half, r = rh / heads;
    const float* c = cos + r * hd;
    const float* s = sin + r * hd;
    T* v = x + rh * hd;
    const float a = to_f32(v[i]), b = to_f32(v[i + half]);
    v[i] = from_f32<T>(a * c[i] - b * s[i]);
    v[i + half] = from_f32<T>(b * c[i + half] + a * s[i + half]);
  }
}

template <class T>
__global__ void rotary_backward_kernel(T* dx, const float* cos, const float* sin, int64_t rows, int64_t heads,
                                       int64_t hd) {
  const int64_t half = hd / 2, total = rows * heads * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, rh = idx / half, r = rh / heads;
    const float* c = cos + r * hd;
    const float* s = sin + r * hd;
    T* v = dx + rh * hd;
    const float da = to_f32(v[i]), db = to_f32(v[i + half]);
    v[i] = from_f32<T>(c[i] * da + s[i + half] * db);
    v[i + half] = from_f32<T>(-s[i] * da + c[i + half] * db);
  }
}

// ------------------------------------------------------- SwiGLU and GELU
// out may alias gate (the model computes silu(gate) * up in place).

template <class T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = to_f32(gate[i]);
    out[i] = from_f32<T>(g / (1.0f + expf(-g)) * to_f32(up[i]));
  }
}

template <class T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dout[i]);
    const float sig = 1.0f / (1.0f + expf(-g));
    dgate[i] = from_f32<T>(d * u * (sig + g * sig * (1.0f - sig)));
    dup[i] = from_f32<T>(d * g * sig);
  }
}

template <class T>
__global__ void gelu_forward_kernel(T* x, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = to_f32(x[i]);
    x[i] = from_f32<T>(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
  }
}

template <class T>
__global__ void gelu_backward_kernel(const T* x_in, T* dout, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = to_f32(x_in[i]);
    const double cdf = 0.5 * (1.0 + erf(v * 0.70710678118654752));
    const double pdf = exp(-0.5 * v * v) * 0.39894228040143268;
    dout[i] = from_f32<T>(float(to_f32(dout[i]) * (cdf + v * pdf)));
  }
}

// ------------------------------------------------------ sums and fills

template <class T>
__global__ void add_kernel(T* x, const T* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = from_f32<T>(to_f32(x[i]) + to_f32(y[i]));
}

template <class T>
__global__ void fill_kernel(T* x, T value, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

template <class To, class From>
__global__ void convert_kernel(To* dst, const From* src, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<To>(to_f32(src[i]));
}

template <class T>
__global__ void add_bias_kernel(T* y, const T* bias, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<T>(to_f32(y[i]) + to_f32(bias[i % cols]));
}

template <class T>
__global__ void broadcast_rows_kernel(T* y, const T* bias, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = bias[i % cols];
}

// ------------------------------------------------------------- row copies

template <class T>
__global__ void gather_rows_kernel(const T* src, const int32_t* rows, int64_t n, T* out, int64_t dim) {
  const int64_t total = n * dim;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / dim, d = idx % dim;
    out[idx] = src[int64_t(rows[i]) * dim + d];
  }
}

template <class T>
__global__ void scatter_rows_kernel(const T* src, const int32_t* rows, int64_t n, T* dst, int64_t dim) {
  const int64_t total = n * dim;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / dim, d = idx % dim;
    dst[int64_t(rows[i]) * dim + d] = src[idx];
  }
}

// One block per distinct id: its rows of dout are added in increasing i, the
// order of the CPU loop, so the sums are bit-identical to it and no two
// blocks touch the same table row (no atomics).
template <class T>
__global__ void embedding_backward_kernel(const int32_t* order, const int32_t* group_ids, const int32_t* group_starts,
                                          int64_t groups, const T* dout, float* dtable, int64_t dim) {
  for (int64_t g = blockIdx.x; g < groups; g += gridDim.x) {
    float* row = dtable + int64_t(group_ids[g]) * dim;
    const int32_t begin = group_starts[g], end = group_starts[g + 1];
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      float acc = row[d];
      for (int32_t j = begin; j < end; ++j) acc += to_f32(dout[int64_t(order[j]) * dim + d]);
      row[d] = acc;
    }
  }
}

// ------------------------------------------------------------------ AdamW
// train::adamw_step's arithmetic, operation for operation in double with
// explicit round-to-nearest intrinsics: nvcc would otherwise contract the
// products and sums into fused multiply-adds, which the CPU build does not.

struct AdamWConstants {
  double beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, decay, bias2_sqrt, grad_scale;
};

// param is fp32 or bf16: the update is computed from its value in double and
// rounded once into its type.
template <class P>
__global__ void adamw_kernel(P* param, const float* grad, float* m, float* v, int64_t n, AdamWConstants k) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double g = __dmul_rn(double(grad[i]), k.grad_scale);
    const double mi = __dadd_rn(__dmul_rn(k.beta1, double(m[i])), __dmul_rn(k.one_minus_beta1, g));
    const double vi = __dadd_rn(__dmul_rn(k.beta2, double(v[i])), __dmul_rn(__dmul_rn(k.one_minus_beta2, g), g));
    m[i] = __double2float_rn(mi);
    v[i] = __double2float_rn(vi);
    const double p = __dmul_rn(double(to_f32(param[i])), k.decay);
    const double denominator = __dadd_rn(__ddiv_rn(__dsqrt_rn(vi), k.bias2_sqrt), k.eps);
    param[i] = from_f32<P>(__double2float_rn(__dsub_rn(p, __ddiv_rn(__dmul_rn(k.step_size, mi), denominator))));
  }
}

// ------------------------------------------------------------ sum of squares

constexpr int kSumBlocks = 1024;

template <class T>
__global__ void sum_squares_kernel(const T* x, int64_t n, double* partial) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += double(to_f32(x[i])) * double(to_f32(x[i]));
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(const double* partial, int64_t count, double* out) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

void rmsnorm_forward(ConstDevicePtr x, ConstDevicePtr w, DevicePtr y, int64_t rows, int64_t dim, float eps,
                     cudaStream_t s) {
  if (rows <= 0 || dim <= 0) return;
  const char* op = "rmsnorm";
  with_storage(x.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(rmsnorm_forward_kernel<T>, row_blocks(rows), kThreads, 0, s)(
        typed<T>(x, op, "x"), typed<T>(w, op, "w"), typed<T>(y, op, "y"), rows, dim, eps);
  });
  check_launch(op);
}

void rmsnorm_backward(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr dy, DevicePtr dx, DevicePtr dw, int64_t rows,
                      int64_t dim, float eps, cudaStream_t s) {
  if (rows <= 0 || dim <= 0) return;
  const char* op = "rmsnorm_backward";
  Temp<double> inv(rows, s, op);
  with_storage(x.type(), [&](auto t) {
    using T = decltype(t);
    const T* xt = typed<T>(x, op, "x");
    const T* dyt = typed<T>(dy, op, "dy");
    ST_LAUNCH(rmsnorm_backward_kernel<T>, row_blocks(rows), kThreads, 0, s)(
        xt, typed<T>(w, op, "w"), dyt, typed<T>(dx, op, "dx"), inv.get(), rows, dim, eps);
    check_launch(op);
    if (dw != nullptr)
      column_sums(NormWeightValue<T>{xt, dyt, inv.get(), dim}, rows, dim, typed<float>(dw, op, "dw"), s,
                  "rmsnorm_backward (dw)");
  });
}

void rotary_forward(DevicePtr x, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
                    int64_t head_dim, cudaStream_t s) {
  const int64_t total = rows * heads * (head_dim / 2);
  if (total <= 0) return;
  const char* op = "rotary";
  with_storage(x.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(rotary_forward_kernel<T>, grid_for(total, kThreads), kThreads, 0, s)(
        typed<T>(x, op, "x"), typed<float>(cos, op, "cos"), typed<float>(sin, op, "sin"), rows, heads, head_dim);
  });
  check_launch(op);
}

void rotary_backward(DevicePtr dx, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
                     int64_t head_dim, cudaStream_t s) {
  const int64_t total = rows * heads * (head_dim / 2);
  if (total <= 0) return;
  const char* op = "rotary_backward";
  with_storage(dx.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(rotary_backward_kernel<T>, grid_for(total, kThreads), kThreads, 0, s)(
        typed<T>(dx, op, "dx"), typed<float>(cos, op, "cos"), typed<float>(sin, op, "sin"), rows, heads, head_dim);
  });
  check_launch(op);
}

void swiglu_forward(ConstDevicePtr gate, ConstDevicePtr up, DevicePtr out, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const char* op = "swiglu";
  with_storage(gate.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(swiglu_forward_kernel<T>, grid_for(n, kThreads), kThreads, 0, s)(
        typed<T>(gate, op, "gate"), typed<T>(up, op, "up"), typed<T>(out, op, "out"), n);
  });
  check_launch(op);
}

void swiglu_backward(ConstDevicePtr gate, ConstDevicePtr up, ConstDevicePtr dout, DevicePtr dgate, DevicePtr dup,
                     int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const char* op = "swiglu_backward";
  with_storage(gate.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(swiglu_backward_kernel<T>, grid_for(n, kThreads), kThreads, 0, s)(
        typed<T>(gate, op, "gate"), typed<T>(up, op, "up"), typed<T>(dout, op, "dout"), typed<T>(dgate, op, "dgate"),
        typed<T>(dup, op, "dup"), n);
  });
  check_launch(op);
}

void gelu_forward(DevicePtr x, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  with_storage(x.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(gelu_forward_kernel<T>, grid_for(n, kThreads), kThreads, 0, s)(typed<T>(x, "gelu", "x"), n);
  });
  check_launch("gelu");
}

void gelu_backward(ConstDevicePtr x_in, DevicePtr dout, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const char* op = "gelu_backward";
  with_storage(x_in.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(gelu_backward_kernel<T>, grid_for(n, kThreads), kThreads, 0, s)(typed<T>(x_in, op, "x_in"),
                                                                              typed<T>(dout, op, "dout"), n);
  });
  check_launch(op);
}

void add(DevicePtr x, ConstDevicePtr y, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  with_storage(x.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(add_kernel<T>, grid_for(n, kThreads), kThreads, 0, s)(typed<T>(x, "add", "x"), typed<T>(y, "add", "y"),
                                                                    n);
  });
  check_launch("add");
}

void fill(DevicePtr x, float value, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if (bits == 0) {  // +0.0 is all zero bytes in fp32 and bf16 alike
    check(cudaMemsetAsync(x.data(), 0, size_t(n * storage_bytes(x.type())), s), "fill");
    return;
  }
  with_storage(x.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(fill_kernel<T>, grid_for(n, kThreads), kThreads, 0, s)(typed<T>(x, "fill", "x"), from_f32<T>(value), n);
  });
  check_launch("fill");
}

void convert(DevicePtr dst, ConstDevicePtr src, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  with_storage(dst.type(), [&](auto to) {
    with_storage(src.type(), [&](auto from) {
      using To = decltype(to);
      using From = decltype(from);
      auto* const convert_kernel_t = &convert_kernel<To, From>;  // one macro argument, no comma
      ST_LAUNCH(convert_kernel_t, grid_for(n, kThreads), kThreads, 0, s)(
          typed<To>(dst, "copy", "dst"), typed<From>(src, "copy", "src"), n);
    });
  });
  check_launch("copy");
}

void add_bias(DevicePtr y, ConstDevicePtr bias, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return;
  const char* op = "linear (bias)";
  with_storage(y.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(add_bias_kernel<T>, grid_for(rows * cols, kThreads), kThreads, 0, s)(
        typed<T>(y, op, "y"), typed<T>(bias, op, "bias"), rows, cols);
  });
  check_launch(op);
}

void broadcast_rows(DevicePtr y, ConstDevicePtr bias, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return;
  const char* op = "linear (bias)";
  with_storage(y.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(broadcast_rows_kernel<T>, grid_for(rows * cols, kThreads), kThreads, 0, s)(
        typed<T>(y, op, "y"), typed<T>(bias, op, "bias"), rows, cols);
  });
  check_launch(op);
}

void add_column_sums(ConstDevicePtr x, int64_t rows, int64_t cols, DevicePtr out, cudaStream_t s) {
  const char* op = "linear_backward (db)";
  with_storage(x.type(), [&](auto t) {
    using T = decltype(t);
    column_sums(PlainValue<T>{typed<T>(x, op, "dy"), cols}, rows, cols, typed<float>(out, op, "db"), s, op);
  });
}

void gather_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr out, int64_t dim, cudaStream_t s) {
  if (n <= 0 || dim <= 0) return;
  const char* op = "gather_rows";
  with_storage(src.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(gather_rows_kernel<T>, grid_for(n * dim, kThreads), kThreads, 0, s)(typed<T>(src, op, "src"), rows, n,
                                                                                  typed<T>(out, op, "out"), dim);
  });
  check_launch(op);
}

void scatter_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr dst, int64_t dim, cudaStream_t s) {
  if (n <= 0 || dim <= 0) return;
  const char* op = "scatter_rows";
  with_storage(src.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(scatter_rows_kernel<T>, grid_for(n * dim, kThreads), kThreads, 0, s)(typed<T>(src, op, "src"), rows, n,
                                                                                   typed<T>(dst, op, "dst"), dim);
  });
  check_launch(op);
}

void embedding_backward(const int32_t* host_ids, int64_t n, ConstDevicePtr dout, DevicePtr dtable, int64_t dim,
                        cudaStream_t s) {
  if (n <= 0 || dim <= 0) return;
  const char* op = "embedding_backward";
  float* table = typed<float>(dtable, op, "dtable");
  // Group the rows by id on the host (the ids are host memory anyway).
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return host_ids[a] < host_ids[b]; });
  std::vector<int32_t> packed(order);  // order, then group ids, then group starts
  std::vector<int32_t> ids, starts;
  for (int64_t j = 0; j < n; ++j)
    if (j == 0 || host_ids[order[size_t(j)]] != host_ids[order[size_t(j - 1)]]) {
      ids.push_back(host_ids[order[size_t(j)]]);
      starts.push_back(int32_t(j));
    }
  starts.push_back(int32_t(n));
  const int64_t groups = int64_t(ids.size());
  packed.insert(packed.end(), ids.begin(), ids.end());
  packed.insert(packed.end(), starts.begin(), starts.end());
  Temp<int32_t> device(int64_t(packed.size()), s, op);
  copy_to_device(device.get(), packed.data(), int64_t(packed.size()), s, "embedding_backward (ids)");
  with_storage(dout.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(embedding_backward_kernel<T>, row_blocks(groups), kThreads, 0, s)(
        device.get(), device.get() + n, device.get() + n + groups, groups, typed<T>(dout, op, "dout"), table, dim);
  });
  check_launch(op);
}

void adamw(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, int64_t n, int64_t step, float grad_scale,
           const train::AdamWOptions& o, cudaStream_t s) {
  if (n <= 0) return;
  const char* op = "adamw";
  // The per-step constants exactly as train::adamw_step computes them.
  AdamWConstants k;
  k.beta1 = o.beta1;
  k.one_minus_beta1 = 1.0 - o.beta1;
  k.beta2 = o.beta2;
  k.one_minus_beta2 = 1.0 - o.beta2;
  k.eps = o.eps;
  k.step_size = o.lr / (1.0 - std::pow(o.beta1, double(step)));
  k.decay = 1.0 - o.lr * o.weight_decay;
  k.bias2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, double(step)));
  k.grad_scale = double(grad_scale);
  with_storage(param.type(), [&](auto t) {
    using P = decltype(t);
    ST_LAUNCH(adamw_kernel<P>, grid_for(n, kThreads), kThreads, 0, s)(
        typed<P>(param, op, "param"), typed<float>(grad, op, "grad"), typed<float>(m, op, "m"),
        typed<float>(v, op, "v"), n, k);
  });
  check_launch(op);
}

double sum_squares(ConstDevicePtr x, int64_t n, cudaStream_t s) {
  if (n <= 0) return 0.0;
  const unsigned blocks = std::min<unsigned>(kSumBlocks, grid_for(n, kThreads));
  Temp<double> partial(int64_t(blocks) + 1, s, "sum_squares");
  with_storage(x.type(), [&](auto t) {
    using T = decltype(t);
    ST_LAUNCH(sum_squares_kernel<T>, blocks, kThreads, 0, s)(typed<T>(x, "sum_squares", "x"), n, partial.get());
  });
  check_launch("sum_squares");
  ST_LAUNCH(sum_partials_kernel, 1, kThreads, 0, s)(partial.get(), blocks, partial.get() + blocks);
  check_launch("sum_squares");
  double total = 0.0;
  check(cudaMemcpyAsync(&total, partial.get() + blocks, sizeof(double), cudaMemcpyDeviceToHost, s), "sum_squares");
  check(cudaStreamSynchronize(s), "sum_squares");
  return total;
}

}  // namespace st::cuda
