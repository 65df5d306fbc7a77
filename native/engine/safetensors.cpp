// safetensors: 8-byte little-endian header length N, N bytes of JSON header
// (an object: "__metadata__" -> {string: string}, every other key a tensor
// {dtype, shape, data_offsets: [begin, end]} with offsets relative to the
// data section at 8 + N), then the data. Everything is checked at open, so a
// TensorInfo handed out always points at numel * itemsize readable bytes.
#include "engine/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "engine/json.h"
#include "engine/mapped_file.h"

namespace st {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // as the reference implementation

constexpr DType kAllDTypes[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                                DType::I32, DType::I16, DType::I8,  DType::U8,   DType::BOOL};

const char* const kSupportedList = "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL";

// Dtypes the safetensors format defines but the engine does not handle.
const char* unsupported_reason(const std::string& name) {
  if (name.rfind("F8_", 0) == 0) return "8-bit floats are not supported";
  if (name == "F4" || name.rfind("F6_", 0) == 0) return "sub-byte floats are not supported";
  if (name == "U16" || name == "U32" || name == "U64") return "unsigned integers wider than 8 bits are not supported";
  if (name == "C64") return "complex numbers are not supported";
  return nullptr;
}

std::string quoted(const std::string& name) { return "'" + name + "'"; }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string offsets_string(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// 0: absent, 1: present (or present but unreadable: the open reports why).
bool path_exists(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) == 0) return true;
  return errno != ENOENT && errno != ENOTDIR;
}

// A JSON integer that is non-negative, for shapes and offsets.
bool non_negative_integer(const json::Value& value, int64_t* out) {
  if (!value.is_number() || !value.is_integer || value.integer < 0) return false;
  *out = value.integer;
  return true;
}

struct Span {
  uint64_t begin, end;
  const std::string* name;
};

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;  // validated at open: no overflow
  return n;
}

