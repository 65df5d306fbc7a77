// The CUDA backend's memory-bound kernels, each forward beside its backward:
// RMSNorm, rotary, SwiGLU, GELU, sums, row copies, the embedding gradient and
// AdamW. They follow the CPU backend's formulas (cpu_backend.cpp) so the two
// agree to rounding; where the CPU accumulates in double, so do these.
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

struct PlainValue {
  const float* x;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const { return x[r * cols + c]; }
};

// dw[c] of RMSNorm: dy * x * inv_rms of the row, as the CPU backend sums it.
struct NormWeightValue {
  const float* x;
  const float* dy;
  const double* inv;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const {
    return double(dy[r * cols + c]) * double(x[r * cols + c]) * inv[r];
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

__global__ void rmsnorm_forward_kernel(const float* x, const float* w, float* y, int64_t rows, int64_t dim,
                                       float eps) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum += xr[i] * xr[i];
    sum = block_sum(sum, scratch);
    const float inv = float(1.0 / sqrt(double(sum) / double(dim) + double(eps)));
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w[i] * (xr[i] * inv);
  }
}

// dx = inv w dy - inv^3 / dim x (w dy . x) per row, in double as on the CPU;
// each row's inv is kept for the weight gradient.
__global__ void rmsnorm_backward_kernel(const float* x, const float* w, const float* dy, float* dx, double* inv_rows,
                                        int64_t rows, int64_t dim, float eps) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    double sum = 0.0, dot = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      sum += double(xr[i]) * xr[i];
      dot += double(w[i]) * dyr[i] * xr[i];
    }
    sum = block_sum(sum, scratch);
    dot = block_sum(dot, scratch);
    const double inv = 1.0 / sqrt(sum / double(dim) + double(eps));
    if (threadIdx.x == 0) inv_rows[r] = inv;
    if (dx != nullptr) {
      const double k = inv * inv * inv / double(dim) * dot;
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        dx[r * dim + i] = float(inv * w[i] * dyr[i] - k * xr[i]);
    }
  }
}

// ----------------------------------------------------------------- rotary
// x * cos + rotate_half(x) * sin per (row, head, i < half); the backward is
// the transposed rotation.

__global__ void rotary_forward_kernel(float* x, const float* cos, const float* sin, int64_t rows, int64_t heads,
                                      int64_t hd) {
  const int64_t half = hd / 2, total = rows * heads * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, rh = idx / half, r = rh / heads;
    const float* c = cos + r * hd;
    const float* s = sin + r * hd;
    float* v = x + rh * hd;
    const float a = v[i], b = v[i + half];
    v[i] = a * c[i] - b * s[i];
    v[i + half] = b * c[i + half] + a * s[i + half];
  }
}

__global__ void rotary_backward_kernel(float* dx, const float* cos, const float* sin, int64_t rows, int64_t heads,
                                       int64_t hd) {
  const int64_t half = hd / 2, total = rows * heads * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, rh = idx / half, r = rh / heads;
    const float* c = cos + r * hd;
    const float* s = sin + r * hd;
    float* v = dx + rh * hd;
    const float da = v[i], db = v[i + half];
    v[i] = c[i] * da + s[i + half] * db;
    v[i + half] = -s[i] * da + c[i + half] * db;
  }
}

// ------------------------------------------------------- SwiGLU and GELU
// out may alias gate (the model computes silu(gate) * up in place).

__global__ void swiglu_forward_kernel(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void swiglu_backward_kernel(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                                       int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i], u = up[i], d = dout[i];
    const float sig = 1.0f / (1.0f + expf(-g));
    dgate[i] = d * u * (sig + g * sig * (1.0f - sig));
    dup[i] = d * g * sig;
  }
}

__global__ void gelu_forward_kernel(float* x, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  }
}

__global__ void gelu_backward_kernel(const float* x_in, float* dout, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = x_in[i];
    const double cdf = 0.5 * (1.0 + erf(v * 0.70710678118654752));
    const double pdf = exp(-0.5 * v * v) * 0.39894228040143268;
    dout[i] = float(dout[i] * (cdf + v * pdf));
  }
}

// ------------------------------------------------------ sums and fills

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void fill_kernel(float* x, float value, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % cols];
}

