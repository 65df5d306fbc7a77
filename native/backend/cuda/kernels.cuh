#pragma once
// The CUDA backend's kernels, as host functions that enqueue them on a
// stream. Pointers are device memory unless a comment says host. Every
// function returns at once on empty work (a zero-sized grid is an error).
// Arrays carry their element type (DevicePtr): the functions dispatch on it
// to kernels templated on fp32 or bf16 storage and throw, naming the op and
// argument, on a type they do not take. The types follow backend.h: the
// storage type for weights and activations, fp32 for parameter gradients,
// rotary tables and optimiser moments.
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"

namespace st::cuda {

class Gemm;

// ---- elementwise.cu: norms, rotary, activations, copies, optimiser
void rmsnorm_forward(ConstDevicePtr x, ConstDevicePtr w, DevicePtr y, int64_t rows, int64_t dim, float eps,
                     cudaStream_t s);
// dw (fp32) accumulates.
void rmsnorm_backward(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr dy, DevicePtr dx, DevicePtr dw, int64_t rows,
                      int64_t dim, float eps, cudaStream_t s);
// cos, sin fp32.
void rotary_forward(DevicePtr x, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
                    int64_t head_dim, cudaStream_t s);
void rotary_backward(DevicePtr dx, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
                     int64_t head_dim, cudaStream_t s);
void swiglu_forward(ConstDevicePtr gate, ConstDevicePtr up, DevicePtr out, int64_t n, cudaStream_t s);
void swiglu_backward(ConstDevicePtr gate, ConstDevicePtr up, ConstDevicePtr dout, DevicePtr dgate, DevicePtr dup,
                     int64_t n, cudaStream_t s);
void gelu_forward(DevicePtr x, int64_t n, cudaStream_t s);
void gelu_backward(ConstDevicePtr x_in, DevicePtr dout, int64_t n, cudaStream_t s);
void add(DevicePtr x, ConstDevicePtr y, int64_t n, cudaStream_t s);
void fill(DevicePtr x, float value, int64_t n, cudaStream_t s);
// dst[i] = src[i], converting between element types (rounding into bf16).
void convert(DevicePtr dst, ConstDevicePtr src, int64_t n, cudaStream_t s);
// y[r, c] += bias[c]
void add_bias(DevicePtr y, ConstDevicePtr bias, int64_t rows, int64_t cols, cudaStream_t s);
// y[r, c] = bias[c]: a product then adds onto it with beta = 1, so a bf16
// result is rounded once, after the bias.
void broadcast_rows(DevicePtr y, ConstDevicePtr bias, int64_t rows, int64_t cols, cudaStream_t s);
// out[c] (fp32) += sum_r x[r, c], summed in double in a fixed order (deterministic).
void add_column_sums(ConstDevicePtr x, int64_t rows, int64_t cols, DevicePtr out, cudaStream_t s);
// out[i] = src[rows[i]] and dst[rows[i]] = src[i]; rows are device memory.
void gather_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr out, int64_t dim, cudaStream_t s);
void scatter_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr dst, int64_t dim, cudaStream_t s);
// dtable[ids[i]] (fp32) += dout[i]; ids are host memory.
void embedding_backward(const int32_t* host_ids, int64_t n, ConstDevicePtr dout, DevicePtr dtable, int64_t dim,
                        cudaStream_t s);
// grad, m, v fp32; param fp32 or bf16.
void adamw(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, int64_t n, int64_t step, float grad_scale,
           const train::AdamWOptions& options, cudaStream_t s);
// Waits for the stream: the result comes back to the host.
double sum_squares(ConstDevicePtr x, int64_t n, cudaStream_t s);

// ---- optimizer.cu: the optimiser strategies (train/optimizer_strategy.h)
// param, m, v and compensation are each fp32 (holding bf16 values) or bf16; grad fp32.
void adamw_bf16(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, DevicePtr compensation, int64_t n,
                int64_t step, float grad_scale, const train::AdamWOptions& options, cudaStream_t s);

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
  void step(train::OptimizerStrategy strategy, DevicePtr param, ConstDevicePtr grad, DevicePtr m_host,
            DevicePtr v_host, DevicePtr compensation_host, int64_t n, int64_t step, float grad_scale,
            const train::AdamWOptions& options, cudaStream_t producer);

 private:
  struct Slot {
    cudaStream_t stream = nullptr;
    char* staging = nullptr;  // 3 arrays of `chunk` fp32 entries (bf16 state uses half of each)
  };
  void release();
  int64_t chunk_;
  Slot slots_[2];
};

// The Backend's paged_decode_attention (bf16, decode_attention.cu): the
// decode kernels with their sequences and work items built on the device
// from the key counts, and key ranges planned from the table stride, so a
// captured step replays for any counts that fit it.
void paged_decode_attention(const PagedDecodeArgs& a, cudaStream_t s);
// The same for fp32 storage (attention.cu: CUDA cores, one block per row and head).
void paged_decode_attention_fp32(const PagedDecodeArgs& a, cudaStream_t s);

