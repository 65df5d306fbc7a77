#pragma once
// One completion token's share of the GRPO policy loss (shared/spec/grpo.md)
// and its derivative with respect to the token's log-prob: the clipped
// ratio with optional dual clip, and the KL estimate to the reference
// policy. The host loss (policy_loss.cpp) and the CUDA backend's fused loss
// kernel (backend/cuda/loss.cu) both call this, so they compute the same
// terms from the same log-probs.
#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#define ST_TERMS_HOST_DEVICE __host__ __device__
#else
#define ST_TERMS_HOST_DEVICE
#endif

namespace st::train {

enum class KlEstimator { kK1, kAbs, kMse, kK3 };

// Plain values, so the options can be a kernel argument.
struct PolicyTermOptions {
  bool sft = false;                   // token cross-entropy -logp instead of the policy loss
  double log_low = 0, log_high = 0;   // log(1 - clip_low), log(1 + clip_high)
  double dual_clip = 3.0;             // <= 1 disables it
  double kl_coef = 0.0;               // 0: no KL term (ref_logp unused)
  KlEstimator kl = KlEstimator::kK3;
};

struct PolicyTerms {
  double loss = 0;   // the clipped policy-gradient term
  double grad = 0;   // its derivative in logp (NaN when the loss is not finite)
  double kl = 0, dkl = 0;
  double ratio = 1;
  bool clip_high = false, clip_low = false, dual = false;
};

ST_TERMS_HOST_DEVICE inline bool finite_value(double x) { return x - x == 0.0; }

ST_TERMS_HOST_DEVICE inline PolicyTerms policy_terms(double logp, double old_logp, double ref_logp, double a,
                                                     const PolicyTermOptions& o) {
  PolicyTerms r;
  if (o.sft) {
    r.loss = -logp;
    r.grad = -1.0;
    return r;
  }
  const double d = logp - old_logp;
  r.ratio = exp(d);
  const double clamped_d = d < o.log_low ? o.log_low : (d > o.log_high ? o.log_high : d);
  const double clipped = exp(clamped_d);
  const double l1 = -a * r.ratio, l2 = -a * clipped;
  if (l1 >= l2) {
    r.loss = l1;
    r.grad = -a * r.ratio;
  } else {
    r.loss = l2;
    r.grad = (d > o.log_low && d < o.log_high) ? -a * clipped : 0.0;
  }
  if (o.dual_clip > 1.0 && a < 0 && r.loss > -a * o.dual_clip) {
    r.loss = -a * o.dual_clip;
    r.grad = 0.0;
    r.dual = true;
  }
  // A non-finite loss must not vanish in a clamp or a branch: it poisons
  // the gradient so the optimiser step sees a non-finite norm and is skipped.
  if (!finite_value(r.loss)) r.grad = NAN;
  r.clip_high = a > 0 && d > o.log_high;
  r.clip_low = a < 0 && d < o.log_low;
  if (o.kl_coef != 0.0) {
    const double diff = logp - ref_logp;
    switch (o.kl) {
      case KlEstimator::kK1: r.kl = diff; r.dkl = 1; break;
      case KlEstimator::kAbs: r.kl = fabs(diff); r.dkl = diff > 0 ? 1 : diff < 0 ? -1 : 0; break;
      case KlEstimator::kMse: r.kl = 0.5 * diff * diff; r.dkl = diff; break;
      case KlEstimator::kK3: {
        const double k = -diff;  // ref - new
        r.kl = exp(k) - k - 1;
        r.dkl = 1 - exp(k);
        if (r.kl > 10 || r.kl < -10) {
          r.kl = r.kl > 10 ? 10.0 : -10.0;
          r.dkl = 0;
        }
        break;
      }
    }
  }
  return r;
}

}  // namespace st::train