// ------------------------------------------------------------- row copies

__global__ void gather_rows_kernel(const float* src, const int32_t* rows, int64_t n, float* out, int64_t dim) {
  const int64_t total = n * dim;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / dim, d = idx % dim;
    out[idx] = src[int64_t(rows[i]) * dim + d];
  }
}

__global__ void scatter_rows_kernel(const float* src, const int32_t* rows, int64_t n, float* dst, int64_t dim) {
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
__global__ void embedding_backward_kernel(const int32_t* order, const int32_t* group_ids, const int32_t* group_starts,
                                          int64_t groups, const float* dout, float* dtable, int64_t dim) {
  for (int64_t g = blockIdx.x; g < groups; g += gridDim.x) {
    float* row = dtable + int64_t(group_ids[g]) * dim;
    const int32_t begin = group_starts[g], end = group_starts[g + 1];
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      float acc = row[d];
      for (int32_t j = begin; j < end; ++j) acc += dout[int64_t(order[j]) * dim + d];
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

__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n, AdamWConstants k) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double g = __dmul_rn(double(grad[i]), k.grad_scale);
    const double mi = __dadd_rn(__dmul_rn(k.beta1, double(m[i])), __dmul_rn(k.one_minus_beta1, g));
    const double vi = __dadd_rn(__dmul_rn(k.beta2, double(v[i])), __dmul_rn(__dmul_rn(k.one_minus_beta2, g), g));
    m[i] = __double2float_rn(mi);
    v[i] = __double2float_rn(vi);
    const double p = __dmul_rn(double(param[i]), k.decay);
    const double denominator = __dadd_rn(__ddiv_rn(__dsqrt_rn(vi), k.bias2_sqrt), k.eps);
    param[i] = __double2float_rn(__dsub_rn(p, __ddiv_rn(__dmul_rn(k.step_size, mi), denominator)));
  }
}

// ------------------------------------------------------------ sum of squares

constexpr int kSumBlocks = 1024;

__global__ void sum_squares_kernel(const float* x, int64_t n, double* partial) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += double(x[i]) * double(x[i]);
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

void rmsnorm_forward(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps, cudaStream_t s) {
  if (rows <= 0 || dim <= 0) return;
  ST_LAUNCH(rmsnorm_forward_kernel, row_blocks(rows), kThreads, 0, s)(x, w, y, rows, dim, eps);
  check_launch("rmsnorm");
}

void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows, int64_t dim,
                      float eps, cudaStream_t s) {
  if (rows <= 0 || dim <= 0) return;
  Temp<double> inv(rows, s, "rmsnorm_backward");
  ST_LAUNCH(rmsnorm_backward_kernel, row_blocks(rows), kThreads, 0, s)(x, w, dy, dx, inv.get(), rows, dim, eps);
  check_launch("rmsnorm_backward");
  if (dw != nullptr) column_sums(NormWeightValue{x, dy, inv.get(), dim}, rows, dim, dw, s, "rmsnorm_backward (dw)");
}

void rotary_forward(float* x, const float* cos, const float* sin, int64_t rows, int64_t heads, int64_t head_dim,
                    cudaStream_t s) {
  const int64_t total = rows * heads * (head_dim / 2);
  if (total <= 0) return;
  ST_LAUNCH(rotary_forward_kernel, grid_for(total, kThreads), kThreads, 0, s)(x, cos, sin, rows, heads, head_dim);
  check_launch("rotary");
}

void rotary_backward(float* dx, const float* cos, const float* sin, int64_t rows, int64_t heads, int64_t head_dim,
                     cudaStream_t s) {
  const int64_t total = rows * heads * (head_dim / 2);
  if (total <= 0) return;
  ST_LAUNCH(rotary_backward_kernel, grid_for(total, kThreads), kThreads, 0, s)(dx, cos, sin, rows, heads, head_dim);
  check_launch("rotary_backward");
}

void swiglu_forward(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  ST_LAUNCH(swiglu_forward_kernel, grid_for(n, kThreads), kThreads, 0, s)(gate, up, out, n);
  check_launch("swiglu");
}

