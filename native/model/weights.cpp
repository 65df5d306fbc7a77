#include "model/weights.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "engine/mapped_file.h"
#include "engine/safetensors.h"
#include "engine/thread_pool.h"

namespace st::model {
namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

// Checks and allocates every tensor first (load() in the config's order, so
// the first problem reported is the same whatever the file layout), then
// converts them all in file order (finish()): shards are read front to back
// with the next window prefetched, each tensor's pages are dropped from the
// resident set once converted, and conversion is spread over the thread pool.
// Peak resident memory is then the weights plus a window of the file, not
// the weights plus the whole mapped checkpoint. A bf16 tensor bound for bf16
// backend memory (the CUDA backend's default) is copied from the mapping as
// it is, never widened to fp32 on the way.
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

  // An array for the tensor, filled by finish().
  DeviceArray load(const std::string& name, const std::vector<int64_t>& shape) {
    const std::string stored = resolve(name);
    if (stored.empty())
      throw FormatError(dir_ + ": missing tensor '" + name + "' (expected shape " + shape_string(shape) + ")");
    const TensorInfo& info = store_.tensor(stored);
    const std::string& path = store_.file_of(stored);
    if (info.shape != shape)
      throw FormatError(path + ": tensor '" + stored + "' has shape " + shape_string(info.shape) +
                        " but the config implies " + shape_string(shape));
    check_converts_to_f32(info, path);
    DeviceArray array(backend_, info.numel());
    pending_.push_back({&store_.shard_of(stored), store_.shard_index_of(stored), &info, &path, array.get()});
    parameters_ += info.numel();
    return array;
  }

  void finish() {
    std::sort(pending_.begin(), pending_.end(), [](const Pending& a, const Pending& b) {
      return a.shard != b.shard ? a.shard < b.shard : a.info->data < b.info->data;
    });
    const SafetensorsFile* file = nullptr;
    size_t prefetched_until = 0;  // in `file`
    for (const Pending& p : pending_) {
      const MappedFile& mapping = p.file->mapping();
      if (p.file != file) {
        file = p.file;
        mapping.advise_sequential();
        prefetched_until = 0;
      }
      const size_t offset = p.file->offset_of(*p.info);
      const size_t bytes = size_t(p.info->numel()) * dtype_size(p.info->dtype);
      // Keep a window ahead of the converter in flight so reading a cold file
      // overlaps converting the tensor before.
      const size_t want = offset + bytes + kPrefetchBytes;
      if (want > prefetched_until) {
        const size_t from = std::max(prefetched_until, offset);
        mapping.prefetch(from, want - from);
        prefetched_until = want;
      }
      if (backend_.memory_is_host())
        convert_in_place(p);
      else if (p.info->dtype == DType::BF16 && p.target.type() == Storage::BF16)
        upload_as_stored(p);
      else
        convert_and_upload(p);
      mapping.release_pages(offset, bytes);
    }
    pending_.clear();
  }

  int64_t parameters() const { return parameters_; }

 private:
  struct Pending {
    const SafetensorsFile* file;
    size_t shard;
    const TensorInfo* info;
    const std::string* path;
    DevicePtr target;  // the DeviceArray's memory (stable when the array moves)
  };

  static constexpr size_t kPrefetchBytes = size_t(256) << 20;
  // Elements per task: large enough that a task outlasts its scheduling.
  static constexpr int64_t kConvertGrain = int64_t(1) << 18;
  // Staging for backends whose memory the host cannot write (64 MiB of fp32).
  static constexpr int64_t kStagingElements = int64_t(16) << 20;

  static void convert(const Pending& p, float* out, int64_t begin, int64_t count) {
    default_thread_pool().parallel_for(count, kConvertGrain, [&](int64_t from, int64_t to) {
      to_f32(*p.info, *p.path, out + from, begin + from, to - from);
    });
  }

  void convert_in_place(const Pending& p) { convert(p, p.target.f32("a host backend's array"), 0, p.info->numel()); }

  // The file's bf16 bytes straight into bf16 backend memory, a staging
  // buffer's worth at a time.
  void upload_as_stored(const Pending& p) {
    const int64_t n = p.info->numel(), chunk = kStagingElements * 2;
    for (int64_t begin = 0; begin < n; begin += chunk)
      backend_.upload_raw(p.target + begin, p.info->data + begin * 2, std::min(chunk, n - begin));
  }

