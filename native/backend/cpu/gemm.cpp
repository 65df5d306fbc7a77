// The CPU matrix product y = x w^T, our own kernels (no BLAS, so nothing to
// install and the same numbers everywhere). Products with many rows pack
// both operands and run a 6 x 16 (AVX2) or 12 x 32 (AVX-512) register tile
// of outer products; products with few rows (decoding) read each weight row
// once with dot-product tiles of 4 x-rows by 3 w-rows. A portable path covers
// CPUs without AVX2.
#include "backend/cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

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


// Packed GEMM for products with many rows (prefill, training): B = w^T is
// packed into panels of kNr columns laid out [k][kNr]; a 6x16 register tile
// accumulates outer products of those panels with rows of x broadcast
// straight from memory (12 AVX accumulators, 2 loads and 6 broadcasts per
// 12 FMAs).
constexpr int64_t kMr = 6, kNr = 16, kMaxMc = 192, kNc = 1024;
constexpr int64_t kNr512 = 32, kMr512 = 12;

// Accumulators are named variables, not an array: with an array the
// compiler keeps them in memory and every FMA round-trips through the stack.
#define ST_ROW(r)                                          \
  {                                                         \
    const __m256 av = _mm256_broadcast_ss(a##r + p);        \
    c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);             \
    c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);             \
  }

__attribute__((target("avx2,fma"))) void micro_6x16(int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                                                   int64_t ldc, bool accumulate, int64_t rows, int64_t cols) {
  const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda, *a4 = a + 4 * lda, *a5 = a + 5 * lda;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b + p * kNr), b1 = _mm256_loadu_ps(b + p * kNr + 8);
    ST_ROW(0) ST_ROW(1) ST_ROW(2) ST_ROW(3) ST_ROW(4) ST_ROW(5)
  }
  alignas(32) float tile[kMr * kNr];
  const __m256 acc[kMr][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (rows == kMr && cols == kNr) {
    for (int r = 0; r < kMr; ++r) {
      float* row = c + r * ldc;
      __m256 v0 = acc[r][0], v1 = acc[r][1];
      if (accumulate) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, v0);
      _mm256_storeu_ps(row + 8, v1);
    }
    return;
  }
  for (int r = 0; r < kMr; ++r) {
    _mm256_store_ps(tile + r * kNr, acc[r][0]);
    _mm256_store_ps(tile + r * kNr + 8, acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0.0f) + tile[r * kNr + j];
}
#undef ST_ROW

#define ST_ROW512(name, r)                                  \
  {                                                          \
    const __m512 av = _mm512_set1_ps(r[p]);                  \
    c##name##0 = _mm512_fmadd_ps(av, b0, c##name##0);        \
    c##name##1 = _mm512_fmadd_ps(av, b1, c##name##1);        \
  }

// The AVX-512 tile: 12 rows x 32 columns, 24 zmm accumulators, so each
// pair of loads of w feeds 24 FMAs.
__attribute__((target("avx512f"))) void micro_12x32(int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                                                   int64_t ldc, bool accumulate, int64_t rows, int64_t cols) {
  constexpr int64_t mr = kMr512;
  // Three row groups of four: base pointers plus offsets of 1-3 rows keep
  // the twelve addresses in few registers.
  const float *g0 = a, *g1 = a + 4 * lda, *g2 = a + 8 * lda;
  const int64_t l1 = lda, l2 = 2 * lda, l3 = 3 * lda;
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
  __m512 c90 = c00, c91 = c00, cA0 = c00, cA1 = c00, cB0 = c00, cB1 = c00;
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b + p * kNr512), b1 = _mm512_loadu_ps(b + p * kNr512 + 16);
    ST_ROW512(0, g0) ST_ROW512(1, (g0 + l1)) ST_ROW512(2, (g0 + l2)) ST_ROW512(3, (g0 + l3))
    ST_ROW512(4, g1) ST_ROW512(5, (g1 + l1)) ST_ROW512(6, (g1 + l2)) ST_ROW512(7, (g1 + l3))
    ST_ROW512(8, g2) ST_ROW512(9, (g2 + l1)) ST_ROW512(A, (g2 + l2)) ST_ROW512(B, (g2 + l3))
  }
  const __m512 acc[mr][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51},
                             {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {cA0, cA1}, {cB0, cB1}};
  if (rows == mr && cols == kNr512) {
    for (int r = 0; r < mr; ++r) {
      float* row = c + r * ldc;
      __m512 v0 = acc[r][0], v1 = acc[r][1];
      if (accumulate) {
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(row));
        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(row + 16));
      }
      _mm512_storeu_ps(row, v0);
      _mm512_storeu_ps(row + 16, v1);
    }
    return;
  }
  alignas(64) float tile[mr * kNr512];
  for (int r = 0; r < mr; ++r) {
    _mm512_store_ps(tile + r * kNr512, acc[r][0]);
    _mm512_store_ps(tile + r * kNr512 + 16, acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0.0f) + tile[r * kNr512 + j];
}
#undef ST_ROW512

