#pragma once
// The optimiser strategies of EasyR1's worker.actor.optim.strategy, and the
// element step of adamw_bf16.
//
//  adamw       fp32 moments; the weights the step updates are the fp32 master
//              copy (train/adamw.h). Its state: m, v.
//  adamw_bf16  bf16 weights, bf16 moments and a bf16 compensation buffer c per
//              parameter, updated with Kahan-compensated summation. Its state:
//              m, v, c.
//
// What is compensated (Kahan, "Further remarks on reducing truncation
// errors", CACM 8(1), 1965: carry the low-order part that a running sum's
// addition loses into the next addition). Here the running sum is the weight
// p, held in bf16, and the terms are the AdamW updates u_t, each far below
// bf16's resolution at fine-tuning learning rates (|u| ~ lr = 1e-6 against an
// ulp of 2^-8 |p|): rounded on their own every one of them is lost and p never
// moves. Per element, arithmetic in double, each stored value rounded to bf16
// (RNE) where it is stored:
//   g  = grad * grad_scale
//   m  = bf16(b1 m + (1 - b1) g)            v = bf16(b2 v + (1 - b2) g^2)
//   u  = -lr wd p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   y  = u + c                               the update plus what p still owes
//   p' = bf16(p + y)
//   c  = bf16(y - (p' - p))                  what p' missed of p + y
// So the weight decay is part of the compensated update (torchdistx's
// AnyPrecisionAdamW, which EasyR1's adamw_bf16 uses, multiplies p by
// 1 - lr wd uncompensated, which in bf16 is a no-op for lr wd < 2^-9); the
// moments are not compensated: they are rounded, and with beta2 = 0.999 a bf16
// v cannot decay (v * 0.999 rounds back to v), so v tracks the largest recent
// g^2 rather than their average: the same as AnyPrecisionAdamW's bf16
// variance. Without c (null), the same step rounds p + u alone: plain bf16.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend/backend.h"
#include "train/adamw.h"
#include "train/bf16_round.h"

