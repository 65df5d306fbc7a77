#pragma once
// Argument checking and copies between JavaScript typed arrays and C++
// vectors. A wrong argument throws a TypeError naming the function and field.
#include <napi.h>

#include <cstring>
#include <string>
#include <vector>

namespace st::addon {

template <class T>
struct TypedArrayName;
template <>
struct TypedArrayName<double> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};
template <>
struct TypedArrayName<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct TypedArrayName<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};

inline Napi::Object options_object(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected an options object");
  return info[0].As<Napi::Object>();
}

template <class T>
std::vector<T> copy_typed_array(const Napi::Object& options, const char* field, const char* fn) {
  Napi::Value value = options.Get(field);
  const std::string where = std::string(fn) + ": `" + field + "`";
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != TypedArrayName<T>::type)
    throw Napi::TypeError::New(options.Env(), where + " must be a " + TypedArrayName<T>::name);
  auto array = value.As<Napi::TypedArrayOf<T>>();
  std::vector<T> out(array.ElementLength());
  if (!out.empty()) std::memcpy(out.data(), array.Data(), out.size() * sizeof(T));
  return out;
}

// Every option is required: defaults live in the TypeScript library API
// (lib/native/binding.ts says so), which passes each value explicitly. A
// missing one is a TypeError naming the function and the field.
inline Napi::Value required(const Napi::Object& options, const char* field, const char* fn) {
  Napi::Value value = options.Get(field);
  if (value.IsUndefined())
    throw Napi::TypeError::New(options.Env(), std::string(fn) + ": `" + field + "` is required");
  return value;
}

inline double number_field(const Napi::Object& options, const char* field, const char* fn) {
  Napi::Value value = required(options, field, fn);
  if (!value.IsNumber())
    throw Napi::TypeError::New(options.Env(), std::string(fn) + ": `" + field + "` must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

inline int64_t integer_field(const Napi::Object& options, const char* field, const char* fn) {
  const double d = number_field(options, field, fn);
  if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0) || d != double(int64_t(d)))
    throw Napi::TypeError::New(options.Env(), std::string(fn) + ": `" + field + "` must be an integer");
  return int64_t(d);
}

inline bool boolean_field(const Napi::Object& options, const char* field, const char* fn) {
  Napi::Value value = required(options, field, fn);
  if (!value.IsBoolean())
    throw Napi::TypeError::New(options.Env(), std::string(fn) + ": `" + field + "` must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

inline std::string string_field(const Napi::Object& options, const char* field, const char* fn) {
  Napi::Value value = required(options, field, fn);
  if (!value.IsString())
    throw Napi::TypeError::New(options.Env(), std::string(fn) + ": `" + field + "` must be a string");
  return value.As<Napi::String>().Utf8Value();
}

template <class T>
Napi::TypedArrayOf<T> to_typed_array(Napi::Env env, const std::vector<T>& values) {
  auto array = Napi::TypedArrayOf<T>::New(env, values.size());
  if (!values.empty()) std::memcpy(array.Data(), values.data(), values.size() * sizeof(T));
  return array;
}

}  // namespace st::addon
