#pragma once
// The op interface the model is written against. The CPU backend (fp32,
// threads) and the CUDA backend implement the same ops; the model code calls
// only these, so it is written once. Shapes are row-major and contiguous;
// pointers are the backend's own memory (host for CPU, device for CUDA),
// typed by DevicePtr so that the same model code is right whatever the
// element type of an array.
//
// Precision. Each array has an element type (Storage). Weights, activations,
// activation gradients and the KV cache are in the backend's storage type
// (storage()): fp32 on the CPU; bf16 by default on CUDA, fp32 there on
// request. Whatever the storage type, these are always fp32:
//   - parameter gradients (dw, db, the norms' dw, dtable, dhead): they sum
//     over micro-batches and tokens, and a bf16 sum stops moving once it is
//     2^8 times larger than what it adds;
//   - the optimiser's moments (and master weights where a strategy keeps them);
//   - the rotary tables (angles of long positions need more than 8 bits);
//   - what comes back to the host: log-probs, entropies, losses, norms.
// Every op computes in fp32 (or double, where the CPU does) from whatever it
// loads and rounds once, to nearest even, where it stores a bf16 result;
// matrix products accumulate in fp32.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace st {

// The element type of a backend array. F32 and BF16 hold values; I32 and
// U64 hold indices (token ids, cache slots, key counts) and sampling seeds
// and counters, kept in backend memory where a captured decode step must
// read each step's values at replay time.
enum class Storage : uint8_t { F32, BF16, I32, U64 };

inline int64_t storage_bytes(Storage s) {
  switch (s) {
    case Storage::BF16: return 2;
    case Storage::U64: return 8;
    default: return 4;
  }
}
inline const char* storage_name(Storage s) {
  switch (s) {
    case Storage::BF16: return "bf16";
    case Storage::I32: return "int32";
    case Storage::U64: return "uint64";
    default: return "fp32";
  }
}

// A pointer into backend memory together with its element type. Arithmetic
// counts elements of that type, so `x + row * dim` is right for fp32 and bf16
// arrays alike. Void is void (DevicePtr) or const void (ConstDevicePtr); a
// DevicePtr converts to a ConstDevicePtr. A float* converts implicitly (it is
// fp32 memory by its type); other element types are named explicitly.
template <class Void>
class BasicDevicePtr {
 public:
  constexpr BasicDevicePtr() = default;
  constexpr BasicDevicePtr(std::nullptr_t) {}
  constexpr BasicDevicePtr(Void* data, Storage type) : data_(data), type_(type) {}
  template <class F, class = std::enable_if_t<std::is_convertible_v<F*, Void*> && std::is_same_v<std::remove_const_t<F>, float>>>
  constexpr BasicDevicePtr(F* data) : data_(data), type_(Storage::F32) {}
  template <class Other, class = std::enable_if_t<std::is_convertible_v<Other*, Void*> && !std::is_same_v<Other, Void>>>
  constexpr BasicDevicePtr(const BasicDevicePtr<Other>& other) : data_(other.data()), type_(other.type()) {}

  Void* data() const { return data_; }
  Storage type() const { return type_; }
  explicit operator bool() const { return data_ != nullptr; }
  bool operator==(std::nullptr_t) const { return data_ == nullptr; }
  bool operator!=(std::nullptr_t) const { return data_ != nullptr; }

  BasicDevicePtr operator+(int64_t elements) const {
    using Byte = std::conditional_t<std::is_const_v<Void>, const char, char>;
    return BasicDevicePtr(static_cast<Void*>(static_cast<Byte*>(data_) + elements * storage_bytes(type_)), type_);
  }

  // The fp32 view of the memory; throws when the array holds another type
  // (a backend op reached with an array it does not support).
  std::conditional_t<std::is_const_v<Void>, const float*, float*> f32(const char* what = "array") const {
    return as<float>(Storage::F32, what);
  }
  std::conditional_t<std::is_const_v<Void>, const int32_t*, int32_t*> i32(const char* what = "array") const {
    return as<int32_t>(Storage::I32, what);
  }
  std::conditional_t<std::is_const_v<Void>, const uint64_t*, uint64_t*> u64(const char* what = "array") const {
    return as<uint64_t>(Storage::U64, what);
  }

