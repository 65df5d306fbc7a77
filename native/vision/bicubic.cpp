#include "vision/bicubic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/thread_pool.h"

// The weights must come out of the same double-precision operations, in the
// same order, as in the reference: a fused multiply-add would round
// differently and, near a rounding boundary, change a fixed-point weight.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#define ST_NO_FP_CONTRACT
#elif defined(__GNUC__)
#define ST_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define ST_NO_FP_CONTRACT
#endif

namespace st::vision {
namespace {

// Keys' cubic convolution kernel with a = -0.5, written in the nested form
// the reference evaluates (1.5|x|^3 - 2.5|x|^2 + 1 inside the unit interval,
// -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 out to 2, 0 beyond).
ST_NO_FP_CONTRACT double keys_cubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// Rounds half away from zero, truncating the shifted value as the reference does.
int32_t to_fixed(double w) {
  const double scaled = w * double(int64_t(1) << kWeightBits);
  return scaled < 0 ? int32_t(-0.5 + scaled) : int32_t(0.5 + scaled);
}

inline uint8_t settle(int32_t acc) {
  if (acc < 0) return 0;  // also keeps the shift below on non-negative values
  const int32_t v = acc >> kWeightBits;
  return v > 255 ? uint8_t(255) : uint8_t(v);
}

constexpr int32_t kRoundingBias = int32_t(1) << (kWeightBits - 1);

// Horizontal pass over rows [row_begin, row_end) of `in` ([rows, in_w, C]),
// writing rows of `out` ([.., out_w, C]) starting at out's row 0 for row_begin.
// C > 0 is a compile-time channel count; C == 0 reads it from `channels`.
template <int C>
void horizontal_rows(const uint8_t* in, int64_t in_w, int64_t channels, const ResampleTaps& taps, uint8_t* out,
                     int64_t out_w, int64_t row_begin, int64_t row_end, int64_t out_row_offset) {
  const int64_t ch = C > 0 ? C : channels;
  for (int64_t y = row_begin; y < row_end; ++y) {
    const uint8_t* src = in + y * in_w * ch;
    uint8_t* dst = out + (y - out_row_offset) * out_w * ch;
    for (int64_t x = 0; x < out_w; ++x) {
      const int32_t* w = taps.weights.data() + x * taps.stride;
      const uint8_t* p = src + taps.first[x] * ch;
      const int64_t n = taps.count[x];
      if constexpr (C > 0) {
        int32_t acc[C];
        for (int c = 0; c < C; ++c) acc[c] = kRoundingBias;
        for (int64_t k = 0; k < n; ++k)
          for (int c = 0; c < C; ++c) acc[c] += int32_t(p[k * C + c]) * w[k];
        for (int c = 0; c < C; ++c) dst[x * C + c] = settle(acc[c]);
      } else {
        for (int64_t c = 0; c < ch; ++c) {
          int32_t acc = kRoundingBias;
          for (int64_t k = 0; k < n; ++k) acc += int32_t(p[k * ch + c]) * w[k];
          dst[x * ch + c] = settle(acc);
        }
      }
    }
  }
}

void horizontal_pass(const uint8_t* in, int64_t in_w, int64_t channels, const ResampleTaps& taps, uint8_t* out,
                     int64_t out_w, int64_t row_begin, int64_t row_end, int64_t out_row_offset) {
  switch (channels) {
    case 1: return horizontal_rows<1>(in, in_w, channels, taps, out, out_w, row_begin, row_end, out_row_offset);
    case 3: return horizontal_rows<3>(in, in_w, channels, taps, out, out_w, row_begin, row_end, out_row_offset);
    case 4: return horizontal_rows<4>(in, in_w, channels, taps, out, out_w, row_begin, row_end, out_row_offset);
    default: return horizontal_rows<0>(in, in_w, channels, taps, out, out_w, row_begin, row_end, out_row_offset);
  }
}

// Vertical pass for output rows [row_begin, row_end): `in` holds rows of
// `row_len` samples, its row 0 being input row `in_row_offset`. Integer sums
// are exact, so accumulating tap by tap across the row gives the same result
// as summing each sample's taps in order.
void vertical_rows(const uint8_t* in, int64_t row_len, int64_t in_row_offset, const ResampleTaps& taps,
                   uint8_t* out, int64_t row_begin, int64_t row_end) {
  std::vector<int32_t> acc(static_cast<size_t>(row_len));
  for (int64_t y = row_begin; y < row_end; ++y) {
    std::fill(acc.begin(), acc.end(), kRoundingBias);
    const int32_t* w = taps.weights.data() + y * taps.stride;
    const uint8_t* base = in + (taps.first[y] - in_row_offset) * row_len;
    for (int64_t k = 0; k < taps.count[y]; ++k) {
      const uint8_t* src = base + k * row_len;
      const int32_t wk = w[k];
      int32_t* a = acc.data();
      for (int64_t i = 0; i < row_len; ++i) a[i] += int32_t(src[i]) * wk;
    }
    uint8_t* dst = out + y * row_len;
    for (int64_t i = 0; i < row_len; ++i) dst[i] = settle(acc[size_t(i)]);
  }
}

// Rows per parallel chunk so that each chunk does a useful amount of work.
int64_t grain_for(int64_t ops_per_row) {
  constexpr int64_t kOpsPerChunk = 1 << 16;
  return std::max<int64_t>(1, kOpsPerChunk / std::max<int64_t>(1, ops_per_row));
}

}  // namespace

ST_NO_FP_CONTRACT ResampleTaps bicubic_taps(int64_t in_size, int64_t out_size) {
  ResampleTaps taps;
  const double scale = double(in_size) / double(out_size);
  const double stretch = std::max(scale, 1.0);  // widen the kernel when shrinking
  const double support = 2.0 * stretch;         // the cubic reaches |x| < 2
  const double inv_stretch = 1.0 / stretch;
  taps.stride = int64_t(std::ceil(support)) * 2 + 1;
  taps.first.resize(size_t(out_size));
  taps.count.resize(size_t(out_size));
  taps.weights.assign(size_t(out_size * taps.stride), 0);
  std::vector<double> w(size_t(taps.stride));
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = (double(i) + 0.5) * scale;
    // Truncation toward zero, then clamping into the image.
    int64_t lo = int64_t(center - support + 0.5);
    int64_t hi = int64_t(center + support + 0.5);
    lo = std::max<int64_t>(lo, 0);
    hi = std::min<int64_t>(hi, in_size);
    const int64_t n = std::max<int64_t>(0, std::min(hi - lo, taps.stride));
    double total = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const double d = double(k + lo) - center + 0.5;
      w[size_t(k)] = keys_cubic(d * inv_stretch);
      total += w[size_t(k)];
    }
    int32_t* fixed = taps.weights.data() + i * taps.stride;
    for (int64_t k = 0; k < n; ++k) {
      const double normalised = total != 0.0 ? w[size_t(k)] / total : w[size_t(k)];
      fixed[k] = to_fixed(normalised);
    }
    taps.first[size_t(i)] = lo;
    taps.count[size_t(i)] = n;
  }
  return taps;
}

