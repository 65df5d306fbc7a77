#include "model/weights.h"

#include <sstream>

#include "engine/safetensors.h"

namespace st::model {
namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

class Loader {
 public:
  Loader(Backend& backend, const std::string& dir)
      : backend_(backend), dir_(dir), store_(TensorStore::open_directory(dir)) {}

  // The hub name, or its transformers >= 4.52 spelling.
  std::string resolve(const std::string& name) const {
    if (store_.has(name)) return name;
    std::string renamed;
    if (name.rfind("visual.", 0) == 0) renamed = "model." + name;
    else if (name.rfind("model.", 0) == 0) renamed = "model.language_model." + name.substr(6);
    if (!renamed.empty() && store_.has(renamed)) return renamed;
    return "";
  }

  bool has(const std::string& name) const { return !resolve(name).empty(); }

  DeviceArray load(const std::string& name, const std::vector<int64_t>& shape) {
    const std::string stored = resolve(name);
    if (stored.empty())
      throw FormatError(dir_ + ": missing tensor '" + name + "' (expected shape " + shape_string(shape) + ")");
    const TensorInfo& info = store_.tensor(stored);
    if (info.shape != shape)
      throw FormatError(store_.file_of(stored) + ": tensor '" + stored + "' has shape " + shape_string(info.shape) +
                        " but the config implies " + shape_string(shape));
    std::vector<float> host(size_t(info.numel()));
    to_f32(info, store_.file_of(stored), host.data());
    DeviceArray array(backend_, info.numel());
    backend_.upload(array.get(), host.data(), info.numel());
    parameters_ += info.numel();
    return array;
  }

  int64_t parameters() const { return parameters_; }

 private:
  Backend& backend_;
  std::string dir_;
  TensorStore store_;
  int64_t parameters_ = 0;
};

}  // namespace

Weights load_weights(Backend& backend, const ModelConfig& config, const std::string& dir) {
  Loader loader(backend, dir);
  Weights w;
  const VisionConfig& v = config.vision;
  const TextConfig& t = config.text;
  w.patch_embed = loader.load("visual.patch_embed.proj.weight",
                              {v.hidden, v.in_channels, v.temporal_patch, v.patch, v.patch});
  for (int64_t b = 0; b < v.depth; ++b) {
    const std::string p = "visual.blocks." + std::to_string(b) + ".";
    VisionBlockWeights block;
    block.norm1 = loader.load(p + "norm1.weight", {v.hidden});
    block.norm2 = loader.load(p + "norm2.weight", {v.hidden});
    block.qkv_w = loader.load(p + "attn.qkv.weight", {3 * v.hidden, v.hidden});
    block.qkv_b = loader.load(p + "attn.qkv.bias", {3 * v.hidden});
    block.proj_w = loader.load(p + "attn.proj.weight", {v.hidden, v.hidden});
    block.proj_b = loader.load(p + "attn.proj.bias", {v.hidden});
    block.gate_w = loader.load(p + "mlp.gate_proj.weight", {v.intermediate, v.hidden});
    block.gate_b = loader.load(p + "mlp.gate_proj.bias", {v.intermediate});
    block.up_w = loader.load(p + "mlp.up_proj.weight", {v.intermediate, v.hidden});
    block.up_b = loader.load(p + "mlp.up_proj.bias", {v.intermediate});
    block.down_w = loader.load(p + "mlp.down_proj.weight", {v.hidden, v.intermediate});
    block.down_b = loader.load(p + "mlp.down_proj.bias", {v.hidden});
    w.vision_blocks.push_back(std::move(block));
  }
  const int64_t merged = v.hidden * v.merge * v.merge;
  w.merger_norm = loader.load("visual.merger.ln_q.weight", {v.hidden});
  w.merger_fc1_w = loader.load("visual.merger.mlp.0.weight", {merged, merged});
  w.merger_fc1_b = loader.load("visual.merger.mlp.0.bias", {merged});
  w.merger_fc2_w = loader.load("visual.merger.mlp.2.weight", {v.out_hidden, merged});
  w.merger_fc2_b = loader.load("visual.merger.mlp.2.bias", {v.out_hidden});

  const int64_t hd = t.head_dim();
  w.embed_tokens = loader.load("model.embed_tokens.weight", {t.vocab, t.hidden});
  for (int64_t l = 0; l < t.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    DecoderLayerWeights layer;
    layer.input_norm = loader.load(p + "input_layernorm.weight", {t.hidden});
    layer.post_norm = loader.load(p + "post_attention_layernorm.weight", {t.hidden});
    layer.q_w = loader.load(p + "self_attn.q_proj.weight", {t.heads * hd, t.hidden});
    layer.q_b = loader.load(p + "self_attn.q_proj.bias", {t.heads * hd});
    layer.k_w = loader.load(p + "self_attn.k_proj.weight", {t.kv_heads * hd, t.hidden});
    layer.k_b = loader.load(p + "self_attn.k_proj.bias", {t.kv_heads * hd});
    layer.v_w = loader.load(p + "self_attn.v_proj.weight", {t.kv_heads * hd, t.hidden});
    layer.v_b = loader.load(p + "self_attn.v_proj.bias", {t.kv_heads * hd});
    layer.o_w = loader.load(p + "self_attn.o_proj.weight", {t.hidden, t.heads * hd});
    layer.gate_w = loader.load(p + "mlp.gate_proj.weight", {t.intermediate, t.hidden});
    layer.up_w = loader.load(p + "mlp.up_proj.weight", {t.intermediate, t.hidden});
    layer.down_w = loader.load(p + "mlp.down_proj.weight", {t.hidden, t.intermediate});
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = loader.load("model.norm.weight", {t.hidden});
  if (!t.tie_embeddings) {
    if (!loader.has("lm_head.weight"))
      throw FormatError(dir + ": missing tensor 'lm_head.weight' (config.json says tie_word_embeddings is false)");
    w.lm_head = loader.load("lm_head.weight", {t.vocab, t.hidden});
  }
  w.parameter_count = loader.parameters();
  return w;
}

}  // namespace st::model