// ---- attention.cu: packed variable-length attention over slot pools
void attention_forward(const AttentionArgs& args, cudaStream_t s);
void attention_backward(const AttentionArgs& args, ConstDevicePtr dout, DevicePtr dq, DevicePtr dk_pool,
                        DevicePtr dv_pool, cudaStream_t s);

// ---- logprobs.cu: log-softmax gather over vocabulary tiles
// targets, out and entropy are host memory (as in Backend::token_logprobs).
void token_logprobs(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                    const int32_t* targets, float temperature, float* out, float* entropy, cudaStream_t s);
// targets and dlogp are host memory; dhead (fp32) accumulates.
void token_logprobs_backward(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim,
                             int64_t vocab, const int32_t* targets, float temperature, const float* dlogp,
                             DevicePtr dhidden, DevicePtr dhead, cudaStream_t s);

// The same on device arrays, for ops that keep the log-probs on the device
// (loss.cu): per row, log p(target) and entropy of softmax(logits * inv_t)
// and its log-sum-exp (each output may be null); then, from d loss / d logp
// and that log-sum-exp, dhidden (overwritten) and dhead (+=).
void logprob_statistics(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim,
                        int64_t vocab, const int32_t* targets, float inv_t, float* logp, float* entropy, double* lse,
                        cudaStream_t s, const char* op);
void logprob_backward(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                      const int32_t* targets, float inv_t, const float* dlogp, const double* lse, DevicePtr dhidden,
                      DevicePtr dhead, cudaStream_t s, const char* op);
// Throws for a non-positive dim, vocabulary or temperature.
void check_logprob_shapes(int64_t dim, int64_t vocab, float temperature, const char* op);

// ---- sampling.cu: one token per row of logits (backend/sampling_rule.h).
// sample_tokens_at: seeds, counters, tokens and log-probs in device memory,
// nothing waits (a captured decode step's sampling); sample_tokens: the same
// draw from and to host memory, waiting for it.
void sample_tokens_at(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                      const uint64_t* seeds, const uint64_t* counters, int32_t* tokens, float* logprobs,
                      cudaStream_t s);
void sample_tokens(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                   const uint64_t* seeds, const uint64_t* counters, int32_t* tokens, float* logprobs, cudaStream_t s);

// ---- loss.cu: the log-probs and the per-token policy loss on the device;
// `tokens` and `outputs` are host arrays; waits for the stream.
PolicyLossTotals policy_loss(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim,
                             int64_t vocab, float temperature, const PolicyTokens& tokens,
                             const train::PolicyTermOptions& options, DevicePtr dhidden, DevicePtr dhead,
                             const PolicyTokenOutputs* outputs, cudaStream_t s);

// ---- cublas.cu: row-major products through cuBLAS, loaded at run time
// (cublasGemmEx). The two inputs of a product share one type, fp32 or bf16;
// the output may be either (bf16 inputs into an fp32 gradient, say).
// Accumulation is fp32 (CUBLAS_COMPUTE_32F) in every case; alpha and beta
// are fp32, and with beta = 1 the existing output is added in fp32 before
// the one rounding into a bf16 output.
class Gemm {
 public:
  // Throws naming the library when no cuBLAS can be loaded. With `tf32`,
  // fp32 products round their inputs to TF32 on the tensor cores (10-bit
  // mantissa); otherwise they are full fp32. bf16 products always run on the
  // tensor cores with fp32 accumulation.
  Gemm(cudaStream_t stream, bool tf32);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  bool tf32() const { return tf32_; }
  // y[m, n] = x[m, k] w[n, k]^T + beta y
  void xwt(ConstDevicePtr x, ConstDevicePtr w, DevicePtr y, int64_t m, int64_t k, int64_t n, float beta);
  // dx[m, k] = dy[m, n] w[n, k] + beta dx
  void dyw(ConstDevicePtr dy, ConstDevicePtr w, DevicePtr dx, int64_t m, int64_t n, int64_t k, float beta);
  // dw[n, k] = dy[m, n]^T x[m, k] + beta dw
  void dytx(ConstDevicePtr dy, ConstDevicePtr x, DevicePtr dw, int64_t m, int64_t n, int64_t k, float beta);
  // For b in [0, batch): y_b[m, n] = x_b[m, k] w_b[n, k]^T + beta y_b, where
  // operand b starts `stride` elements after operand b - 1
  // (cublasGemmStridedBatchedEx): many small products of one shape in one call.
  void xwt_batched(ConstDevicePtr x, int64_t x_stride, ConstDevicePtr w, int64_t w_stride, DevicePtr y,
                   int64_t y_stride, int64_t batch, int64_t m, int64_t k, int64_t n, float beta);

 private:
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, ConstDevicePtr a, int64_t lda,
            ConstDevicePtr b, int64_t ldb, float beta, DevicePtr c, int64_t ldc, const char* what);
  void* handle_ = nullptr;
  cudaStream_t stream_;
  bool tf32_;
};

}  // namespace st::cuda
