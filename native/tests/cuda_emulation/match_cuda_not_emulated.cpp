// CUDA EMULATION ON THE CPU (tests only): the emulation build compiles the
// CUDA backend's kernels (native/backend/cuda/*.cu) but not the matching
// kernels of native/match/match_cuda.cu, whose launches are still written
// in nvcc's <<<...>>> syntax. Their entry points say so.
#include "match/match_cuda.h"

namespace st::match::cuda {

namespace {

std::string not_emulated() {
  return "the CUDA matching kernels (native/match/match_cuda.cu) are not part of the CUDA emulation build";
}

}  // namespace

std::string ciou_matrices(const BoxPairBatch&, double*) { return not_emulated(); }

std::string linear_sum_assignment(const CostBatch&, int32_t*, double*) { return not_emulated(); }

std::string spatial_scores(const SpatialBatch&, SpatialResult*) { return not_emulated(); }

}  // namespace st::match::cuda
