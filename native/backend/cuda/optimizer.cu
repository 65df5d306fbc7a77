// The optimiser strategies' kernels (train/optimizer_strategy.h) and the
// offloaded step, whose state stays in page-locked host memory and visits the
// device one chunk at a time.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.cuh"
#include "train/optimizer_strategy.h"

namespace st::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void adamw_bf16_kernel(float* param, const float* grad, float* m, float* v, float* compensation, int64_t n,
                                  train::AdamWStepConstants k) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    train::adamw_bf16_element(param, grad, m, v, compensation, i, k);
}

}  // namespace

void adamw_bf16(float* param, const float* grad, float* m, float* v, float* compensation, int64_t n, int64_t step,
                float grad_scale, const train::AdamWOptions& options, cudaStream_t s) {
  if (n <= 0) return;
  const train::AdamWStepConstants k = train::adamw_step_constants(options, step, grad_scale);
  ST_LAUNCH(adamw_bf16_kernel, grid_for(n, kThreads), kThreads, 0, s)(param, grad, m, v, compensation, n, k);
  check_launch("adamw_bf16");
}

HostStateStepper::HostStateStepper(int64_t chunk) : chunk_(chunk) {
  try {
    for (Slot& slot : slots_) {
      check(cudaStreamCreateWithFlags(&slot.stream, cudaStreamNonBlocking), "offload stream");
      void* staging = nullptr;
      check(cudaMalloc(&staging, size_t(3 * chunk_) * sizeof(float)), "offload staging buffers");
      slot.staging = static_cast<float*>(staging);
    }
  } catch (...) {
    release();
    throw;
  }
}

HostStateStepper::~HostStateStepper() { release(); }

void HostStateStepper::release() {
  for (Slot& slot : slots_) {
    if (slot.stream) cudaStreamSynchronize(slot.stream);
    if (slot.staging) cudaFree(slot.staging);
    if (slot.stream) cudaStreamDestroy(slot.stream);
    slot = Slot();
  }
}

void HostStateStepper::step(train::OptimizerStrategy strategy, float* param, const float* grad, float* m_host,
                            float* v_host, float* compensation_host, int64_t n, int64_t step, float grad_scale,
                            const train::AdamWOptions& options, cudaStream_t producer) {
  if (n <= 0) return;
  const bool bf16 = strategy == train::OptimizerStrategy::AdamWBf16;
  if (bf16 && compensation_host == nullptr) throw std::logic_error("adamw_bf16 offloaded without its compensation buffer");
  // The gradients (and the weights) come from work queued on the producer's
  // stream; the chunks run on streams of their own.
  check(cudaStreamSynchronize(producer), "offloaded optimizer step");
  const size_t arrays = bf16 ? 3 : 2;
  float* host[3] = {m_host, v_host, compensation_host};
  // Chunk j uses slot j % 2: its copy in, update and copy out are ordered on
  // that slot's stream (so a slot's buffers are reused only after its last
  // copy out), while the other slot's chunk moves over PCIe beside it.
  for (int64_t j = 0, begin = 0; begin < n; ++j, begin += chunk_) {
    Slot& slot = slots_[j % 2];
    const int64_t len = std::min(chunk_, n - begin);
    float* stage[3] = {slot.staging, slot.staging + chunk_, slot.staging + 2 * chunk_};
    for (size_t a = 0; a < arrays; ++a)
      check(cudaMemcpyAsync(stage[a], host[a] + begin, size_t(len) * sizeof(float), cudaMemcpyHostToDevice, slot.stream),
            "offloaded optimizer step (state in)");
    if (bf16)
      adamw_bf16(param + begin, grad + begin, stage[0], stage[1], stage[2], len, step, grad_scale, options, slot.stream);
    else
      adamw(param + begin, grad + begin, stage[0], stage[1], len, step, grad_scale, options, slot.stream);
    for (size_t a = 0; a < arrays; ++a)
      check(cudaMemcpyAsync(host[a] + begin, stage[a], size_t(len) * sizeof(float), cudaMemcpyDeviceToHost, slot.stream),
            "offloaded optimizer step (state out)");
  }
  for (Slot& slot : slots_) check(cudaStreamSynchronize(slot.stream), "offloaded optimizer step");
}

}  // namespace st::cuda
