#pragma once
// The op interface the model is written against. The CPU backend (fp32,
// threads) and the CUDA backend implement the same ops; the model code calls
// only these, so it is written once. Shapes are row-major and contiguous;
// pointers are the backend's own memory (host for CPU, device for CUDA).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace st {

namespace train {
struct AdamWOptions;
enum class OptimizerStrategy;
}

// One sequence of a packed attention call. Its queries are rows
// [q_offset, q_offset + q_len) of q; its keys and values are the rows
// key_slots[0 .. k_len) of the key/value pools, in order. With `causal`, the
// i-th query sees keys 0 .. k_len - q_len + i (the queries are the last
// q_len positions of the sequence); otherwise every key.
struct AttentionSequence {
  int64_t q_offset = 0;
  int64_t q_len = 0;
  const int32_t* key_slots = nullptr;
  int64_t k_len = 0;
  bool causal = true;
};

struct AttentionArgs {
  const float* q = nullptr;       // [rows, heads, head_dim]
  const float* k_pool = nullptr;  // [slots, kv_heads, head_dim]
  const float* v_pool = nullptr;  // [slots, kv_heads, head_dim]
  float* out = nullptr;           // [rows, heads, head_dim]
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  std::vector<AttentionSequence> sequences;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Memory. Arrays are owned by the caller through DeviceArray.
  virtual float* alloc(int64_t count) = 0;
  // True when alloc() hands out ordinary host memory that the host may write
  // directly (the CPU backend): a loader then converts into it in place
  // instead of staging each tensor and uploading a copy.
  virtual bool memory_is_host() const = 0;
  virtual void free(float* ptr) = 0;
  virtual void upload(float* dst, const float* host, int64_t count) = 0;
  virtual void download(float* host, const float* src, int64_t count) = 0;
  virtual void copy(float* dst, const float* src, int64_t count) = 0;

  // y[m, n] = x[m, k] w[n, k]^T (+ bias[n] when not null)
  virtual void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k,
                      int64_t n) = 0;
  // y = w * x / sqrt(mean(x^2) + eps), per row of `dim`
  virtual void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) = 0;
  // In place on x [rows, heads, head_dim]: x * cos + rotate_half(x) * sin with
  // per-row tables cos, sin [rows, head_dim].
  virtual void rotary(float* x, const float* cos, const float* sin, int64_t rows, int64_t heads,
                      int64_t head_dim) = 0;
  // out = silu(gate) * up, elementwise over n
  virtual void swiglu(const float* gate, const float* up, float* out, int64_t n) = 0;
  // in place, exact (erf) GELU
  virtual void gelu(float* x, int64_t n) = 0;
  // x += y
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // out[i] = table[ids[i]] (rows of dim); ids are host memory
  virtual void embedding(const int32_t* ids, int64_t n, const float* table, float* out, int64_t dim) = 0;
  // out[i] = src[rows[i]] (rows of dim); rows are host memory
  virtual void gather_rows(const float* src, const int32_t* rows, int64_t n, float* out, int64_t dim) = 0;
  // dst[rows[i]] = src[i] (rows of dim); rows are host memory
  virtual void scatter_rows(const float* src, const int32_t* rows, int64_t n, float* dst, int64_t dim) = 0;
  // dst[r, :] = src[r, col_offset : col_offset + cols] for each of `rows` rows
  // of src (which has src_cols columns): splits fused projections.
  virtual void copy_columns(const float* src, int64_t rows, int64_t src_cols, int64_t col_offset, int64_t cols,
                            float* dst) = 0;
  virtual void attention(const AttentionArgs& args) = 0;
  // out[r] = log softmax(hidden[r] head^T / temperature)[targets[r]] without
  // holding more than a tile of the [rows x vocab] logits; with `entropy`,
  // also each row's entropy of that distribution. targets, out and entropy
  // are host memory.
  virtual void token_logprobs(const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                              const int32_t* targets, float temperature, float* out, float* entropy = nullptr) = 0;

  // Backward passes, for training. `d*` arrays are gradients; "accumulate"
  // means +=, so parameters shared between uses (tied embeddings) and
  // micro-batches add up. Pointers to gradients that are not wanted may be
  // null.

  // y = x w^T + b: dx = dy w (overwritten), dw += dy^T x, db += sum_rows dy.
  virtual void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                               int64_t m, int64_t k, int64_t n) = 0;
  // dx (overwritten) and dw (+=) of y = w * x / rms(x).
  virtual void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows,
                                int64_t dim, float eps) = 0;
  // In place: the gradient through rotary() is the rotation by -theta.
  virtual void rotary_backward(float* dx, const float* cos, const float* sin, int64_t rows, int64_t heads,
                               int64_t head_dim) = 0;
  // out = silu(gate) * up: dgate, dup (overwritten).
  virtual void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                               int64_t n) = 0;
  // x_out = gelu(x_in): dx = dout * gelu'(x_in), overwritten in place of dout.
  virtual void gelu_backward(const float* x_in, float* dout, int64_t n) = 0;
  // table grad rows[ids[i]] += dout[i] (ids host)
  virtual void embedding_backward(const int32_t* ids, int64_t n, const float* dout, float* dtable, int64_t dim) = 0;
  // Attention backward over the same sequences as the forward: dq
  // (overwritten, [rows, heads, hd]); dk_pool and dv_pool accumulate.
  virtual void attention_backward(const AttentionArgs& forward, const float* dout, float* dq, float* dk_pool,
                                  float* dv_pool) = 0;
  // The gradient of token_logprobs(): given d loss / d logp per row, dhidden
  // (overwritten) and dhead (+=), recomputing the logits a tile at a time.
  // targets and dlogp are host memory.
  virtual void token_logprobs_backward(const float* hidden, const float* head, int64_t rows, int64_t dim,
                                       int64_t vocab, const int32_t* targets, float temperature, const float* dlogp,
                                       float* dhidden, float* dhead) = 0;
  virtual void fill(float* x, float value, int64_t n) = 0;

  // The optimiser, on backend memory: one AdamW step of n parameters as
  // train::adamw_step computes it (step is 1-based; moments from
  // grad * grad_scale), and the sum of squares of x in double (for the
  // global gradient norm).
  virtual void adamw(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float grad_scale,
                     const train::AdamWOptions& options) = 0;
  virtual double sum_squares(const float* x, int64_t n) = 0;
  // One adamw_bf16 step (train/optimizer_strategy.h: bf16 weights, moments
  // and Kahan compensation, each array holding bf16 values in float storage);
  // a null compensation rounds each update alone (plain bf16).
  virtual void adamw_bf16(float* param, const float* grad, float* m, float* v, float* compensation, int64_t n,
                          int64_t step, float grad_scale, const train::AdamWOptions& options) = 0;

  // Optimiser offload (worker.actor.offload.offload_optimizer). Host memory
  // for the optimiser state: page-locked on CUDA, so that its copies are
  // asynchronous DMA; ordinary memory on the CPU, where it is all host.
  virtual float* alloc_host(int64_t count) = 0;
  virtual void free_host(float* ptr) = 0;
  // One step of `strategy` whose state (m, v, and the compensation of
  // adamw_bf16, else null) is host memory from alloc_host, while param and
  // grad are backend memory. CUDA streams it chunk by chunk, double-buffered
  // on two streams (state in, update, state out) and returns when the state
  // is back on the host; on the CPU it is the same step as with backend state.
  // The results equal adamw() / adamw_bf16() with the state on the device.
  virtual void optimizer_step_host_state(train::OptimizerStrategy strategy, float* param, const float* grad,
                                         float* m_host, float* v_host, float* compensation_host, int64_t n,
                                         int64_t step, float grad_scale, const train::AdamWOptions& options) = 0;
};