void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n,
                     cudaStream_t s) {
  if (n <= 0) return;
  ST_LAUNCH(swiglu_backward_kernel, grid_for(n, kThreads), kThreads, 0, s)(gate, up, dout, dgate, dup, n);
  check_launch("swiglu_backward");
}

void gelu_forward(float* x, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  ST_LAUNCH(gelu_forward_kernel, grid_for(n, kThreads), kThreads, 0, s)(x, n);
  check_launch("gelu");
}

void gelu_backward(const float* x_in, float* dout, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  ST_LAUNCH(gelu_backward_kernel, grid_for(n, kThreads), kThreads, 0, s)(x_in, dout, n);
  check_launch("gelu_backward");
}

void add(float* x, const float* y, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  ST_LAUNCH(add_kernel, grid_for(n, kThreads), kThreads, 0, s)(x, y, n);
  check_launch("add");
}

void fill(float* x, float value, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if (bits == 0) {  // +0.0f is all zero bytes
    check(cudaMemsetAsync(x, 0, size_t(n) * sizeof(float), s), "fill");
    return;
  }
  ST_LAUNCH(fill_kernel, grid_for(n, kThreads), kThreads, 0, s)(x, value, n);
  check_launch("fill");
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return;
  ST_LAUNCH(add_bias_kernel, grid_for(rows * cols, kThreads), kThreads, 0, s)(y, bias, rows, cols);
  check_launch("linear (bias)");
}

void add_column_sums(const float* x, int64_t rows, int64_t cols, float* out, cudaStream_t s) {
  column_sums(PlainValue{x, cols}, rows, cols, out, s, "linear_backward (db)");
}

void gather_rows(const float* src, const int32_t* rows, int64_t n, float* out, int64_t dim, cudaStream_t s) {
  if (n <= 0 || dim <= 0) return;
  ST_LAUNCH(gather_rows_kernel, grid_for(n * dim, kThreads), kThreads, 0, s)(src, rows, n, out, dim);
  check_launch("gather_rows");
}

void scatter_rows(const float* src, const int32_t* rows, int64_t n, float* dst, int64_t dim, cudaStream_t s) {
  if (n <= 0 || dim <= 0) return;
  ST_LAUNCH(scatter_rows_kernel, grid_for(n * dim, kThreads), kThreads, 0, s)(src, rows, n, dst, dim);
  check_launch("scatter_rows");
}

void embedding_backward(const int32_t* host_ids, int64_t n, const float* dout, float* dtable, int64_t dim,
                        cudaStream_t s) {
  if (n <= 0 || dim <= 0) return;
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
  Temp<int32_t> device(int64_t(packed.size()), s, "embedding_backward");
  copy_to_device(device.get(), packed.data(), int64_t(packed.size()), s, "embedding_backward (ids)");
  ST_LAUNCH(embedding_backward_kernel, row_blocks(groups), kThreads, 0, s)(
      device.get(), device.get() + n, device.get() + n + groups, groups, dout, dtable, dim);
  check_launch("embedding_backward");
}

void adamw(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float grad_scale,
           const train::AdamWOptions& o, cudaStream_t s) {
  if (n <= 0) return;
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
  ST_LAUNCH(adamw_kernel, grid_for(n, kThreads), kThreads, 0, s)(param, grad, m, v, n, k);
  check_launch("adamw");
}

double sum_squares(const float* x, int64_t n, cudaStream_t s) {
  if (n <= 0) return 0.0;
  const unsigned blocks = std::min<unsigned>(kSumBlocks, grid_for(n, kThreads));
  Temp<double> partial(int64_t(blocks) + 1, s, "sum_squares");
  ST_LAUNCH(sum_squares_kernel, blocks, kThreads, 0, s)(x, n, partial.get());
  check_launch("sum_squares");
  ST_LAUNCH(sum_partials_kernel, 1, kThreads, 0, s)(partial.get(), blocks, partial.get() + blocks);
  check_launch("sum_squares");
  double total = 0.0;
  check(cudaMemcpyAsync(&total, partial.get() + blocks, sizeof(double), cudaMemcpyDeviceToHost, s), "sum_squares");
  check(cudaStreamSynchronize(s), "sum_squares");
  return total;
}

}  // namespace st::cuda
