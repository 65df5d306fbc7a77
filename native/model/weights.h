#pragma once
// The parameters of a Qwen2.5-VL checkpoint in backend memory, in the
// backend's storage type (fp32 on the CPU, bf16 on CUDA by default), loaded from a model directory by their hub names (or the renamed
// transformers >= 4.52 names), each checked against the config's shape.
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace st::model {

struct VisionBlockWeights {
  DeviceArray norm1, norm2, qkv_w, qkv_b, proj_w, proj_b, gate_w, gate_b, up_w, up_b, down_w, down_b;
};

struct DecoderLayerWeights {
  DeviceArray input_norm, post_norm, q_w, q_b, k_w, k_b, v_w, v_b, o_w, gate_w, up_w, down_w;
};

struct Weights {
  // vision tower and merger
  DeviceArray patch_embed;  // [D_v, C*T*p*p]
  std::vector<VisionBlockWeights> vision_blocks;
  DeviceArray merger_norm, merger_fc1_w, merger_fc1_b, merger_fc2_w, merger_fc2_b;
  // decoder
  DeviceArray embed_tokens;  // [vocab, D]
  std::vector<DecoderLayerWeights> layers;
  DeviceArray final_norm;
  DeviceArray lm_head;  // empty when tied: use embed_tokens
  ConstDevicePtr lm_head_weight() const { return lm_head.get() ? lm_head.get() : embed_tokens.get(); }
  int64_t parameter_count = 0;
};

// Throws FormatError naming the directory, file and tensor on any problem.
Weights load_weights(Backend& backend, const ModelConfig& config, const std::string& dir);

// Every parameter with its hub name, in a fixed order (for gradients,
// optimiser state and checkpoints). Tied models list no lm_head.
std::vector<std::pair<std::string, DeviceArray*>> named_parameters(Weights& weights);

// Zero-filled arrays shaped like `weights`, of element type `type`
// (gradients and AdamW moments: fp32, see backend/backend.h); with `host`, in
// the backend's host memory (the offloaded optimiser state).
Weights zeros_like(Backend& backend, Weights& weights, Storage type, bool host = false);

}  // namespace st::model
