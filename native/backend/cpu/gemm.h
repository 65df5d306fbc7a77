#pragma once
#include <cstdint>

namespace st::cpu {

// y[m, n] = x[m, k] w[n, k]^T (+ bias[n]); rows split over the thread pool.
// AVX2+FMA kernels where the CPU has them, portable code otherwise.
void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n);

// The two products of a linear layer's backward pass: dx[m, k] = dy[m, n]
// w[n, k] (overwrites dx), and dw[n, k] += dy[m, n]^T x[m, k].
void linear_dx(const float* dy, const float* w, float* dx, int64_t m, int64_t n, int64_t k);
void linear_dw(const float* dy, const float* x, float* dw, int64_t m, int64_t n, int64_t k);

// The widest kernels the products use here: "avx512", "avx2" or "portable",
// chosen at run time from the CPU (capped by SPATIALTHINKER_CPU_ISA), never
// fixed by the compiler flags, so one binary serves every x86-64.
const char* instruction_set();

// Wall time spent in the products since the last reset (for benchmarks).
int64_t matmul_nanoseconds();
void reset_matmul_nanoseconds();

}  // namespace st::cpu