  void convert_and_upload(const Pending& p) {
    const int64_t n = p.info->numel();
    if (staging_.empty() && n > 0) staging_.resize(size_t(kStagingElements));
    for (int64_t begin = 0; begin < n; begin += kStagingElements) {
      const int64_t count = std::min(kStagingElements, n - begin);
      convert(p, staging_.data(), begin, count);
      backend_.upload(p.target + begin, staging_.data(), count);
    }
  }

  Backend& backend_;
  std::string dir_;
  TensorStore store_;
  std::vector<Pending> pending_;
  std::vector<float> staging_;
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
  loader.finish();
  w.parameter_count = loader.parameters();
  return w;
}

std::vector<std::pair<std::string, DeviceArray*>> named_parameters(Weights& w) {
  std::vector<std::pair<std::string, DeviceArray*>> out;
  out.emplace_back("visual.patch_embed.proj.weight", &w.patch_embed);
  for (size_t b = 0; b < w.vision_blocks.size(); ++b) {
    const std::string p = "visual.blocks." + std::to_string(b) + ".";
    VisionBlockWeights& v = w.vision_blocks[b];
    for (auto& [name, array] : std::vector<std::pair<std::string, DeviceArray*>>{
             {"norm1.weight", &v.norm1}, {"norm2.weight", &v.norm2}, {"attn.qkv.weight", &v.qkv_w},
             {"attn.qkv.bias", &v.qkv_b}, {"attn.proj.weight", &v.proj_w}, {"attn.proj.bias", &v.proj_b},
             {"mlp.gate_proj.weight", &v.gate_w}, {"mlp.gate_proj.bias", &v.gate_b}, {"mlp.up_proj.weight", &v.up_w},
             {"mlp.up_proj.bias", &v.up_b}, {"mlp.down_proj.weight", &v.down_w}, {"mlp.down_proj.bias", &v.down_b}})
      out.emplace_back(p + name, array);
  }
  out.emplace_back("visual.merger.ln_q.weight", &w.merger_norm);
  out.emplace_back("visual.merger.mlp.0.weight", &w.merger_fc1_w);
  out.emplace_back("visual.merger.mlp.0.bias", &w.merger_fc1_b);
  out.emplace_back("visual.merger.mlp.2.weight", &w.merger_fc2_w);
  out.emplace_back("visual.merger.mlp.2.bias", &w.merger_fc2_b);
  out.emplace_back("model.embed_tokens.weight", &w.embed_tokens);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    DecoderLayerWeights& d = w.layers[l];
    for (auto& [name, array] : std::vector<std::pair<std::string, DeviceArray*>>{
             {"input_layernorm.weight", &d.input_norm}, {"post_attention_layernorm.weight", &d.post_norm},
             {"self_attn.q_proj.weight", &d.q_w}, {"self_attn.q_proj.bias", &d.q_b},
             {"self_attn.k_proj.weight", &d.k_w}, {"self_attn.k_proj.bias", &d.k_b},
             {"self_attn.v_proj.weight", &d.v_w}, {"self_attn.v_proj.bias", &d.v_b},
             {"self_attn.o_proj.weight", &d.o_w}, {"mlp.gate_proj.weight", &d.gate_w},
             {"mlp.up_proj.weight", &d.up_w}, {"mlp.down_proj.weight", &d.down_w}})
      out.emplace_back(p + name, array);
  }
  out.emplace_back("model.norm.weight", &w.final_norm);
  if (w.lm_head.get()) out.emplace_back("lm_head.weight", &w.lm_head);
  return out;
}

Weights zeros_like(Backend& backend, Weights& weights, Storage type, bool host) {
  Weights zeros;
  zeros.vision_blocks.resize(weights.vision_blocks.size());
  zeros.layers.resize(weights.layers.size());
  auto source = named_parameters(weights);
  auto target = named_parameters(zeros);
  auto zeroed = [&](int64_t count) {
    if (!host) {
      DeviceArray a(backend, count, type);
      backend.fill(a.get(), 0.0f, count);
      return a;
    }
    // Host memory: zero bits are 0.0 in fp32 and bf16 alike.
    DeviceArray a = DeviceArray::host(backend, count, type);
    if (count > 0) std::memset(a.get().data(), 0, size_t(a.bytes()));
    return a;
  };
  // lm_head comes last in `source` (when untied) and is absent from `target`
  // until allocated below; everything before it lines up.
  for (size_t i = 0; i < target.size(); ++i) *target[i].second = zeroed(source[i].second->size());
  if (weights.lm_head.get()) zeros.lm_head = zeroed(weights.lm_head.size());
  zeros.parameter_count = weights.parameter_count;
  return zeros;
}

}  // namespace st::model
