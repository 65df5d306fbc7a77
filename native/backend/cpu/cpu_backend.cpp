// The CPU backend: fp32, spread over the engine's thread pool. Its arrays
// are fp32 only (storage() is F32, alloc refuses bf16); the Backend
// overrides unwrap their DevicePtrs (checking the type) and run the fp32
// bodies below, which are the same code as before the interface was typed.
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/row_math.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/sampling.h"
#include "engine/thread_pool.h"
#include "train/adamw.h"
#include "train/policy_terms.h"
#include "train/optimizer_strategy.h"

namespace st {
namespace {

// Elementwise loops below this size stay on the calling thread.
constexpr int64_t kElementGrain = 1 << 14;

// Arrays this large (weights, gradients, moments of real models) go on
// transparent huge pages where the kernel offers them (THP "madvise" mode):
// first touch then faults 2 MiB at a time instead of 4 KiB, which is most of
// the system time of loading a 3B checkpoint, and fewer TLB misses later.
// Smaller ones would waste up to a huge page each in rounding.
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugePageThreshold = size_t(16) << 20;

float* allocate_floats(int64_t count) {
  const size_t bytes = std::max<size_t>(size_t(count), 1) * sizeof(float);
  const bool huge = bytes >= kHugePageThreshold;
  const size_t alignment = huge ? kHugePage : 64;
  const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  void* ptr = nullptr;
  if (::posix_memalign(&ptr, alignment, rounded) != 0) throw std::bad_alloc();
  if (huge) ::madvise(ptr, rounded, MADV_HUGEPAGE);  // a hint: ignored where THP is off
  return static_cast<float*>(ptr);
}

// Freed arrays kept for the next request of the same size: a training step
// allocates and frees the same activation shapes every time, and memory
// handed back to the kernel comes back as fresh pages, each first touch a
// page fault (a fifth of a small model's step, measured). Sizes round up to
// 4 KiB; at most `limit` bytes are kept (SPATIALTHINKER_CPU_CACHE_MB,
// default 2048), the rest is freed at once.
class BlockCache {
 public:
  BlockCache() {
    if (const char* v = std::getenv("SPATIALTHINKER_CPU_CACHE_MB"); v != nullptr && *v != '\0')
      limit_ = size_t(std::max(0LL, std::atoll(v))) << 20;
  }
  ~BlockCache() {
    for (auto& [bytes, blocks] : free_)
      for (void* p : blocks) std::free(p);
  }
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  float* allocate(int64_t count) {
    const size_t bytes = rounded(std::max<size_t>(size_t(count), 1) * sizeof(float));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        live_[p] = bytes;
        return static_cast<float*>(p);
      }
    }
    float* p = allocate_floats(int64_t(bytes / sizeof(float)));
    std::lock_guard<std::mutex> lock(mutex_);
    live_[p] = bytes;
    return p;
  }