 private:
  template <class E>
  std::conditional_t<std::is_const_v<Void>, const E*, E*> as(Storage wanted, const char* what) const {
    if (data_ != nullptr && type_ != wanted)
      throw std::logic_error(std::string(what) + " is " + storage_name(type_) + " where " + storage_name(wanted) +
                             " is required");
    return static_cast<std::conditional_t<std::is_const_v<Void>, const E*, E*>>(data_);
  }

  Void* data_ = nullptr;
  Storage type_ = Storage::F32;
};

using DevicePtr = BasicDevicePtr<void>;
using ConstDevicePtr = BasicDevicePtr<const void>;

namespace train {
struct AdamWOptions;
struct PolicyTermOptions;
enum class OptimizerStrategy;
}

// How the next token is drawn from a row of logits (backend/sampling_rule.h
// states the rule both backends implement): greedy, or temperature with
// optional top-k and top-p.
struct SamplingOptions {
  bool greedy = false;
  double temperature = 1.0;
  int64_t top_k = 0;   // 0: no limit
  double top_p = 1.0;  // 1: no limit
};

// Per-token inputs of the fused policy loss, host memory, [rows] each.
// `weight` is each token's share in the aggregated loss (train::token_weights).
struct PolicyTokens {
  const int32_t* targets = nullptr;
  const float* old_logp = nullptr;
  const float* ref_logp = nullptr;  // may be null when the KL coefficient is 0
  const float* advantages = nullptr;
  const double* weights = nullptr;
};

// What the fused policy loss returns to the host: scalars (sums over the
// call's tokens; the caller turns them into means). Per-token values come
// back only where PolicyTokenOutputs asks for them.
struct PolicyLossTotals {
  double loss = 0, pg_loss = 0, kl_loss = 0;  // weighted, as the aggregated loss
  double clip_high = 0, clip_low = 0, clip_dual = 0;  // token counts
  double ppo_kl = 0, kl = 0, entropy = 0;     // unweighted sums over tokens
  double nonfinite = 0;                       // tokens whose loss is not finite
};

// Optional host arrays [rows] the fused loss fills (diagnostics, fixtures).
struct PolicyTokenOutputs {
  float* logp = nullptr;
  float* ratio = nullptr;
  float* kl = nullptr;
};

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
  // All four in the storage type.
  ConstDevicePtr q;       // [rows, heads, head_dim]
  ConstDevicePtr k_pool;  // [slots, kv_heads, head_dim]
  ConstDevicePtr v_pool;  // [slots, kv_heads, head_dim]
  DevicePtr out;          // [rows, heads, head_dim]
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  std::vector<AttentionSequence> sequences;
};

// The decode step's attention with its key lists in backend memory (what a
// captured decode step needs): row r of q is the last position of a
// sequence whose keys and values are the pool rows
// slot_table[r * table_stride .. + key_lengths[r]), every one visible.
// table_stride bounds every key count and is what the CUDA kernels plan
// their key ranges from, so a graph captured for one stride serves every
// step whose sequences fit it.
struct PagedDecodeArgs {
  ConstDevicePtr q;            // [rows, heads, head_dim], storage type
  ConstDevicePtr k_pool;       // [slots, kv_heads, head_dim]
  ConstDevicePtr v_pool;       // [slots, kv_heads, head_dim]
  DevicePtr out;               // [rows, heads, head_dim]
  ConstDevicePtr slot_table;   // I32 [rows, table_stride]
  ConstDevicePtr key_lengths;  // I32 [rows], each in [1, table_stride]
  int64_t rows = 0, table_stride = 0;
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
};

// Ops recorded once and run again by replay() (a CUDA graph on the CUDA
// backend: one launch for the whole sequence instead of one per kernel).
class OpGraph {
 public:
  virtual ~OpGraph() = default;
  virtual void replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // The element type of weights, activations and the KV cache here.
  virtual Storage storage() const = 0;

