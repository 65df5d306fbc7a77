#include "backend/cpu/row_math.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "backend/cpu/vector_clones.h"

namespace st::cpu {
namespace {

// exp(x) = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]
// (ln 2 in two parts, fdlibm's, so n ln2_hi is exact), e^r by its Taylor
// series to r^13 (the next term is below 5e-18 there). 2^n is built in the
// exponent bits; the rounding of x / ln 2 uses the 1.5 * 2^52 shifter so
// every step is a plain double or 64-bit integer operation the compiler
// vectorises.
inline double exp_bounded(double x) {
  x = std::min(std::max(x, -708.0), 709.0);
  constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.44269504088896338700e+00 + kShifter;
  const double n = t - kShifter;
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t bits;
  std::memcpy(&bits, &t, sizeof(bits));  // n in the low bits, two's complement
  const uint64_t scale_bits = (bits + 1023) << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

constexpr int kLanes = 8;

}  // namespace

ST_VECTOR_CLONES void sum_exp_scaled_shifted(const float* z, double scale, double shift, int64_t n, double* sum,
                                             double* weighted) {
  // Blocks of exponentials first (that loop vectorises), then the lane sums.
  constexpr int64_t kBlock = 256;
  double x[kBlock], e[kBlock];
  double s[kLanes] = {}, w[kLanes] = {};
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int64_t m = std::min(kBlock, n - j0);
    for (int64_t j = 0; j < m; ++j) x[j] = double(z[j0 + j]) * scale;
    for (int64_t j = 0; j < m; ++j) e[j] = exp_bounded(x[j] - shift);
    int64_t j = 0;
    for (; j + kLanes <= m; j += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        s[l] += e[j + l];
        w[l] += e[j + l] * x[j + l];
      }
    for (int l = 0; j < m; ++j, ++l) {
      s[l] += e[j];
      w[l] += e[j] * x[j];
    }
  }
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) {
      s[l] += s[l + width];
      w[l] += w[l + width];
    }
  *sum = s[0];
  *weighted = w[0];
}

ST_VECTOR_CLONES float max_value(const float* z, int64_t n) {
  float part[16];
  std::fill(part, part + 16, -std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) part[l] = part[l] > z[j + l] ? part[l] : z[j + l];
  float best = -std::numeric_limits<float>::infinity();
  for (; j < n; ++j) best = best > z[j] ? best : z[j];
  for (int l = 0; l < 16; ++l) best = best > part[l] ? best : part[l];
  return best;
}

ST_VECTOR_CLONES void exp_scaled_shifted(const float* z, double scale, double shift, int64_t n, double* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = exp_bounded(double(z[j]) * scale - shift);
}

}  // namespace st::cpu
