#pragma once
#include <cstdint>

namespace st::cpu {

// y[m, n] = x[m, k] w[n, k]^T (+ bias[n]); rows split over the thread pool.
// AVX2+FMA kernels where the CPU has them, portable code otherwise.
void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t k, int64_t n);

// Wall time spent in linear() since the last reset (for benchmarks).
int64_t matmul_nanoseconds();
void reset_matmul_nanoseconds();

}  // namespace st::cpu
