#pragma once
// Test-only (runOp's *_bf16 attention ops): the CUDA backend's bf16
// tensor-core attention kernels run on fp32 host arrays, which are uploaded,
// rounded to bf16 on the device (round to nearest even), run through the
// kernel, and downloaded as fp32, so that tests can compare them with the
// CPU backend's fp32 attention on the same (bf16-representable) inputs. A
// build without CUDA says so.
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace st::cuda {

struct Bf16AttentionCheck {
  std::string kernel;  // "forward", "backward" or "decode"
  std::vector<float> q, k_pool, v_pool;  // q [rows, heads, hd], pools [slots, kv_heads, hd]
  std::vector<float> dout;               // backward: [rows, heads, hd]
  std::vector<float> dk_pool, dv_pool;   // backward: initial values (accumulated into); empty: no such gradient
  int64_t rows = 0, slots = 0, heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  std::vector<AttentionSequence> sequences;
  int splits = 0;  // decode: key ranges per sequence (0: chosen from the device)
};

struct Bf16AttentionResult {
  std::vector<float> out;                    // forward, decode (bf16 values)
  std::vector<float> dq, dk_pool, dv_pool;   // backward (fp32)
};

Bf16AttentionResult run_bf16_attention_check(const Bf16AttentionCheck& check);

}  // namespace st::cuda
