// The runtime probe of a build without the CUDA backend (device.h).
#include "backend/cuda/device.h"

namespace st::cuda {

const RuntimeInfo& runtime_info() {
  static const RuntimeInfo info = [] {
    RuntimeInfo r;
    r.compiled = false;
    r.unavailable_reason =
        "this build of spatialthinker has no CUDA backend (nvcc was not found at install time, or "
        "SPATIALTHINKER_CUDA=OFF)";
    return r;
  }();
  return info;
}

}  // namespace st::cuda
