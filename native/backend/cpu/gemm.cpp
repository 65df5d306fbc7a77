// The CPU matrix product, in "x times w transposed" form: both operands are
// read along contiguous rows of k, so no packing is needed for the weight
// layout linear layers use ([out, in]). Register tiles of 4 x-rows by 3
// w-rows, 8 lanes each, keep 12 accumulators in AVX registers; blocks of
// w-rows sized to stay in L2 are shared across the x-rows of a thread.
#include "backend/cpu/gemm.h"

#include <algorithm>
#include <cstring>

#include "engine/thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define ST_X86 1
#endif

namespace st::cpu {
namespace {

float dot_scalar(const float* a, const float* b, int64_t k) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < k; ++i) sum += a[i] * b[i];
  return sum;
}

void tile_portable(const float* x, const float* w, float* y, int64_t rows, int64_t cols, int64_t k, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * ldy + c] = dot_scalar(x + r * k, w + c * k, k);
}

#ifdef ST_X86
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// rows x cols outputs (rows <= 4, cols <= 3) for one register tile.
template <int R, int C>
__attribute__((target("avx2,fma"))) void micro_tile(const float* x, const float* w, float* y, int64_t k,
                                                    int64_t ldy) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = _mm256_loadu_ps(w + c * k + i);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * k + i);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float s = hsum(acc[r][c]);
      for (int64_t t = i; t < k; ++t) s += x[r * k + t] * w[c * k + t];
      y[r * ldy + c] = s;
    }
}

template <int R>
__attribute__((target("avx2,fma"))) void row_tile(const float* x, const float* w, float* y, int64_t cols, int64_t k,
                                                  int64_t ldy) {
  int64_t c = 0;
  for (; c + 3 <= cols; c += 3) micro_tile<R, 3>(x, w + c * k, y + c, k, ldy);
  if (cols - c == 2) micro_tile<R, 2>(x, w + c * k, y + c, k, ldy);
  if (cols - c == 1) micro_tile<R, 1>(x, w + c * k, y + c, k, ldy);
}

__attribute__((target("avx2,fma"))) void tile_avx2(const float* x, const float* w, float* y, int64_t rows,
                                                   int64_t cols, int64_t k, int64_t ldy) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) row_tile<4>(x + r * k, w, y + r * ldy, cols, k, ldy);
  switch (rows - r) {
    case 3: row_tile<3>(x + r * k, w, y + r * ldy, cols, k, ldy); break;
    case 2: row_tile<2>(x + r * k, w, y + r * ldy, cols, k, ldy); break;
    case 1: row_tile<1>(x + r * k, w, y + r * ldy, cols, k, ldy); break;
    default: break;
  }
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

using TileFn = void (*)(const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t);

TileFn tile_fn() {
#ifdef ST_X86
  if (has_avx2()) return tile_avx2;
#endif
  return tile_portable;
}

}  // namespace

void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n) {
  const TileFn tile = tile_fn();
  // w-rows per block: about 256 KiB of weights, shared by every x-row.
  const int64_t block_cols = std::max<int64_t>(3, std::min<int64_t>(n, (256 * 1024 / 4) / std::max<int64_t>(k, 1) / 3 * 3));
  const int64_t block_rows = 64;
  const int64_t col_blocks = (n + block_cols - 1) / block_cols;
  const int64_t row_blocks = (m + block_rows - 1) / block_rows;
  const int64_t tasks = col_blocks * row_blocks;
  // Tiny products are not worth waking threads for.
  const int64_t grain = m * n * k < (1 << 16) ? tasks : 1;
  default_thread_pool().parallel_for(tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cb = t % col_blocks, rb = t / col_blocks;
      const int64_t c0 = cb * block_cols, c1 = std::min(n, c0 + block_cols);
      const int64_t r0 = rb * block_rows, r1 = std::min(m, r0 + block_rows);
      tile(x + r0 * k, w + c0 * k, y + r0 * n + c0, r1 - r0, c1 - c0, k, n);
      if (bias)
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) y[r * n + c] += bias[c];
    }
  });
}

}  // namespace st::cpu
