// The GRPO (or SFT) loss fused with the log-probs on the device: the tiled
// log-softmax pass leaves each token's log-prob, entropy and log-sum-exp in
// device memory; one kernel applies train/policy_terms.h to every token,
// writes d loss / d logp and reduces the totals; the tiled backward reads
// that gradient and the saved log-sum-exp (so the logits are computed twice,
// not three times as the unfused forward + backward does). The host gets
// back ten doubles, plus the per-token values it asks for.
#include <cmath>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.cuh"
#include "train/policy_terms.h"

namespace st::cuda {
namespace {

constexpr int kTermThreads = 1024;
constexpr int kTotals = 10;  // PolicyLossTotals' fields, in order

// One block: each thread takes tokens t, t + 1024, ... and the block sums
// its totals in a fixed tree, so the result does not depend on timing.
__global__ void policy_terms_kernel(const float* logp, const float* entropy, const float* old_logp,
                                    const float* ref_logp, const float* advantages, const double* weights,
                                    int64_t rows, train::PolicyTermOptions options, float* dlogp, float* ratio,
                                    float* kl, double* totals) {
  __shared__ double scratch[32];
  double sum[kTotals] = {};
  for (int64_t t = threadIdx.x; t < rows; t += blockDim.x) {
    const double lp = logp[t], old = old_logp != nullptr ? double(old_logp[t]) : 0.0;
    const train::PolicyTerms p = train::policy_terms(lp, old, ref_logp != nullptr ? double(ref_logp[t]) : 0.0,
                                                     advantages != nullptr ? double(advantages[t]) : 0.0, options);
    const double w = weights[t];
    dlogp[t] = float(w * (p.grad + options.kl_coef * p.dkl));
    ratio[t] = float(p.ratio);
    kl[t] = float(p.kl);
    sum[1] += w * p.loss;
    sum[2] += w * p.kl;
    sum[3] += p.clip_high ? 1.0 : 0.0;
    sum[4] += p.clip_low ? 1.0 : 0.0;
    sum[5] += p.dual ? 1.0 : 0.0;
    sum[6] += options.sft ? 0.0 : old - lp;
    sum[7] += p.kl;
    sum[8] += entropy[t];
    sum[9] += train::finite_value(p.loss) ? 0.0 : 1.0;
  }
  for (int i = 1; i < kTotals; ++i) {
    const double total = block_sum(sum[i], scratch);
    if (threadIdx.x == 0) totals[i] = total;
  }
  if (threadIdx.x == 0) totals[0] = totals[1] + options.kl_coef * totals[2];
}

}  // namespace

PolicyLossTotals policy_loss(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim,
                             int64_t vocab, float temperature, const PolicyTokens& tokens,
                             const train::PolicyTermOptions& options, DevicePtr dhidden, DevicePtr dhead,
                             const PolicyTokenOutputs* outputs, cudaStream_t s) {
  const char* op = "policy_loss";
  PolicyLossTotals result;
  if (rows <= 0) return result;
  check_logprob_shapes(dim, vocab, temperature, op);
  const float inv_t = float(1.0 / double(temperature));
  // Per token: log-prob, entropy, old, ref, advantage, d loss / d logp,
  // ratio, KL (floats); the target; the weight and log-sum-exp (doubles).
  Temp<float> floats(8 * rows, s, op);
  float* logp = floats.get();
  float* entropy = logp + rows;
  float* old_logp = entropy + rows;
  float* ref_logp = old_logp + rows;
  float* advantages = ref_logp + rows;
  float* dlogp = advantages + rows;
  float* ratio = dlogp + rows;
  float* kl = ratio + rows;
  Temp<int32_t> targets(rows, s, op);
  Temp<double> doubles(2 * rows + kTotals, s, op);
  double* weights = doubles.get();
  double* lse = weights + rows;
  double* totals = lse + rows;
  copy_to_device(targets.get(), tokens.targets, rows, s, op);
  copy_to_device(weights, tokens.weights, rows, s, op);
  if (tokens.old_logp != nullptr) copy_to_device(old_logp, tokens.old_logp, rows, s, op);
  if (tokens.ref_logp != nullptr) copy_to_device(ref_logp, tokens.ref_logp, rows, s, op);
  if (tokens.advantages != nullptr) copy_to_device(advantages, tokens.advantages, rows, s, op);

  logprob_statistics(gemm, hidden, head, rows, dim, vocab, targets.get(), inv_t, logp, entropy, lse, s, op);
  ST_LAUNCH(policy_terms_kernel, 1, kTermThreads, 0, s)(
      logp, entropy, tokens.old_logp ? old_logp : nullptr, tokens.ref_logp ? ref_logp : nullptr,
      tokens.advantages ? advantages : nullptr, weights, rows, options, dlogp, ratio, kl, totals);
  check_launch(op);
  if (dhidden != nullptr || dhead != nullptr)
    logprob_backward(gemm, hidden, head, rows, dim, vocab, targets.get(), inv_t, dlogp, lse, dhidden, dhead, s, op);
  double host_totals[kTotals];
  check(cudaMemcpyAsync(host_totals, totals, sizeof(host_totals), cudaMemcpyDeviceToHost, s), op);
  if (outputs != nullptr) {
    const std::pair<float*, const float*> wanted[] = {{outputs->logp, logp}, {outputs->ratio, ratio}, {outputs->kl, kl}};
    for (const auto& [host, device] : wanted)
      if (host != nullptr)
        check(cudaMemcpyAsync(host, device, size_t(rows) * sizeof(float), cudaMemcpyDeviceToHost, s), op);
  }
  check(cudaStreamSynchronize(s), op);
  result.loss = host_totals[0];
  result.pg_loss = host_totals[1];
  result.kl_loss = host_totals[2];
  result.clip_high = host_totals[3];
  result.clip_low = host_totals[4];
  result.clip_dual = host_totals[5];
  result.ppo_kl = host_totals[6];
  result.kl = host_totals[7];
  result.entropy = host_totals[8];
  result.nonfinite = host_totals[9];
  return result;
}

}  // namespace st::cuda
