#pragma once
// The CPU backend's token sampler: backend/sampling_rule.h on one row.
#include <cstdint>

#include "backend/backend.h"

namespace st::cpu {

struct SampledToken {
  int32_t token;
  float logprob;
};

SampledToken sample_row(const float* logits, int64_t vocab, const SamplingOptions& options, uint64_t seed,
                        uint64_t counter);

}  // namespace st::cpu