SafetensorsFile::~SafetensorsFile() = default;

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  try {
    file->mapping_ = std::make_unique<MappedFile>(path);
  } catch (const FileError& e) {
    throw FormatError(e.what());
  }
  auto fail = [&](const std::string& message) -> FormatError { return FormatError(path + ": " + message); };
  const uint8_t* bytes = file->mapping_->data();
  const uint64_t size = file->mapping_->size();
  if (size < 8)
    throw fail("truncated: " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | bytes[i];
  if (header_length > kMaxHeaderBytes)
    throw fail("header length " + std::to_string(header_length) +
               " exceeds the 100 MiB limit (is this a safetensors file?)");
  if (header_length > size - 8)
    throw fail("truncated: header length " + std::to_string(header_length) + " exceeds the file (" +
               std::to_string(size) + " bytes)");
  const char* header = reinterpret_cast<const char*>(bytes + 8);
  const uint8_t* data = bytes + 8 + header_length;
  const uint64_t data_size = size - 8 - header_length;

  json::Value root;
  try {
    root = json::parse(header, header_length);
  } catch (const json::ParseError& e) {
    throw fail("header is not valid JSON at byte " + std::to_string(e.offset()) + " of the header: " + e.reason());
  }
  if (!root.is_object()) throw fail(std::string("header is not a JSON object but ") + json::type_name(root.type));

  std::vector<Span> spans;
  spans.reserve(root.object.size());
  for (const json::Member& member : root.object) {
    const std::string& name = member.key;
    const json::Value& entry = member.value;
    if (name == "__metadata__") {
      if (!entry.is_object())
        throw fail(std::string("\"__metadata__\" is not an object of strings but ") + json::type_name(entry.type));
      for (const json::Member& item : entry.object) {
        if (!item.value.is_string())
          throw fail("\"__metadata__\" entry " + quoted(item.key) + " is not a string but " +
                     json::type_name(item.value.type));
        file->metadata_[item.key] = item.value.string;
      }
      continue;
    }
    const std::string where = "tensor " + quoted(name);
    if (!entry.is_object()) throw fail(where + " is not an object but " + json::type_name(entry.type));
    // Keys other than these three are ignored, as the reference reader does.
    const json::Value* dtype_value = entry.find("dtype");
    const json::Value* shape_value = entry.find("shape");
    const json::Value* offsets_value = entry.find("data_offsets");
    if (!dtype_value) throw fail(where + " has no \"dtype\"");
    if (!shape_value) throw fail(where + " has no \"shape\"");
    if (!offsets_value) throw fail(where + " has no \"data_offsets\"");

    TensorInfo info;
    info.name = name;
    info.dtype = DType::F32;
    if (!dtype_value->is_string())
      throw fail(where + " has a \"dtype\" that is not a string but " + json::type_name(dtype_value->type));
    bool known = false;
    for (const DType dtype : kAllDTypes)
      if (dtype_value->string == dtype_name(dtype)) info.dtype = dtype, known = true;
    if (!known) {
      const char* reason = unsupported_reason(dtype_value->string);
      throw fail(where + " has unknown dtype " + quoted(dtype_value->string) + " (" +
                 (reason ? std::string(reason) + "; " : std::string()) + "supported: " + kSupportedList + ")");
    }

    if (!shape_value->is_array())
      throw fail(where + " has a \"shape\" that is not an array but " + json::type_name(shape_value->type));
    uint64_t numel = 1;
    bool overflow = false;
    for (const json::Value& dim : shape_value->array) {
      int64_t d;
      if (!non_negative_integer(dim, &d)) {
        std::string text;
        if (dim.is_number() && dim.is_integer) {
          text = "shape entry " + std::to_string(dim.integer);
        } else if (dim.is_number()) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.17g", dim.number);
          text = std::string("shape entry ") + buf;
        } else {
          text = std::string("a shape entry that is ") + json::type_name(dim.type);
        }
        throw fail(where + " has " + text + "; shape entries must be non-negative integers");
      }
      info.shape.push_back(d);
      uint64_t product;
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &product)) overflow = true;
      numel = product;
    }
    const uint64_t itemsize = dtype_size(info.dtype);
    uint64_t needed = 0;
    // A zero dimension makes the tensor empty whatever the others are.
    const bool empty = std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end();
    if (empty) {
      numel = 0;
      overflow = false;
    }
    if (overflow || numel > uint64_t(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(numel, itemsize, &needed))
      throw fail(where + ": shape " + shape_string(info.shape) + " has too many elements");

    if (!offsets_value->is_array() || offsets_value->array.size() != 2)
      throw fail(where + " has \"data_offsets\" that are not an array [begin, end]");
    int64_t begin, end;
    if (!non_negative_integer(offsets_value->array[0], &begin) ||
        !non_negative_integer(offsets_value->array[1], &end))
      throw fail(where + " has \"data_offsets\" that are not two non-negative integers");
    const uint64_t ubegin = uint64_t(begin), uend = uint64_t(end);
    if (ubegin > uend) throw fail(where + ": data_offsets " + offsets_string(ubegin, uend) + " end before they begin");
    if (uend > data_size)
      throw fail(where + ": data_offsets " + offsets_string(ubegin, uend) + " reach beyond the data section (" +
                 std::to_string(data_size) + " bytes)");
    if (uend - ubegin != needed)
      throw fail(where + ": data_offsets " + offsets_string(ubegin, uend) + " hold " + std::to_string(uend - ubegin) +
                 " bytes but shape " + shape_string(info.shape) + " of " + dtype_name(info.dtype) + " needs " +
                 std::to_string(needed));
    info.data = data + ubegin;
    auto inserted = file->tensors_.emplace(name, std::move(info));
    spans.push_back({ubegin, uend, &inserted.first->first});
  }

  // No two tensors share a byte (empty tensors occupy none).
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Span* last = nullptr;  // the non-empty span reaching furthest so far
  for (const Span& span : spans) {
    if (span.begin == span.end) continue;
    if (last && span.begin < last->end)
      throw fail("tensors " + quoted(*last->name) + " " + offsets_string(last->begin, last->end) + " and " +
                 quoted(*span.name) + " " + offsets_string(span.begin, span.end) + " overlap");
    if (!last || span.end > last->end) last = &span;
  }
  return file;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<const TensorInfo*> infos;
  infos.reserve(tensors_.size());
  for (const auto& entry : tensors_) infos.push_back(&entry.second);
  // std::map order already sorts equal offsets by name; stable keeps it.
  std::stable_sort(infos.begin(), infos.end(),
                   [](const TensorInfo* a, const TensorInfo* b) { return a->data < b->data; });
  std::vector<std::string> out;
  out.reserve(infos.size());
  for (const TensorInfo* info : infos) out.push_back(info->name);
  return out;
}

const MappedFile& SafetensorsFile::mapping() const { return *mapping_; }

size_t SafetensorsFile::offset_of(const TensorInfo& tensor) const {
  return size_t(tensor.data - mapping_->data());
}

