#pragma once
// AdamW with decoupled weight decay, as torch.optim.AdamW computes it, on
// fp32 master weights and moments; and the global gradient norm for clipping.
#include <cstdint>

namespace st::train {

struct AdamWOptions {
  double lr = 1e-6, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

// One step (step is 1-based) on n parameters: p <- p (1 - lr wd); moments from
// grad * grad_scale; p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float grad_scale,
                const AdamWOptions& options);

// Sum of squares in double (for the global L2 norm over all gradients).
double sum_squares(const float* x, int64_t n);

// The clip coefficient of torch.nn.utils.clip_grad_norm_: min(1, max_norm / (norm + 1e-6)).
inline double clip_coefficient(double norm, double max_norm) {
  const double c = max_norm / (norm + 1e-6);
  return c < 1.0 ? c : 1.0;
}

}  // namespace st::train
