#include "train/policy_loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace st::train {

KlEstimator parse_kl_estimator(const std::string& name) {
  if (name == "k1") return KlEstimator::kK1;
  if (name == "abs") return KlEstimator::kAbs;
  if (name == "mse" || name == "k2") return KlEstimator::kMse;
  if (name == "k3" || name == "low_var_kl") return KlEstimator::kK3;
  throw std::invalid_argument("unknown KL estimator \"" + name + "\" (k1, abs, mse/k2, k3/low_var_kl)");
}

Aggregation parse_aggregation(const std::string& name) {
  if (name == "token-mean") return Aggregation::kTokenMean;
  if (name == "seq-mean-token-mean") return Aggregation::kSeqMeanTokenMean;
  if (name == "seq-mean-token-sum") return Aggregation::kSeqMeanTokenSum;
  throw std::invalid_argument("unknown loss aggregation \"" + name +
                              "\" (token-mean, seq-mean-token-mean, seq-mean-token-sum)");
}

PolicyTermOptions policy_term_options(const PolicyLossOptions& o, bool sft) {
  PolicyTermOptions t;
  t.sft = sft;
  t.log_low = std::log(1.0 - o.clip_low);
  t.log_high = std::log(1.0 + o.clip_high);
  t.dual_clip = o.dual_clip;
  t.kl_coef = sft ? 0.0 : o.kl_coef;
  t.kl = o.kl;
  return t;
}

std::vector<double> token_weights(const PolicyLossInput& in, Aggregation aggregation) {
  const int64_t n = in.tokens;
  int64_t sequences = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (in.sequence[t] < 0) throw std::invalid_argument("loss: negative completion index");
    sequences = std::max<int64_t>(sequences, int64_t(in.sequence[t]) + 1);
  }
  std::vector<int64_t> length(static_cast<size_t>(sequences), 0);
  for (int64_t t = 0; t < n; ++t) ++length[size_t(in.sequence[t])];
  const double batch_tokens = double(in.batch_tokens > 0 ? in.batch_tokens : n);
  const double batch_sequences = double(in.batch_sequences > 0 ? in.batch_sequences : sequences);
  std::vector<double> weight(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    switch (aggregation) {
      case Aggregation::kTokenMean: weight[size_t(t)] = 1.0 / batch_tokens; break;
      case Aggregation::kSeqMeanTokenMean:
        weight[size_t(t)] = 1.0 / (batch_sequences * double(length[size_t(in.sequence[t])]));
        break;
      case Aggregation::kSeqMeanTokenSum: weight[size_t(t)] = 1.0 / batch_sequences; break;
    }
  }
  return weight;
}

PolicyLossResult policy_loss(const PolicyLossInput& in, const PolicyLossOptions& o) {
  const int64_t n = in.tokens;
  if (n < 0) throw std::invalid_argument("policy loss: negative token count");
  if (o.kl_coef != 0.0 && in.ref_logp == nullptr && n > 0)
    throw std::invalid_argument("policy loss: a KL coefficient needs reference log-probs");
  const std::vector<double> weights = token_weights(in, o.aggregation);

  PolicyLossResult r;
  r.dlogp.assign(size_t(n), 0.0f);
  r.ratio.assign(size_t(n), 0.0f);
  r.kl.assign(size_t(n), 0.0f);
  const PolicyTermOptions terms = policy_term_options(o, false);
  for (int64_t t = 0; t < n; ++t) {
    const double logp = in.logp[t];
    const PolicyTerms p =
        policy_terms(logp, in.old_logp[t], o.kl_coef != 0.0 ? double(in.ref_logp[t]) : 0.0, in.advantages[t], terms);
    const double loss = p.loss, grad = p.grad, kl = p.kl, dkl = p.dkl, ratio = p.ratio;
    const double d = logp - double(in.old_logp[t]);
    if (p.dual) r.clipfrac_dual += 1;
    if (p.clip_high) r.clipfrac_high += 1;
    if (p.clip_low) r.clipfrac_low += 1;
    const double weight = weights[size_t(t)];
    r.pg_loss += weight * loss;
    r.kl_loss += weight * kl;
    r.dlogp[size_t(t)] = float(weight * (grad + o.kl_coef * dkl));
    r.ratio[size_t(t)] = float(ratio);
    r.kl[size_t(t)] = float(kl);
    r.ppo_kl += -d;
    r.kl_mean += kl;
  }
  r.loss = r.pg_loss + o.kl_coef * r.kl_loss;
  if (n > 0) {
    r.clipfrac_high /= double(n);
    r.clipfrac_low /= double(n);
    r.clipfrac_dual /= double(n);
    r.ppo_kl /= double(n);
    r.kl_mean /= double(n);
  }
  return r;
}

PolicyLossResult cross_entropy_loss(const PolicyLossInput& in, Aggregation aggregation) {
  const int64_t n = in.tokens;
  const std::vector<double> weights = token_weights(in, aggregation);
  PolicyLossResult r;
  r.dlogp.assign(size_t(n), 0.0f);
  r.ratio.assign(size_t(n), 1.0f);
  r.kl.assign(size_t(n), 0.0f);
  for (int64_t t = 0; t < n; ++t) {
    r.pg_loss += -weights[size_t(t)] * double(in.logp[t]);
    r.dlogp[size_t(t)] = float(-weights[size_t(t)]);
  }
  r.loss = r.pg_loss;
  return r;
}

}  // namespace st::train