const TensorInfo& SafetensorsFile::tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw FormatError(path_ + ": no tensor named " + quoted(name));
  return it->second;
}

namespace {

inline uint16_t load_u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }

inline float f32_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  if (exponent == 0x1F) return f32_from_bits(sign | 0x7F800000u | (mantissa << 13));  // inf, nan (payload kept)
  if (exponent != 0) return f32_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return f32_from_bits(sign);  // +-0
  // Subnormal: mantissa * 2^-24, normalised for fp32.
  int shift = 0;
  while ((mantissa & 0x400) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  return f32_from_bits(sign | uint32_t(113 - shift) << 23 | ((mantissa & 0x3FF) << 13));
}

// Round to nearest even, with overflow to +-inf, without the undefined
// behaviour of casting an out-of-range double to float.
float f64_to_f32(double d) {
  if (std::isnan(d)) return std::numeric_limits<float>::quiet_NaN();
  const double magnitude = std::fabs(d);
  constexpr double kFloatMax = std::numeric_limits<float>::max();
  if (magnitude > kFloatMax) {
    // Halfway between FLT_MAX and 2^128 ties to 2^128 (FLT_MAX's mantissa is odd).
    constexpr double kHalfway = 0x1.ffffffp127;
    const float inf = std::numeric_limits<float>::infinity();
    if (magnitude >= kHalfway) return d < 0 ? -inf : inf;
    return d < 0 ? -std::numeric_limits<float>::max() : std::numeric_limits<float>::max();
  }
  return static_cast<float>(d);
}

}  // namespace

void check_converts_to_f32(const TensorInfo& tensor, const std::string& path) {
  switch (tensor.dtype) {
    case DType::F32: case DType::BF16: case DType::F16: case DType::F64: return;
    default:
      throw FormatError(path + ": tensor " + quoted(tensor.name) + " has dtype " + dtype_name(tensor.dtype) +
                        ", which does not convert to F32 (expected F32, BF16, F16 or F64)");
  }
}

void to_f32(const TensorInfo& tensor, const std::string& path, float* out) {
  to_f32(tensor, path, out, 0, tensor.numel());
}

