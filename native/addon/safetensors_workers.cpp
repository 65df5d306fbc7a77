// N-API entry points for reading safetensors files: the file is opened,
// validated and copied (or converted to fp32) on a worker thread; the main
// thread only wraps the finished buffers as typed arrays.
//
//   readSafetensors(path, names?) -> Promise<{metadata, tensors: {name: {dtype, shape, data}}}>
//   inspectSafetensors(path)      -> Promise<{metadata, tensors: {name: {dtype, shape}}}>
//   inspectModelWeights(dir)      -> Promise<{name: {dtype, shape, file}}>
//
// Errors reject with the engine's FormatError message (it names the file and
// the tensor). Tensors come in file order (by data offset), or in the order
// of `names` when given.
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "addon/exports.h"
#include "addon/promise_worker.h"
#include "engine/safetensors.h"

namespace st::addon {
namespace {

// A typed array's storage filled on the worker thread, handed to JavaScript
// without a copy (an external ArrayBuffer that frees it), or copied once where
// the runtime forbids external buffers.
class HostArray {
 public:
  HostArray() = default;
  HostArray(napi_typedarray_type type, size_t length, size_t itemsize) : type_(type), length_(length) {
    bytes_ = length * itemsize;
    if (bytes_ == 0) return;
    data_ = std::malloc(bytes_);  // aligned for any element type
    if (data_ == nullptr) throw std::bad_alloc();
  }
  HostArray(HostArray&& other) noexcept
      : type_(other.type_), length_(other.length_), bytes_(other.bytes_), data_(std::exchange(other.data_, nullptr)) {}
  HostArray& operator=(HostArray&& other) noexcept {
    if (this != &other) {
      std::free(data_);
      type_ = other.type_;
      length_ = other.length_;
      bytes_ = other.bytes_;
      data_ = std::exchange(other.data_, nullptr);
    }
    return *this;
  }
  HostArray(const HostArray&) = delete;
  ~HostArray() { std::free(data_); }

  void* data() { return data_; }
  size_t bytes() const { return bytes_; }

  Napi::Value to_js(Napi::Env env) {
    napi_value buffer = nullptr;
    if (data_ != nullptr &&
        napi_create_external_arraybuffer(env, data_, bytes_, [](napi_env, void* data, void*) { std::free(data); },
                                         nullptr, &buffer) == napi_ok) {
      data_ = nullptr;  // JavaScript owns it now
    } else {
      Napi::ArrayBuffer copy = Napi::ArrayBuffer::New(env, bytes_);
      if (bytes_ != 0) std::memcpy(copy.Data(), data_, bytes_);
      buffer = copy;
    }
    napi_value array;
    const napi_status status = napi_create_typedarray(env, type_, length_, buffer, 0, &array);
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
    return Napi::Value(env, array);
  }

 private:
  napi_typedarray_type type_ = napi_uint8_array;
  size_t length_ = 0;
  size_t bytes_ = 0;
  void* data_ = nullptr;
};

// safetensors data is little-endian, as typed arrays are on every host we
// build for; a big-endian host swaps each element.
void copy_le(void* out, const uint8_t* in, size_t count, size_t itemsize) {
  if (count == 0) return;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  auto* o = static_cast<uint8_t*>(out);
  for (size_t i = 0; i < count; ++i)
    for (size_t b = 0; b < itemsize; ++b) o[i * itemsize + b] = in[i * itemsize + itemsize - 1 - b];
#else
  std::memcpy(out, in, count * itemsize);
#endif
}

struct TypedArrayKind {
  napi_typedarray_type type;
  size_t itemsize;
};

// The JavaScript array a dtype arrives as: fp16 and bf16 widen to Float32Array.
TypedArrayKind js_kind(DType dtype) {
  switch (dtype) {
    case DType::F64: return {napi_float64_array, 8};
    case DType::F32: case DType::F16: case DType::BF16: return {napi_float32_array, 4};
    case DType::I64: return {napi_bigint64_array, 8};
    case DType::I32: return {napi_int32_array, 4};
    case DType::I16: return {napi_int16_array, 2};
    case DType::I8: return {napi_int8_array, 1};
    case DType::U8: case DType::BOOL: return {napi_uint8_array, 1};
  }
  return {napi_uint8_array, 1};
}

HostArray copy_tensor(const TensorInfo& tensor, const std::string& path) {
  const size_t n = size_t(tensor.numel());
  const TypedArrayKind kind = js_kind(tensor.dtype);
  HostArray array;
  try {
    array = HostArray(kind.type, n, kind.itemsize);
  } catch (const std::bad_alloc&) {
    throw FormatError(path + ": tensor '" + tensor.name + "': out of memory for " + std::to_string(n * kind.itemsize) +
                      " bytes");
  }
  switch (tensor.dtype) {
    case DType::F32: case DType::F16: case DType::BF16:
      to_f32(tensor, path, static_cast<float*>(array.data()));
      break;
    default:
      copy_le(array.data(), tensor.data, n, dtype_size(tensor.dtype));
  }
  return array;
}

std::string string_argument(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* field) {
  if (info.Length() <= index || !info[index].IsString())
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": `" + field + "` must be a string");
  std::string value = info[index].As<Napi::String>().Utf8Value();
  if (value.empty()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": `" + field + "` is empty");
  if (value.find('\0') != std::string::npos)
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": `" + field + "` contains a NUL character");
  return value;
}

