#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace st::model {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

Sample sample_token(const float* logits, int64_t vocab, const SamplingOptions& options, Rng& rng,
                    std::vector<float>& scratch) {
  const bool greedy = options.greedy || options.temperature <= 0.0;
  const double inv_t = greedy ? 1.0 : 1.0 / options.temperature;
  double max_logit = -INFINITY;
  int32_t best = 0;
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] > max_logit) {
      max_logit = logits[i];
      best = int32_t(i);
    }
  double total = 0.0;
  for (int64_t i = 0; i < vocab; ++i) total += std::exp((double(logits[i]) - max_logit) * inv_t);
  const double log_total = std::log(total);
  auto logprob = [&](int32_t token) {
    return float((double(logits[token]) - max_logit) * inv_t - log_total);
  };
  if (greedy) return {best, logprob(best)};

  // Candidates sorted by logit when truncating; the full vocabulary otherwise.
  std::vector<int32_t> order;
  const bool truncate = (options.top_k > 0 && options.top_k < vocab) || options.top_p < 1.0;
  if (truncate) {
    order.resize(size_t(vocab));
    std::iota(order.begin(), order.end(), 0);
    const int64_t keep = options.top_k > 0 ? std::min(options.top_k, vocab) : vocab;
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
    order.resize(size_t(keep));
    if (options.top_p < 1.0) {
      double mass = 0.0;
      size_t cut = 0;
      while (cut < order.size()) {
        mass += std::exp((double(logits[order[cut]]) - max_logit) * inv_t - log_total);
        ++cut;
        if (mass >= options.top_p) break;
      }
      order.resize(cut);
    }
  }
  const int64_t n = truncate ? int64_t(order.size()) : vocab;
  scratch.resize(size_t(n));
  double kept = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t token = truncate ? order[size_t(i)] : int32_t(i);
    scratch[size_t(i)] = float(std::exp((double(logits[token]) - max_logit) * inv_t));
    kept += scratch[size_t(i)];
  }
  double u = rng.uniform() * kept;
  for (int64_t i = 0; i < n; ++i) {
    u -= scratch[size_t(i)];
    if (u < 0.0) {
      const int32_t token = truncate ? order[size_t(i)] : int32_t(i);
      return {token, logprob(token)};
    }
  }
  const int32_t last = truncate ? order[size_t(n - 1)] : int32_t(n - 1);
  return {last, logprob(last)};
}

}  // namespace st::model