  // Memory. Arrays are owned by the caller through DeviceArray. A backend
  // may refuse a type it does not store (the CPU backend: fp32 only).
  virtual DevicePtr alloc(int64_t count, Storage type) = 0;
  // True when alloc() hands out ordinary host memory that the host may write
  // directly (the CPU backend): a loader then converts into it in place
  // instead of staging each tensor and uploading a copy.
  virtual bool memory_is_host() const = 0;
  virtual void free(DevicePtr ptr) = 0;
  // fp32 host values into an array of any type (rounded to nearest even
  // into bf16), and back (exact).
  virtual void upload(DevicePtr dst, const float* host, int64_t count) = 0;
  virtual void download(float* host, ConstDevicePtr src, int64_t count) = 0;
  // Host values already in dst's element type (e.g. a bf16 checkpoint's
  // bytes into bf16 memory): copied as they are, no conversion.
  virtual void upload_raw(DevicePtr dst, const void* host, int64_t count) = 0;
  // dst's elements as they are (no conversion), after the work before it.
  virtual void download_raw(void* host, ConstDevicePtr src, int64_t count) = 0;
  // Between arrays of the same type, or converting (rounding into bf16).
  virtual void copy(DevicePtr dst, ConstDevicePtr src, int64_t count) = 0;

  // Unless a comment says otherwise, every array below is in the storage
  // type, and parameter gradients (dw, db, dtable, dhead) are fp32.