// An own data property, whatever the key: a tensor named "__proto__" must not
// become the object's prototype.
void define(Napi::Object object, const std::string& key, Napi::Value value) {
  object.DefineProperty(Napi::PropertyDescriptor::Value(key, value, napi_default_jsproperty));
}

Napi::Array shape_to_js(Napi::Env env, const std::vector<int64_t>& shape) {
  Napi::Array out = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) out.Set(uint32_t(i), Napi::Number::New(env, double(shape[i])));
  return out;
}

Napi::Object metadata_to_js(Napi::Env env, const std::map<std::string, std::string>& metadata) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [key, value] : metadata) define(out, key, Napi::String::New(env, value));
  return out;
}

struct TensorHeader {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string file;  // inspectModelWeights only
};

Napi::Object header_to_js(Napi::Env env, const TensorHeader& tensor) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("dtype", dtype_name(tensor.dtype));
  out.Set("shape", shape_to_js(env, tensor.shape));
  return out;
}

// readSafetensors(path, names?)
Napi::Value ReadSafetensors(const Napi::CallbackInfo& info) {
  const char* fn = "readSafetensors";
  const std::string path = string_argument(info, 0, fn, "path");
  auto names = std::make_shared<std::vector<std::string>>();
  bool all = true;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "readSafetensors: `names` must be an array of strings");
    Napi::Array array = info[1].As<Napi::Array>();
    std::set<std::string> seen;
    for (uint32_t i = 0; i < array.Length(); ++i) {
      Napi::Value name = array.Get(i);
      if (!name.IsString())
        throw Napi::TypeError::New(info.Env(), "readSafetensors: `names[" + std::to_string(i) + "]` must be a string");
      std::string text = name.As<Napi::String>().Utf8Value();
      if (seen.insert(text).second) names->push_back(std::move(text));
    }
    all = false;
  }
  struct Result {
    std::map<std::string, std::string> metadata;
    std::vector<TensorHeader> headers;
    std::vector<HostArray> arrays;
  };
  auto result = std::make_shared<Result>();
  return PromiseWorker::Start(
      info.Env(),
      [path, names, all, result]() -> std::string {
        const std::shared_ptr<SafetensorsFile> file = SafetensorsFile::open(path);
        if (all) *names = file->names();
        for (const std::string& name : *names) file->tensor(name);  // every name first: fail before copying
        result->metadata = file->metadata();
        for (const std::string& name : *names) {
          const TensorInfo& tensor = file->tensor(name);
          result->headers.push_back({name, tensor.dtype, tensor.shape, ""});
          result->arrays.push_back(copy_tensor(tensor, path));
        }
        return "";
      },
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("metadata", metadata_to_js(env, result->metadata));
        Napi::Object tensors = Napi::Object::New(env);
        for (size_t i = 0; i < result->headers.size(); ++i) {
          Napi::Object tensor = header_to_js(env, result->headers[i]);
          tensor.Set("data", result->arrays[i].to_js(env));
          define(tensors, result->headers[i].name, tensor);
        }
        out.Set("tensors", tensors);
        return out;
      });
}

// inspectSafetensors(path)
Napi::Value InspectSafetensors(const Napi::CallbackInfo& info) {
  const std::string path = string_argument(info, 0, "inspectSafetensors", "path");
  struct Result {
    std::map<std::string, std::string> metadata;
    std::vector<TensorHeader> headers;
  };
  auto result = std::make_shared<Result>();
  return PromiseWorker::Start(
      info.Env(),
      [path, result]() -> std::string {
        const std::shared_ptr<SafetensorsFile> file = SafetensorsFile::open(path);
        result->metadata = file->metadata();
        for (const std::string& name : file->names()) {
          const TensorInfo& tensor = file->tensor(name);
          result->headers.push_back({name, tensor.dtype, tensor.shape, ""});
        }
        return "";
      },
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("metadata", metadata_to_js(env, result->metadata));
        Napi::Object tensors = Napi::Object::New(env);
        for (const TensorHeader& header : result->headers) define(tensors, header.name, header_to_js(env, header));
        out.Set("tensors", tensors);
        return out;
      });
}

// inspectModelWeights(dir)
Napi::Value InspectModelWeights(const Napi::CallbackInfo& info) {
  const std::string dir = string_argument(info, 0, "inspectModelWeights", "dir");
  auto headers = std::make_shared<std::vector<TensorHeader>>();
  return PromiseWorker::Start(
      info.Env(),
      [dir, headers]() -> std::string {
        const TensorStore store = TensorStore::open_directory(dir);
        for (const std::string& name : store.names()) {
          const TensorInfo& tensor = store.tensor(name);
          headers->push_back({name, tensor.dtype, tensor.shape, store.file_of(name)});
        }
        return "";
      },
      [headers](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        for (const TensorHeader& header : *headers) {
          Napi::Object tensor = header_to_js(env, header);
          tensor.Set("file", header.file);
          define(out, header.name, tensor);
        }
        return out;
      });
}

void register_safetensors(Napi::Env env, Napi::Object exports) {
  exports.Set("readSafetensors", Napi::Function::New(env, ReadSafetensors, "readSafetensors"));
  exports.Set("inspectSafetensors", Napi::Function::New(env, InspectSafetensors, "inspectSafetensors"));
  exports.Set("inspectModelWeights", Napi::Function::New(env, InspectModelWeights, "inspectModelWeights"));
}

const ModuleRegistration registration(register_safetensors);

}  // namespace
}  // namespace st::addon
