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
#include <cstdio>
#include <cstdlib>
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


// Packed GEMM for products with many rows (prefill, training), in the
// GotoBLAS/BLIS arrangement: a register tile of mr rows of x by nr columns
// of y accumulates kc outer products. Both operands are packed so the
// kernel reads them sequentially: x into [kc][mr] panels (broadcast one
// float at a time) and w into [kc][nr] panels (loaded as vectors). Each
// thread keeps one x panel in L1 while it sweeps the packed w panels of its
// column block out of L2.
constexpr int64_t kMr256 = 6, kNr256 = 16;   // AVX2: 12 ymm accumulators
constexpr int64_t kMr512 = 12, kNr512 = 32;  // AVX-512: 24 zmm accumulators
// kc: an x panel (12 x 448 floats, 21 KiB) stays in L1 beside the stream
// of w. Block of w columns: at most ~448 x 448 packed floats (784 KiB), so
// it stays in a 1 MiB+ L2 while every x panel passes over it.
constexpr int64_t kMaxKc = 448;
constexpr int64_t kMaxBlockColumns = 448;

// In-register transpose of an 8 x 8 block: rows in, columns out.
__attribute__((target("avx2,fma"))) inline void transpose8x8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]),
               t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]),
               t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]),
               t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Rows [r0, r0 + rows) of a row-major matrix (row stride ld), k-range
// [k0, k0 + kc), transposed into out[p * width + i] for i < width; rows
// beyond `rows` are written as zeros. Serves both operands: x into [kc][mr]
// panels, w into [kc][nr] panels. Blocks of 8 rows are read 8 floats at a
// time and transposed in registers, so reads and writes are whole vectors.
__attribute__((target("avx2,fma"))) void pack_panel(const float* src, int64_t ld, int64_t r0, int64_t rows,
                                                    int64_t k0, int64_t kc, int64_t width, float* out) {
  for (int64_t i0 = 0; i0 < width; i0 += 8) {
    const int64_t block = std::min<int64_t>(8, width - i0);  // rows of this block in the panel
    const int64_t live = std::max<int64_t>(0, std::min(block, rows - i0));
    const float* row[8];
    for (int64_t i = 0; i < 8; ++i) row[i] = i < live ? src + (r0 + i0 + i) * ld + k0 : nullptr;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(block)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
      __m256 v[8];
      for (int64_t i = 0; i < 8; ++i) v[i] = i < live ? _mm256_loadu_ps(row[i] + p) : _mm256_setzero_ps();
      transpose8x8(v);
      for (int64_t q = 0; q < 8; ++q) {
        float* dst = out + (p + q) * width + i0;
        if (block == 8) _mm256_storeu_ps(dst, v[q]);
        else _mm256_maskstore_ps(dst, mask, v[q]);
      }
    }
    for (; p < kc; ++p)
      for (int64_t i = 0; i < block; ++i) out[p * width + i0 + i] = i < live ? row[i][p] : 0.0f;
  }
}

// The micro-kernels: y tile (rows x cols, at most mr x nr) = or += a b over
// kc, with a a packed [kc][mr] x panel and b a packed [kc][nr] w panel.
// Accumulators are named variables, not an array: with an array the
// compiler keeps them in memory and every FMA round-trips through the stack.
#define ST_ROW(r)                                       \
  {                                                     \
    const __m256 av = _mm256_broadcast_ss(a + p * 6 + r); \
    c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);         \
    c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);         \
  }

