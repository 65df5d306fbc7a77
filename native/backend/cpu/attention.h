#pragma once
// The CPU backend's attention kernels (see attention.cpp).
#include "backend/backend.h"

namespace st::cpu {

void attention_forward(const AttentionArgs& args);
void attention_backward(const AttentionArgs& args, const float* dout, float* dq, float* dk_pool, float* dv_pool);

}  // namespace st::cpu
