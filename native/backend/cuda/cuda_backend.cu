// The CUDA backend: every Backend op on device memory, on one stream of its
// own. Weights, activations and the KV cache are bf16 by default (fp32 on
// request, for parity checks); kernels compute in fp32 and round once on a
// bf16 store, and products accumulate in fp32 (see backend.h for what stays
// fp32). Kernels live in elementwise.cu, attention.cu, logprobs.cu, sampling.cu
// and loss.cu;
// matrix products go through cuBLAS (cublas.cu).
//
// Ops that take host arrays (ids, rows, targets, key slots, dlogp) copy them
// to stream-ordered temporaries; ops that return host values (download,
// token_logprobs, sum_squares) wait for the stream. Everything else is
// asynchronous, so a kernel fault surfaces at the next waiting call;
// SPATIALTHINKER_CUDA_SYNC=1 waits after every op instead.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/device.h"
#include "backend/cuda/kernels.cuh"
#include "distributed/local_device.h"

namespace st {
namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, Storage storage, bool tf32, bool sync_each_op)
      : device_(device), storage_(storage), sync_(sync_each_op) {
    cuda::check(cudaSetDevice(device_), "cudaSetDevice");
    cuda::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    // Keep freed pool memory for reuse instead of returning it to the driver
    // at every synchronisation: the model frees and reallocates activations
    // of the same sizes on every call. Best effort.
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess) {
      uint64_t keep = UINT64_MAX;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cudaGetLastError();
    try {
      gemm_ = std::make_unique<cuda::Gemm>(stream_, tf32);
    } catch (...) {
      cudaStreamDestroy(stream_);
      throw;
    }
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    host_state_stepper_.reset();
    gemm_.reset();
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }
  Storage storage() const override { return storage_; }

  DevicePtr alloc(int64_t count, Storage type) override {
    enter();
    if (count <= 0) return DevicePtr(nullptr, type);
    const size_t bytes = size_t(count * storage_bytes(type));
    void* ptr = nullptr;
    try {
      ptr = cuda::device_alloc(bytes, stream_, "alloc");
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string(e.what()) + " while allocating " + std::to_string(bytes >> 20) + " MiB");
    }
    done("alloc");
    return DevicePtr(ptr, type);
  }

  bool memory_is_host() const override { return false; }

  void free(DevicePtr ptr) override {
    if (ptr == nullptr) return;
    cudaSetDevice(device_);  // no throw: DeviceArray frees in destructors
    cuda::device_free(ptr.data(), stream_);
  }

  // Into bf16 the host rounds (to nearest even, as the kernels do) and sends
  // half the bytes.
  void upload(DevicePtr dst, const float* host, int64_t count) override {
    enter();
    if (dst.type() == Storage::F32) {
      cuda::copy_to_device(static_cast<float*>(dst.data()), host, count, stream_, "upload");
    } else {
      std::vector<cuda::bf16> rounded(static_cast<size_t>(std::max<int64_t>(count, 0)));
      for (int64_t i = 0; i < count; ++i) rounded[size_t(i)] = cuda::from_f32<cuda::bf16>(host[i]);
      cuda::copy_to_device(static_cast<cuda::bf16*>(dst.data()), rounded.data(), count, stream_, "upload");
    }
    done("upload");
  }

  void upload_raw(DevicePtr dst, const void* host, int64_t count) override {
    enter();
    if (count > 0)
      cuda::check(cudaMemcpyAsync(dst.data(), host, size_t(count * storage_bytes(dst.type())), cudaMemcpyHostToDevice,
                                  stream_),
                  "upload");
    // The host bytes may be a mapped file's pages that the caller releases
    // next: a pageable copy is staged before the call returns, but wait for
    // it all the same so the source may go at once.
    cuda::check(cudaStreamSynchronize(stream_), "upload");
  }

  void download(float* host, ConstDevicePtr src, int64_t count) override {
    enter();
    if (src.type() == Storage::F32) {
      if (count > 0)
        cuda::check(cudaMemcpyAsync(host, src.data(), size_t(count) * sizeof(float), cudaMemcpyDeviceToHost, stream_),
                    "download");
      cuda::check(cudaStreamSynchronize(stream_), "download");
      return;
    }
    std::vector<cuda::bf16> raw(static_cast<size_t>(std::max<int64_t>(count, 0)));
    if (count > 0)
      cuda::check(cudaMemcpyAsync(raw.data(), src.data(), size_t(count) * sizeof(cuda::bf16), cudaMemcpyDeviceToHost,
                                  stream_),
                  "download");
    cuda::check(cudaStreamSynchronize(stream_), "download");
    for (int64_t i = 0; i < count; ++i) host[i] = cuda::to_f32(raw[size_t(i)]);
  }

  void download_raw(void* host, ConstDevicePtr src, int64_t count) override {
    enter();
    if (count > 0)
      cuda::check(cudaMemcpyAsync(host, src.data(), size_t(count * storage_bytes(src.type())), cudaMemcpyDeviceToHost,
                                  stream_),
                  "download");
    cuda::check(cudaStreamSynchronize(stream_), "download");
  }

  void copy(DevicePtr dst, ConstDevicePtr src, int64_t count) override {
    enter();
    if (dst.type() != src.type()) {
      cuda::convert(dst, src, count, stream_);
    } else if (count > 0) {
      cuda::check(cudaMemcpyAsync(dst.data(), src.data(), size_t(count * storage_bytes(dst.type())),
                                  cudaMemcpyDeviceToDevice, stream_),
                  "copy");
    }
    done("copy");
  }

  void linear(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr bias, DevicePtr y, int64_t m, int64_t k,
              int64_t n) override {
    enter();
    if (bias != nullptr && y.type() != Storage::F32) {
      // The bias first, then the product added to it in fp32: one rounding.
      cuda::broadcast_rows(y, bias, m, n, stream_);
      gemm_->xwt(x, w, y, m, k, n, 1.0f);
    } else {
      gemm_->xwt(x, w, y, m, k, n, 0.0f);
      if (bias != nullptr) cuda::add_bias(y, bias, m, n, stream_);
    }
    done("linear");
  }

  void rmsnorm(ConstDevicePtr x, ConstDevicePtr w, DevicePtr y, int64_t rows, int64_t dim, float eps) override {
    enter();
    cuda::rmsnorm_forward(x, w, y, rows, dim, eps, stream_);
    done("rmsnorm");
  }

  void rotary(DevicePtr x, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
              int64_t head_dim) override {
    enter();
    cuda::rotary_forward(x, cos, sin, rows, heads, head_dim, stream_);
    done("rotary");
  }

  void swiglu(ConstDevicePtr gate, ConstDevicePtr up, DevicePtr out, int64_t n) override {
    enter();
    cuda::swiglu_forward(gate, up, out, n, stream_);
    done("swiglu");
  }

  void gelu(DevicePtr x, int64_t n) override {
    enter();
    cuda::gelu_forward(x, n, stream_);
    done("gelu");
  }

  void add(DevicePtr x, ConstDevicePtr y, int64_t n) override {
    enter();
    cuda::add(x, y, n, stream_);
    done("add");
  }

  void embedding(const int32_t* ids, int64_t n, ConstDevicePtr table, DevicePtr out, int64_t dim) override {
    enter();
    with_device_rows(ids, n, "embedding", [&](const int32_t* rows) { cuda::gather_rows(table, rows, n, out, dim, stream_); });
    done("embedding");
  }

  void gather_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr out, int64_t dim) override {
    enter();
    with_device_rows(rows, n, "gather_rows", [&](const int32_t* d) { cuda::gather_rows(src, d, n, out, dim, stream_); });
    done("gather_rows");
  }

  // Rows must be distinct (as everywhere the model scatters): with repeats,
  // which write wins is unspecified.
  void scatter_rows(ConstDevicePtr src, const int32_t* rows, int64_t n, DevicePtr dst, int64_t dim) override {
    enter();
    with_device_rows(rows, n, "scatter_rows", [&](const int32_t* d) { cuda::scatter_rows(src, d, n, dst, dim, stream_); });
    done("scatter_rows");
  }

  void copy_columns(ConstDevicePtr src, int64_t rows, int64_t src_cols, int64_t col_offset, int64_t cols,
                    DevicePtr dst) override {
    enter();
    if (src.type() != dst.type())
      throw std::invalid_argument(std::string("CUDA backend: copy_columns: src is ") + storage_name(src.type()) +
                                  " but dst " + storage_name(dst.type()));
    const size_t element = size_t(storage_bytes(src.type()));
    if (rows > 0 && cols > 0)
      cuda::check(cudaMemcpy2DAsync(dst.data(), size_t(cols) * element, (src + col_offset).data(),
                                    size_t(src_cols) * element, size_t(cols) * element, size_t(rows),
                                    cudaMemcpyDeviceToDevice, stream_),
                  "copy_columns");
    done("copy_columns");
  }

  void attention(const AttentionArgs& args) override {
    enter();
    cuda::attention_forward(args, stream_);
    done("attention");
  }

  void token_logprobs(ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                      const int32_t* targets, float temperature, float* out, float* entropy) override {
    enter();
    cuda::token_logprobs(*gemm_, hidden, head, rows, dim, vocab, targets, temperature, out, entropy, stream_);
    done("token_logprobs");
  }

  void linear_backward(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr dy, DevicePtr dx, DevicePtr dw,
                       DevicePtr db, int64_t m, int64_t k, int64_t n) override {
    enter();
    if (dx != nullptr) gemm_->dyw(dy, w, dx, m, n, k, 0.0f);
    if (dw != nullptr) gemm_->dytx(dy, x, dw, m, n, k, 1.0f);
    if (db != nullptr) cuda::add_column_sums(dy, m, n, db, stream_);
    done("linear_backward");
  }

  void rmsnorm_backward(ConstDevicePtr x, ConstDevicePtr w, ConstDevicePtr dy, DevicePtr dx, DevicePtr dw,
                        int64_t rows, int64_t dim, float eps) override {
    enter();
    cuda::rmsnorm_backward(x, w, dy, dx, dw, rows, dim, eps, stream_);
    done("rmsnorm_backward");
  }

  void rotary_backward(DevicePtr dx, ConstDevicePtr cos, ConstDevicePtr sin, int64_t rows, int64_t heads,
                       int64_t head_dim) override {
    enter();
    cuda::rotary_backward(dx, cos, sin, rows, heads, head_dim, stream_);
    done("rotary_backward");
  }

  void swiglu_backward(ConstDevicePtr gate, ConstDevicePtr up, ConstDevicePtr dout, DevicePtr dgate, DevicePtr dup,
                       int64_t n) override {
    enter();
    cuda::swiglu_backward(gate, up, dout, dgate, dup, n, stream_);
    done("swiglu_backward");
  }

  void gelu_backward(ConstDevicePtr x_in, DevicePtr dout, int64_t n) override {
    enter();
    cuda::gelu_backward(x_in, dout, n, stream_);
    done("gelu_backward");
  }

  void embedding_backward(const int32_t* ids, int64_t n, ConstDevicePtr dout, DevicePtr dtable, int64_t dim) override {
    enter();
    cuda::embedding_backward(ids, n, dout, dtable, dim, stream_);
    done("embedding_backward");
  }

  void attention_backward(const AttentionArgs& forward, ConstDevicePtr dout, DevicePtr dq, DevicePtr dk_pool,
                          DevicePtr dv_pool) override {
    enter();
    cuda::attention_backward(forward, dout, dq, dk_pool, dv_pool, stream_);
    done("attention_backward");
  }

  void token_logprobs_backward(ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                               const int32_t* targets, float temperature, const float* dlogp, DevicePtr dhidden,
                               DevicePtr dhead) override {
    enter();
    cuda::token_logprobs_backward(*gemm_, hidden, head, rows, dim, vocab, targets, temperature, dlogp, dhidden, dhead,
                                  stream_);
    done("token_logprobs_backward");
  }

  std::unique_ptr<OpGraph> capture(const std::function<void()>& enqueue) override {
    enter();
    cuda::check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "capture");
    capturing_ = true;
    cudaGraph_t graph = nullptr;
    try {
      enqueue();
    } catch (const std::exception& e) {
      capturing_ = false;
      cudaStreamEndCapture(stream_, &graph);
      if (graph != nullptr) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw std::runtime_error(std::string("CUDA backend: capture: an op could not be captured (ops that take or "
                                           "return host arrays or wait for the device cannot be): ") +
                               e.what());
    }
    capturing_ = false;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (ended != cudaSuccess) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      cuda::throw_cuda_error("capture (an op in it takes host arrays or waits for the device)", ended);
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    if (made != cudaSuccess) {
      cudaGraphDestroy(graph);
      cuda::throw_cuda_error("cudaGraphInstantiate", made);
    }
    return std::make_unique<Graph>(*this, graph, exec);
  }

  void sample_tokens(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                     const uint64_t* seeds, const uint64_t* counters, int32_t* tokens, float* logprobs) override {
    enter();
    cuda::sample_tokens(logits, rows, vocab, options, seeds, counters, tokens, logprobs, stream_);
  }

  void gather_rows_at(ConstDevicePtr src, ConstDevicePtr rows, int64_t n, DevicePtr out, int64_t dim) override {
    enter();
    if (n > 0) cuda::gather_rows(src, rows.i32("gather_rows_at: rows"), n, out, dim, stream_);
    done("gather_rows_at");
  }

  void scatter_rows_at(ConstDevicePtr src, ConstDevicePtr rows, int64_t n, DevicePtr dst, int64_t dim) override {
    enter();
    if (n > 0) cuda::scatter_rows(src, rows.i32("scatter_rows_at: rows"), n, dst, dim, stream_);
    done("scatter_rows_at");
  }

  void paged_decode_attention(const PagedDecodeArgs& args) override {
    enter();
    cuda::paged_decode_attention(args, stream_);
    done("paged_decode_attention");
  }

  void sample_tokens_at(ConstDevicePtr logits, int64_t rows, int64_t vocab, const SamplingOptions& options,
                        ConstDevicePtr seeds, ConstDevicePtr counters, DevicePtr tokens, DevicePtr logprobs) override {
    enter();
    cuda::sample_tokens_at(logits, rows, vocab, options, seeds.u64("sample_tokens_at: seeds"),
                           counters.u64("sample_tokens_at: counters"), tokens.i32("sample_tokens_at: tokens"),
                           logprobs.f32("sample_tokens_at: logprobs"), stream_);
    done("sample_tokens_at");
  }

  PolicyLossTotals policy_loss(ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                               float temperature, const PolicyTokens& tokens, const train::PolicyTermOptions& options,
                               DevicePtr dhidden, DevicePtr dhead, const PolicyTokenOutputs* outputs) override {
    enter();
    return cuda::policy_loss(*gemm_, hidden, head, rows, dim, vocab, temperature, tokens, options, dhidden, dhead,
                             outputs, stream_);
  }

  void fill(DevicePtr x, float value, int64_t n) override {
    enter();
    cuda::fill(x, value, n, stream_);
    done("fill");
  }

  void adamw(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, int64_t n, int64_t step,
             float grad_scale, const train::AdamWOptions& options) override {
    enter();
    cuda::adamw(param, grad, m, v, n, step, grad_scale, options, stream_);
    done("adamw");
  }

  double sum_squares(ConstDevicePtr x, int64_t n) override {
    enter();
    return cuda::sum_squares(x, n, stream_);
  }

  void adamw_bf16(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, DevicePtr compensation, int64_t n,
                  int64_t step, float grad_scale, const train::AdamWOptions& options) override {
    enter();
    cuda::adamw_bf16(param, grad, m, v, compensation, n, step, grad_scale, options, stream_);
    done("adamw_bf16");
  }

  DevicePtr alloc_host(int64_t count, Storage type) override {
    enter();
    if (count <= 0) return DevicePtr(nullptr, type);
    void* ptr = nullptr;
    const size_t bytes = size_t(count * storage_bytes(type));
    if (cudaHostAlloc(&ptr, bytes, cudaHostAllocDefault) != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error("cudaHostAlloc: could not pin " + std::to_string(bytes >> 20) +
                               " MiB of host memory for the offloaded optimizer state");
    }
    return DevicePtr(ptr, type);
  }

  void free_host(DevicePtr ptr) override {
    if (ptr == nullptr) return;
    cudaSetDevice(device_);  // no throw: freed in destructors
    cudaFreeHost(ptr.data());
  }

  void optimizer_step_host_state(train::OptimizerStrategy strategy, DevicePtr param, ConstDevicePtr grad,
                                 DevicePtr m_host, DevicePtr v_host, DevicePtr compensation_host, int64_t n,
                                 int64_t step, float grad_scale, const train::AdamWOptions& options) override {
    enter();
    // 4 Mi entries a chunk: 16 MiB per fp32 array in flight, enough to keep
    // PCIe busy; the staging (2 slots x 3 arrays) is 96 MiB, made on first use.
    // SPATIALTHINKER_OFFLOAD_CHUNK (entries) makes it smaller: the tests
    // stream a few thousand entries through several chunks.
    if (!host_state_stepper_) {
      int64_t chunk = int64_t(1) << 22;
      if (const char* v = std::getenv("SPATIALTHINKER_OFFLOAD_CHUNK"); v != nullptr && std::atoll(v) > 0)
        chunk = std::atoll(v);
      host_state_stepper_ = std::make_unique<cuda::HostStateStepper>(chunk);
    }
    host_state_stepper_->step(strategy, param, grad, m_host, v_host, compensation_host, n, step, grad_scale, options,
                              stream_);
  }


 private:
  class Graph final : public OpGraph {
   public:
    Graph(CudaBackend& owner, cudaGraph_t graph, cudaGraphExec_t exec) : owner_(owner), graph_(graph), exec_(exec) {}
    ~Graph() override {
      cudaSetDevice(owner_.device_);
      cudaStreamSynchronize(owner_.stream_);  // a replay may still be running
      cudaGraphExecDestroy(exec_);
      cudaGraphDestroy(graph_);
    }
    void replay() override {
      owner_.enter();
      cuda::check(cudaGraphLaunch(exec_, owner_.stream_), "graph replay");
      owner_.done("graph replay");
    }

   private:
    CudaBackend& owner_;
    cudaGraph_t graph_;
    cudaGraphExec_t exec_;
  };

  // The current device is per host thread, and calls arrive on whichever
  // worker thread runs them.
  void enter() { cuda::check(cudaSetDevice(device_), "cudaSetDevice"); }
  void done(const char* op) {
    if (sync_ && !capturing_) cuda::check(cudaStreamSynchronize(stream_), op);
  }

  // Runs f with a device copy of n host row indices.
  template <class F>
  void with_device_rows(const int32_t* host_rows, int64_t n, const char* op, F&& f) {
    if (n <= 0) return;
    cuda::Temp<int32_t> rows(n, stream_, op);
    cuda::copy_to_device(rows.get(), host_rows, n, stream_, op);
    f(rows.get());
  }

  int device_;
  Storage storage_;
  bool sync_;
  bool capturing_ = false;  // no per-op waits while a graph is recorded
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::Gemm> gemm_;
  std::unique_ptr<cuda::HostStateStepper> host_state_stepper_;
};

}  // namespace

