#pragma once
// Reading safetensors files (https://github.com/huggingface/safetensors):
// memory-mapped, validated before use. Every error names the file and, where
// there is one, the tensor. A model directory's weights may be one file or
// several shards listed in model.safetensors.index.json (TensorStore).
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace st {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);

// Thrown for anything wrong with a file: unreadable, truncated, a header that
// is not valid JSON or whose offsets lie, a tensor missing, a shape mismatch.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  int64_t numel() const;
  const uint8_t* data = nullptr;  // inside the mapping, numel * dtype_size bytes
};

class MappedFile;

class SafetensorsFile {
 public:
  // Maps and validates the whole header: dtypes known, shapes non-negative,
  // data_offsets inside the data section, sized numel * itemsize, and not
  // overlapping one another.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // in file order (by data offset)
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws FormatError "<path>: no tensor named <name>" when absent.
  const TensorInfo& tensor(const std::string& name) const;
  // The mapping the tensors point into, for paging hints while streaming.
  const MappedFile& mapping() const;
  // Where a tensor of this file starts, counted from the file's first byte.
  size_t offset_of(const TensorInfo& tensor) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::unique_ptr<MappedFile> mapping_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
};

// Converts F32, BF16, F16 or F64 data to fp32 (out has numel entries); throws
// FormatError naming the tensor for other dtypes.
void to_f32(const TensorInfo& tensor, const std::string& path, float* out);
// The same for elements [begin, begin + count) only, into out[0 .. count),
// so a large tensor converts in slices (in parallel, or through a bounded
// staging buffer).
void to_f32(const TensorInfo& tensor, const std::string& path, float* out, int64_t begin, int64_t count);
// Throws the error to_f32 would throw for this tensor's dtype, if any.
void check_converts_to_f32(const TensorInfo& tensor, const std::string& path);

// The weights of a model directory: model.safetensors, or the shards named by
// model.safetensors.index.json ("weight_map": tensor name -> file name).
// `base` names other sets laid out the same way (the trainer's
// optimizer.safetensors or optimizer.safetensors.index.json).
class TensorStore {
 public:
  static TensorStore open_directory(const std::string& dir, const std::string& base = "model");
  bool has(const std::string& name) const;
  // Throws FormatError naming the directory (or shard) and the tensor.
  const TensorInfo& tensor(const std::string& name) const;
  // The file a tensor lives in, for error messages.
  const std::string& file_of(const std::string& name) const;
  // The shard holding a tensor, and its position among the shards (to read
  // shard by shard, in file order).
  const SafetensorsFile& shard_of(const std::string& name) const;
  size_t shard_index_of(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> file_index_;  // tensor name -> files_ index
};

}  // namespace st
