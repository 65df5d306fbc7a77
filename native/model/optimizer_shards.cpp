#include "model/optimizer_shards.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>
#include <stdexcept>

#include "engine/safetensors.h"

namespace st::model {
namespace {

namespace fs = std::filesystem;

// A stored fp32 tensor and where its values sit in the flattened list.
struct Source {
  const TensorInfo* tensor = nullptr;
  std::string file;
  int64_t offset = 0;
};

int64_t metadata_integer(const SafetensorsFile& file, const char* key) {
  const auto it = file.metadata().find(key);
  if (it == file.metadata().end())
    throw FormatError(file.path() + ": no \"" + std::string(key) + "\" in the metadata (not an optimiser shard)");
  try {
    size_t used = 0;
    const long long value = std::stoll(it->second, &used);
    if (used != it->second.size() || value < 0) throw std::invalid_argument("");
    return value;
  } catch (const std::exception&) {
    throw FormatError(file.path() + ": metadata \"" + std::string(key) + "\" is not a non-negative integer: " +
                      it->second);
  }
}

const TensorInfo& checked_f32(const TensorStore& store, const std::string& name, int64_t expected) {
  const TensorInfo& info = store.tensor(name);
  const std::string& file = store.file_of(name);
  if (info.dtype != DType::F32)
    throw FormatError(file + ": tensor '" + name + "' is " + dtype_name(info.dtype) + ", expected F32");
  if (info.numel() != expected)
    throw FormatError(file + ": tensor '" + name + "' holds " + std::to_string(info.numel()) + " values, expected " +
                      std::to_string(expected));
  return info;
}

// The sources must tile [0, total) exactly.
void check_tiling(std::vector<Source>& sources, int64_t total, const std::string& dir, const std::string& what) {
  std::sort(sources.begin(), sources.end(), [](const Source& a, const Source& b) { return a.offset < b.offset; });
  int64_t at = 0;
  for (const Source& s : sources) {
    if (s.offset != at)
      throw FormatError(dir + ": the " + what + " shards leave values " + std::to_string(std::min(at, s.offset)) +
                        ".." + std::to_string(std::max(at, s.offset)) + " of the flattened parameters " +
                        (s.offset > at ? "uncovered" : "covered twice") + " (at " + s.file + ")");
    at += s.tensor->numel();
  }
  if (at != total)
    throw FormatError(dir + ": the " + what + " shards cover " + std::to_string(at) + " values, the model has " +
                      std::to_string(total));
}

void copy_sources(Backend& backend, const std::vector<Source>& sources, const std::vector<dist::FlatPiece>& targets) {
  std::vector<float> aligned;
  for (const Source& s : sources) {
    const int64_t n = s.tensor->numel();
    dist::for_each_overlap(targets, s.offset, s.offset + n, [&](const dist::FlatPiece& p, int64_t first, int64_t count) {
      const uint8_t* from = s.tensor->data + (p.offset + first - s.offset) * int64_t(sizeof(float));
      if (reinterpret_cast<uintptr_t>(from) % alignof(float) == 0) {
        backend.upload(p.data + first, reinterpret_cast<const float*>(from), count);
      } else {  // a file from another writer, misaligned
        aligned.resize(size_t(count));
        std::memcpy(aligned.data(), from, size_t(count) * sizeof(float));
        backend.upload(p.data + first, aligned.data(), count);
      }
    });
  }
}

const char* kUnshardedBase = "optimizer";

bool has_unsharded(const std::string& dir) {
  return fs::exists(fs::path(dir) / "optimizer.safetensors") ||
         fs::exists(fs::path(dir) / "optimizer.safetensors.index.json");
}

}  // namespace

std::string optimizer_shard_base(int rank, int world) {
  return "optimizer-rank" + std::to_string(rank) + "-of-" + std::to_string(world);
}

int saved_optimizer_world(const std::string& dir) {
  static const std::regex rank0(R"(optimizer-rank0-of-(\d+)\.safetensors(\.index\.json)?)");
  std::error_code error;
  int world = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, error)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!std::regex_match(name, m, rank0)) continue;
    const int found = std::stoi(m[1].str());
    if (world != 0 && found != world)
      throw FormatError(dir + ": optimiser shards of two world sizes (" + std::to_string(world) + " and " +
                        std::to_string(found) + ")");
    world = found;
  }
  return world;
}

