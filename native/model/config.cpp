// Checks of the hyper-parameters that the model code divides by or loops
// over: a value the library's config.json validation let through (or a
// caller bypassing it) must stop here with a message, not hang or allocate
// without end in vision_layout (window_size 0) or run with head size 0.
#include "model/config.h"

namespace st::model {

namespace {
std::string field(const char* name, int64_t value) { return std::string(name) + " " + std::to_string(value); }
}  // namespace

std::string validate(const ModelConfig& config) {
  const TextConfig& t = config.text;
  const VisionConfig& v = config.vision;
  for (auto [name, value] : {std::pair{"hidden_size", t.hidden}, {"intermediate_size", t.intermediate},
                             {"num_hidden_layers", t.layers}, {"num_attention_heads", t.heads},
                             {"num_key_value_heads", t.kv_heads}, {"vocab_size", t.vocab},
                             {"vision_config.depth", v.depth}, {"vision_config.hidden_size", v.hidden},
                             {"vision_config.num_heads", v.heads}, {"vision_config.intermediate_size", v.intermediate},
                             {"vision_config.out_hidden_size", v.out_hidden}, {"vision_config.patch_size", v.patch},
                             {"vision_config.temporal_patch_size", v.temporal_patch},
                             {"vision_config.spatial_merge_size", v.merge}, {"vision_config.in_channels", v.in_channels},
                             {"vision_config.window_size", v.window_size}})
    if (value <= 0) return field(name, value) + " must be positive";
  if (t.hidden % t.heads != 0)
    return field("num_attention_heads", t.heads) + " does not divide " + field("hidden_size", t.hidden);
  if (t.heads % t.kv_heads != 0)
    return field("num_key_value_heads", t.kv_heads) + " does not divide " + field("num_attention_heads", t.heads);
  if (v.hidden % v.heads != 0)
    return field("vision_config.num_heads", v.heads) + " does not divide " + field("vision_config.hidden_size", v.hidden);
  // The 2-D rotary embedding splits each head into quarters (rows, columns, twice).
  if (v.head_dim() % 4 != 0)
    return "vision head size " + std::to_string(v.head_dim()) +
           " (vision_config.hidden_size / num_heads) must be a multiple of 4 for the 2-D rotary embedding";
  if (v.window_size < v.merge * v.patch)
    return field("vision_config.window_size", v.window_size) + " is smaller than one merged patch (spatial_merge_size x patch_size = " +
           std::to_string(v.merge * v.patch) + ")";
  if (t.vocab > INT32_MAX) return field("vocab_size", t.vocab) + " does not fit token ids of 32 bits";
  if (config.image_token_id < 0 || config.image_token_id >= t.vocab)
    return field("image_token_id", config.image_token_id) + " is outside the vocabulary (vocab_size " + std::to_string(t.vocab) + ")";
  if (config.vision_start_token_id < 0 || config.vision_start_token_id >= t.vocab)
    return field("vision_start_token_id", config.vision_start_token_id) + " is outside the vocabulary (vocab_size " +
           std::to_string(t.vocab) + ")";
  return "";
}

}  // namespace st::model
