#pragma once
// The token-sampling rule that the CPU and CUDA backends both implement, so
// that for the same logits, seed and step they draw the same token:
//
//   - randomness is counter-based: the 53-bit draw of step `counter` of the
//     sequence seeded `seed` is a pure function of the two (no generator
//     state to carry between steps or to keep per sequence on the device);
//   - each token's weight exp((logit - max) / T) is rounded to a fixed-point
//     integer of kWeightBits fraction bits, so every sum over weights is an
//     exact integer sum: its value does not depend on the order of a
//     parallel reduction (the GPU's) or of a loop (the CPU's);
//   - candidates are ranked by logit, ties by the lower token id, through a
//     64-bit key; top-k keeps the k highest keys and top-p the highest keys
//     whose weights first reach top_p of the total weight;
//   - the token drawn is the first kept token, in token-id order, whose
//     running weight exceeds draw * kept weight / 2^53.
//
// Tokens with weight below 2^-(kWeightBits + 1) of the top token's round to
// zero and are never drawn (a probability mass below vocab * 2^-45 in all).
// The two backends' tokens then differ only where their exp() differs in the
// last bit of a double and that bit changes a rounded weight that a draw or
// the top-p cut lands on: CUDA's double exp() is within 1 ulp, glibc's is
// correctly rounded, so this happens with probability of order 2^-40 a draw.
#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#define ST_HOST_DEVICE __host__ __device__
#else
#define ST_HOST_DEVICE
#endif

namespace st::sampling {

// Fixed-point fraction bits of a weight. With weights <= 1, the sum over a
// vocabulary of up to kMaxVocab entries fits 64 bits unsigned.
constexpr int kWeightBits = 44;
constexpr int64_t kMaxVocab = int64_t(1) << 19;

ST_HOST_DEVICE inline uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// 53 random bits for (seed, counter).
ST_HOST_DEVICE inline uint64_t draw_bits(uint64_t seed, uint64_t counter) {
  const uint64_t a = mix64(seed + 0x9e3779b97f4a7c15ULL);
  return mix64(a ^ mix64(counter * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL)) >> 11;
}

// The sequence seed of sample `index` (0-based, over the whole request) of a
// request seeded `request_seed`.
ST_HOST_DEVICE inline uint64_t sequence_seed(uint64_t request_seed, uint64_t index) {
  return request_seed ^ (0x9e3779b97f4a7c15ULL * (index + 1));
}

// weight = exp((logit - max) * inv_t) in fixed point; inv_t > 0, logit <= max.
// A weight that is not a number (NaN or infinite logits) counts as zero.
ST_HOST_DEVICE inline uint64_t fixed_weight(double e) {
  return e >= 0.0 && e <= 1.0 ? uint64_t(e * double(uint64_t(1) << kWeightBits) + 0.5) : 0;
}

// log of a fixed-point total weight.
ST_HOST_DEVICE inline double log_fixed(uint64_t total) {
  return log(double(total)) - double(kWeightBits) * 0.69314718055994530942;
}

// Rank key: higher logit first, then the lower token id. -0 ranks as +0.
ST_HOST_DEVICE inline uint64_t rank_key(float logit, int64_t token) {
  union {
    float f;
    uint32_t u;
  } bits;
  bits.f = logit == 0.0f ? 0.0f : logit;
  const uint32_t ordered = (bits.u & 0x80000000u) ? ~bits.u : (bits.u | 0x80000000u);
  return (uint64_t(ordered) << 32) | uint64_t(0xffffffffu - uint32_t(token));
}

// floor(bits53 * total / 2^53), exactly: the 117-bit product in 32-bit limbs.
ST_HOST_DEVICE inline uint64_t scaled_draw(uint64_t bits53, uint64_t total) {
  const uint64_t b0 = bits53 & 0xffffffffULL, b1 = bits53 >> 32, t0 = total & 0xffffffffULL, t1 = total >> 32;
  const uint64_t p00 = b0 * t0, p01 = b0 * t1, p10 = b1 * t0, p11 = b1 * t1;
  const uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffULL) + (p10 & 0xffffffffULL);
  const uint64_t lo = (mid << 32) | (p00 & 0xffffffffULL);
  const uint64_t hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
  return (hi << 11) | (lo >> 53);
}

// Whether the running weight `mass` of the highest-ranked candidates reaches
// top_p of the total weight (top_p < 1 only).
ST_HOST_DEVICE inline bool reaches_top_p(uint64_t mass, uint64_t total, double top_p) {
  return double(mass) >= top_p * double(total);
}

}  // namespace st::sampling
