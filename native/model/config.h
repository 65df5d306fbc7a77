#pragma once
// Qwen2.5-VL hyper-parameters, already read and validated from config.json by
// the library (lib/engine/config.ts) and handed over through the addon.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace st::model {

struct TextConfig {
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0;
  float rms_eps = 1e-6f;
  double rope_theta = 1e6;
  std::array<int64_t, 3> mrope_section{16, 24, 24};
  bool tie_embeddings = false;
  int64_t head_dim() const { return hidden / heads; }
};

struct VisionConfig {
  int64_t depth = 0, hidden = 0, heads = 0, intermediate = 0, out_hidden = 0;
  int64_t patch = 14, temporal_patch = 2, merge = 2, in_channels = 3, window_size = 112;
  // Qwen2.5-VL's vision tower fixes both (transformers hard-codes them);
  // config.json may name the eps (vision_config.rms_norm_eps).
  float rms_eps = 1e-6f;
  double rope_theta = 10000.0;
  std::vector<int64_t> fullatt_blocks;
  int64_t head_dim() const { return hidden / heads; }
  int64_t patch_dim() const { return in_channels * temporal_patch * patch * patch; }
};

struct ModelConfig {
  TextConfig text;
  VisionConfig vision;
  int32_t image_token_id = 0, vision_start_token_id = 0;
};

// "" when the model code can run with `config`, else a message naming the
// config.json field (without the file, which the caller knows).
std::string validate(const ModelConfig& config);

}  // namespace st::model
