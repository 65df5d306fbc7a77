#include "backend/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/sampling_rule.h"

namespace st::cpu {

SampledToken sample_row(const float* logits, int64_t vocab, const SamplingOptions& options, uint64_t seed,
                        uint64_t counter) {
  using namespace sampling;
  if (vocab <= 0 || vocab > kMaxVocab)
    throw std::invalid_argument("sample_tokens: the vocabulary size " + std::to_string(vocab) + " is outside [1, " +
                                std::to_string(kMaxVocab) + "]");
  const bool greedy = options.greedy || options.temperature <= 0.0;
  const double inv_t = greedy ? 1.0 : 1.0 / options.temperature;
  double max_logit = -INFINITY;
  int32_t best = 0;
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] > max_logit) {
      max_logit = logits[i];
      best = int32_t(i);
    }
  std::vector<uint64_t> weight(static_cast<size_t>(vocab));
  uint64_t total = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    weight[size_t(i)] = fixed_weight(std::exp((double(logits[i]) - max_logit) * inv_t));
    total += weight[size_t(i)];
  }
  const double log_total = log_fixed(total);
  auto result = [&](int32_t token) {
    return SampledToken{token, float((double(logits[token]) - max_logit) * inv_t - log_total)};
  };
  if (greedy || total == 0) return result(best);

  // The lowest rank key still kept; 0 keeps every token.
  uint64_t threshold = 0;
  const bool limit_k = options.top_k > 0 && options.top_k < vocab, limit_p = options.top_p < 1.0;
  if (limit_k || limit_p) {
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    auto by_rank = [&](int32_t a, int32_t b) { return rank_key(logits[a], a) > rank_key(logits[b], b); };
    const int64_t sorted = limit_k ? options.top_k : vocab;
    std::partial_sort(order.begin(), order.begin() + sorted, order.end(), by_rank);
    uint64_t mass = 0;
    for (int64_t r = 0; r < sorted; ++r) {
      const int32_t token = order[size_t(r)];
      mass += weight[size_t(token)];
      if ((limit_k && r + 1 >= options.top_k) || (limit_p && reaches_top_p(mass, total, options.top_p)) ||
          r + 1 == sorted) {
        threshold = rank_key(logits[token], token);
        break;
      }
    }
  }
  uint64_t kept = 0;
  for (int64_t i = 0; i < vocab; ++i)
    if (rank_key(logits[i], i) >= threshold) kept += weight[size_t(i)];
  const uint64_t target = scaled_draw(draw_bits(seed, counter), kept);
  uint64_t running = 0;
  for (int64_t i = 0; i < vocab; ++i)
    if (rank_key(logits[i], i) >= threshold) {
      running += weight[size_t(i)];
      if (running > target) return result(int32_t(i));
    }
  return result(best);  // kept == 0: every kept weight rounded to zero
}

}  // namespace st::cpu