std::string validate_resize(int64_t height, int64_t width, int64_t channels, int64_t out_height, int64_t out_width,
                            uint64_t bytes) {
  // Sizes stay within int32 (like the reference) and buffers within 2^31 bytes.
  constexpr int64_t kMaxSide = std::numeric_limits<int32_t>::max();
  constexpr uint64_t kMaxBytes = uint64_t(std::numeric_limits<int32_t>::max());
  const struct {
    const char* name;
    int64_t value;
  } sides[] = {{"height", height}, {"width", width}, {"channels", channels}, {"outHeight", out_height},
               {"outWidth", out_width}};
  for (const auto& s : sides)
    if (s.value < 1 || s.value > kMaxSide)
      return std::string("`") + s.name + "` must be an integer from 1 to " + std::to_string(kMaxSide) + " (got " +
             std::to_string(s.value) + ")";
  const auto product = [](int64_t a, int64_t b, int64_t c) -> uint64_t {
    const long double p = static_cast<long double>(a) * b * c;
    return p > static_cast<long double>(kMaxBytes) ? kMaxBytes + 1 : uint64_t(a) * uint64_t(b) * uint64_t(c);
  };
  const uint64_t in_bytes = product(height, width, channels);
  const uint64_t out_bytes = product(out_height, out_width, channels);
  if (in_bytes > kMaxBytes) return "the input image (`height` x `width` x `channels`) exceeds 2^31 - 1 bytes";
  if (out_bytes > kMaxBytes) return "the output image (`outHeight` x `outWidth` x `channels`) exceeds 2^31 - 1 bytes";
  if (bytes != in_bytes)
    return "`pixels` holds " + std::to_string(bytes) + " bytes but height x width x channels = " +
           std::to_string(height) + " x " + std::to_string(width) + " x " + std::to_string(channels) + " = " +
           std::to_string(in_bytes);
  return "";
}

void resize_bicubic_u8(const uint8_t* in, int64_t height, int64_t width, int64_t channels, uint8_t* out,
                       int64_t out_height, int64_t out_width, ThreadPool* pool) {
  ThreadPool& threads = pool ? *pool : default_thread_pool();
  const bool horizontal = out_width != width;
  const bool vertical = out_height != height;
  if (!horizontal && !vertical) {
    std::memcpy(out, in, size_t(height * width * channels));
    return;
  }
  if (horizontal && !vertical) {
    const ResampleTaps taps = bicubic_taps(width, out_width);
    threads.parallel_for(height, grain_for(out_width * channels * taps.stride), [&](int64_t b, int64_t e) {
      horizontal_pass(in, width, channels, taps, out, out_width, b, e, 0);
    });
    return;
  }
  const ResampleTaps vtaps = bicubic_taps(height, out_height);
  const int64_t row_len = out_width * channels;
  if (!horizontal) {
    threads.parallel_for(out_height, grain_for(row_len * vtaps.stride),
                         [&](int64_t b, int64_t e) { vertical_rows(in, row_len, 0, vtaps, out, b, e); });
    return;
  }
  // Both axes: only the input rows some output row reads go through the
  // horizontal pass (the taps' first rows never decrease).
  const ResampleTaps htaps = bicubic_taps(width, out_width);
  const int64_t first_row = vtaps.first.front();
  const int64_t last_row = vtaps.first.back() + vtaps.count.back();
  std::vector<uint8_t> temp(size_t(std::max<int64_t>(0, last_row - first_row) * row_len));
  threads.parallel_for(last_row - first_row, grain_for(row_len * htaps.stride), [&](int64_t b, int64_t e) {
    horizontal_pass(in, width, channels, htaps, temp.data(), out_width, first_row + b, first_row + e, first_row);
  });
  threads.parallel_for(out_height, grain_for(row_len * vtaps.stride),
                       [&](int64_t b, int64_t e) { vertical_rows(temp.data(), row_len, first_row, vtaps, out, b, e); });
}

}  // namespace st::vision
