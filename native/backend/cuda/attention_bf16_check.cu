// Test-only: runs the bf16 attention kernels on fp32 host arrays (see
// attention_bf16_check.h), on a stream of its own.
#include <stdexcept>

#include "backend/cuda/attention_bf16_check.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/flash_attention.cuh"

namespace st::cuda {
namespace {

__global__ void to_bf16_kernel(const float* x, int64_t n, __nv_bfloat16* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}

__global__ void from_bf16_kernel(const __nv_bfloat16* x, int64_t n, float* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}

class Stream {
 public:
  Stream() { check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(s_); }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("bf16 attention check: " + what);
}

std::unique_ptr<Temp<float>> upload(const std::vector<float>& host, cudaStream_t s) {
  auto t = std::make_unique<Temp<float>>(int64_t(host.size()), s, "upload");
  copy_to_device(t->get(), host.data(), int64_t(host.size()), s, "upload");
  return t;
}

std::unique_ptr<Temp<__nv_bfloat16>> upload_bf16(const std::vector<float>& host, cudaStream_t s) {
  const auto staged = upload(host, s);
  auto t = std::make_unique<Temp<__nv_bfloat16>>(int64_t(host.size()), s, "upload");
  if (!host.empty()) {
    ST_LAUNCH(to_bf16_kernel, grid_for(int64_t(host.size()), 256), 256, 0, s)(
        static_cast<const float*>(staged->get()), int64_t(host.size()), t->get());
    check_launch("to bf16");
  }
  check(cudaStreamSynchronize(s), "upload");  // the staging array goes now
  return t;
}

std::vector<float> download(const float* d, int64_t n, cudaStream_t s) {
  std::vector<float> h(static_cast<size_t>(n));
  if (n > 0) check(cudaMemcpyAsync(h.data(), d, size_t(n) * sizeof(float), cudaMemcpyDeviceToHost, s), "download");
  check(cudaStreamSynchronize(s), "download");
  return h;
}

std::vector<float> download_bf16(const __nv_bfloat16* d, int64_t n, cudaStream_t s) {
  Temp<float> wide(n, s, "download");
  if (n > 0) {
    ST_LAUNCH(from_bf16_kernel, grid_for(n, 256), 256, 0, s)(d, n, wide.get());
    check_launch("from bf16");
  }
  return download(wide.get(), n, s);
}

}  // namespace

Bf16AttentionResult run_bf16_attention_check(const Bf16AttentionCheck& c) {
  const int64_t width = c.rows * c.heads * c.head_dim, kv = c.slots * c.kv_heads * c.head_dim;
  require(int64_t(c.q.size()) == width, "q has " + std::to_string(c.q.size()) + " entries, not " + std::to_string(width));
  require(int64_t(c.k_pool.size()) == kv && int64_t(c.v_pool.size()) == kv,
          "k_pool and v_pool need " + std::to_string(kv) + " entries each");
  for (const AttentionSequence& s : c.sequences) {
    require(s.q_offset + s.q_len <= c.rows, "a sequence's queries run past the rows of q");
    for (int64_t j = 0; j < s.k_len; ++j) require(s.key_slots[j] >= 0 && s.key_slots[j] < c.slots, "a key slot is outside the pools");
  }
  Stream stream;
  const cudaStream_t s = stream.get();
  Bf16AttentionResult r;
  {
    const auto q = upload_bf16(c.q, s), k = upload_bf16(c.k_pool, s), v = upload_bf16(c.v_pool, s);
    Bf16AttentionArgs a;
    a.q = q->get();
    a.k_pool = k->get();
    a.v_pool = v->get();
    a.heads = c.heads;
    a.kv_heads = c.kv_heads;
    a.head_dim = c.head_dim;
    a.scale = c.scale;
    a.sequences = &c.sequences;
    if (c.kernel == "forward" || c.kernel == "decode") {
      Temp<__nv_bfloat16> out(width, s, "attention");
      // Rows no sequence covers keep NaN, so a row the kernel skips shows.
      check(cudaMemsetAsync(out.get(), 0xff, size_t(width) * sizeof(__nv_bfloat16), s), "attention");
      if (c.kernel == "forward") flash_attention_forward(a, out.get(), nullptr, s);
      else decode_attention(a, out.get(), c.splits, s);
      r.out = download_bf16(out.get(), width, s);
    } else if (c.kernel == "backward") {
      require(int64_t(c.dout.size()) == width, "dout needs " + std::to_string(width) + " entries");
      const auto dout = upload_bf16(c.dout, s);
      Temp<float> dq(width, s, "attention_backward");
      check(cudaMemsetAsync(dq.get(), 0xff, size_t(width) * sizeof(float), s), "attention_backward");
      std::unique_ptr<Temp<float>> dk, dv;
      if (!c.dk_pool.empty()) {
        require(int64_t(c.dk_pool.size()) == kv, "dk_pool needs " + std::to_string(kv) + " entries");
        dk = upload(c.dk_pool, s);
      }
      if (!c.dv_pool.empty()) {
        require(int64_t(c.dv_pool.size()) == kv, "dv_pool needs " + std::to_string(kv) + " entries");
        dv = upload(c.dv_pool, s);
      }
      flash_attention_backward(a, dout->get(), dq.get(), dk ? dk->get() : nullptr, dv ? dv->get() : nullptr, s);
      r.dq = download(dq.get(), width, s);
      if (dk) r.dk_pool = download(dk->get(), kv, s);
      if (dv) r.dv_pool = download(dv->get(), kv, s);
    } else {
      require(false, "unknown kernel \"" + c.kernel + "\" (forward, backward or decode)");
    }
    check(cudaStreamSynchronize(s), "bf16 attention check");
  }
  check(cudaStreamSynchronize(s), "bf16 attention check");
  return r;
}

}  // namespace st::cuda
