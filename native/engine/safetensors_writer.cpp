#include "engine/safetensors_writer.h"

#include "engine/json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace st {
namespace {

std::string system_error(const std::string& path, const char* action) {
  return path + ": cannot " + action + ": " + std::strerror(errno);
}

// Closes on destruction (an error path); close() reports the error when asked.
class OutputFile {
 public:
  explicit OutputFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw WriteError(system_error(path_, "create"));
  }
  ~OutputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, size_t bytes) {
    const char* at = static_cast<const char*>(data);
    while (bytes > 0) {
      // Linux writes at most ~2 GiB per call; larger files take several.
      const ssize_t n = ::write(fd_, at, std::min<size_t>(bytes, size_t(1) << 30));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw WriteError(system_error(path_, "write"));
      }
      at += n;
      bytes -= size_t(n);
    }
  }

  void sync_and_close() {
    if (::fsync(fd_) != 0) throw WriteError(system_error(path_, "fsync"));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw WriteError(system_error(path_, "close"));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// The header as the reference writer lays it out: "__metadata__" first, then
// each tensor with its data offsets, padded with spaces to a multiple of 8
// bytes so the data section starts aligned.
std::string header_json(const std::vector<const TensorToWrite*>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  std::string out = "{";
  bool first = true;
  if (!metadata.empty()) {
    out += "\"__metadata__\":{";
    bool first_field = true;
    for (const auto& [key, value] : metadata) {
      out += (first_field ? "" : ",") + json::quote(key) + ":" + json::quote(value);
      first_field = false;
    }
    out += "}";
    first = false;
  }
  int64_t offset = 0;
  for (const TensorToWrite* t : tensors) {
    out += (first ? "" : ",") + json::quote(t->name) + ":{\"dtype\":\"" + dtype_name(t->dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) out += (i ? "," : "") + std::to_string(t->shape[i]);
    out += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t->bytes()) + "]}";
    offset += t->bytes();
    first = false;
  }
  out += "}";
  out.append((8 - out.size() % 8) % 8, ' ');
  return out;
}

void write_file(const std::string& path, const std::vector<const TensorToWrite*>& tensors,
                const std::map<std::string, std::string>& metadata, std::vector<char>& buffer) {
  OutputFile file(path);
  const std::string header = header_json(tensors, metadata);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  file.write(length, 8);
  file.write(header.data(), header.size());
  const int64_t chunk = int64_t(buffer.size() / sizeof(float));
  float* values = reinterpret_cast<float*>(buffer.data());
  for (const TensorToWrite* t : tensors) {
    const int64_t n = t->numel();
    for (int64_t first = 0; first < n; first += chunk) {
      const int64_t count = std::min(chunk, n - first);
      t->read(first, count, values);
      if (t->dtype == DType::BF16) {
        // In place: element i's two bytes land at or before where its fp32 value was read.
        uint16_t* bits = reinterpret_cast<uint16_t*>(buffer.data());
        for (int64_t i = 0; i < count; ++i) bits[i] = f32_to_bf16_bits(values[i]);
        file.write(bits, size_t(count) * 2);
      } else {
        file.write(values, size_t(count) * 4);
      }
    }
  }
  file.sync_and_close();
}

std::string shard_name(const std::string& base, size_t index, size_t count) {
  char name[64];
  std::snprintf(name, sizeof name, "-%05zu-of-%05zu.safetensors", index + 1, count);
  return base + name;
}

// {"metadata": {"total_size": N}, "weight_map": {...}} as json.dumps(indent=2,
// sort_keys=True) prints it, with the trailing newline transformers adds.
std::string index_json(int64_t total_size, std::map<std::string, std::string> weight_map) {
  std::string out = "{\n  \"metadata\": {\n    \"total_size\": " + std::to_string(total_size) + "\n  },\n";
  out += "  \"weight_map\": {";
  bool first = true;
  for (const auto& [name, file] : weight_map) {
    out += std::string(first ? "\n" : ",\n") + "    " + json::quote(name) + ": " + json::quote(file);
    first = false;
  }
  out += first ? "}\n}\n" : "\n  }\n}\n";
  return out;
}

}  // namespace

int64_t TensorToWrite::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint16_t f32_to_bf16_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t(((bits >> 16) & 0x8000u) | 0x7fc0u);
  return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw WriteError(system_error(dir, "open the directory to fsync it"));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  if (rc != 0) throw WriteError(system_error(dir, "fsync the directory"));
}

WrittenSet write_safetensors_set(const std::string& dir, const std::string& base,
                                 const std::vector<TensorToWrite>& tensors, const SafetensorsWriteOptions& options) {
  if (options.max_shard_bytes <= 0) throw std::invalid_argument("max_shard_bytes must be positive");
  std::map<std::string, std::string> seen;
  for (const TensorToWrite& t : tensors) {
    if (t.dtype != DType::F32 && t.dtype != DType::BF16)
      throw std::invalid_argument("tensor '" + t.name + "': only F32 and BF16 are written");
    if (t.name.empty() || t.name == "__metadata__") throw std::invalid_argument("tensor name '" + t.name + "' is not allowed");
    for (int64_t d : t.shape)
      if (d < 0) throw std::invalid_argument("tensor '" + t.name + "': negative dimension");
    if (!seen.emplace(t.name, "").second) throw std::invalid_argument("tensor '" + t.name + "' is listed twice");
  }
  std::vector<std::vector<const TensorToWrite*>> shards;
  std::vector<const TensorToWrite*> current;
  int64_t current_bytes = 0;
  WrittenSet written;
  for (const TensorToWrite& t : tensors) {
    written.total_size += t.bytes();
    if (t.bytes() > options.max_shard_bytes) {
      shards.push_back({&t});
      continue;
    }
    if (current_bytes + t.bytes() > options.max_shard_bytes && !current.empty()) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(&t);
    current_bytes += t.bytes();
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));

  // No larger than the largest tensor: a small model's save adds kilobytes, not the whole budget.
  int64_t largest = 1;
  for (const TensorToWrite& t : tensors) largest = std::max(largest, t.numel());
  const int64_t buffer_floats = std::max<int64_t>(1, std::min(largest, options.buffer_bytes / int64_t(sizeof(float))));
  std::vector<char> buffer(size_t(buffer_floats) * sizeof(float));
  const std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  if (shards.size() == 1) {
    written.files.push_back(base + ".safetensors");
    write_file(prefix + written.files[0], shards[0], options.metadata, buffer);
  } else {
    std::map<std::string, std::string> weight_map;
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string name = shard_name(base, i, shards.size());
      write_file(prefix + name, shards[i], options.metadata, buffer);
      for (const TensorToWrite* t : shards[i]) weight_map[t->name] = name;
      written.files.push_back(name);
    }
    const std::string index_name = base + ".safetensors.index.json";
    const std::string index = index_json(written.total_size, weight_map);
    OutputFile file(prefix + index_name);
    file.write(index.data(), index.size());
    file.sync_and_close();
    written.files.push_back(index_name);
  }
  fsync_directory(dir);
  return written;
}

}  // namespace st
