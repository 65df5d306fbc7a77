#pragma once
// Sampling is a backend op (Backend::sample_tokens), so that on a GPU only
// token ids and their log-probs leave the device; backend/sampling_rule.h
// states the rule. The model gives each completion a sequence seed from the
// request's seed and the completion's index, and draws its n-th token at
// counter n, so results are reproducible and independent of batch
// composition and of the backend (up to the rule's stated exceptions).
#include "backend/backend.h"

namespace st::model {

using SamplingOptions = st::SamplingOptions;

}  // namespace st::model
