#pragma once
// The CUDA backend's kernels, as host functions that enqueue them on a
// stream. Pointers are device memory unless a comment says host. Every
// function returns at once on empty work (a zero-sized grid is an error).
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"

namespace st::cuda {

class Gemm;

// ---- elementwise.cu: norms, rotary, activations, copies, optimiser
void rmsnorm_forward(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps, cudaStream_t s);
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows, int64_t dim,
                      float eps, cudaStream_t s);
void rotary_forward(float* x, const float* cos, const float* sin, int64_t rows, int64_t heads, int64_t head_dim,
                    cudaStream_t s);
void rotary_backward(float* dx, const float* cos, const float* sin, int64_t rows, int64_t heads, int64_t head_dim,
                     cudaStream_t s);
void swiglu_forward(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s);
void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n,
                     cudaStream_t s);
void gelu_forward(float* x, int64_t n, cudaStream_t s);
void gelu_backward(const float* x_in, float* dout, int64_t n, cudaStream_t s);
void add(float* x, const float* y, int64_t n, cudaStream_t s);
void fill(float* x, float value, int64_t n, cudaStream_t s);
// y[r, c] += bias[c]
void add_bias(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t s);
// out[c] += sum_r x[r, c], summed in double in a fixed order (deterministic).
void add_column_sums(const float* x, int64_t rows, int64_t cols, float* out, cudaStream_t s);
// out[i] = src[rows[i]] and dst[rows[i]] = src[i]; rows are device memory.
void gather_rows(const float* src, const int32_t* rows, int64_t n, float* out, int64_t dim, cudaStream_t s);
void scatter_rows(const float* src, const int32_t* rows, int64_t n, float* dst, int64_t dim, cudaStream_t s);
// dtable[ids[i]] += dout[i]; ids are host memory.
void embedding_backward(const int32_t* host_ids, int64_t n, const float* dout, float* dtable, int64_t dim,
                        cudaStream_t s);
void adamw(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float grad_scale,
           const train::AdamWOptions& options, cudaStream_t s);
// Waits for the stream: the result comes back to the host.
double sum_squares(const float* x, int64_t n, cudaStream_t s);

// ---- optimizer.cu: the optimiser strategies (train/optimizer_strategy.h)
void adamw_bf16(float* param, const float* grad, float* m, float* v, float* compensation, int64_t n, int64_t step,
                float grad_scale, const train::AdamWOptions& options, cudaStream_t s);

// The offloaded optimiser step: state in page-locked host memory, param and
// grad on the device. Two slots, each a stream and device staging for a
// chunk of m, v and the compensation.
class HostStateStepper {
 public:
  explicit HostStateStepper(int64_t chunk);
  ~HostStateStepper();
  HostStateStepper(const HostStateStepper&) = delete;
  HostStateStepper& operator=(const HostStateStepper&) = delete;
  // Waits for `producer` (which wrote grad and param), then streams the step;
  // returns once the state is back on the host.
  void step(train::OptimizerStrategy strategy, float* param, const float* grad, float* m_host, float* v_host,
            float* compensation_host, int64_t n, int64_t step, float grad_scale, const train::AdamWOptions& options,
            cudaStream_t producer);

 private:
  struct Slot {
    cudaStream_t stream = nullptr;
    float* staging = nullptr;
  };
  void release();
  int64_t chunk_;
  Slot slots_[2];
};

// ---- attention.cu: packed variable-length attention over slot pools
void attention_forward(const AttentionArgs& args, cudaStream_t s);
void attention_backward(const AttentionArgs& args, const float* dout, float* dq, float* dk_pool, float* dv_pool,
                        cudaStream_t s);

// ---- logprobs.cu: log-softmax gather over vocabulary tiles
// targets, out and entropy are host memory (as in Backend::token_logprobs).
void token_logprobs(Gemm& gemm, const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                    const int32_t* targets, float temperature, float* out, float* entropy, cudaStream_t s);
// targets and dlogp are host memory.
void token_logprobs_backward(Gemm& gemm, const float* hidden, const float* head, int64_t rows, int64_t dim,
                             int64_t vocab, const int32_t* targets, float temperature, const float* dlogp,
                             float* dhidden, float* dhead, cudaStream_t s);

// ---- cublas.cu: row-major products through cuBLAS, loaded at run time
class Gemm {
 public:
  // Throws naming the library when no cuBLAS can be loaded. With `tf32`, the
  // products round their inputs to TF32 on the tensor cores (10-bit
  // mantissa); otherwise they are full fp32.
  Gemm(cudaStream_t stream, bool tf32);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  bool tf32() const { return tf32_; }
  // y[m, n] = x[m, k] w[n, k]^T + beta y
  void xwt(const float* x, const float* w, float* y, int64_t m, int64_t k, int64_t n, float beta);
  // dx[m, k] = dy[m, n] w[n, k] + beta dx
  void dyw(const float* dy, const float* w, float* dx, int64_t m, int64_t n, int64_t k, float beta);
  // dw[n, k] = dy[m, n]^T x[m, k] + beta dw
  void dytx(const float* dy, const float* x, float* dw, int64_t m, int64_t n, int64_t k, float beta);

 private:
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
            int64_t ldb, float beta, float* c, int64_t ldc, const char* what);
  void* handle_ = nullptr;
  cudaStream_t stream_;
  bool tf32_;
};

}  // namespace st::cuda
