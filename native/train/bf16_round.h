#pragma once
// float -> the nearest bfloat16 (round to nearest, ties to even, as the
// hardware's cvt.rn.bf16.f32 and torch's .to(torch.bfloat16) round), kept in
// a float: the CPU backend and the optimiser emulate bf16 storage by holding
// only values this returns. Usable in CUDA kernels and host code alike.
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__device__)
#define ST_HOST_DEVICE __host__ __device__
#else
#define ST_HOST_DEVICE
#endif

namespace st::train {

ST_HOST_DEVICE inline float round_to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    bits |= 0x00400000u;  // NaN stays NaN (quiet), whatever its payload
  } else {
    bits += 0x7fffu + ((bits >> 16) & 1u);  // carries into the exponent as rounding up should
  }
  bits &= 0xffff0000u;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

}  // namespace st::train
