#pragma once
// Picking the next token from one row of logits: greedy, or temperature with
// optional top-k and top-p. Each sequence has its own generator, seeded from
// the request's seed and the sample's index, so results are reproducible and
// independent of batch composition.
#include <cstdint>
#include <vector>

namespace st::model {

struct SamplingOptions {
  bool greedy = false;
  double temperature = 1.0;
  int64_t top_k = 0;    // 0: no limit
  double top_p = 1.0;   // 1: no limit
};

// splitmix64-seeded xoshiro256**: specified bit for bit, unlike std:: distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 bits
 private:
  uint64_t s_[4];
};

struct Sample {
  int32_t token;
  float logprob;  // log softmax(logits / T)[token]; T = 1 when greedy
};

Sample sample_token(const float* logits, int64_t vocab, const SamplingOptions& options, Rng& rng,
                    std::vector<float>& scratch);

}  // namespace st::model
