#pragma once
// The GRPO policy loss per completion token (shared/spec/grpo.md): clipped
// ratio with optional dual clip, KL to the reference policy, aggregated over a
// mini-batch, with its gradient with respect to each token's log-prob (the
// tiled log-prob backward carries it into the logits).
#include <cstdint>
#include <string>
#include <vector>

#include "train/policy_terms.h"

namespace st::train {

enum class Aggregation { kTokenMean, kSeqMeanTokenMean, kSeqMeanTokenSum };

struct PolicyLossOptions {
  double clip_low = 0.2, clip_high = 0.3;
  double dual_clip = 3.0;  // <= 1 disables it
  double kl_coef = 0.01;   // 0: no KL term (ref_logp unused)
  KlEstimator kl = KlEstimator::kK3;
  Aggregation aggregation = Aggregation::kTokenMean;
};

struct PolicyLossInput {
  int64_t tokens = 0;                 // completion tokens in this call (masked ones excluded)
  const float* logp = nullptr;        // [tokens] current policy
  const float* old_logp = nullptr;    // [tokens] rollout policy
  const float* ref_logp = nullptr;    // [tokens] reference policy (may be null when kl_coef == 0)
  const float* advantages = nullptr;  // [tokens] the completion's advantage on each of its tokens
  const int32_t* sequence = nullptr;  // [tokens] completion index of each token (0-based, per call)
  // The whole optimiser mini-batch's token and completion counts, so that
  // micro-batches sum to the mini-batch loss; <= 0 means this call's counts.
  int64_t batch_tokens = 0, batch_sequences = 0;
};

struct PolicyLossResult {
  double loss = 0, pg_loss = 0, kl_loss = 0;  // this call's share of the aggregated loss
  std::vector<float> dlogp, ratio, kl;        // per token
  // Token fractions: ratio above 1 + clip_high with A > 0 (upper clip active),
  // below 1 - clip_low with A < 0 (lower clip active), dual clip active.
  double clipfrac_high = 0, clipfrac_low = 0, clipfrac_dual = 0;
  double ppo_kl = 0;  // mean(old - new): approximate KL(old || new)
  double kl_mean = 0;
};

// Token cross-entropy -logp on the completion tokens (SFT), aggregated like
// the policy loss; old/ref log-probs and advantages are not used.
PolicyLossResult cross_entropy_loss(const PolicyLossInput& input, Aggregation aggregation);

// Throws std::invalid_argument for inconsistent inputs (non-finite values are
// reported by the caller, which skips the step).
PolicyLossResult policy_loss(const PolicyLossInput& input, const PolicyLossOptions& options);

// The per-token options of policy_terms() for these loss options.
PolicyTermOptions policy_term_options(const PolicyLossOptions& options, bool sft);

// Each token's weight in the aggregated loss, with the mini-batch's counts
// so that micro-batches add up to the mini-batch loss (logp is not read).
std::vector<double> token_weights(const PolicyLossInput& input, Aggregation aggregation);

KlEstimator parse_kl_estimator(const std::string& name);
Aggregation parse_aggregation(const std::string& name);

}  // namespace st::train
