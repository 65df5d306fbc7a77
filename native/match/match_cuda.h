#pragma once
// CUDA versions of the batched matching entry points, with the same inputs,
// outputs and results as the CPU ones in match.h (host pointers in and out;
// the copies to and from the device happen inside). Each returns "" on
// success or a message; in a build without CUDA every call says so.
#include <string>

#include "match/match.h"

namespace st::match::cuda {

std::string ciou_matrices(const BoxPairBatch& batch, double* out);
std::string linear_sum_assignment(const CostBatch& batch, int32_t* row_to_col, double* total);
std::string spatial_scores(const SpatialBatch& batch, SpatialResult* result);

}  // namespace st::match::cuda