__attribute__((target("avx2,fma"))) void micro_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                   bool accumulate, int64_t rows, int64_t cols) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t p = 0; p < kc; ++p) {
    _mm_prefetch(reinterpret_cast<const char*>(b + (p + 16) * kNr256), _MM_HINT_T0);
    const __m256 b0 = _mm256_loadu_ps(b + p * kNr256), b1 = _mm256_loadu_ps(b + p * kNr256 + 8);
    ST_ROW(0) ST_ROW(1) ST_ROW(2) ST_ROW(3) ST_ROW(4) ST_ROW(5)
  }
  const __m256 acc[kMr256][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (cols == kNr256) {
    for (int64_t r = 0; r < rows; ++r) {
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
  alignas(32) float tile[kMr256 * kNr256];
  for (int r = 0; r < kMr256; ++r) {
    _mm256_store_ps(tile + r * kNr256, acc[r][0]);
    _mm256_store_ps(tile + r * kNr256 + 8, acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0.0f) + tile[r * kNr256 + j];
}
#undef ST_ROW

#define ST_ROW512(name, r)                                \
  {                                                       \
    const __m512 av = _mm512_set1_ps(a[p * 12 + r]);      \
    c##name##0 = _mm512_fmadd_ps(av, b0, c##name##0);     \
    c##name##1 = _mm512_fmadd_ps(av, b1, c##name##1);     \
  }

// Each pair of w loads feeds 24 FMAs; the 12 broadcasts are load-port uops.
__attribute__((target("avx512f"))) void micro_12x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                   bool accumulate, int64_t rows, int64_t cols) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
  __m512 c90 = c00, c91 = c00, cA0 = c00, cA1 = c00, cB0 = c00, cB1 = c00;
  for (int64_t p = 0; p < kc; ++p) {
    // w comes from L2: ask for it 16 steps (2 KiB) ahead.
    _mm_prefetch(reinterpret_cast<const char*>(b + (p + 16) * kNr512), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + (p + 16) * kNr512 + 16), _MM_HINT_T0);
    const __m512 b0 = _mm512_loadu_ps(b + p * kNr512), b1 = _mm512_loadu_ps(b + p * kNr512 + 16);
    ST_ROW512(0, 0) ST_ROW512(1, 1) ST_ROW512(2, 2) ST_ROW512(3, 3) ST_ROW512(4, 4) ST_ROW512(5, 5)
    ST_ROW512(6, 6) ST_ROW512(7, 7) ST_ROW512(8, 8) ST_ROW512(9, 9) ST_ROW512(A, 10) ST_ROW512(B, 11)
  }
  const __m512 acc[kMr512][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51},
                                 {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {cA0, cA1}, {cB0, cB1}};
  if (cols == kNr512) {
    for (int64_t r = 0; r < rows; ++r) {
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
  alignas(64) float tile[kMr512 * kNr512];
  for (int r = 0; r < kMr512; ++r) {
    _mm512_store_ps(tile + r * kNr512, acc[r][0]);
    _mm512_store_ps(tile + r * kNr512 + 16, acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0.0f) + tile[r * kNr512 + j];
}
#undef ST_ROW512

using MicroKernel = void (*)(int64_t, const float*, const float*, float*, int64_t, bool, int64_t, int64_t);

// Scratch that lives as long as its thread and only grows: allocating and
// faulting in megabytes per product costs as much as a small product.
float* scratch(std::vector<float>& buffer, int64_t count) {
  if (int64_t(buffer.size()) < count) buffer.resize(size_t(count));
  return buffer.data();
}

// Packed x kept per calling thread: products with more rows run in passes
// of at most this many floats of x, so training-sized batches do not pin
// hundreds of megabytes of scratch.
constexpr int64_t kMaxPackedX = int64_t(4) << 20;

// One pass: rows [0, m) of x against all of w.
void packed_gemm_pass(const float* x, const float* w, float* y, int64_t m, int64_t k, int64_t n, MicroKernel micro,
                      int64_t mr, int64_t nr) {
  ThreadPool& pool = default_thread_pool();
  const int64_t threads = pool.size();
  const int64_t k_blocks = (k + kMaxKc - 1) / kMaxKc;
  const int64_t kc_max = (k + k_blocks - 1) / k_blocks;

  // All of x, packed once: panel i holds rows [i mr, (i + 1) mr) as [k][mr],
  // so each k-block of it is contiguous.
  const int64_t x_panels = (m + mr - 1) / mr;
  thread_local std::vector<float> packed_x_buffer;
  float* packed_x = scratch(packed_x_buffer, x_panels * mr * k);
  pool.parallel_for(x_panels, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      pack_panel(x, k, i * mr, std::min(mr, m - i * mr), 0, k, mr, packed_x + i * mr * k);
  });

  // Tasks: column blocks of whole w panels, as many as a multiple of the
  // threads so none idles at the end; when there are too few columns for
  // that (narrow outputs), each block is also split by x panels.
  const int64_t w_panels = (n + nr - 1) / nr;
  int64_t blocks = (w_panels * nr + kMaxBlockColumns - 1) / kMaxBlockColumns;
  blocks = std::min(w_panels, (blocks + threads - 1) / threads * threads);
  const int64_t row_groups = std::min(x_panels, blocks % threads == 0 ? int64_t(1) : threads);
  const int64_t panels_per_group = (x_panels + row_groups - 1) / row_groups;
  pool.parallel_for(blocks * row_groups, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> packed_w_buffer;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task / row_groups, group = task % row_groups;
      const int64_t wp0 = block * w_panels / blocks, wp1 = (block + 1) * w_panels / blocks;
      const int64_t xp0 = group * panels_per_group, xp1 = std::min(x_panels, xp0 + panels_per_group);
      float* packed_w = scratch(packed_w_buffer, (wp1 - wp0) * nr * kc_max);
      for (int64_t k0 = 0; k0 < k; k0 += kc_max) {
        const int64_t kc = std::min(kc_max, k - k0);
        for (int64_t wp = wp0; wp < wp1; ++wp)
          pack_panel(w, k, wp * nr, std::min(nr, n - wp * nr), k0, kc, nr, packed_w + (wp - wp0) * nr * kc);
        for (int64_t xp = xp0; xp < xp1; ++xp) {
          const float* a = packed_x + xp * mr * k + k0 * mr;
          const int64_t rows = std::min(mr, m - xp * mr);
          for (int64_t wp = wp0; wp < wp1; ++wp)
            micro(kc, a, packed_w + (wp - wp0) * nr * kc, y + xp * mr * n + wp * nr, n, k0 > 0, rows,
                  std::min(nr, n - wp * nr));
        }
      }
    }
  });
}