Storage cuda_storage_from_env() {
  const char* v = std::getenv("SPATIALTHINKER_CUDA_DTYPE");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "bf16") == 0) return Storage::BF16;
  if (std::strcmp(v, "fp32") == 0) return Storage::F32;
  throw std::invalid_argument(std::string("SPATIALTHINKER_CUDA_DTYPE=") + v + " is not a storage type (use bf16 or fp32)");
}

std::unique_ptr<Backend> make_cuda_backend(Storage storage) {
  const cuda::RuntimeInfo& info = cuda::runtime_info();
  if (!info.unavailable_reason.empty())
    throw std::runtime_error("the CUDA backend is unavailable: " + info.unavailable_reason);
  std::vector<int> usable;
  for (const cuda::DeviceInfo& d : info.devices)
    if (d.usable) usable.push_back(d.index);
  if (usable.empty()) throw std::runtime_error("the CUDA backend is unavailable: no usable device");
  // A launched worker drives its LOCAL_RANK's device, as its NCCL communicator does.
  const int device = dist::device_for_this_process(usable);
  // TF32 products are opt-in: fp32 by default, as PyTorch does for matmul.
  return std::make_unique<CudaBackend>(device, storage, env_flag("SPATIALTHINKER_CUDA_TF32"),
                                       env_flag("SPATIALTHINKER_CUDA_SYNC"));
}

}  // namespace st