  void release(void* p) {
    if (p == nullptr) return;
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) {  // not ours: never expected, but free it rather than leak
      lock.unlock();
      std::free(p);
      return;
    }
    const size_t bytes = it->second;
    live_.erase(it);
    if (cached_ + bytes > limit_) {
      lock.unlock();
      std::free(p);
      return;
    }
    free_[bytes].push_back(p);
    cached_ += bytes;
  }

 private:
  static size_t rounded(size_t bytes) { return (bytes + 4095) / 4096 * 4096; }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> live_;
  size_t cached_ = 0;
  size_t limit_ = size_t(2048) << 20;
};

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  Storage storage() const override { return Storage::F32; }
  DevicePtr alloc(int64_t count, Storage type) override {
    if (type == Storage::BF16)
      throw std::invalid_argument(std::string("the CPU backend stores fp32 (and indices), not ") + storage_name(type));
    // Indices: int32 has a float's size; a uint64 takes two.
    return DevicePtr(blocks_.allocate(type == Storage::U64 ? 2 * count : count), type);
  }
  bool memory_is_host() const override { return true; }
  void free(DevicePtr ptr) override { blocks_.release(ptr.data()); }
  void upload(DevicePtr dst, const float* host, int64_t count) override { copy(dst.f32("upload"), host, count); }
  void upload_raw(DevicePtr dst, const void* host, int64_t count) override {
    if (count > 0) std::memcpy(dst.data(), host, size_t(count * storage_bytes(dst.type())));
  }
  void download_raw(void* host, ConstDevicePtr src, int64_t count) override {
    if (count > 0) std::memcpy(host, src.data(), size_t(count * storage_bytes(src.type())));
  }
  void download(float* host, ConstDevicePtr src, int64_t count) override { copy(host, src.f32("download"), count); }
  void copy(DevicePtr dst, ConstDevicePtr src, int64_t count) override { copy(dst.f32("copy"), src.f32("copy"), count); }

  // ---- the Backend ops: unwrap, then the fp32 bodies
  void linear(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr bias, DevicePtr y, int64_t m, int64_t k,
              int64_t n) override {
    linear(x.f32(), w.f32(), bias.f32(), y.f32(), m, k, n);
  }
  void rmsnorm(ConstDevicePtr x, ConstDevicePtr w, DevicePtr y, int64_t rows, int64_t dim, float eps) override {
    rmsnorm(x.f32(), w.f32(), y.f32(), rows, dim, eps);
  }
  void rotary(DevicePtr x, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
              int64_t head_dim) override {
    rotary(x.f32(), cos.f32(), sin.f32(), rows, heads, head_dim);
  }
  void swiglu(ConstDevicePtr gate, ConstDevicePtr up, DevicePtr out, int64_t n) override {
    swiglu(gate.f32(), up.f32(), out.f32(), n);
  }
  void gelu(DevicePtr x, int64_t n) override { gelu(x.f32(), n); }
  void add(DevicePtr x, ConstDevicePtr y, int64_t n) override { add(x.f32(), y.f32(), n); }
  void embedding(const int32_t* ids, int64_t n, ConstDevicePtr table, DevicePtr out, int64_t dim) override {
    embedding(ids, n, table.f32(), out.f32(), dim);
  }
  void gather_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr out, int64_t dim) override {
    gather_rows(src.f32(), rows, n, out.f32(), dim);
  }
  void scatter_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr dst, int64_t dim) override {
    scatter_rows(src.f32(), rows, n, dst.f32(), dim);
  }
  void copy_columns(ConstDevicePtr src, int64_t rows, int64_t src_cols, int64_t col_offset, int64_t cols,
                    DevicePtr dst) override {
    copy_columns(src.f32(), rows, src_cols, col_offset, cols, dst.f32());
  }
  void attention(const AttentionArgs& a) override { cpu::attention_forward(a); }
  void token_logprobs(ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                      const int32_t* targets, float temperature, float* out, float* entropy) override {
    token_logprobs(hidden.f32(), head.f32(), rows, dim, vocab, targets, temperature, out, entropy);
  }
  void linear_backward(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr dy, DevicePtr dx, DevicePtr dw,
                       DevicePtr db, int64_t m, int64_t k, int64_t n) override {
    linear_backward(x.f32(), w.f32(), dy.f32(), dx.f32(), dw.f32(), db.f32(), m, k, n);
  }
  void rmsnorm_backward(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr dy, DevicePtr dx, DevicePtr dw,
                        int64_t rows, int64_t dim, float eps) override {
    rmsnorm_backward(x.f32(), w.f32(), dy.f32(), dx.f32(), dw.f32(), rows, dim, eps);
  }
  void rotary_backward(DevicePtr dx, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
                       int64_t head_dim) override {
    rotary_backward(dx.f32(), cos.f32(), sin.f32(), rows, heads, head_dim);
  }
  void swiglu_backward(ConstDevicePtr gate, ConstDevicePtr up, ConstDevicePtr dout, DevicePtr dgate, DevicePtr dup,
                       int64_t n) override {
    swiglu_backward(gate.f32(), up.f32(), dout.f32(), dgate.f32(), dup.f32(), n);
  }
  void gelu_backward(ConstDevicePtr x_in, DevicePtr dout, int64_t n) override {
    gelu_backward(x_in.f32(), dout.f32(), n);
  }
  void embedding_backward(const int32_t* ids, int64_t n, ConstDevicePtr dout, DevicePtr dtable,
                          int64_t dim) override {
    embedding_backward(ids, n, dout.f32(), dtable.f32(), dim);
  }
  void attention_backward(const AttentionArgs& a, ConstDevicePtr dout, DevicePtr dq, DevicePtr dk_pool,
                          DevicePtr dv_pool) override {
    cpu::attention_backward(a, dout.f32(), dq.f32(), dk_pool.f32(), dv_pool.f32());
  }
  void token_logprobs_backward(ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                               const int32_t* targets, float temperature, const float* dlogp, DevicePtr dhidden,
                               DevicePtr dhead) override {
    token_logprobs_backward(hidden.f32(), head.f32(), rows, dim, vocab, targets, temperature, dlogp, dhidden.f32(),
                            dhead.f32());
  }
  void fill(DevicePtr x, float value, int64_t n) override { fill(x.f32(), value, n); }
  void adamw(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, int64_t n, int64_t step,
             float grad_scale, const train::AdamWOptions& options) override {
    adamw(param.f32(), grad.f32(), m.f32(), v.f32(), n, step, grad_scale, options);
  }
  double sum_squares(ConstDevicePtr x, int64_t n) override { return sum_squares(x.f32(), n); }
  void adamw_bf16(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, DevicePtr compensation, int64_t n,
                  int64_t step, float grad_scale, const train::AdamWOptions& options) override {
    train::adamw_bf16_step(param.f32(), grad.f32(), m.f32(), v.f32(), compensation.f32(), n, step, grad_scale, options);
  }
  DevicePtr alloc_host(int64_t count, Storage type) override { return alloc(count, type); }
  void free_host(DevicePtr ptr) override { free(ptr); }
  // The CPU backend's memory is host memory: offloading moves nothing.
  void optimizer_step_host_state(train::OptimizerStrategy strategy, DevicePtr param, ConstDevicePtr grad,
                                 DevicePtr m_host, DevicePtr v_host, DevicePtr compensation_host, int64_t n,
                                 int64_t step, float grad_scale, const train::AdamWOptions& options) override {
    if (strategy == train::OptimizerStrategy::AdamWBf16)
      adamw_bf16(param, grad, m_host, v_host, compensation_host, n, step, grad_scale, options);
    else
      adamw(param, grad, m_host, v_host, n, step, grad_scale, options);
  }

  // ---- the fp32 bodies
  void copy(float* dst, const float* src, int64_t count) {
    if (count > 0) std::memcpy(dst, src, size_t(count) * sizeof(float));
  }

  void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k,
              int64_t n) {
    cpu::linear(x, w, bias, y, m, k, n);
  }

  void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
    default_thread_pool().parallel_for(rows, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(dim, 1)),
                                       [&](int64_t begin, int64_t end) {
                                         for (int64_t r = begin; r < end; ++r) {
                                           const float* xr = x + r * dim;
                                           double sum = 0.0;
                                           for (int64_t i = 0; i < dim; ++i) sum += double(xr[i]) * xr[i];
                                           const float inv = float(1.0 / std::sqrt(sum / double(dim) + eps));
                                           float* yr = y + r * dim;
                                           for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * inv);
                                         }
                                       });
  }

  void rotary(float* x, const float* cos, const float* sin, int64_t rows, int64_t heads,
              int64_t head_dim) {
    const int64_t half = head_dim / 2;
    default_thread_pool().parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* c = cos + r * head_dim;
        const float* s = sin + r * head_dim;
        for (int64_t h = 0; h < heads; ++h) {
          float* v = x + (r * heads + h) * head_dim;
          for (int64_t i = 0; i < half; ++i) {
            const float a = v[i], b = v[i + half];
            v[i] = a * c[i] - b * s[i];
            v[i + half] = b * c[i + half] + a * s[i + half];
          }
        }
      }
    });
  }

  void swiglu(const float* gate, const float* up, float* out, int64_t n) {
    elementwise(n, [&](int64_t i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    });
  }

  void gelu(float* x, int64_t n) {
    elementwise(n, [&](int64_t i) { x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f)); });
  }

  void add(float* x, const float* y, int64_t n) {
    elementwise(n, [&](int64_t i) { x[i] += y[i]; });
  }

  void embedding(const int32_t* ids, int64_t n, const float* table, float* out, int64_t dim) {
    gather_rows(table, ids, n, out, dim);
  }

  void gather_rows(const float* src, const int32_t* rows, int64_t n, float* out, int64_t dim) {
    for (int64_t i = 0; i < n; ++i) copy(out + i * dim, src + int64_t(rows[i]) * dim, dim);
  }

  void scatter_rows(const float* src, const int32_t* rows, int64_t n, float* dst, int64_t dim) {
    for (int64_t i = 0; i < n; ++i) copy(dst + int64_t(rows[i]) * dim, src + i * dim, dim);
  }

  void copy_columns(const float* src, int64_t rows, int64_t src_cols, int64_t col_offset, int64_t cols,
                    float* dst) {
    for (int64_t r = 0; r < rows; ++r) copy(dst + r * cols, src + r * src_cols + col_offset, cols);
  }


  void token_logprobs(const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                      const int32_t* targets, float temperature, float* out, float* entropy) {
    for (int64_t r0 = 0; r0 < rows; r0 += kLogitRowTile) {
      const int64_t nr = std::min(kLogitRowTile, rows - r0);
      const LogitStatistics st = logit_statistics(hidden + r0 * dim, head, nr, dim, vocab, targets + r0, temperature);
      for (int64_t r = 0; r < nr; ++r) {
        out[r0 + r] = float(st.target[size_t(r)] - st.lse[size_t(r)]);
        if (entropy) entropy[r0 + r] = float(st.lse[size_t(r)] - st.mean_z[size_t(r)]);  // H = lse - E[z]
      }
    }
  }

  void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int64_t m,
                       int64_t k, int64_t n) {
    if (dx) cpu::linear_dx(dy, w, dx, m, n, k);
    if (dw) cpu::linear_dw(dy, x, dw, m, n, k);
    if (db)
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c) db[c] += dy[r * n + c];
  }

  void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows,
                        int64_t dim, float eps) {
    std::vector<double> dw_acc(static_cast<size_t>(dim), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      double sum = 0.0, dot = 0.0;
      for (int64_t i = 0; i < dim; ++i) sum += double(xr[i]) * xr[i];
      const double inv = 1.0 / std::sqrt(sum / double(dim) + eps);
      for (int64_t i = 0; i < dim; ++i) {
        dot += double(w[i]) * dyr[i] * xr[i];
        dw_acc[size_t(i)] += double(dyr[i]) * xr[i] * inv;
      }
      if (dx)
        for (int64_t i = 0; i < dim; ++i)
          dx[r * dim + i] = float(inv * w[i] * dyr[i] - inv * inv * inv / double(dim) * xr[i] * dot);
    }
    if (dw)
      for (int64_t i = 0; i < dim; ++i) dw[i] += float(dw_acc[size_t(i)]);
  }

  void rotary_backward(float* dx, const float* cos, const float* sin, int64_t rows, int64_t heads,
                       int64_t head_dim) {
    const int64_t half = head_dim / 2;
    for (int64_t r = 0; r < rows; ++r) {
      const float* c = cos + r * head_dim;
      const float* s = sin + r * head_dim;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = dx + (r * heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const float da = v[i], db = v[i + half];
          v[i] = c[i] * da + s[i + half] * db;
          v[i + half] = -s[i] * da + c[i + half] * db;
        }
      }
    }
  }

  void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                       int64_t n) {
    elementwise(n, [&](int64_t i) {
      const float g = gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      dgate[i] = dout[i] * up[i] * (sig + g * sig * (1.0f - sig));
      dup[i] = dout[i] * g * sig;
    });
  }

  void gelu_backward(const float* x_in, float* dout, int64_t n) {
    elementwise(n, [&](int64_t i) {
      const double x = x_in[i];
      const double cdf = 0.5 * (1.0 + std::erf(x * 0.70710678118654752));
      const double pdf = std::exp(-0.5 * x * x) * 0.39894228040143268;
      dout[i] = float(dout[i] * (cdf + x * pdf));
    });
  }

  void embedding_backward(const int32_t* ids, int64_t n, const float* dout, float* dtable, int64_t dim) {
    for (int64_t i = 0; i < n; ++i) add(dtable + int64_t(ids[i]) * dim, dout + i * dim, dim);
  }


  void token_logprobs_backward(const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                               const int32_t* targets, float temperature, const float* dlogp, float* dhidden,
                               float* dhead) {
    // Per row tile: the log-sum-exp, then dlogit = dlogp (onehot - softmax) / T
    // per vocabulary tile, folded into dhidden and dhead at once.
    const double inv_t = 1.0 / double(temperature);
    std::vector<float> tile(static_cast<size_t>(kLogitRowTile * kLogitVocabTile));
    fill(dhidden, 0.0f, rows * dim);
    for (int64_t r0 = 0; r0 < rows; r0 += kLogitRowTile) {
      const int64_t nr = std::min(kLogitRowTile, rows - r0);
      const LogitStatistics st = logit_statistics(hidden + r0 * dim, head, nr, dim, vocab, targets + r0, temperature);
      std::vector<float> dhidden_tile(static_cast<size_t>(nr * dim));
      for (int64_t v0 = 0; v0 < vocab; v0 += kLogitVocabTile) {
        const int64_t nv = std::min(kLogitVocabTile, vocab - v0);
        cpu::linear(hidden + r0 * dim, head + v0 * dim, nullptr, tile.data(), nr, dim, nv);
        default_thread_pool().parallel_for(nr, 1, [&](int64_t begin, int64_t end) {
          std::vector<double> p(static_cast<size_t>(nv));
          for (int64_t r = begin; r < end; ++r) {
            float* row = tile.data() + r * nv;
            const double g = dlogp[r0 + r];
            const int64_t target = targets[r0 + r];
            cpu::exp_scaled_shifted(row, inv_t, st.lse[size_t(r)], nv, p.data());
            for (int64_t j = 0; j < nv; ++j) row[j] = float(g * ((v0 + j == target ? 1.0 : 0.0) - p[size_t(j)]) * inv_t);
          }
        });
        linear_backward(hidden + r0 * dim, head + v0 * dim, tile.data(), dhidden_tile.data(),
                        dhead ? dhead + v0 * dim : nullptr, nullptr, nr, dim, nv);
        add(dhidden + r0 * dim, dhidden_tile.data(), nr * dim);
      }
    }
  }

  void fill(float* x, float value, int64_t n) { std::fill(x, x + n, value); }

  std::unique_ptr<OpGraph> capture(const std::function<void()>& enqueue) override {
    struct Recorded final : OpGraph {
      explicit Recorded(std::function<void()> f) : ops(std::move(f)) {}
      void replay() override { ops(); }
      std::function<void()> ops;
    };
    return std::make_unique<Recorded>(enqueue);
  }

  // The decode step's index-array ops: backend memory is host memory here,
  // so they are the host-array ops on the same values (the same bits).
  void gather_rows_at(ConstDevicePtr src, ConstDevicePtr rows, int64_t n, DevicePtr out, int64_t dim) override {
    gather_rows(src.f32(), rows.i32("gather_rows_at: rows"), n, out.f32(), dim);
  }
  void scatter_rows_at(ConstDevicePtr src, ConstDevicePtr rows, int64_t n, DevicePtr dst, int64_t dim) override {
    scatter_rows(src.f32(), rows.i32("scatter_rows_at: rows"), n, dst.f32(), dim);
  }
  void paged_decode_attention(const PagedDecodeArgs& p) override {
    const int32_t* table = p.slot_table.i32("paged_decode_attention: slot_table");
    const int32_t* lengths = p.key_lengths.i32("paged_decode_attention: key_lengths");
    AttentionArgs a;
    a.q = p.q;
    a.k_pool = p.k_pool;
    a.v_pool = p.v_pool;
    a.out = p.out;
    a.heads = p.heads;
    a.kv_heads = p.kv_heads;
    a.head_dim = p.head_dim;
    a.scale = p.scale;
    for (int64_t r = 0; r < p.rows; ++r) {
      if (lengths[r] < 1 || lengths[r] > p.table_stride)
        throw std::invalid_argument("paged_decode_attention: row " + std::to_string(r) + " has " +
                                    std::to_string(lengths[r]) + " keys, outside [1, " +
                                    std::to_string(p.table_stride) + "]");
      a.sequences.push_back({r, 1, table + r * p.table_stride, lengths[r], true});
    }
    cpu::attention_forward(a);
  }
  void sample_tokens_at(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                        ConstDevicePtr seeds, ConstDevicePtr counters, DevicePtr tokens, DevicePtr logprobs) override {
    sample_tokens(logits, rows, vocab, options, seeds.u64("sample_tokens_at: seeds"),
                  counters.u64("sample_tokens_at: counters"), tokens.i32("sample_tokens_at: tokens"),
                  logprobs.f32("sample_tokens_at: logprobs"));
  }

  void sample_tokens(ConstDevicePtr logits_ptr, int64_t rows, int64_t vocab, const SamplingOptions& options,
                     const uint64_t* seeds, const uint64_t* counters, int32_t* tokens, float* logprobs) override {
    const float* logits = logits_ptr.f32("sample_tokens: logits");
    for (int64_t r = 0; r < rows; ++r) {
      const cpu::SampledToken s = cpu::sample_row(logits + r * vocab, vocab, options, seeds[r], counters[r]);
      tokens[r] = s.token;
      logprobs[r] = s.logprob;
    }
  }

  // The unfused sequence: log-probs to the host, the per-token terms there,
  // then the backward from the host gradient (all host memory here anyway).
  PolicyLossTotals policy_loss(ConstDevicePtr hidden_ptr, ConstDevicePtr head_ptr, int64_t rows, int64_t dim,
                               int64_t vocab, float temperature, const PolicyTokens& tokens,
                               const train::PolicyTermOptions& options, DevicePtr dhidden_ptr, DevicePtr dhead_ptr,
                               const PolicyTokenOutputs* outputs) override {
    const float *hidden = hidden_ptr.f32("policy_loss: hidden"), *head = head_ptr.f32("policy_loss: head");
    float *dhidden = dhidden_ptr.f32("policy_loss: dhidden"), *dhead = dhead_ptr.f32("policy_loss: dhead");
    PolicyLossTotals totals;
    if (rows <= 0) return totals;
    std::vector<float> logp(static_cast<size_t>(rows)), entropy(static_cast<size_t>(rows)),
        dlogp(static_cast<size_t>(rows));
    token_logprobs(hidden, head, rows, dim, vocab, tokens.targets, temperature, logp.data(), entropy.data());
    for (int64_t t = 0; t < rows; ++t) {
      const double ref = tokens.ref_logp != nullptr ? double(tokens.ref_logp[t]) : 0.0;
      const double old = tokens.old_logp != nullptr ? double(tokens.old_logp[t]) : 0.0;
      const double adv = tokens.advantages != nullptr ? double(tokens.advantages[t]) : 0.0;
      const train::PolicyTerms p = train::policy_terms(logp[size_t(t)], old, ref, adv, options);
      const double w = tokens.weights[t];
      totals.pg_loss += w * p.loss;
      totals.kl_loss += w * p.kl;
      totals.clip_high += p.clip_high;
      totals.clip_low += p.clip_low;
      totals.clip_dual += p.dual;
      if (!options.sft) totals.ppo_kl += old - double(logp[size_t(t)]);
      totals.kl += p.kl;
      totals.entropy += entropy[size_t(t)];
      totals.nonfinite += train::finite_value(p.loss) ? 0 : 1;
      dlogp[size_t(t)] = float(w * (p.grad + options.kl_coef * p.dkl));
      if (outputs != nullptr) {
        if (outputs->logp) outputs->logp[t] = logp[size_t(t)];
        if (outputs->ratio) outputs->ratio[t] = float(p.ratio);
        if (outputs->kl) outputs->kl[t] = float(p.kl);
      }
    }
    totals.loss = totals.pg_loss + options.kl_coef * totals.kl_loss;
    if (dhidden != nullptr || dhead != nullptr) {
      std::vector<float> scratch;
      if (dhidden == nullptr) scratch.resize(size_t(rows * dim));
      token_logprobs_backward(hidden, head, rows, dim, vocab, tokens.targets, temperature, dlogp.data(),
                              dhidden != nullptr ? dhidden : scratch.data(), dhead);
    }
    return totals;
  }

  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float grad_scale,
             const train::AdamWOptions& options) {
    train::adamw_step(param, grad, m, v, n, step, grad_scale, options);
  }

  double sum_squares(const float* x, int64_t n) { return train::sum_squares(x, n); }

 private:
  BlockCache blocks_;

  // Tiles of the [rows x vocab] logits: kLogitRowTile rows by kLogitVocabTile
  // entries (1 MiB), never more at once. 64 rows (not 16) so the head's
  // products take the packed GEMM path (32 rows or more): the tiny model's
  // training step went from 34 to 27 ms with it.
  static constexpr int64_t kLogitRowTile = 64, kLogitVocabTile = 4096;

  // Per row of one row tile of z = hidden head^T / T: log-sum-exp, mean of z
  // under softmax(z) (for the entropy) and the target's z, from running
  // maxima over vocabulary tiles.
  struct LogitStatistics {
    std::vector<double> lse, mean_z, target;
  };
  LogitStatistics logit_statistics(const float* hidden, const float* head, int64_t nr, int64_t dim, int64_t vocab,
                                   const int32_t* targets, float temperature) {
    const double inv_t = 1.0 / double(temperature);
    std::vector<float> tile(static_cast<size_t>(nr * kLogitVocabTile));
    std::vector<double> max(static_cast<size_t>(nr), -INFINITY), sum(static_cast<size_t>(nr), 0.0),
        zsum(static_cast<size_t>(nr), 0.0);
    LogitStatistics st;
    st.target.assign(size_t(nr), 0.0);
    for (int64_t v0 = 0; v0 < vocab; v0 += kLogitVocabTile) {
      const int64_t nv = std::min(kLogitVocabTile, vocab - v0);
      cpu::linear(hidden, head + v0 * dim, nullptr, tile.data(), nr, dim, nv);
      // Rows are independent and each is summed in vocabulary order, so the
      // split over threads does not change a bit.
      default_thread_pool().parallel_for(nr, 1, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const float* row = tile.data() + r * nv;
          // inv_t > 0, so the largest z is the largest logit's.
          const double m = std::max(max[size_t(r)], double(cpu::max_value(row, nv)) * inv_t);
          const double rescale = std::exp(max[size_t(r)] - m);
          double s = 0.0, zs = 0.0;
          cpu::sum_exp_scaled_shifted(row, inv_t, m, nv, &s, &zs);
          max[size_t(r)] = m;
          sum[size_t(r)] = sum[size_t(r)] * rescale + s;
          zsum[size_t(r)] = zsum[size_t(r)] * rescale + zs;
          if (targets[r] >= v0 && targets[r] < v0 + nv) st.target[size_t(r)] = double(row[targets[r] - v0]) * inv_t;
        }
      });
    }
    st.lse.resize(size_t(nr));
    st.mean_z.resize(size_t(nr));
    for (int64_t r = 0; r < nr; ++r) {
      st.lse[size_t(r)] = max[size_t(r)] + std::log(sum[size_t(r)]);
      st.mean_z[size_t(r)] = zsum[size_t(r)] / sum[size_t(r)];
    }
    return st;
  }

  template <class F>
  void elementwise(int64_t n, F&& f) {
    default_thread_pool().parallel_for(n, kElementGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) f(i);
    });
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace st
