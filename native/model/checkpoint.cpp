#include "model/checkpoint.h"

#include <cstring>
#include <stdexcept>

#include "engine/safetensors.h"

namespace st::model {
namespace {

const char* kOptimizerBase = "optimizer";

std::vector<TensorToWrite> tensors_of(Backend& backend, const ModelConfig& config, Weights& arrays,
                                      const std::string& prefix, DType dtype, bool hub_shapes) {
  std::vector<TensorToWrite> out;
  for (auto& [name, array] : named_parameters(arrays)) {
    TensorToWrite t;
    t.name = prefix + name;
    t.shape = hub_shapes ? hub_shape(config, name) : std::vector<int64_t>{array->size()};
    if (t.numel() != array->size())
      throw std::logic_error("parameter '" + name + "' holds " + std::to_string(array->size()) +
                             " values but its hub shape " + std::to_string(t.numel()));
    t.dtype = dtype;
    const ConstDevicePtr source = array->get();
    const bool on_host = array->on_host();  // offloaded optimiser state
    t.read = [&backend, source, on_host](int64_t first, int64_t count, float* host) {
      if (on_host)
        train::host_state_to_floats(source + first, count, host);
      else
        backend.download(host, source + first, count);
    };
    out.push_back(std::move(t));
  }
  return out;
}

// The stored tensor `name`, which must be in `dtype` with as many values as `target`.
const TensorInfo& checked(const TensorStore& store, const std::string& name, const DeviceArray& target,
                          DType dtype = DType::F32) {
  const TensorInfo& info = store.tensor(name);
  const std::string& file = store.file_of(name);
  if (info.dtype != dtype)
    throw FormatError(file + ": tensor '" + name + "' is " + dtype_name(info.dtype) + ", expected " + dtype_name(dtype));
  if (info.numel() != target.size())
    throw FormatError(file + ": tensor '" + name + "' holds " + std::to_string(info.numel()) + " values, the model " +
                      std::to_string(target.size()));
  return info;
}

// Copies a stored tensor into a backend array (or a host one), from the
// mapping itself when it is aligned fp32.
void upload_tensor(Backend& backend, const TensorStore& store, const std::string& name, DeviceArray& target,
                   DType dtype = DType::F32) {
  const TensorInfo& info = checked(store, name, target, dtype);
  if (target.on_host()) {
    std::vector<float> converted(size_t(info.numel()));
    to_f32(info, store.file_of(name), converted.data());
    train::floats_to_host_state(converted.data(), target.size(), target.get());
    return;
  }
  if (info.dtype != DType::F32) {
    std::vector<float> converted(size_t(info.numel()));
    to_f32(info, store.file_of(name), converted.data());
    backend.upload(target.get(), converted.data(), target.size());
    return;
  }
  if (reinterpret_cast<uintptr_t>(info.data) % alignof(float) == 0) {
    backend.upload(target.get(), reinterpret_cast<const float*>(info.data), target.size());
    return;
  }
  std::vector<float> aligned(size_t(info.numel()));  // a file from another writer, misaligned
  std::memcpy(aligned.data(), info.data, aligned.size() * sizeof(float));
  backend.upload(target.get(), aligned.data(), target.size());
}

}  // namespace

std::vector<int64_t> hub_shape(const ModelConfig& config, const std::string& name) {
  const VisionConfig& v = config.vision;
  const TextConfig& t = config.text;
  const int64_t hd = t.head_dim(), merged = v.hidden * v.merge * v.merge;
  auto ends = [&](const char* suffix) {
    const size_t n = std::strlen(suffix);
    return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
  };
  if (name == "visual.patch_embed.proj.weight") return {v.hidden, v.in_channels, v.temporal_patch, v.patch, v.patch};
  if (name == "visual.merger.ln_q.weight") return {v.hidden};
  if (name == "visual.merger.mlp.0.weight") return {merged, merged};
  if (name == "visual.merger.mlp.0.bias") return {merged};
  if (name == "visual.merger.mlp.2.weight") return {v.out_hidden, merged};
  if (name == "visual.merger.mlp.2.bias") return {v.out_hidden};
  if (name.rfind("visual.blocks.", 0) == 0) {
    if (ends("norm1.weight") || ends("norm2.weight") || ends("attn.proj.bias") || ends("mlp.down_proj.bias"))
      return {v.hidden};
    if (ends("attn.qkv.weight")) return {3 * v.hidden, v.hidden};
    if (ends("attn.qkv.bias")) return {3 * v.hidden};
    if (ends("attn.proj.weight")) return {v.hidden, v.hidden};
    if (ends("mlp.gate_proj.weight") || ends("mlp.up_proj.weight")) return {v.intermediate, v.hidden};
    if (ends("mlp.gate_proj.bias") || ends("mlp.up_proj.bias")) return {v.intermediate};
    if (ends("mlp.down_proj.weight")) return {v.hidden, v.intermediate};
  }
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {t.vocab, t.hidden};
  if (name == "model.norm.weight") return {t.hidden};
  if (name.rfind("model.layers.", 0) == 0) {
    if (ends("input_layernorm.weight") || ends("post_attention_layernorm.weight")) return {t.hidden};
    if (ends("self_attn.q_proj.weight")) return {t.heads * hd, t.hidden};
    if (ends("self_attn.q_proj.bias")) return {t.heads * hd};
    if (ends("self_attn.k_proj.weight") || ends("self_attn.v_proj.weight")) return {t.kv_heads * hd, t.hidden};
    if (ends("self_attn.k_proj.bias") || ends("self_attn.v_proj.bias")) return {t.kv_heads * hd};
    if (ends("self_attn.o_proj.weight")) return {t.hidden, t.heads * hd};
    if (ends("mlp.gate_proj.weight") || ends("mlp.up_proj.weight")) return {t.intermediate, t.hidden};
    if (ends("mlp.down_proj.weight")) return {t.hidden, t.intermediate};
  }
  throw std::invalid_argument("no hub shape known for parameter '" + name + "'");
}

WrittenSet save_weights(Backend& backend, const ModelConfig& config, Weights& weights, const std::string& dir,
                        DType dtype, const SafetensorsWriteOptions& options) {
  return write_safetensors_set(dir, "model", tensors_of(backend, config, weights, "", dtype, true), options);
}

WrittenSet save_optimizer_state(Backend& backend, const ModelConfig& config, Weights& weights, Weights* adam_m,
                                Weights* adam_v, const std::string& dir, bool with_master,
                                const SafetensorsWriteOptions& options, train::OptimizerStrategy strategy,
                                Weights* compensation) {
  const bool bf16 = strategy == train::OptimizerStrategy::AdamWBf16;
  if (bf16 && adam_m && !compensation) throw std::logic_error("save_optimizer_state: adamw_bf16 without compensation");
  const DType state_dtype = bf16 ? DType::BF16 : DType::F32;
  std::vector<TensorToWrite> tensors;
  auto add = [&](Weights& arrays, const char* prefix, DType dtype) {
    for (TensorToWrite& t : tensors_of(backend, config, arrays, prefix, dtype, false)) tensors.push_back(std::move(t));
  };
  if (with_master && !bf16) add(weights, "master.", DType::F32);
  if (adam_m && adam_v) {
    add(*adam_m, "adam_m.", state_dtype);
    add(*adam_v, "adam_v.", state_dtype);
    if (bf16) add(*compensation, "kahan_c.", state_dtype);
  }
  SafetensorsWriteOptions with_strategy = options;
  with_strategy.metadata["optimizer_strategy"] = train::optimizer_strategy_name(strategy);
  with_strategy.metadata["optimizer_state_dtype"] = dtype_name(state_dtype);
  return write_safetensors_set(dir, kOptimizerBase, tensors, with_strategy);
}

bool optimizer_files_hold_moments(const std::string& dir) {
  const TensorStore store = TensorStore::open_directory(dir, kOptimizerBase);
  for (const std::string& name : store.names())
    if (name.rfind("adam_m.", 0) == 0) return true;
  return false;
}

RestoredState restore_optimizer_state(Backend& backend, Weights& weights, Weights* adam_m, Weights* adam_v,
                                      const std::string& dir, train::OptimizerStrategy strategy,
                                      Weights* compensation) {
  const TensorStore store = TensorStore::open_directory(dir, kOptimizerBase);
  const bool bf16 = strategy == train::OptimizerStrategy::AdamWBf16;
  const DType state_dtype = bf16 ? DType::BF16 : DType::F32;
  RestoredState found;
  bool compensated = false;
  std::string example;
  auto params = named_parameters(weights);
  for (const auto& [name, array] : params) {
    found.master |= store.has("master." + name);
    found.moments |= store.has("adam_m." + name);
    if (!compensated && store.has("kahan_c." + name)) {
      compensated = true;
      example = "kahan_c." + name;
    }
  }
  // The strategy is the state's own: its tensors say which wrote them.
  if (found.moments && compensated != bf16) {
    const std::string what = compensated ? "adamw_bf16 (its Kahan compensation, e.g. '" + example + "')"
                                         : "adamw (moments without a Kahan compensation)";
    throw FormatError(dir + ": the optimizer state was written by " + what + " but the run's strategy is " +
                      train::optimizer_strategy_name(strategy) + "; resume with worker.actor.optim.strategy=" +
                      (compensated ? "adamw_bf16" : "adamw") + " (the state is not converted between strategies)");
  }
  // Every name is checked before anything is overwritten, so a damaged file
  // leaves the model as it was.
  for (const auto& [name, array] : params) {
    if (found.master) checked(store, "master." + name, *array);
    if (found.moments) {
      checked(store, "adam_m." + name, *array, state_dtype);
      checked(store, "adam_v." + name, *array, state_dtype);
      if (bf16) checked(store, "kahan_c." + name, *array, state_dtype);
    }
  }
  if (found.moments && (!adam_m || !adam_v || (bf16 && !compensation)))
    throw std::logic_error("restore_optimizer_state: optimizer state not allocated");
  for (const auto& [name, array] : params)
    if (found.master) upload_tensor(backend, store, "master." + name, *array);
  if (found.moments) {
    auto m = named_parameters(*adam_m), v = named_parameters(*adam_v);
    std::vector<std::pair<std::string, DeviceArray*>> c;
    if (bf16) c = named_parameters(*compensation);
    for (size_t i = 0; i < params.size(); ++i) {
      upload_tensor(backend, store, "adam_m." + params[i].first, *m[i].second, state_dtype);
      upload_tensor(backend, store, "adam_v." + params[i].first, *v[i].second, state_dtype);
      if (bf16) upload_tensor(backend, store, "kahan_c." + params[i].first, *c[i].second, state_dtype);
    }
  }
  return found;
}

}  // namespace st::model