namespace st::train {

enum class OptimizerStrategy { AdamW, AdamWBf16 };

// The strategy, and whether its state lives in the backend's host memory
// (worker.actor.offload.offload_optimizer).
struct OptimizerConfig {
  OptimizerStrategy strategy = OptimizerStrategy::AdamW;
  bool offload = false;
};
// "adamw_bf16, offloaded" and the like, for messages.
std::string describe(const OptimizerConfig& config);

// "adamw" / "adamw_bf16"; an unknown name is std::invalid_argument listing both.
OptimizerStrategy parse_optimizer_strategy(const std::string& name);
const char* optimizer_strategy_name(OptimizerStrategy strategy);

// The per-step scalars of an AdamW step, computed once on the host the same
// way for every backend (so CPU and CUDA agree bit for bit).
struct AdamWStepConstants {
  double beta1, one_minus_beta1, beta2, one_minus_beta2, eps, lr_decay, step_size, bias2_sqrt, grad_scale;
};
AdamWStepConstants adamw_step_constants(const AdamWOptions& options, int64_t step, float grad_scale);

// The adamw_bf16 step of element i (the formulas above). param, m, v and
// compensation hold bf16 values (in float storage); compensation may be null
// (plain bf16 rounding, for comparison).
// Double arithmetic one correctly rounded operation at a time: nvcc would
// otherwise contract products and sums into fused multiply-adds, which the
// host build does not, and the CPU and CUDA steps would differ in the last bit.
#if defined(__CUDA_ARCH__)
ST_HOST_DEVICE inline double st_mul(double a, double b) { return __dmul_rn(a, b); }
ST_HOST_DEVICE inline double st_add(double a, double b) { return __dadd_rn(a, b); }
ST_HOST_DEVICE inline double st_div(double a, double b) { return __ddiv_rn(a, b); }
ST_HOST_DEVICE inline double st_sqrt(double a) { return __dsqrt_rn(a); }
#else
inline double st_mul(double a, double b) { return a * b; }
inline double st_add(double a, double b) { return a + b; }
inline double st_div(double a, double b) { return a / b; }
inline double st_sqrt(double a) { return std::sqrt(a); }
#endif

// One element's state, as floats holding bf16 values: whatever the arrays
// store it in (fp32 emulation on the CPU, bf16 on a GPU), a kernel loads it,
// updates it here and stores it back exactly.
struct Bf16AdamWElement {
  float param, m, v, compensation;
};

// The adamw_bf16 step of one element (the formulas above); without
// `compensated`, plain bf16 rounding and the compensation is left alone.
ST_HOST_DEVICE inline void adamw_bf16_update(Bf16AdamWElement& e, float grad, bool compensated,
                                             const AdamWStepConstants& k) {
  const double g = st_mul(double(grad), k.grad_scale);
  e.m = round_to_bf16(float(st_add(st_mul(k.beta1, double(e.m)), st_mul(k.one_minus_beta1, g))));
  e.v = round_to_bf16(float(st_add(st_mul(k.beta2, double(e.v)), st_mul(st_mul(k.one_minus_beta2, g), g))));
  const double p = double(e.param);
  const double denominator = st_add(st_div(st_sqrt(double(e.v)), k.bias2_sqrt), k.eps);
  const double update = -st_add(st_mul(k.lr_decay, p), st_div(st_mul(k.step_size, double(e.m)), denominator));
  const double y = compensated ? st_add(update, double(e.compensation)) : update;
  e.param = round_to_bf16(float(st_add(p, y)));
  if (compensated) e.compensation = round_to_bf16(float(st_add(y, -st_add(double(e.param), -p))));
}

// Element i of fp32 arrays holding bf16 values; compensation may be null.
ST_HOST_DEVICE inline void adamw_bf16_element(float* param, const float* grad, float* m, float* v,
                                              float* compensation, int64_t i, const AdamWStepConstants& k) {
  Bf16AdamWElement e{param[i], m[i], v[i], compensation ? compensation[i] : 0.0f};
  adamw_bf16_update(e, grad[i], compensation != nullptr, k);
  param[i] = e.param;
  m[i] = e.m;
  v[i] = e.v;
  if (compensation) compensation[i] = e.compensation;
}

// The offloaded state is host memory the host reads and writes itself:
// fp32, or bf16 (the top 16 bits of the float, rounded to nearest even).
inline void host_state_to_floats(ConstDevicePtr src, int64_t n, float* out) {
  if (src.type() == Storage::F32) {
    std::memcpy(out, src.data(), size_t(n) * sizeof(float));
    return;
  }
  const uint16_t* bits = static_cast<const uint16_t*>(src.data());
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t wide = uint32_t(bits[i]) << 16;
    std::memcpy(&out[i], &wide, sizeof(float));
  }
}
inline void floats_to_host_state(const float* values, int64_t n, DevicePtr dst) {
  if (dst.type() == Storage::F32) {
    std::memcpy(dst.data(), values, size_t(n) * sizeof(float));
    return;
  }
  uint16_t* bits = static_cast<uint16_t*>(dst.data());
  for (int64_t i = 0; i < n; ++i) {
    const float rounded = round_to_bf16(values[i]);
    uint32_t wide;
    std::memcpy(&wide, &rounded, sizeof(float));
    bits[i] = uint16_t(wide >> 16);
  }
}

// One step of one parameter tensor as `config` says, on `backend`: m, v and
// (adamw_bf16) compensation are backend memory, or host memory from
// alloc_host when offloaded.
void apply_optimizer_step(Backend& backend, const OptimizerConfig& config, DevicePtr param, ConstDevicePtr grad,
                          DevicePtr m, DevicePtr v, DevicePtr compensation, int64_t n, int64_t step, float grad_scale,
                          const AdamWOptions& options);

// One adamw_bf16 step over n elements on host memory (the CPU backend).
void adamw_bf16_step(float* param, const float* grad, float* m, float* v, float* compensation, int64_t n,
                     int64_t step, float grad_scale, const AdamWOptions& options);

}  // namespace st::train
