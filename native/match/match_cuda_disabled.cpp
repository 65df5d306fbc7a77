// The CUDA matching entry points of a build without the CUDA backend
// (match_cuda.h): every call says so.
#include "match/match_cuda.h"

namespace st::match::cuda {

namespace {

std::string no_cuda() {
  return "this build of spatialthinker has no CUDA backend (nvcc was not found at install time, or "
         "SPATIALTHINKER_CUDA=OFF)";
}

}  // namespace

std::string ciou_matrices(const BoxPairBatch&, double*) { return no_cuda(); }

std::string linear_sum_assignment(const CostBatch&, int32_t*, double*) { return no_cuda(); }

std::string spatial_scores(const SpatialBatch&, SpatialResult*) { return no_cuda(); }

}  // namespace st::match::cuda