  // y[m, n] = x[m, k] w[n, k]^T (+ bias[n] when not null)
  virtual void linear(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr bias, DevicePtr y, int64_t m, int64_t k,
                      int64_t n) = 0;
  // y = w * x / sqrt(mean(x^2) + eps), per row of `dim`
  virtual void rmsnorm(ConstDevicePtr x, ConstDevicePtr w, DevicePtr y, int64_t rows, int64_t dim, float eps) = 0;
  // In place on x [rows, heads, head_dim]: x * cos + rotate_half(x) * sin with
  // per-row tables cos, sin [rows, head_dim] (fp32).
  virtual void rotary(DevicePtr x, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
                      int64_t head_dim) = 0;
  // out = silu(gate) * up, elementwise over n
  virtual void swiglu(ConstDevicePtr gate, ConstDevicePtr up, DevicePtr out, int64_t n) = 0;
  // in place, exact (erf) GELU
  virtual void gelu(DevicePtr x, int64_t n) = 0;
  // x += y
  virtual void add(DevicePtr x, ConstDevicePtr y, int64_t n) = 0;
  // out[i] = table[ids[i]] (rows of dim); ids are host memory
  virtual void embedding(const int32_t* ids, int64_t n, ConstDevicePtr table, DevicePtr out, int64_t dim) = 0;
  // out[i] = src[rows[i]] (rows of dim); rows are host memory
  virtual void gather_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr out, int64_t dim) = 0;
  // dst[rows[i]] = src[i] (rows of dim); rows are host memory
  virtual void scatter_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr dst, int64_t dim) = 0;
  // dst[r, :] = src[r, col_offset : col_offset + cols] for each of `rows` rows
  // of src (which has src_cols columns): splits fused projections.
  virtual void copy_columns(ConstDevicePtr src, int64_t rows, int64_t src_cols, int64_t col_offset, int64_t cols,
                            DevicePtr dst) = 0;
  virtual void attention(const AttentionArgs& args) = 0;
  // out[r] = log softmax(hidden[r] head^T / temperature)[targets[r]] without
  // holding more than a tile of the [rows x vocab] logits; with `entropy`,
  // also each row's entropy of that distribution. targets, out and entropy
  // are host memory.
  virtual void token_logprobs(ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                              const int32_t* targets, float temperature, float* out, float* entropy = nullptr) = 0;

  // Backward passes, for training. `d*` arrays are gradients; "accumulate"
  // means +=, so parameters shared between uses (tied embeddings) and
  // micro-batches add up. Pointers to gradients that are not wanted may be
  // null.

  // y = x w^T + b: dx = dy w (overwritten), dw += dy^T x, db += sum_rows dy.
  virtual void linear_backward(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr dy, DevicePtr dx, DevicePtr dw, DevicePtr db,
                               int64_t m, int64_t k, int64_t n) = 0;
  // dx (overwritten) and dw (+=) of y = w * x / rms(x).
  virtual void rmsnorm_backward(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr dy, DevicePtr dx, DevicePtr dw, int64_t rows,
                                int64_t dim, float eps) = 0;
  // In place: the gradient through rotary() is the rotation by -theta.
  virtual void rotary_backward(DevicePtr dx, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
                               int64_t head_dim) = 0;
  // out = silu(gate) * up: dgate, dup (overwritten).
  virtual void swiglu_backward(ConstDevicePtr gate, ConstDevicePtr up, ConstDevicePtr dout, DevicePtr dgate, DevicePtr dup,
                               int64_t n) = 0;
  // x_out = gelu(x_in): dx = dout * gelu'(x_in), overwritten in place of dout.
  virtual void gelu_backward(ConstDevicePtr x_in, DevicePtr dout, int64_t n) = 0;
  // table grad rows[ids[i]] += dout[i] (ids host)
  virtual void embedding_backward(const int32_t* ids, int64_t n, ConstDevicePtr dout, DevicePtr dtable, int64_t dim) = 0;
  // Attention backward over the same sequences as the forward: dq
  // (overwritten, [rows, heads, hd]); dk_pool and dv_pool accumulate.
  virtual void attention_backward(const AttentionArgs& forward, ConstDevicePtr dout, DevicePtr dq, DevicePtr dk_pool,
                                  DevicePtr dv_pool) = 0;
  // The gradient of token_logprobs(): given d loss / d logp per row, dhidden
  // (overwritten) and dhead (+=), recomputing the logits a tile at a time.
  // targets and dlogp are host memory.
  virtual void token_logprobs_backward(ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim,
                                       int64_t vocab, const int32_t* targets, float temperature, const float* dlogp,
                                       DevicePtr dhidden, DevicePtr dhead) = 0;
  virtual void fill(DevicePtr x, float value, int64_t n) = 0;

  // One token per row of logits [rows, vocab], drawn for row r from step
  // counters[r] of the sequence seeded seeds[r] by the rule of
  // backend/sampling_rule.h. Only tokens and their log-probs (log softmax of
  // logits / T, T = 1 when greedy) come back; seeds, counters, tokens and
  // logprobs are host memory.
  // logits are fp32.
  virtual void sample_tokens(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                             const uint64_t* seeds, const uint64_t* counters, int32_t* tokens, float* logprobs) = 0;

  // Records the ops `enqueue` issues into a graph without running them (the
  // CPU backend keeps `enqueue` itself and calls it on replay). Replays read
  // and write the same arrays, with their contents at replay time. The ops
  // must be device-resident: none may take or return host arrays or wait for
  // the device (ids, rows, slots, targets, downloads); on the CUDA backend
  // such an op makes capture() throw, naming what it did.
  virtual std::unique_ptr<OpGraph> capture(const std::function<void()>& enqueue) = 0;

  // The decode step's ops with their index arrays in backend memory (I32;
  // seeds and counters U64), so that a captured step reads the values of
  // the step it replays: gather_rows and scatter_rows with backend rows,
  // the decode attention over a slot table, and sample_tokens writing
  // tokens (I32) and log-probs (F32) to backend arrays.
  virtual void gather_rows_at(ConstDevicePtr src, ConstDevicePtr rows, int64_t n, DevicePtr out, int64_t dim) = 0;
  virtual void scatter_rows_at(ConstDevicePtr src, ConstDevicePtr rows, int64_t n, DevicePtr dst, int64_t dim) = 0;
  virtual void paged_decode_attention(const PagedDecodeArgs& args) = 0;
  virtual void sample_tokens_at(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                                ConstDevicePtr seeds, ConstDevicePtr counters, DevicePtr tokens,
                                DevicePtr logprobs) = 0;

  // token_logprobs, the per-token policy loss terms of train/policy_terms.h
  // and token_logprobs_backward in one op: the log-probs, the loss and
  // d loss / d logp stay on the backend; dhidden is overwritten, dhead
  // accumulates (either may be null). The host gets the totals, and the
  // per-token values `outputs` asks for (may be null).
  // hidden, head and dhidden in the storage type, dhead fp32.
  virtual PolicyLossTotals policy_loss(ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim,
                                       int64_t vocab, float temperature, const PolicyTokens& tokens,
                                       const train::PolicyTermOptions& options, DevicePtr dhidden, DevicePtr dhead,
                                       const PolicyTokenOutputs* outputs) = 0;

  // The optimiser, on backend memory: one AdamW step of n parameters as
  // train::adamw_step computes it (step is 1-based; moments from
  // grad * grad_scale), and the sum of squares of x in double (for the
  // global gradient norm). grad, m and v are fp32; param is fp32 or in the
  // storage type (the step computed in fp32/double, rounded once).
  virtual void adamw(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, int64_t n, int64_t step, float grad_scale,
                     const train::AdamWOptions& options) = 0;
  virtual double sum_squares(ConstDevicePtr x, int64_t n) = 0;
  // One adamw_bf16 step (train/optimizer_strategy.h: bf16 weights, moments
  // and Kahan compensation). param, m, v and compensation are each fp32
  // arrays holding bf16 values (the CPU backend's emulation) or bf16 arrays;
  // grad is fp32. A null compensation rounds each update alone (plain bf16).
  virtual void adamw_bf16(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, DevicePtr compensation,
                          int64_t n, int64_t step, float grad_scale, const train::AdamWOptions& options) = 0;

  // Optimiser offload (worker.actor.offload.offload_optimizer). Host memory
  // for the optimiser state: page-locked on CUDA, so that its copies are
  // asynchronous DMA; ordinary memory on the CPU, where it is all host. A
  // backend may refuse a type it does not store (the CPU backend: fp32 only).
  virtual DevicePtr alloc_host(int64_t count, Storage type) = 0;
  virtual void free_host(DevicePtr ptr) = 0;
  // One step of `strategy` whose state (m, v, and the compensation of
  // adamw_bf16, else null) is host memory from alloc_host, while param and
  // grad are backend memory. CUDA streams it chunk by chunk, double-buffered
  // on two streams (state in, update, state out) and returns when the state
  // is back on the host; on the CPU it is the same step as with backend state.
  // The results equal adamw() / adamw_bf16() with the state on the device.
  virtual void optimizer_step_host_state(train::OptimizerStrategy strategy, DevicePtr param, ConstDevicePtr grad,
                                         DevicePtr m_host, DevicePtr v_host, DevicePtr compensation_host, int64_t n,
                                         int64_t step, float grad_scale, const train::AdamWOptions& options) = 0;
};