// w rows [j0, j0 + cols) x k-range [k0, k0 + kc) -> [kc][nr], zero padded.
// Blocks of 8 rows are read 8 floats at a time and transposed in registers,
// so both the reads and the writes are whole vectors.
__attribute__((target("avx2,fma"))) void pack_b(const float* w, int64_t k, int64_t j0, int64_t cols, int64_t k0,
                                                int64_t kc, int64_t nr, float* out) {
  int64_t jj = 0;
  for (; jj + 8 <= cols; jj += 8) {
    const float* src = w + (j0 + jj) * k + k0;
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
      __m256 r0 = _mm256_loadu_ps(src + p), r1 = _mm256_loadu_ps(src + k + p), r2 = _mm256_loadu_ps(src + 2 * k + p),
             r3 = _mm256_loadu_ps(src + 3 * k + p), r4 = _mm256_loadu_ps(src + 4 * k + p),
             r5 = _mm256_loadu_ps(src + 5 * k + p), r6 = _mm256_loadu_ps(src + 6 * k + p),
             r7 = _mm256_loadu_ps(src + 7 * k + p);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                   t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
      r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
      r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
      r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
      r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
      r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
      r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
      r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
      float* dst = out + p * nr + jj;
      _mm256_storeu_ps(dst, r0);
      _mm256_storeu_ps(dst + nr, r1);
      _mm256_storeu_ps(dst + 2 * nr, r2);
      _mm256_storeu_ps(dst + 3 * nr, r3);
      _mm256_storeu_ps(dst + 4 * nr, r4);
      _mm256_storeu_ps(dst + 5 * nr, r5);
      _mm256_storeu_ps(dst + 6 * nr, r6);
      _mm256_storeu_ps(dst + 7 * nr, r7);
    }
    for (; p < kc; ++p)
      for (int64_t q = 0; q < 8; ++q) out[p * nr + jj + q] = src[q * k + p];
  }
  for (; jj < nr; ++jj) {
    if (jj < cols) {
      const float* src = w + (j0 + jj) * k + k0;
      for (int64_t p = 0; p < kc; ++p) out[p * nr + jj] = src[p];
    } else {
      for (int64_t p = 0; p < kc; ++p) out[p * nr + jj] = 0.0f;
    }
  }
}

using MicroKernel = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, bool, int64_t, int64_t);

// The deepest k-block: one pass over C for the model's hidden sizes (no
// re-reading partial sums), while a packed w panel (kc x 32 floats) still
// sits in L2 beside the rows of x it meets.
constexpr int64_t kMaxKc = 1024;
constexpr int64_t kL2Bytes = 1 << 20;

