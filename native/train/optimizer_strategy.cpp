#include "train/optimizer_strategy.h"

#include <cmath>

#include "engine/thread_pool.h"

namespace st::train {

OptimizerStrategy parse_optimizer_strategy(const std::string& name) {
  if (name == "adamw") return OptimizerStrategy::AdamW;
  if (name == "adamw_bf16") return OptimizerStrategy::AdamWBf16;
  throw std::invalid_argument("unknown optimizer strategy \"" + name + "\" (use adamw or adamw_bf16)");
}

const char* optimizer_strategy_name(OptimizerStrategy strategy) {
  return strategy == OptimizerStrategy::AdamWBf16 ? "adamw_bf16" : "adamw";
}

std::string describe(const OptimizerConfig& config) {
  return std::string(optimizer_strategy_name(config.strategy)) + (config.offload ? ", offloaded to host memory" : "");
}

void apply_optimizer_step(Backend& backend, const OptimizerConfig& config, DevicePtr param, ConstDevicePtr grad,
                          DevicePtr m, DevicePtr v, DevicePtr compensation, int64_t n, int64_t step, float grad_scale,
                          const AdamWOptions& options) {
  const bool bf16 = config.strategy == OptimizerStrategy::AdamWBf16;
  if (bf16 && compensation == nullptr) throw std::logic_error("adamw_bf16 step without its compensation buffer");
  if (config.offload)
    backend.optimizer_step_host_state(config.strategy, param, grad, m, v, bf16 ? compensation : DevicePtr(), n, step,
                                      grad_scale, options);
  else if (bf16)
    backend.adamw_bf16(param, grad, m, v, compensation, n, step, grad_scale, options);
  else
    backend.adamw(param, grad, m, v, n, step, grad_scale, options);
}

AdamWStepConstants adamw_step_constants(const AdamWOptions& o, int64_t step, float grad_scale) {
  AdamWStepConstants k;
  k.beta1 = o.beta1;
  k.one_minus_beta1 = 1.0 - o.beta1;
  k.beta2 = o.beta2;
  k.one_minus_beta2 = 1.0 - o.beta2;
  k.eps = o.eps;
  k.lr_decay = o.lr * o.weight_decay;
  k.step_size = o.lr / (1.0 - std::pow(o.beta1, double(step)));
  k.bias2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, double(step)));
  k.grad_scale = double(grad_scale);
  return k;
}

void adamw_bf16_step(float* param, const float* grad, float* m, float* v, float* compensation, int64_t n,
                     int64_t step, float grad_scale, const AdamWOptions& options) {
  const AdamWStepConstants k = adamw_step_constants(options, step, grad_scale);
  default_thread_pool().parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) adamw_bf16_element(param, grad, m, v, compensation, i, k);
  });
}

}  // namespace st::train