// The CPU backend (always available).
std::unique_ptr<Backend> make_cpu_backend();

// The CUDA backend on the first usable GPU. Throws std::runtime_error saying
// why when there is none: a build without CUDA, no driver or device, or a
// device older than the architectures this build targets. Matrix products
// need cuBLAS, loaded at run time; its absence is an error at construction.
std::unique_ptr<Backend> make_cuda_backend();

// An array in a backend's memory, freed with it.
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(Backend& backend, int64_t count) : backend_(&backend), count_(count) {
    ptr_ = count > 0 ? backend.alloc(count) : nullptr;
  }
  // `count` entries of the backend's host memory (Backend::alloc_host): the
  // offloaded optimiser state.
  static DeviceArray host(Backend& backend, int64_t count) {
    DeviceArray a;
    a.backend_ = &backend;
    a.count_ = count;
    a.on_host_ = true;
    a.ptr_ = count > 0 ? backend.alloc_host(count) : nullptr;
    return a;
  }
  DeviceArray(DeviceArray&& other) noexcept { *this = std::move(other); }
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    if (this != &other) {
      reset();
      backend_ = other.backend_;
      ptr_ = other.ptr_;
      count_ = other.count_;
      on_host_ = other.on_host_;
      other.ptr_ = nullptr;
      other.count_ = 0;
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { reset(); }

  float* get() const { return ptr_; }
  int64_t size() const { return count_; }
  // Host memory from alloc_host (read and written by the host directly), not backend memory.
  bool on_host() const { return on_host_; }
  // Grows (never shrinks) to hold at least `count` entries; contents are lost.
  void ensure(Backend& backend, int64_t count) {
    if (count <= count_ && backend_ == &backend && !on_host_) return;
    *this = DeviceArray(backend, count);
  }

 private:
  void reset() {
    if (ptr_ != nullptr) {
      if (on_host_)
        backend_->free_host(ptr_);
      else
        backend_->free(ptr_);
    }
    ptr_ = nullptr;
    count_ = 0;
  }
  Backend* backend_ = nullptr;
  float* ptr_ = nullptr;
  int64_t count_ = 0;
  bool on_host_ = false;
};

}  // namespace st
