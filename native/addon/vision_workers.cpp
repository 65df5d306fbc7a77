// N-API entry points for image processing: argument checks on the main
// thread, the work on a worker thread, typed arrays back.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon/exports.h"
#include "addon/promise_worker.h"
#include "addon/typed_arrays.h"
#include "vision/bicubic.h"

namespace st::addon {
namespace {

// A copy of a Uint8Array (or Buffer) field's bytes.
std::vector<uint8_t> copy_uint8_array(const Napi::Object& options, const char* field, const char* fn) {
  Napi::Value value = options.Get(field);
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(options.Env(), std::string(fn) + ": `" + field + "` must be a Uint8Array");
  auto array = value.As<Napi::Uint8Array>();
  std::vector<uint8_t> out(array.ElementLength());
  if (!out.empty()) std::memcpy(out.data(), array.Data(), out.size());
  return out;
}

// A required positive integer field (a size in pixels or channels).
int64_t size_option(const Napi::Object& options, const char* field, const char* fn) {
  Napi::Value value = options.Get(field);
  const std::string where = std::string(fn) + ": `" + field + "`";
  if (!value.IsNumber()) throw Napi::TypeError::New(options.Env(), where + " must be a number");
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || v != std::floor(v) || v < 1 || v > 2147483647.0) {
    const std::string shown =
        std::isfinite(v) ? value.ToString().Utf8Value() : std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity");
    throw Napi::RangeError::New(options.Env(), where + " must be an integer from 1 to 2147483647 (got " + shown + ")");
  }
  return int64_t(v);
}

// resizeBicubicU8({pixels, height, width, channels, outHeight, outWidth}) ->
//   Promise<Uint8Array>: [outHeight, outWidth, channels], Pillow's BICUBIC.
Napi::Value ResizeBicubicU8(const Napi::CallbackInfo& info) {
  const char* fn = "resizeBicubicU8";
  Napi::Object options = options_object(info, fn);
  struct Job {
    std::vector<uint8_t> pixels, out;
    int64_t height, width, channels, out_height, out_width;
  };
  auto job = std::make_shared<Job>();
  job->pixels = copy_uint8_array(options, "pixels", fn);
  job->height = size_option(options, "height", fn);
  job->width = size_option(options, "width", fn);
  job->channels = size_option(options, "channels", fn);
  job->out_height = size_option(options, "outHeight", fn);
  job->out_width = size_option(options, "outWidth", fn);
  const std::string error = vision::validate_resize(job->height, job->width, job->channels, job->out_height,
                                                    job->out_width, job->pixels.size());
  if (!error.empty()) throw Napi::RangeError::New(info.Env(), std::string(fn) + ": " + error);
  return PromiseWorker::Start(
      info.Env(),
      [job]() -> std::string {
        job->out.resize(size_t(job->out_height * job->out_width * job->channels));
        vision::resize_bicubic_u8(job->pixels.data(), job->height, job->width, job->channels, job->out.data(),
                                  job->out_height, job->out_width);
        job->pixels = std::vector<uint8_t>();  // free the input copy early
        return "";
      },
      [job](Napi::Env env) -> Napi::Value {
        auto array = Napi::Uint8Array::New(env, job->out.size());
        if (!job->out.empty()) std::memcpy(array.Data(), job->out.data(), job->out.size());
        job->out = std::vector<uint8_t>();
        return array;
      });
}

void register_vision(Napi::Env env, Napi::Object exports) {
  exports.Set("resizeBicubicU8", Napi::Function::New(env, ResizeBicubicU8, "resizeBicubicU8"));
}

const ModuleRegistration registration(register_vision);

}  // namespace
}  // namespace st::addon
