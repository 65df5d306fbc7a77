// The CUDA backend's entry points in a build without CUDA (cuda_backend.cu
// and cublas.cu): every call says why there is no CUDA backend.
#include <stdexcept>

#include "backend/backend.h"
#include "backend/cuda/cublas.h"
#include "backend/cuda/device.h"

namespace st {

Storage cuda_storage_from_env() { return Storage::BF16; }

std::unique_ptr<Backend> make_cuda_backend(Storage) {
  throw std::runtime_error("the CUDA backend is unavailable: " + cuda::runtime_info().unavailable_reason);
}

namespace cuda {

const CublasInfo& cublas_info() {
  static const CublasInfo info = [] {
    CublasInfo i;
    i.error = "not looked for: this build has no CUDA backend";
    return i;
  }();
  return info;
}

}  // namespace cuda
}  // namespace st