void to_f32(const TensorInfo& tensor, const std::string& path, float* out, int64_t begin, int64_t count) {
  check_converts_to_f32(tensor, path);
  const int64_t n = tensor.numel();
  if (begin < 0 || count < 0 || begin > n || count > n - begin)
    throw FormatError(path + ": tensor " + quoted(tensor.name) + ": elements [" + std::to_string(begin) + ", " +
                      std::to_string(begin + count) + ") lie outside its " + std::to_string(n));
  const uint8_t* p = tensor.data + size_t(begin) * dtype_size(tensor.dtype);
  switch (tensor.dtype) {
    case DType::F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
      for (int64_t i = 0; i < count; ++i, p += 4)
        out[i] = f32_from_bits(uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
#else
      if (count > 0) std::memcpy(out, p, size_t(count) * 4);  // the data may be unaligned
#endif
      return;
    case DType::BF16:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
      for (int64_t i = 0; i < count; ++i) out[i] = f32_from_bits(uint32_t(load_u16(p + 2 * i)) << 16);
#else
      // In blocks through aligned locals, so the widening vectorises whatever
      // the alignment of the source (safetensors data need not be aligned).
      for (int64_t i = 0; i < count;) {
        constexpr int64_t kBlock = 256;
        const int64_t m = std::min<int64_t>(kBlock, count - i);
        uint16_t halves[kBlock];
        uint32_t words[kBlock];
        std::memcpy(halves, p + 2 * i, size_t(m) * 2);
        for (int64_t j = 0; j < m; ++j) words[j] = uint32_t(halves[j]) << 16;
        std::memcpy(out + i, words, size_t(m) * 4);
        i += m;
      }
#endif
      return;
    case DType::F16:
      for (int64_t i = 0; i < count; ++i) out[i] = f16_to_f32(load_u16(p + 2 * i));
      return;
    case DType::F64:
      for (int64_t i = 0; i < count; ++i, p += 8) {
        uint64_t bits = 0;
        for (int b = 7; b >= 0; --b) bits = (bits << 8) | p[b];
        double d;
        std::memcpy(&d, &bits, 8);
        out[i] = f64_to_f32(d);
      }
      return;
    default:
      return;  // check_converts_to_f32 threw
  }
}

TensorStore TensorStore::open_directory(const std::string& dir, const std::string& base) {
  TensorStore store;
  store.dir_ = dir;
  const std::string index_path = join_path(dir, base + ".safetensors.index.json");
  const std::string single_path = join_path(dir, base + ".safetensors");
  if (path_exists(index_path)) {
    std::unique_ptr<MappedFile> index_file;
    try {
      index_file = std::make_unique<MappedFile>(index_path);
    } catch (const FileError& e) {
      throw FormatError(e.what());
    }
    json::Value index;
    try {
      index = json::parse(reinterpret_cast<const char*>(index_file->data()), index_file->size());
    } catch (const json::ParseError& e) {
      throw FormatError(index_path + ": not valid JSON at byte " + std::to_string(e.offset()) + ": " + e.reason());
    }
    if (!index.is_object())
      throw FormatError(index_path + ": not a JSON object but " + json::type_name(index.type));
    const json::Value* weight_map = index.find("weight_map");
    if (!weight_map || !weight_map->is_object())
      throw FormatError(index_path + ": no \"weight_map\" object (tensor name -> shard file)");
    std::map<std::string, size_t> shard_index;  // shard file name -> files_ index
    for (const json::Member& member : weight_map->object) {
      const std::string& name = member.key;
      if (!member.value.is_string())
        throw FormatError(index_path + ": \"weight_map\" entry " + quoted(name) + " is not a file name but " +
                          json::type_name(member.value.type));
      const std::string& shard = member.value.string;
      const bool escapes = shard.empty() || shard.front() == '/' || shard == ".." || shard.rfind("../", 0) == 0 ||
                           shard.find("/../") != std::string::npos ||
                           (shard.size() >= 3 && shard.compare(shard.size() - 3, 3, "/..") == 0);
      if (escapes)
        throw FormatError(index_path + ": \"weight_map\" entry " + quoted(name) + " names shard " + quoted(shard) +
                          ", which is not a file inside " + dir);
      auto found = shard_index.find(shard);
      if (found == shard_index.end()) {
        std::shared_ptr<SafetensorsFile> file;
        try {
          file = SafetensorsFile::open(join_path(dir, shard));
        } catch (const FormatError& e) {
          throw FormatError(index_path + " names shard " + quoted(shard) + " (for tensor " + quoted(name) +
                            "), which cannot be read: " + e.what());
        }
        found = shard_index.emplace(shard, store.files_.size()).first;
        store.files_.push_back(std::move(file));
      }
      const SafetensorsFile& file = *store.files_[found->second];
      if (!file.has(name))
        throw FormatError(file.path() + ": no tensor named " + quoted(name) + " (" + index_path +
                          " places it in this shard)");
      store.file_index_[name] = found->second;
    }
    return store;
  }
  if (path_exists(single_path)) {
    store.files_.push_back(SafetensorsFile::open(single_path));
    for (const std::string& name : store.files_[0]->names()) store.file_index_[name] = 0;
    return store;
  }
  struct stat info;
  std::string why;
  if (::stat(dir.c_str(), &info) != 0)
    why = std::string(" (") + std::strerror(errno) + ")";
  else if (!S_ISDIR(info.st_mode))
    why = " (not a directory)";
  throw FormatError(dir + ": no " + base + ".safetensors or " + base + ".safetensors.index.json" + why);
}

bool TensorStore::has(const std::string& name) const { return file_index_.count(name) != 0; }

const TensorInfo& TensorStore::tensor(const std::string& name) const {
  const auto it = file_index_.find(name);
  if (it == file_index_.end()) throw FormatError(dir_ + ": no tensor named " + quoted(name) + " in the model's weights");
  return files_[it->second]->tensor(name);
}

const std::string& TensorStore::file_of(const std::string& name) const {
  const auto it = file_index_.find(name);
  if (it == file_index_.end()) throw FormatError(dir_ + ": no tensor named " + quoted(name) + " in the model's weights");
  return files_[it->second]->path();
}

const SafetensorsFile& TensorStore::shard_of(const std::string& name) const {
  return *files_[shard_index_of(name)];
}

size_t TensorStore::shard_index_of(const std::string& name) const {
  const auto it = file_index_.find(name);
  if (it == file_index_.end()) throw FormatError(dir_ + ": no tensor named " + quoted(name) + " in the model's weights");
  return it->second;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(file_index_.size());
  for (const auto& entry : file_index_) out.push_back(entry.first);
  return out;
}

}  // namespace st