// The CPU backend (always available).
std::unique_ptr<Backend> make_cpu_backend();

// The CUDA backend on the first usable GPU, storing weights, activations
// and the KV cache as `storage` (bf16 by default: fp32 is for parity checks
// against the CPU). Throws std::runtime_error saying why when there is none:
// a build without CUDA, no driver or device, or a device older than the
// architectures this build targets. Matrix products need cuBLAS, loaded at
// run time; its absence is an error at construction.
std::unique_ptr<Backend> make_cuda_backend(Storage storage);
// The storage type the environment asks for: SPATIALTHINKER_CUDA_DTYPE=bf16
// (the default when unset) or fp32; anything else is an error naming it.
Storage cuda_storage_from_env();
inline std::unique_ptr<Backend> make_cuda_backend() { return make_cuda_backend(cuda_storage_from_env()); }

// An array in a backend's memory, freed with it: `count` elements of the
// backend's storage type unless a type is named.
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(Backend& backend, int64_t count) : DeviceArray(backend, count, backend.storage()) {}
  DeviceArray(Backend& backend, int64_t count, Storage type) : backend_(&backend), count_(count) {
    ptr_ = count > 0 ? backend.alloc(count, type) : DevicePtr(nullptr, type);
  }
  // `count` entries of the backend's host memory (Backend::alloc_host): the
  // offloaded optimiser state.
  static DeviceArray host(Backend& backend, int64_t count, Storage type) {
    DeviceArray a;
    a.backend_ = &backend;
    a.count_ = count;
    a.on_host_ = true;
    a.ptr_ = count > 0 ? backend.alloc_host(count, type) : DevicePtr(nullptr, type);
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

  DevicePtr get() const { return ptr_; }
  Storage type() const { return ptr_.type(); }
  int64_t size() const { return count_; }
  int64_t bytes() const { return count_ * storage_bytes(ptr_.type()); }
  // Host memory from alloc_host (read and written by the host directly), not backend memory.
  bool on_host() const { return on_host_; }
  // Grows (never shrinks) to hold at least `count` entries of the backend's
  // storage type; contents are lost.
  void ensure(Backend& backend, int64_t count) {
    if (count <= count_ && backend_ == &backend && ptr_.type() == backend.storage() && !on_host_) return;
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
  DevicePtr ptr_;
  int64_t count_ = 0;
  bool on_host_ = false;
};

}  // namespace st