WrittenSet save_optimizer_shard(Backend& backend, const std::vector<dist::FlatPiece>& weights, const DeviceArray* m,
                                const DeviceArray* v, const dist::ShardSplit& split, int rank, const std::string& dir,
                                bool with_master, SafetensorsWriteOptions options) {
  const int64_t begin = split.begin(rank), end = split.end(rank), n = end - begin;
  std::vector<TensorToWrite> tensors;
  auto flat = [&](const char* name, const float* data) {
    TensorToWrite t;
    t.name = name;
    t.shape = {n};
    t.dtype = DType::F32;
    t.read = [&backend, data](int64_t first, int64_t count, float* host) { backend.download(host, data + first, count); };
    tensors.push_back(std::move(t));
  };
  if (with_master) {
    TensorToWrite t;
    t.name = "master";
    t.shape = {n};
    t.dtype = DType::F32;
    t.read = [&backend, &weights, begin](int64_t first, int64_t count, float* host) {
      dist::for_each_overlap(weights, begin + first, begin + first + count,
                             [&](const dist::FlatPiece& p, int64_t at, int64_t c) {
                               backend.download(host + (p.offset + at - begin - first), p.data + at, c);
                             });
    };
    tensors.push_back(std::move(t));
  }
  if (m && v && m->get()) {
    flat("adam_m", m->get().f32("adam_m shard"));
    flat("adam_v", v->get().f32("adam_v shard"));
  }
  options.metadata["format"] = "spatialthinker-optimizer-shard";
  options.metadata["flat_begin"] = std::to_string(begin);
  options.metadata["flat_end"] = std::to_string(end);
  options.metadata["flat_total"] = std::to_string(split.total);
  options.metadata["rank"] = std::to_string(rank);
  options.metadata["world_size"] = std::to_string(split.world);
  return write_safetensors_set(dir, optimizer_shard_base(rank, split.world), tensors, options);
}

bool optimizer_dir_holds_moments(const std::string& dir) {
  if (has_unsharded(dir)) return optimizer_files_hold_moments(dir);
  const int world = saved_optimizer_world(dir);
  if (world == 0) return false;
  return TensorStore::open_directory(dir, optimizer_shard_base(0, world)).has("adam_m");
}

RestoredState restore_flat_optimizer_state(Backend& backend, const std::string& dir, const FlatTargets& targets) {
  std::vector<TensorStore> stores;  // keep the mappings open while copying
  std::vector<Source> master, m, v;
  RestoredState found;
  if (has_unsharded(dir)) {
    stores.push_back(TensorStore::open_directory(dir, kUnshardedBase));
    const TensorStore& store = stores.back();
    for (size_t i = 0; i < targets.names.size(); ++i) {
      found.master |= store.has("master." + targets.names[i]);
      found.moments |= store.has("adam_m." + targets.names[i]);
    }
    for (size_t i = 0; i < targets.names.size(); ++i) {
      const std::string& name = targets.names[i];
      const int64_t offset = targets.weights[i].offset, size = targets.weights[i].size;
      if (found.master) master.push_back({&checked_f32(store, "master." + name, size), store.file_of("master." + name), offset});
      if (found.moments) {
        m.push_back({&checked_f32(store, "adam_m." + name, size), store.file_of("adam_m." + name), offset});
        v.push_back({&checked_f32(store, "adam_v." + name, size), store.file_of("adam_v." + name), offset});
      }
    }
  } else {
    const int world = saved_optimizer_world(dir);
    if (world == 0)
      throw FormatError(dir + ": no optimizer.safetensors, optimizer.safetensors.index.json or optimizer-rank0-of-N.safetensors");
    stores.reserve(size_t(world));
    for (int r = 0; r < world; ++r) {
      const std::string base = optimizer_shard_base(r, world);
      stores.push_back(TensorStore::open_directory(dir, base));
      const TensorStore& store = stores.back();
      const bool has_master = store.has("master"), has_moments = store.has("adam_m");
      if (r == 0) {
        found.master = has_master;
        found.moments = has_moments;
      } else if (has_master != found.master || has_moments != found.moments) {
        throw FormatError(dir + "/" + base + ": holds other tensors than rank 0's shard (master " +
                          (has_master ? "yes" : "no") + ", moments " + (has_moments ? "yes" : "no") + ")");
      }
      if (!has_master && !has_moments) continue;  // saved before the first step, without a master copy
      const SafetensorsFile& file = store.shard_of(has_master ? "master" : "adam_m");
      const int64_t begin = metadata_integer(file, "flat_begin"), end = metadata_integer(file, "flat_end"),
                    total = metadata_integer(file, "flat_total");
      if (total != targets.total)
        throw FormatError(file.path() + ": the shard splits " + std::to_string(total) +
                          " parameter values, the model has " + std::to_string(targets.total));
      if (end < begin) throw FormatError(file.path() + ": flat_end < flat_begin");
      if (has_master) master.push_back({&checked_f32(store, "master", end - begin), store.file_of("master"), begin});
      if (has_moments) {
        m.push_back({&checked_f32(store, "adam_m", end - begin), store.file_of("adam_m"), begin});
        v.push_back({&checked_f32(store, "adam_v", end - begin), store.file_of("adam_v"), begin});
      }
    }
    if (found.master) check_tiling(master, targets.total, dir, "master");
    if (found.moments) {
      check_tiling(m, targets.total, dir, "adam_m");
      check_tiling(v, targets.total, dir, "adam_v");
    }
  }
  if (found.moments && (targets.m.empty() || targets.v.empty()))
    throw std::logic_error("restore_flat_optimizer_state: moments not allocated");
  if (found.master) copy_sources(backend, master, targets.weights);
  if (found.moments) {
    copy_sources(backend, m, targets.m);
    copy_sources(backend, v, targets.v);
  }
  return found;
}

}  // namespace st::model
