// N-API: single backend ops, for tests of the kernels and benchmarks.
#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>

#include "addon/exports.h"
#include "addon/promise_worker.h"
#include "addon/typed_arrays.h"
#include "backend/backend.h"

namespace st::addon {
namespace {

std::vector<float> float32s(const Napi::Object& o, const char* field, const char* fn, bool optional = false) {
  const Napi::Value v = o.Get(field);
  if (optional && v.IsUndefined()) return {};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(o.Env(), std::string(fn) + ": `" + field + "` must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

// linear({x, w, bias?, m, k, n, repeat?}) -> Promise<{y: Float32Array, seconds, bestSeconds}>:
// y[m, n] = x[m, k] w[n, k]^T + bias on the CPU backend; `seconds` is the
// mean time of `repeat` runs on the same operands, `bestSeconds` the fastest.
Napi::Value Linear(const Napi::CallbackInfo& info) {
  const char* fn = "linear";
  Napi::Object o = options_object(info, fn);
  struct Input {
    std::vector<float> x, w, bias, y;
    int64_t m, k, n, repeat;
    double seconds = 0, best_seconds = 0;
  };
  auto in = std::make_shared<Input>();
  in->x = float32s(o, "x", fn);
  in->w = float32s(o, "w", fn);
  in->bias = float32s(o, "bias", fn, true);
  in->m = int64_t(number_option(o, "m", -1, fn));
  in->k = int64_t(number_option(o, "k", -1, fn));
  in->n = int64_t(number_option(o, "n", -1, fn));
  in->repeat = std::max<int64_t>(1, int64_t(number_option(o, "repeat", 1, fn)));
  if (in->m < 0 || in->k < 0 || in->n < 0 || int64_t(in->x.size()) != in->m * in->k ||
      int64_t(in->w.size()) != in->n * in->k || (!in->bias.empty() && int64_t(in->bias.size()) != in->n))
    throw Napi::RangeError::New(info.Env(), "linear: x must be m x k, w n x k, bias n");
  return PromiseWorker::Start(
      info.Env(),
      [in]() -> std::string {
        auto backend = make_cpu_backend();
        in->y.assign(size_t(in->m * in->n), 0.0f);
        double total = 0, best = std::numeric_limits<double>::infinity();
        for (int64_t r = 0; r < in->repeat; ++r) {
          const auto start = std::chrono::steady_clock::now();
          backend->linear(in->x.data(), in->w.data(), in->bias.empty() ? nullptr : in->bias.data(), in->y.data(), in->m,
                          in->k, in->n);
          const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          total += seconds;
          best = std::min(best, seconds);
        }
        in->seconds = total / double(in->repeat);
        in->best_seconds = best;
        return "";
      },
      [in](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("y", to_typed_array(env, in->y));
        r.Set("seconds", in->seconds);
        r.Set("bestSeconds", in->best_seconds);
        return r;
      });
}

void register_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("linear", Napi::Function::New(env, Linear, "linear"));
}

const ModuleRegistration registration(register_ops);

}  // namespace
}  // namespace st::addon
