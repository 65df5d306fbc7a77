// The CUDA backend: every Backend op on device memory, in fp32, on one stream
// of its own. Kernels live in elementwise.cu, attention.cu and logprobs.cu;
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
  CudaBackend(int device, bool tf32, bool sync_each_op) : device_(device), sync_(sync_each_op) {
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
    gemm_.reset();
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }

  float* alloc(int64_t count) override {
    enter();
    if (count <= 0) return nullptr;
    const size_t bytes = size_t(count) * sizeof(float);
    float* ptr = nullptr;
    try {
      ptr = static_cast<float*>(cuda::device_alloc(bytes, stream_, "alloc"));
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string(e.what()) + " while allocating " + std::to_string(bytes >> 20) + " MiB");
    }
    done("alloc");
    return ptr;
  }

  bool memory_is_host() const override { return false; }

  void free(float* ptr) override {
    if (ptr == nullptr) return;
    cudaSetDevice(device_);  // no throw: DeviceArray frees in destructors
    cuda::device_free(ptr, stream_);
  }

  void upload(float* dst, const float* host, int64_t count) override {
    enter();
    cuda::copy_to_device(dst, host, count, stream_, "upload");
    done("upload");
  }

  void download(float* host, const float* src, int64_t count) override {
    enter();
    if (count > 0)
      cuda::check(cudaMemcpyAsync(host, src, size_t(count) * sizeof(float), cudaMemcpyDeviceToHost, stream_),
                  "download");
    cuda::check(cudaStreamSynchronize(stream_), "download");
  }

  void copy(float* dst, const float* src, int64_t count) override {
    enter();
    if (count > 0)
      cuda::check(cudaMemcpyAsync(dst, src, size_t(count) * sizeof(float), cudaMemcpyDeviceToDevice, stream_), "copy");
    done("copy");
  }

  void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k,
              int64_t n) override {
    enter();
    gemm_->xwt(x, w, y, m, k, n, 0.0f);
    if (bias != nullptr) cuda::add_bias(y, bias, m, n, stream_);
    done("linear");
  }

  void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) override {
    enter();
    cuda::rmsnorm_forward(x, w, y, rows, dim, eps, stream_);
    done("rmsnorm");
  }

  void rotary(float* x, const float* cos, const float* sin, int64_t rows, int64_t heads, int64_t head_dim) override {
    enter();
    cuda::rotary_forward(x, cos, sin, rows, heads, head_dim, stream_);
    done("rotary");
  }

  void swiglu(const float* gate, const float* up, float* out, int64_t n) override {
    enter();
    cuda::swiglu_forward(gate, up, out, n, stream_);
    done("swiglu");
  }

  void gelu(float* x, int64_t n) override {
    enter();
    cuda::gelu_forward(x, n, stream_);
    done("gelu");
  }

  void add(float* x, const float* y, int64_t n) override {
    enter();
    cuda::add(x, y, n, stream_);
    done("add");
  }

  void embedding(const int32_t* ids, int64_t n, const float* table, float* out, int64_t dim) override {
    enter();
    with_device_rows(ids, n, "embedding", [&](const int32_t* rows) { cuda::gather_rows(table, rows, n, out, dim, stream_); });
    done("embedding");
  }

  void gather_rows(const float* src, const int32_t* rows, int64_t n, float* out, int64_t dim) override {
    enter();
    with_device_rows(rows, n, "gather_rows", [&](const int32_t* d) { cuda::gather_rows(src, d, n, out, dim, stream_); });
    done("gather_rows");
  }

  // Rows must be distinct (as everywhere the model scatters): with repeats,
  // which write wins is unspecified.
  void scatter_rows(const float* src, const int32_t* rows, int64_t n, float* dst, int64_t dim) override {
    enter();
    with_device_rows(rows, n, "scatter_rows", [&](const int32_t* d) { cuda::scatter_rows(src, d, n, dst, dim, stream_); });
    done("scatter_rows");
  }

  void copy_columns(const float* src, int64_t rows, int64_t src_cols, int64_t col_offset, int64_t cols,
                    float* dst) override {
    enter();
    if (rows > 0 && cols > 0)
      cuda::check(cudaMemcpy2DAsync(dst, size_t(cols) * sizeof(float), src + col_offset,
                                    size_t(src_cols) * sizeof(float), size_t(cols) * sizeof(float), size_t(rows),
                                    cudaMemcpyDeviceToDevice, stream_),
                  "copy_columns");
    done("copy_columns");
  }

  void attention(const AttentionArgs& args) override {
    enter();
    cuda::attention_forward(args, stream_);
    done("attention");
  }

  void token_logprobs(const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                      const int32_t* targets, float temperature, float* out, float* entropy) override {
    enter();
    cuda::token_logprobs(*gemm_, hidden, head, rows, dim, vocab, targets, temperature, out, entropy, stream_);
    done("token_logprobs");
  }

  void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int64_t m,
                       int64_t k, int64_t n) override {
    enter();
    if (dx != nullptr) gemm_->dyw(dy, w, dx, m, n, k, 0.0f);
    if (dw != nullptr) gemm_->dytx(dy, x, dw, m, n, k, 1.0f);
    if (db != nullptr) cuda::add_column_sums(dy, m, n, db, stream_);
    done("linear_backward");
  }

  void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows,
                        int64_t dim, float eps) override {
    enter();
    cuda::rmsnorm_backward(x, w, dy, dx, dw, rows, dim, eps, stream_);
    done("rmsnorm_backward");
  }

  void rotary_backward(float* dx, const float* cos, const float* sin, int64_t rows, int64_t heads,
                       int64_t head_dim) override {
    enter();
    cuda::rotary_backward(dx, cos, sin, rows, heads, head_dim, stream_);
    done("rotary_backward");
  }

  void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                       int64_t n) override {
    enter();
    cuda::swiglu_backward(gate, up, dout, dgate, dup, n, stream_);
    done("swiglu_backward");
  }

  void gelu_backward(const float* x_in, float* dout, int64_t n) override {
    enter();
    cuda::gelu_backward(x_in, dout, n, stream_);
    done("gelu_backward");
  }

  void embedding_backward(const int32_t* ids, int64_t n, const float* dout, float* dtable, int64_t dim) override {
    enter();
    cuda::embedding_backward(ids, n, dout, dtable, dim, stream_);
    done("embedding_backward");
  }

  void attention_backward(const AttentionArgs& forward, const float* dout, float* dq, float* dk_pool,
                          float* dv_pool) override {
    enter();
    cuda::attention_backward(forward, dout, dq, dk_pool, dv_pool, stream_);
    done("attention_backward");
  }

  void token_logprobs_backward(const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                               const int32_t* targets, float temperature, const float* dlogp, float* dhidden,
                               float* dhead) override {
    enter();
    cuda::token_logprobs_backward(*gemm_, hidden, head, rows, dim, vocab, targets, temperature, dlogp, dhidden, dhead,
                                  stream_);
    done("token_logprobs_backward");
  }

  void fill(float* x, float value, int64_t n) override {
    enter();
    cuda::fill(x, value, n, stream_);
    done("fill");
  }

  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float grad_scale,
             const train::AdamWOptions& options) override {
    enter();
    cuda::adamw(param, grad, m, v, n, step, grad_scale, options, stream_);
    done("adamw");
  }

  double sum_squares(const float* x, int64_t n) override {
    enter();
    return cuda::sum_squares(x, n, stream_);
  }

 private:
  // The current device is per host thread, and calls arrive on whichever
  // worker thread runs them.
  void enter() { cuda::check(cudaSetDevice(device_), "cudaSetDevice"); }
  void done(const char* op) {
    if (sync_) cuda::check(cudaStreamSynchronize(stream_), op);
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
  bool sync_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::Gemm> gemm_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() {
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
  return std::make_unique<CudaBackend>(device, env_flag("SPATIALTHINKER_CUDA_TF32"),
                                       env_flag("SPATIALTHINKER_CUDA_SYNC"));
}

}  // namespace st
