// attention_bf16_check.h in a build without CUDA.
#include <stdexcept>

#include "backend/cuda/attention_bf16_check.h"
#include "backend/cuda/device.h"

namespace st::cuda {

Bf16AttentionResult run_bf16_attention_check(const Bf16AttentionCheck&) {
  throw std::runtime_error("the bf16 attention kernels need the CUDA backend: " + runtime_info().unavailable_reason);
}

}  // namespace st::cuda
