#include "train/adamw.h"

#include <cmath>

#include "engine/thread_pool.h"

namespace st::train {

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float grad_scale,
                const AdamWOptions& o) {
  const double bias1 = 1.0 - std::pow(o.beta1, double(step));
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, double(step)));
  const double step_size = o.lr / bias1;
  const double decay = 1.0 - o.lr * o.weight_decay;
  default_thread_pool().parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const double g = double(grad[i]) * grad_scale;
      const double mi = o.beta1 * m[i] + (1.0 - o.beta1) * g;
      const double vi = o.beta2 * v[i] + (1.0 - o.beta2) * g * g;
      m[i] = float(mi);
      v[i] = float(vi);
      const double p = double(param[i]) * decay;
      param[i] = float(p - step_size * mi / (std::sqrt(vi) / bias2_sqrt + o.eps));
    }
  });
}

double sum_squares(const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += double(x[i]) * x[i];
  return total;
}

}  // namespace st::train