// The micro-kernels broadcast x straight from its rows (no packing of x:
// each row streams through L1 once per w panel); only w is packed, once per
// (column block, k-block), shared by all threads.
void packed_gemm(const float* x, const float* w, float* y, int64_t m, int64_t k, int64_t n, MicroKernel micro,
                 int64_t mr, int64_t nr) {
  const int64_t k_blocks = (k + kMaxKc - 1) / kMaxKc;
  const int64_t kc_max = (k + k_blocks - 1) / k_blocks;
  std::vector<float> packed_b(static_cast<size_t>(kc_max * (kNc + nr)));
  // Row blocks sized so every thread gets about two of equal size (the last
  // one is not left mostly empty), at most kMaxMc rows to stay in L2.
  const int64_t threads = default_thread_pool().size();
  const int64_t target_blocks = std::max<int64_t>(1, 2 * threads);
  const int64_t mc_rows = std::min(kMaxMc, std::max(mr, ((m + target_blocks - 1) / target_blocks + mr - 1) / mr * mr));
  const int64_t m_blocks = (m + mc_rows - 1) / mc_rows;
  for (int64_t j0 = 0; j0 < n; j0 += kNc) {
    const int64_t nc = std::min(kNc, n - j0);
    const int64_t panels = (nc + nr - 1) / nr;
    for (int64_t k0 = 0; k0 < k; k0 += kc_max) {
      const int64_t kc = std::min(kc_max, k - k0);
      default_thread_pool().parallel_for(panels, 4, [&](int64_t begin, int64_t end) {
        for (int64_t pnl = begin; pnl < end; ++pnl)
          pack_b(w, k, j0 + pnl * nr, std::min(nr, nc - pnl * nr), k0, kc, nr, packed_b.data() + pnl * kc * nr);
      });
      // Tasks: (row block, group of panels).
      const int64_t groups = std::min<int64_t>(panels, std::max<int64_t>(1, (target_blocks + m_blocks - 1) / m_blocks));
      const int64_t per_group = (panels + groups - 1) / groups;
      default_thread_pool().parallel_for(m_blocks * groups, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> edge;  // the last rows of x, zero padded to a whole tile
        for (int64_t task = begin; task < end; ++task) {
          const int64_t mb = task / groups, g = task % groups;
          const int64_t i0 = mb * mc_rows, mc = std::min(mc_rows, m - i0);
          const int64_t row_panels = (mc + mr - 1) / mr, tail = mc % mr;
          if (tail != 0) {
            edge.assign(static_cast<size_t>(mr * kc), 0.0f);
            const int64_t r0 = i0 + (row_panels - 1) * mr;
            for (int64_t r = 0; r < tail; ++r) std::memcpy(edge.data() + r * kc, x + (r0 + r) * k + k0, sizeof(float) * kc);
          }
          const int64_t p_begin = g * per_group, p_end = std::min(panels, (g + 1) * per_group);
          const auto tile = [&](int64_t pnl, int64_t rp) {
            const bool whole = rp + 1 < row_panels || tail == 0;
            const float* a = whole ? x + (i0 + rp * mr) * k + k0 : edge.data();
            micro(kc, a, whole ? k : kc, packed_b.data() + pnl * kc * nr, y + (i0 + rp * mr) * n + j0 + pnl * nr, n,
                  k0 > 0, std::min(mr, mc - rp * mr), std::min(nr, nc - pnl * nr));
          };
          // The operand that fits in L2 is the one reused from it: the task's
          // w panels when few (narrow outputs), else its rows of x.
          if ((p_end - p_begin) * kc * nr * 4 <= kL2Bytes / 2) {
            for (int64_t rp = 0; rp < row_panels; ++rp)
              for (int64_t pnl = p_begin; pnl < p_end; ++pnl) tile(pnl, rp);
          } else {
            for (int64_t pnl = p_begin; pnl < p_end; ++pnl)
              for (int64_t rp = 0; rp < row_panels; ++rp) tile(pnl, rp);
          }
        }
      });
    }
  }
}

bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
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

namespace {
std::atomic<int64_t> matmul_ns{0};

// Adds the lifetime of the object to matmul_ns.
struct MatmulTimer {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  ~MatmulTimer() {
    matmul_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
  }
};
}  // namespace

int64_t matmul_nanoseconds() { return matmul_ns.load(); }
void reset_matmul_nanoseconds() { matmul_ns = 0; }

