#pragma once
#include <cstdint>

// Vectorised kernels over one row of floats (logits, attention scores).
namespace st::cpu {

// out[j] = exp(double(z[j]) * scale - shift) for j < n, in double precision
// (within 2 ulp of glibc's exp), vectorised: the log-sum-exp and softmax
// passes over the vocabulary spent most of their time in scalar exp calls.
// Arguments below -708 give exp(-708) (about 3e-308) instead of a subnormal
// or zero: beside the row's largest term (1) it is nothing.
void exp_scaled_shifted(const float* z, double scale, double shift, int64_t n, double* out);

// With x_j = double(z[j]) * scale and e_j = exp(x_j - shift) as above:
// *sum = sum_j e_j and *weighted = sum_j e_j x_j, each in 8 partial sums
// (so the loop vectorises) added pairwise at the end.
void sum_exp_scaled_shifted(const float* z, double scale, double shift, int64_t n, double* sum, double* weighted);

// The largest of z[0 .. n), -infinity when n == 0. NaNs are not ordered
// and may or may not win; the exp of what follows carries them anyway.
float max_value(const float* z, int64_t n);

}  // namespace st::cpu
