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

// Each array in its own type (P: the weights', S: the state's), loaded to
// floats and stored back exactly: the values are bf16 either way.
template <class P, class S>
__global__ void adamw_bf16_kernel(P* param, const float* grad, S* m, S* v, S* compensation, int64_t n,
                                  train::AdamWStepConstants k) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    train::Bf16AdamWElement e{to_f32(param[i]), to_f32(m[i]), to_f32(v[i]),
                              compensation ? to_f32(compensation[i]) : 0.0f};
    train::adamw_bf16_update(e, grad[i], compensation != nullptr, k);
    param[i] = from_f32<P>(e.param);
    m[i] = from_f32<S>(e.m);
    v[i] = from_f32<S>(e.v);
    if (compensation) compensation[i] = from_f32<S>(e.compensation);
  }
}

}  // namespace

void adamw_bf16(DevicePtr param, ConstDevicePtr grad, DevicePtr m, DevicePtr v, DevicePtr compensation, int64_t n,
                int64_t step, float grad_scale, const train::AdamWOptions& options, cudaStream_t s) {
  if (n <= 0) return;
  const char* op = "adamw_bf16";
  const train::AdamWStepConstants k = train::adamw_step_constants(options, step, grad_scale);
  with_storage(param.type(), [&](auto p) {
    using P = decltype(p);
    with_storage(m.type(), [&](auto state) {
      using S = decltype(state);
      auto* const kernel = &adamw_bf16_kernel<P, S>;  // one name for the launch macro
      ST_LAUNCH(kernel, grid_for(n, kThreads), kThreads, 0, s)(
          typed<P>(param, op, "param"), typed<float>(grad, op, "grad"), typed<S>(m, op, "m"), typed<S>(v, op, "v"),
          typed<S>(compensation, op, "compensation"), n, k);
    });
  });
  check_launch(op);
}

HostStateStepper::HostStateStepper(int64_t chunk) : chunk_(chunk) {
  try {
    for (Slot& slot : slots_) {
      check(cudaStreamCreateWithFlags(&slot.stream, cudaStreamNonBlocking), "offload stream");
      void* staging = nullptr;
      check(cudaMalloc(&staging, size_t(3 * chunk_) * sizeof(float)), "offload staging buffers");
      slot.staging = static_cast<char*>(staging);
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

void HostStateStepper::step(train::OptimizerStrategy strategy, DevicePtr param, ConstDevicePtr grad, DevicePtr m_host,
                            DevicePtr v_host, DevicePtr compensation_host, int64_t n, int64_t step, float grad_scale,
                            const train::AdamWOptions& options, cudaStream_t producer) {
  if (n <= 0) return;
  const bool bf16 = strategy == train::OptimizerStrategy::AdamWBf16;
  if (bf16 && compensation_host == nullptr) throw std::logic_error("adamw_bf16 offloaded without its compensation buffer");
  // The gradients (and the weights) come from work queued on the producer's
  // stream; the chunks run on streams of their own.
  check(cudaStreamSynchronize(producer), "offloaded optimizer step");
  const size_t arrays = bf16 ? 3 : 2;
  const Storage type = m_host.type();
  const int64_t entry = storage_bytes(type);
  DevicePtr host[3] = {m_host, v_host, compensation_host};
  // Chunk j uses slot j % 2: its copy in, update and copy out are ordered on
  // that slot's stream (so a slot's buffers are reused only after its last
  // copy out), while the other slot's chunk moves over PCIe beside it.
  for (int64_t j = 0, begin = 0; begin < n; ++j, begin += chunk_) {
    Slot& slot = slots_[j % 2];
    const int64_t len = std::min(chunk_, n - begin);
    DevicePtr stage[3];
    for (int a = 0; a < 3; ++a) stage[a] = DevicePtr(slot.staging + size_t(a) * size_t(chunk_) * sizeof(float), type);
    for (size_t a = 0; a < arrays; ++a)
      check(cudaMemcpyAsync(stage[a].data(), (host[a] + begin).data(), size_t(len * entry), cudaMemcpyHostToDevice,
                            slot.stream),
            "offloaded optimizer step (state in)");
    if (bf16)
      adamw_bf16(param + begin, grad + begin, stage[0], stage[1], stage[2], len, step, grad_scale, options, slot.stream);
    else
      adamw(param + begin, grad + begin, stage[0], stage[1], len, step, grad_scale, options, slot.stream);
    for (size_t a = 0; a < arrays; ++a)
      check(cudaMemcpyAsync((host[a] + begin).data(), stage[a].data(), size_t(len * entry), cudaMemcpyDeviceToHost,
                            slot.stream),
            "offloaded optimizer step (state out)");
  }
  for (Slot& slot : slots_) check(cudaStreamSynchronize(slot.stream), "offloaded optimizer step");
}

}  // namespace st::cuda