void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n) {
  const MatmulTimer timer;
#ifdef ST_X86
  // Many rows: packing pays for itself. Few rows (decoding): every weight is
  // read once anyway, so the unpacked dot-product tiles are faster.
  if (has_avx2() && m >= 32 && k > 0 && m * k * n >= (int64_t(1) << 20)) {
    if (has_avx512()) packed_gemm(x, w, y, m, k, n, micro_12x32, kMr512, kNr512);
    else packed_gemm(x, w, y, m, k, n, micro_6x16, kMr, kNr);
    if (bias)
      default_thread_pool().parallel_for(m, 16, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r)
          for (int64_t c = 0; c < n; ++c) y[r * n + c] += bias[c];
      });
    return;
  }
#endif
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

namespace {

// y += a x over n floats: the building block of the backward products, whose
// rows are contiguous in both operands.
void axpy_portable(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

#ifdef ST_X86
__attribute__((target("avx2,fma"))) void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
  }
  for (; i < n; ++i) y[i] += a * x[i];
}
#endif

using AxpyFn = void (*)(float, const float*, float*, int64_t);
AxpyFn axpy_fn() {
#ifdef ST_X86
  if (has_avx2()) return axpy_avx2;
#endif
  return axpy_portable;
}

// Rows of a k-wide operand that fit in about 256 KiB, so a block of them
// stays in L2 while every row of the other operand passes over it.
int64_t rows_in_l2(int64_t k) { return std::max<int64_t>(1, (256 * 1024 / 4) / std::max<int64_t>(k, 1)); }

}  // namespace

namespace {
// A matrix transposed into a scratch buffer: the packed kernels want both
// operands read along k.
std::vector<float> transposed(const float* src, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  default_thread_pool().parallel_for(cols, 64, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      for (int64_t r = 0; r < rows; ++r) out[size_t(c * rows + r)] = src[r * cols + c];
  });
  return out;
}
// Many rows make the packed product worth a transpose of the weight; few
// rows (the tiled log-prob backward, short batches) stream row axpys instead.
constexpr int64_t kTransposeRows = 64;
}  // namespace

void linear_dx(const float* dy, const float* w, float* dx, int64_t m, int64_t n, int64_t k) {
  if (m >= kTransposeRows) {
    const std::vector<float> wt = transposed(w, n, k);
    linear(dy, wt.data(), nullptr, dx, m, n, k);
    return;
  }
  const MatmulTimer timer;
  const AxpyFn axpy = axpy_fn();
  const int64_t block = rows_in_l2(k);
  default_thread_pool().parallel_for(m, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) std::fill(dx + i * k, dx + (i + 1) * k, 0.0f);
    for (int64_t j0 = 0; j0 < n; j0 += block) {
      const int64_t j1 = std::min(n, j0 + block);
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = j0; j < j1; ++j) {
          const float a = dy[i * n + j];
          if (a != 0.0f) axpy(a, w + j * k, dx + i * k, k);
        }
    }
  });
}

void linear_dw(const float* dy, const float* x, float* dw, int64_t m, int64_t n, int64_t k) {
  if (m >= kTransposeRows) {
    const std::vector<float> dyt = transposed(dy, m, n), xt = transposed(x, m, k);
    std::vector<float> grad(static_cast<size_t>(n * k));
    linear(dyt.data(), xt.data(), nullptr, grad.data(), n, m, k);
    default_thread_pool().parallel_for(n * k, 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) dw[i] += grad[size_t(i)];
    });
    return;
  }
  const MatmulTimer timer;
  const AxpyFn axpy = axpy_fn();
  // Each thread owns a range of dw rows; x rows stream past them.
  default_thread_pool().parallel_for(n, 8, [&](int64_t begin, int64_t end) {
    const int64_t block = rows_in_l2(k);
    for (int64_t j0 = begin; j0 < end; j0 += block) {
      const int64_t j1 = std::min(end, j0 + block);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = j0; j < j1; ++j) {
          const float a = dy[i * n + j];
          if (a != 0.0f) axpy(a, x + i * k, dw + j * k, k);
        }
    }
  });
}

}  // namespace st::cpu