void packed_gemm(const float* x, const float* w, float* y, int64_t m, int64_t k, int64_t n, MicroKernel micro,
                 int64_t mr, int64_t nr) {
  const int64_t pass_rows = std::max(mr, kMaxPackedX / std::max<int64_t>(k, 1) / mr * mr);
  for (int64_t i0 = 0; i0 < m; i0 += pass_rows)
    packed_gemm_pass(x + i0 * k, w, y + i0 * n, std::min(pass_rows, m - i0), k, n, micro, mr, nr);
}

// SPATIALTHINKER_CPU_ISA=avx2 or =portable caps the instruction set of the
// products below what the CPU has: the fallback kernels get tested on any
// machine, and results can be reproduced from a machine that lacks AVX-512.
int isa_cap() {
  static const int cap = [] {
    const char* v = std::getenv("SPATIALTHINKER_CPU_ISA");
    if (v == nullptr || *v == '\0' || std::strcmp(v, "avx512") == 0) return 2;
    if (std::strcmp(v, "avx2") == 0) return 1;
    if (std::strcmp(v, "portable") == 0) return 0;
    std::fprintf(stderr, "spatialthinker: ignoring SPATIALTHINKER_CPU_ISA=%s (expected avx512, avx2 or portable)\n", v);
    return 2;
  }();
  return cap;
}

bool has_avx512() {
  static const bool yes = isa_cap() >= 2 && __builtin_cpu_supports("avx512f");
  return yes;
}

bool has_avx2() {
  static const bool yes = isa_cap() >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
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
    else packed_gemm(x, w, y, m, k, n, micro_6x16, kMr256, kNr256);
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

const char* instruction_set() {
#ifdef ST_X86
  if (has_avx512()) return "avx512";
  if (has_avx2()) return "avx2";
#endif
  return "portable";
}

}  // namespace st::cpu
