// N-API: single backend ops, for tests of the kernels and benchmarks.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "addon/exports.h"
#include "addon/promise_worker.h"
#include "addon/typed_arrays.h"
#include "backend/backend.h"
#include "backend/cuda/attention_bf16_check.h"
#include "train/adamw.h"
#include "train/policy_loss.h"
#include "train/optimizer_strategy.h"

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
  in->m = integer_field(o, "m", fn);
  in->k = integer_field(o, "k", fn);
  in->n = integer_field(o, "n", fn);
  in->repeat = integer_field(o, "repeat", fn);
  if (in->repeat < 1) throw Napi::RangeError::New(info.Env(), "linear: `repeat` must be at least 1");
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

// ------------------------------------------------------------------ runOp
// One named Backend op on a chosen backend, from typed arrays, so tests can
// run every op on the CPU and CUDA backends on the same inputs. Float
// tensors are uploaded to the backend; outputs are downloaded. An output the
// caller passes in starts from the given values (for ops that accumulate);
// one it does not pass starts as NaN, so entries an op fails to write show.

// The sampling ops' per-row seeds and counters and their options.
struct SamplingInputs {
  std::vector<uint64_t> seeds, counters;
  SamplingOptions options;
};

struct OpCall {
  std::string op;
  std::map<std::string, std::vector<float>> tensors;
  std::map<std::string, std::vector<int32_t>> ints;
  std::map<std::string, double> scalars;
  std::set<std::string> wanted;  // optional outputs to produce
  std::vector<std::vector<int32_t>> slot_lists;
  std::vector<AttentionSequence> sequences;

  // Filled while running.
  Backend* backend = nullptr;
  std::deque<DeviceArray> arrays;  // stable addresses: outputs point into it
  std::vector<std::pair<std::string, DeviceArray*>> outputs;
  std::map<std::string, std::vector<float>> results;
  double scalar_result = 0;
  bool has_scalar_result = false;

  [[noreturn]] void fail(const std::string& what) const { throw std::invalid_argument("runOp " + op + ": " + what); }

  double num(const char* name) const {
    auto it = scalars.find(name);
    if (it == scalars.end()) fail(std::string("scalar `") + name + "` is required");
    return it->second;
  }
  double num(const char* name, double fallback) const {
    auto it = scalars.find(name);
    return it == scalars.end() ? fallback : it->second;
  }
  int64_t integer(const char* name) const {
    const double v = num(name);
    if (v != double(int64_t(v)) || v < 0) fail(std::string("`") + name + "` must be a non-negative integer");
    return int64_t(v);
  }
  const std::vector<int32_t>& int_array(const char* name, int64_t count = -1) const {
    auto it = ints.find(name);
    if (it == ints.end()) fail(std::string("Int32Array `") + name + "` is required");
    if (count >= 0 && int64_t(it->second.size()) != count)
      fail(std::string("`") + name + "` has " + std::to_string(it->second.size()) + " entries, not " +
           std::to_string(count));
    return it->second;
  }
  // An index array whose entries must each pick one of `bound` rows.
  const std::vector<int32_t>& indices(const char* name, int64_t bound, const char* what, int64_t count = -1) const {
    const auto& v = int_array(name, count);
    for (int32_t i : v)
      if (i < 0 || i >= bound) fail(what);
    return v;
  }
  const std::vector<float>& host(const char* name, int64_t count) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) fail(std::string("Float32Array `") + name + "` is required");
    if (count >= 0 && int64_t(it->second.size()) != count)
      fail(std::string("`") + name + "` has " + std::to_string(it->second.size()) + " entries, not " +
           std::to_string(count));
    return it->second;
  }
  bool given(const char* name) const { return tensors.count(name) > 0; }
  int64_t size_of(const char* name) const { return int64_t(host(name, -1).size()); }

  // Arrays are in the backend's storage type unless the op's interface
  // fixes them as fp32 (parameter gradients, rotary tables, moments): `f32`.
  Storage type_of(bool f32) const { return f32 ? Storage::F32 : backend->storage(); }
  DeviceArray& upload(const std::vector<float>& values, Storage type) {
    arrays.emplace_back(*backend, int64_t(values.size()), type);
    backend->upload(arrays.back().get(), values.data(), int64_t(values.size()));
    return arrays.back();
  }
  // An input on the backend (count -1: any size).
  DevicePtr in(const char* name, int64_t count, bool f32 = false) {
    return upload(host(name, count), type_of(f32)).get();
  }
  DevicePtr optional_in(const char* name, int64_t count) { return given(name) ? in(name, count) : nullptr; }
  // An index array on the backend (Storage::I32), each entry in [0, bound).
  DevicePtr indices_in(const char* name, int64_t bound, const char* what, int64_t count = -1) {
    const auto& v = indices(name, bound, what, count);
    arrays.emplace_back(*backend, int64_t(v.size()), Storage::I32);
    backend->upload_raw(arrays.back().get(), v.data(), int64_t(v.size()));
    return arrays.back().get();
  }
  DevicePtr u64_in(const std::vector<uint64_t>& values) {
    arrays.emplace_back(*backend, int64_t(values.size()), Storage::U64);
    backend->upload_raw(arrays.back().get(), values.data(), int64_t(values.size()));
    return arrays.back().get();
  }
  // An output on the backend, downloaded afterwards.
  DevicePtr out(const char* name, int64_t count, bool f32 = false) {
    DeviceArray* array;
    if (given(name)) {
      array = &upload(host(name, count), type_of(f32));
    } else {
      arrays.emplace_back(*backend, count, type_of(f32));
      array = &arrays.back();
      backend->fill(array->get(), std::numeric_limits<float>::quiet_NaN(), count);
    }
    outputs.emplace_back(name, array);
    return array->get();
  }
  // An array the op updates in place: its initial values are required.
  DevicePtr inout(const char* name, int64_t count, bool f32 = false) {
    host(name, count);
    return out(name, count, f32);
  }
  // An output the op may skip (a null gradient): made when passed or wanted.
  DevicePtr optional_out(const char* name, int64_t count, bool f32 = false) {
    return given(name) || wanted.count(name) ? out(name, count, f32) : nullptr;
  }
  std::vector<float>& host_out(const char* name, int64_t count) {
    std::vector<float>& v = results[name];
    v.assign(size_t(count), std::numeric_limits<float>::quiet_NaN());
    return v;
  }

  // ints seedsLo, seedsHi (each row's 64-bit seed as two 32-bit halves),
  // counters; scalars temperature, topK, topP, greedy (0/1).
  SamplingInputs sampling_inputs(int64_t rows) const {
    const auto& lo = int_array("seedsLo", rows);
    const auto& hi = int_array("seedsHi", rows);
    const auto& steps = int_array("counters", rows);
    SamplingInputs in;
    for (int64_t r = 0; r < rows; ++r) {
      in.seeds.push_back((uint64_t(uint32_t(hi[size_t(r)])) << 32) | uint64_t(uint32_t(lo[size_t(r)])));
      in.counters.push_back(uint64_t(uint32_t(steps[size_t(r)])));
    }
    in.options.greedy = num("greedy", 0) != 0;
    in.options.temperature = num("temperature", 1.0);
    in.options.top_k = int64_t(num("topK", 0));
    in.options.top_p = num("topP", 1.0);
    return in;
  }

  AttentionArgs attention_args(int64_t q_rows_count) {
    AttentionArgs a;
    a.heads = integer("heads");
    a.kv_heads = integer("kvHeads");
    a.head_dim = integer("headDim");
    a.scale = float(num("scale", 1.0 / std::sqrt(double(std::max<int64_t>(a.head_dim, 1)))));
    const int64_t slots = integer("slots");
    const int64_t kv_width = a.kv_heads * a.head_dim;
    a.q = in("q", q_rows_count * a.heads * a.head_dim);
    a.k_pool = in("k_pool", slots * kv_width);
    a.v_pool = in("v_pool", slots * kv_width);
    for (const AttentionSequence& s : sequences) {
      if (s.q_offset + s.q_len > q_rows_count) fail("a sequence's queries run past the rows of q");
      for (int64_t j = 0; j < s.k_len; ++j)
        if (s.key_slots[j] < 0 || s.key_slots[j] >= slots) fail("a key slot is outside the pools");
    }
    a.sequences = sequences;
    return a;
  }

  void run_bf16_attention(const char* kernel) {
    if (backend->name() != "cuda") fail("runs on the CUDA backend only (device \"cuda\")");
    cuda::Bf16AttentionCheck check;
    check.kernel = kernel;
    check.rows = integer("rows");
    check.slots = integer("slots");
    check.heads = integer("heads");
    check.kv_heads = integer("kvHeads");
    check.head_dim = integer("headDim");
    check.scale = float(num("scale", 1.0 / std::sqrt(double(std::max<int64_t>(check.head_dim, 1)))));
    check.splits = int(num("splits", 0));
    const int64_t width = check.rows * check.heads * check.head_dim, kv = check.slots * check.kv_heads * check.head_dim;
    check.q = host("q", width);
    check.k_pool = host("k_pool", kv);
    check.v_pool = host("v_pool", kv);
    check.sequences = sequences;
    if (check.kernel == "backward") {
      check.dout = host("dout", width);
      if (given("dk_pool") || wanted.count("dk_pool")) check.dk_pool = given("dk_pool") ? host("dk_pool", kv) : std::vector<float>(size_t(kv), 0.0f);
      if (given("dv_pool") || wanted.count("dv_pool")) check.dv_pool = given("dv_pool") ? host("dv_pool", kv) : std::vector<float>(size_t(kv), 0.0f);
    }
    cuda::Bf16AttentionResult r = cuda::run_bf16_attention_check(check);
    for (auto [name, values] : {std::pair{"out", &r.out}, std::pair{"dq", &r.dq}, std::pair{"dk_pool", &r.dk_pool},
                                std::pair{"dv_pool", &r.dv_pool}})
      if (!values->empty()) results[name] = std::move(*values);
  }
};

// Each op: read the call's inputs, run the op, mark the outputs.
using OpFn = void (*)(OpCall& c);

// The AdamW settings of an optimiser op's scalars.
train::AdamWOptions adamw_options(const OpCall& c) {
  train::AdamWOptions o;
  o.lr = c.num("lr");
  o.beta1 = c.num("beta1", 0.9);
  o.beta2 = c.num("beta2", 0.999);
  o.eps = c.num("eps", 1e-8);
  o.weight_decay = c.num("weightDecay", 0.01);
  return o;
}

const std::map<std::string, OpFn>& op_table() {
  static const std::map<std::string, OpFn> table = {
      {"linear",
       [](OpCall& c) {
         const int64_t m = c.integer("m"), k = c.integer("k"), n = c.integer("n");
         const ConstDevicePtr x = c.in("x", m * k);
         const ConstDevicePtr w = c.in("w", n * k);
         const ConstDevicePtr bias = c.optional_in("bias", n);
         c.backend->linear(x, w, bias, c.out("y", m * n), m, k, n);
       }},
      {"linear_backward",
       [](OpCall& c) {
         const int64_t m = c.integer("m"), k = c.integer("k"), n = c.integer("n");
         const ConstDevicePtr x = c.in("x", m * k);
         const ConstDevicePtr w = c.in("w", n * k);
         const ConstDevicePtr dy = c.in("dy", m * n);
         c.backend->linear_backward(x, w, dy, c.optional_out("dx", m * k), c.optional_out("dw", n * k, true),
                                    c.optional_out("db", n, true), m, k, n);
       }},
      {"rmsnorm",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), dim = c.integer("dim");
         const ConstDevicePtr x = c.in("x", rows * dim);
         const ConstDevicePtr w = c.in("w", dim);
         c.backend->rmsnorm(x, w, c.out("y", rows * dim), rows, dim, float(c.num("eps", 1e-6)));
       }},
      {"rmsnorm_backward",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), dim = c.integer("dim");
         const ConstDevicePtr x = c.in("x", rows * dim);
         const ConstDevicePtr w = c.in("w", dim);
         const ConstDevicePtr dy = c.in("dy", rows * dim);
         c.backend->rmsnorm_backward(x, w, dy, c.optional_out("dx", rows * dim), c.optional_out("dw", dim, true), rows, dim,
                                     float(c.num("eps", 1e-6)));
       }},
      {"rotary",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), heads = c.integer("heads"), hd = c.integer("headDim");
         const ConstDevicePtr cos = c.in("cos", rows * hd, true);
         const ConstDevicePtr sin = c.in("sin", rows * hd, true);
         c.backend->rotary(c.inout("x", rows * heads * hd), cos, sin, rows, heads, hd);
       }},
      {"rotary_backward",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), heads = c.integer("heads"), hd = c.integer("headDim");
         const ConstDevicePtr cos = c.in("cos", rows * hd, true);
         const ConstDevicePtr sin = c.in("sin", rows * hd, true);
         c.backend->rotary_backward(c.inout("dx", rows * heads * hd), cos, sin, rows, heads, hd);
       }},
      {"swiglu",
       [](OpCall& c) {
         const int64_t n = c.size_of("gate");
         const ConstDevicePtr gate = c.in("gate", n);
         const ConstDevicePtr up = c.in("up", n);
         c.backend->swiglu(gate, up, c.out("out", n), n);
       }},
      {"swiglu_backward",
       [](OpCall& c) {
         const int64_t n = c.size_of("gate");
         const ConstDevicePtr gate = c.in("gate", n);
         const ConstDevicePtr up = c.in("up", n);
         const ConstDevicePtr dout = c.in("dout", n);
         c.backend->swiglu_backward(gate, up, dout, c.out("dgate", n), c.out("dup", n), n);
       }},
      {"gelu",
       [](OpCall& c) {
         const int64_t n = c.size_of("x");
         c.backend->gelu(c.inout("x", n), n);
       }},
      {"gelu_backward",
       [](OpCall& c) {
         const int64_t n = c.size_of("x_in");
         const ConstDevicePtr x = c.in("x_in", n);
         c.backend->gelu_backward(x, c.inout("dout", n), n);
       }},
      {"add",
       [](OpCall& c) {
         const int64_t n = c.size_of("x");
         const ConstDevicePtr y = c.in("y", n);
         c.backend->add(c.inout("x", n), y, n);
       }},
      {"fill",
       [](OpCall& c) {
         const int64_t n = c.integer("n");
         c.backend->fill(c.out("x", n), float(c.num("value")), n);
       }},
      {"embedding",
       [](OpCall& c) {
         const int64_t dim = c.integer("dim");
         const int64_t vocab = c.size_of("table") / std::max<int64_t>(dim, 1);
         const auto& ids = c.indices("ids", vocab, "an id is outside the table");
         const int64_t n = int64_t(ids.size());
         const ConstDevicePtr table = c.in("table", vocab * dim);
         c.backend->embedding(ids.data(), n, table, c.out("out", n * dim), dim);
       }},
      {"embedding_backward",
       [](OpCall& c) {
         const int64_t dim = c.integer("dim");
         const int64_t vocab = c.size_of("dtable") / std::max<int64_t>(dim, 1);
         const auto& ids = c.indices("ids", vocab, "an id is outside the table");
         const int64_t n = int64_t(ids.size());
         const ConstDevicePtr dout = c.in("dout", n * dim);
         c.backend->embedding_backward(ids.data(), n, dout, c.inout("dtable", vocab * dim, true), dim);
       }},
      {"gather_rows",
       [](OpCall& c) {
         const int64_t dim = c.integer("dim");
         const int64_t src_rows = c.size_of("src") / std::max<int64_t>(dim, 1);
         const auto& rows = c.indices("rows", src_rows, "a row is outside src");
         const int64_t n = int64_t(rows.size());
         const ConstDevicePtr src = c.in("src", src_rows * dim);
         c.backend->gather_rows(src, rows.data(), n, c.out("out", n * dim), dim);
       }},
      {"scatter_rows",
       [](OpCall& c) {
         const int64_t dim = c.integer("dim");
         const int64_t dst_rows = c.size_of("dst") / std::max<int64_t>(dim, 1);
         const auto& rows = c.indices("rows", dst_rows, "a row is outside dst");
         const int64_t n = int64_t(rows.size());
         const ConstDevicePtr src = c.in("src", n * dim);
         c.backend->scatter_rows(src, rows.data(), n, c.inout("dst", dst_rows * dim), dim);
       }},
      {"gather_rows_at",
       [](OpCall& c) {
         const int64_t dim = c.integer("dim");
         const int64_t src_rows = c.size_of("src") / std::max<int64_t>(dim, 1);
         const int64_t n = int64_t(c.int_array("rows").size());
         const ConstDevicePtr rows = c.indices_in("rows", src_rows, "a row is outside src");
         const ConstDevicePtr src = c.in("src", src_rows * dim);
         c.backend->gather_rows_at(src, rows, n, c.out("out", n * dim), dim);
       }},
      {"scatter_rows_at",
       [](OpCall& c) {
         const int64_t dim = c.integer("dim");
         const int64_t dst_rows = c.size_of("dst") / std::max<int64_t>(dim, 1);
         const int64_t n = int64_t(c.int_array("rows").size());
         const ConstDevicePtr rows = c.indices_in("rows", dst_rows, "a row is outside dst");
         const ConstDevicePtr src = c.in("src", n * dim);
         c.backend->scatter_rows_at(src, rows, n, c.inout("dst", dst_rows * dim), dim);
       }},
      {"paged_decode_attention",
       // tensors q [rows, heads, headDim], k_pool, v_pool [slots, kvHeads,
       // headDim]; ints table [rows, stride] (slots) and lengths [rows];
       // scalars rows, stride, slots, heads, kvHeads, headDim, scale?.
       [](OpCall& c) {
         PagedDecodeArgs a;
         a.rows = c.integer("rows");
         a.table_stride = c.integer("stride");
         a.heads = c.integer("heads");
         a.kv_heads = c.integer("kvHeads");
         a.head_dim = c.integer("headDim");
         a.scale = float(c.num("scale", 1.0 / std::sqrt(double(std::max<int64_t>(a.head_dim, 1)))));
         const int64_t slots = c.integer("slots");
         for (int32_t n : c.int_array("lengths", a.rows))
           if (n < 1 || n > a.table_stride) c.fail("a key count is outside [1, stride]");
         a.slot_table = c.indices_in("table", slots, "a slot is outside the pools", a.rows * a.table_stride);
         a.key_lengths = c.indices_in("lengths", a.table_stride + 1, "a key count is above stride", a.rows);
         a.q = c.in("q", a.rows * a.heads * a.head_dim);
         a.k_pool = c.in("k_pool", slots * a.kv_heads * a.head_dim);
         a.v_pool = c.in("v_pool", slots * a.kv_heads * a.head_dim);
         a.out = c.out("out", a.rows * a.heads * a.head_dim);
         c.backend->paged_decode_attention(a);
       }},
      {"copy_columns",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), src_cols = c.integer("srcCols"), offset = c.integer("colOffset"),
                       cols = c.integer("cols");
         if (offset + cols > src_cols) c.fail("colOffset + cols exceeds srcCols");
         const ConstDevicePtr src = c.in("src", rows * src_cols);
         c.backend->copy_columns(src, rows, src_cols, offset, cols, c.out("dst", rows * cols));
       }},
      {"attention",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows");
         AttentionArgs a = c.attention_args(rows);
         a.out = c.out("out", rows * a.heads * a.head_dim);
         c.backend->attention(a);
       }},
      {"attention_backward",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), slots = c.integer("slots");
         AttentionArgs a = c.attention_args(rows);
         const int64_t width = rows * a.heads * a.head_dim, kv = slots * a.kv_heads * a.head_dim;
         const ConstDevicePtr dout = c.in("dout", width);
         c.backend->attention_backward(a, dout, c.out("dq", width), c.optional_out("dk_pool", kv),
                                       c.optional_out("dv_pool", kv));
       }},
      // Test-only: the CUDA backend's bf16 tensor-core attention kernels
      // (attention_bf16_check.h) on the same inputs as "attention"; device "cuda".
      {"flash_attention_bf16", [](OpCall& c) { c.run_bf16_attention("forward"); }},
      {"flash_attention_backward_bf16", [](OpCall& c) { c.run_bf16_attention("backward"); }},
      {"decode_attention_bf16", [](OpCall& c) { c.run_bf16_attention("decode"); }},
      {"token_logprobs",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), dim = c.integer("dim"), vocab = c.integer("vocab");
         const auto& targets = c.indices("targets", vocab, "a target is outside the vocabulary", rows);
         const ConstDevicePtr hidden = c.in("hidden", rows * dim);
         const ConstDevicePtr head = c.in("head", vocab * dim);
         float* entropy = c.wanted.count("entropy") ? c.host_out("entropy", rows).data() : nullptr;
         c.backend->token_logprobs(hidden, head, rows, dim, vocab, targets.data(), float(c.num("temperature", 1.0)),
                                   c.host_out("logp", rows).data(), entropy);
       }},
      {"token_logprobs_backward",
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), dim = c.integer("dim"), vocab = c.integer("vocab");
         const auto& targets = c.indices("targets", vocab, "a target is outside the vocabulary", rows);
         const ConstDevicePtr hidden = c.in("hidden", rows * dim);
         const ConstDevicePtr head = c.in("head", vocab * dim);
         const std::vector<float>& dlogp = c.host("dlogp", rows);  // host memory, as the interface says
         c.backend->token_logprobs_backward(hidden, head, rows, dim, vocab, targets.data(),
                                            float(c.num("temperature", 1.0)), dlogp.data(),
                                            c.out("dhidden", rows * dim), c.optional_out("dhead", vocab * dim, true));
       }},
      {"sample_tokens",
       // ints seedsLo, seedsHi (the 64-bit seed of each row, as two 32-bit
       // halves), counters; scalars rows, vocab, temperature, topK, topP,
       // greedy (0/1). Outputs tokens (as floats: ids below 2^24 are exact)
       // and logprobs.
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), vocab = c.integer("vocab");
         const SamplingInputs in = c.sampling_inputs(rows);
         ConstDevicePtr logits = c.in("logits", rows * vocab, true);
         std::vector<int32_t> tokens(static_cast<size_t>(rows));
         std::vector<float>& logprobs = c.host_out("logprobs", rows);
         c.backend->sample_tokens(logits, rows, vocab, in.options, in.seeds.data(), in.counters.data(), tokens.data(), logprobs.data());
         std::vector<float>& as_floats = c.host_out("tokens", rows);
         for (int64_t r = 0; r < rows; ++r) as_floats[size_t(r)] = float(tokens[size_t(r)]);
       }},
      {"sample_tokens_at",
       // sample_tokens with seeds, counters, tokens and log-probs in backend
       // arrays (what a captured decode step uses); the same inputs and outputs.
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), vocab = c.integer("vocab");
         const SamplingInputs in = c.sampling_inputs(rows);
         ConstDevicePtr logits = c.in("logits", rows * vocab, true);
         const DevicePtr seeds_at = c.u64_in(in.seeds), steps_at = c.u64_in(in.counters);
         c.arrays.emplace_back(*c.backend, rows, Storage::I32);
         const DevicePtr tokens_at = c.arrays.back().get();
         c.arrays.emplace_back(*c.backend, rows, Storage::F32);
         const DevicePtr logprobs_at = c.arrays.back().get();
         c.backend->sample_tokens_at(logits, rows, vocab, in.options, seeds_at, steps_at, tokens_at, logprobs_at);
         std::vector<int32_t> tokens(static_cast<size_t>(rows));
         c.backend->download_raw(tokens.data(), tokens_at, rows);
         c.backend->download(c.host_out("logprobs", rows).data(), logprobs_at, rows);
         std::vector<float>& as_floats = c.host_out("tokens", rows);
         for (int64_t r = 0; r < rows; ++r) as_floats[size_t(r)] = float(tokens[size_t(r)]);
       }},
      {"policy_loss",
       // The fused log-prob + policy loss: tensors hidden, head, oldLogp,
       // refLogp?, advantages, weights; ints targets; scalars rows, dim,
       // vocab, temperature, clipLow, clipHigh, dualClip, klCoef,
       // klEstimator (0 k1, 1 abs, 2 mse, 3 k3), sft (0/1). Outputs dhidden,
       // dhead (accumulates), logp, ratio, kl and totals (PolicyLossTotals'
       // ten fields in order); the scalar result is the loss.
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), dim = c.integer("dim"), vocab = c.integer("vocab");
         const auto& targets = c.indices("targets", vocab, "a target is outside the vocabulary", rows);
         ConstDevicePtr hidden = c.in("hidden", rows * dim);
         ConstDevicePtr head = c.in("head", vocab * dim);
         const std::vector<float>& weights = c.host("weights", rows);
         const std::vector<double> weights64(weights.begin(), weights.end());
         PolicyTokens tokens;
         tokens.targets = targets.data();
         tokens.old_logp = c.host("oldLogp", rows).data();
         tokens.ref_logp = c.given("refLogp") ? c.host("refLogp", rows).data() : nullptr;
         tokens.advantages = c.host("advantages", rows).data();
         tokens.weights = weights64.data();
         train::PolicyLossOptions loss;
         loss.clip_low = c.num("clipLow", 0.2);
         loss.clip_high = c.num("clipHigh", 0.3);
         loss.dual_clip = c.num("dualClip", 3.0);
         loss.kl_coef = c.num("klCoef", 0.0);
         const int estimator = int(c.num("klEstimator", 3));
         if (estimator < 0 || estimator > 3) c.fail("klEstimator must be 0 (k1), 1 (abs), 2 (mse) or 3 (k3)");
         loss.kl = train::KlEstimator(estimator);
         if (loss.kl_coef != 0.0 && tokens.ref_logp == nullptr) c.fail("a KL coefficient needs refLogp");
         const train::PolicyTermOptions terms = train::policy_term_options(loss, c.num("sft", 0) != 0);
         PolicyTokenOutputs outputs{c.host_out("logp", rows).data(), c.host_out("ratio", rows).data(),
                                    c.host_out("kl", rows).data()};
         DevicePtr dhidden = c.out("dhidden", rows * dim);
         DevicePtr dhead = c.optional_out("dhead", vocab * dim, true);
         const PolicyLossTotals t = c.backend->policy_loss(hidden, head, rows, dim, vocab,
                                                           float(c.num("temperature", 1.0)), tokens, terms, dhidden,
                                                           dhead, &outputs);
         const double fields[] = {t.loss,    t.pg_loss, t.kl_loss, t.clip_high, t.clip_low,
                                  t.clip_dual, t.ppo_kl, t.kl,      t.entropy,   t.nonfinite};
         std::vector<float>& totals = c.host_out("totals", 10);
         for (int i = 0; i < 10; ++i) totals[size_t(i)] = float(fields[i]);
         c.scalar_result = t.loss;
         c.has_scalar_result = true;
       }},
      {"graph_replay",
       // A decoder MLP block and the LM head (rmsnorm, three products,
       // SwiGLU, residual add, rmsnorm, logits) on device-resident arrays,
       // run directly and captured once into an OpGraph, then replayed; the
       // input is then replaced and both run again. Tensors x, x2 [rows, dim],
       // norm [dim], gate and up [inter, dim], down [dim, inter], head
       // [vocab, dim]; scalars rows, dim, inter, vocab. Outputs (logits):
       // direct, afterCapture (what capture left: it must not run the ops),
       // replayed, direct2, replayed2.
       [](OpCall& c) {
         const int64_t rows = c.integer("rows"), dim = c.integer("dim"), inter = c.integer("inter"),
                       vocab = c.integer("vocab");
         Backend& b = *c.backend;
         DevicePtr x = c.in("x", rows * dim);
         const std::vector<float>& x2 = c.host("x2", rows * dim);
         ConstDevicePtr norm = c.in("norm", dim);
         ConstDevicePtr gate = c.in("gate", inter * dim);
         ConstDevicePtr up = c.in("up", inter * dim);
         ConstDevicePtr down = c.in("down", dim * inter);
         ConstDevicePtr head = c.in("head", vocab * dim);
         DeviceArray h(b, rows * dim), g(b, rows * inter), u(b, rows * inter), s(b, rows * inter), y(b, rows * dim),
             logits(b, rows * vocab);
         auto step = [&] {
           b.rmsnorm(x, norm, h.get(), rows, dim, 1e-6f);
           b.linear(h.get(), gate, nullptr, g.get(), rows, dim, inter);
           b.linear(h.get(), up, nullptr, u.get(), rows, dim, inter);
           b.swiglu(g.get(), u.get(), s.get(), rows * inter);
           b.linear(s.get(), down, nullptr, y.get(), rows, inter, dim);
           b.add(y.get(), x, rows * dim);
           b.rmsnorm(y.get(), norm, h.get(), rows, dim, 1e-6f);
           b.linear(h.get(), head, nullptr, logits.get(), rows, dim, vocab);
         };
         auto take = [&](const char* name) {
           b.download(c.host_out(name, rows * vocab).data(), logits.get(), rows * vocab);
           b.fill(logits.get(), std::numeric_limits<float>::quiet_NaN(), rows * vocab);
         };
         step();
         take("direct");
         std::unique_ptr<OpGraph> graph = b.capture(step);
         take("afterCapture");
         graph->replay();
         take("replayed");
         b.upload(x, x2.data(), rows * dim);
         step();
         take("direct2");
         graph->replay();
         take("replayed2");
       }},
      {"graph_with_host_ids",
       // Captures an embedding lookup, whose ids are host memory: the CUDA
       // backend must refuse (a graph would replay the capture-time ids).
       [](OpCall& c) {
         const int64_t dim = c.integer("dim");
         const int64_t vocab = c.size_of("table") / std::max<int64_t>(dim, 1);
         const auto& ids = c.indices("ids", vocab, "an id is outside the table");
         ConstDevicePtr table = c.in("table", vocab * dim);
         DevicePtr out = c.out("out", int64_t(ids.size()) * dim);
         std::unique_ptr<OpGraph> graph =
             c.backend->capture([&] { c.backend->embedding(ids.data(), int64_t(ids.size()), table, out, dim); });
         graph->replay();
       }},
      {"adamw",
       [](OpCall& c) {
         const int64_t n = c.size_of("param");
         const train::AdamWOptions o = adamw_options(c);
         const ConstDevicePtr grad = c.in("grad", n, true);
         const DevicePtr param = c.inout("param", n);
         const DevicePtr m = c.inout("m", n, true);
         const DevicePtr v = c.inout("v", n, true);
         c.backend->adamw(param, grad, m, v, n, std::max<int64_t>(1, c.integer("step")), float(c.num("gradScale", 1.0)),
                          o);
       }},
      {"adamw_bf16",
       [](OpCall& c) {
         const int64_t n = c.size_of("param");
         const train::AdamWOptions o = adamw_options(c);
         const ConstDevicePtr grad = c.in("grad", n, true);
         // Weights, moments and compensation in the storage type (bf16 with dtype bf16 on CUDA).
         const DevicePtr param = c.inout("param", n);
         const DevicePtr m = c.inout("m", n);
         const DevicePtr v = c.inout("v", n);
         // Without a compensation tensor: plain bf16 rounding of each update.
         const DevicePtr compensation = c.given("compensation") ? c.inout("compensation", n) : DevicePtr();
         c.backend->adamw_bf16(param, grad, m, v, compensation, n, std::max<int64_t>(1, c.integer("step")),
                               float(c.num("gradScale", 1.0)), o);
       }},
      // The offloaded step: m, v (and the compensation of adamw_bf16, when
      // `bf16` is 1) in the backend's host memory (pinned on CUDA), fp32 for
      // adamw and in the storage type for adamw_bf16.
      {"optimizer_step_host_state",
       [](OpCall& c) {
         const int64_t n = c.size_of("param");
         const bool bf16 = c.num("bf16", 0.0) != 0.0;
         const train::AdamWOptions o = adamw_options(c);
         const ConstDevicePtr grad = c.in("grad", n, true);
         const DevicePtr param = c.inout("param", n);
         const Storage state_type = bf16 ? c.backend->storage() : Storage::F32;
         struct HostState {
           HostState(Backend* b, int64_t count, Storage type) : backend(b), ptr(b->alloc_host(count, type)) {}
           HostState(const HostState&) = delete;
           HostState& operator=(const HostState&) = delete;
           ~HostState() { backend->free_host(ptr); }
           Backend* backend;
           DevicePtr ptr;
         };
         std::vector<const char*> names = {"m", "v"};
         if (bf16) names.push_back("compensation");
         std::deque<HostState> state;
         for (const char* name : names) {
           const std::vector<float>& initial = c.host(name, n);
           state.emplace_back(c.backend, n, state_type);
           train::floats_to_host_state(initial.data(), n, state.back().ptr);
         }
         c.backend->optimizer_step_host_state(
             bf16 ? train::OptimizerStrategy::AdamWBf16 : train::OptimizerStrategy::AdamW, param, grad, state[0].ptr,
             state[1].ptr, bf16 ? state[2].ptr : DevicePtr(), n, std::max<int64_t>(1, c.integer("step")),
             float(c.num("gradScale", 1.0)), o);
         for (size_t i = 0; i < names.size(); ++i)
           train::host_state_to_floats(state[i].ptr, n, c.host_out(names[i], n).data());
       }},
      {"sum_squares",
       [](OpCall& c) {
         const int64_t n = c.size_of("x");
         c.scalar_result = c.backend->sum_squares(c.in("x", n), n);
         c.has_scalar_result = true;
       }},
  };
  return table;
}

// runOp({op, device?, tensors?, ints?, scalars?, outputs?, sequences?})
//   -> Promise<{outputs: Record<string, Float32Array>, scalar?: number, backend: string, dtype: string}>
Napi::Value RunOp(const Napi::CallbackInfo& info) {
  const char* fn = "runOp";
  Napi::Object o = options_object(info, fn);
  auto call = std::make_shared<OpCall>();
  if (!o.Get("op").IsString()) throw Napi::TypeError::New(info.Env(), "runOp: `op` must be a string");
  call->op = o.Get("op").As<Napi::String>().Utf8Value();
  if (op_table().count(call->op) == 0) {
    std::string names;
    for (const auto& [name, _] : op_table()) names += (names.empty() ? "" : ", ") + name;
    throw Napi::RangeError::New(info.Env(), "runOp: unknown op \"" + call->op + "\" (ops: " + names + ")");
  }
  const std::string device = o.Get("device").IsString() ? o.Get("device").As<Napi::String>().Utf8Value() : "cpu";
  if (device != "cpu" && device != "cuda")
    throw Napi::TypeError::New(info.Env(), "runOp: unknown device \"" + device + "\" (use \"cpu\" or \"cuda\")");
  // dtype: the CUDA backend's storage type ("bf16" or "fp32"); unset, the
  // backend's default (SPATIALTHINKER_CUDA_DTYPE, else bf16). The CPU backend is fp32 only.
  const std::string dtype = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "";
  if (!dtype.empty() && dtype != "bf16" && dtype != "fp32")
    throw Napi::TypeError::New(info.Env(), "runOp: unknown dtype \"" + dtype + "\" (use \"bf16\" or \"fp32\")");
  if (device == "cpu" && dtype == "bf16")
    throw Napi::TypeError::New(info.Env(), "runOp: the CPU backend is fp32 only (dtype \"bf16\" needs device \"cuda\")");
  auto fields = [&](const char* name) {
    const Napi::Value v = o.Get(name);
    if (v.IsUndefined()) return Napi::Object::New(info.Env());
    if (!v.IsObject()) throw Napi::TypeError::New(info.Env(), std::string("runOp: `") + name + "` must be an object");
    return v.As<Napi::Object>();
  };
  const Napi::Object tensors = fields("tensors"), ints = fields("ints"), scalars = fields("scalars");
  for (const auto& e : tensors) {
    const std::string name = e.first.As<Napi::String>().Utf8Value();
    call->tensors[name] = copy_typed_array<float>(tensors, name.c_str(), fn);
  }
  for (const auto& e : ints) {
    const std::string name = e.first.As<Napi::String>().Utf8Value();
    call->ints[name] = copy_typed_array<int32_t>(ints, name.c_str(), fn);
  }
  for (const auto& e : scalars) {
    const std::string name = e.first.As<Napi::String>().Utf8Value();
    call->scalars[name] = number_field(scalars, name.c_str(), fn);
  }
  if (o.Get("outputs").IsArray()) {
    Napi::Array a = o.Get("outputs").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) call->wanted.insert(a.Get(i).ToString().Utf8Value());
  }
  if (o.Get("sequences").IsArray()) {
    Napi::Array a = o.Get("sequences").As<Napi::Array>();
    call->slot_lists.reserve(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) {
      if (!a.Get(i).IsObject()) throw Napi::TypeError::New(info.Env(), "runOp: `sequences` holds objects");
      Napi::Object s = a.Get(i).As<Napi::Object>();
      call->slot_lists.push_back(copy_typed_array<int32_t>(s, "keySlots", fn));
      AttentionSequence seq;
      seq.q_offset = integer_field(s, "qOffset", fn);
      seq.q_len = integer_field(s, "qLen", fn);
      seq.k_len = int64_t(call->slot_lists.back().size());
      seq.key_slots = call->slot_lists.back().data();
      seq.causal = s.Get("causal").IsUndefined() ? true : s.Get("causal").ToBoolean().Value();
      if (seq.q_offset < 0 || seq.q_len < 0)
        throw Napi::RangeError::New(info.Env(), "runOp: a sequence has a negative qOffset or qLen");
      call->sequences.push_back(seq);
    }
  }
  auto backend_name = std::make_shared<std::string>();
  auto storage = std::make_shared<std::string>();
  return PromiseWorker::Start(
      info.Env(),
      [call, device, dtype, backend_name, storage]() -> std::string {
        std::unique_ptr<Backend> backend =
            device == "cpu"  ? make_cpu_backend()
            : dtype.empty() ? make_cuda_backend()
                            : make_cuda_backend(dtype == "bf16" ? Storage::BF16 : Storage::F32);
        *backend_name = backend->name();
        *storage = storage_name(backend->storage());
        call->backend = backend.get();
        // The call's arrays go before the backend, on every way out.
        struct Release {
          OpCall& c;
          ~Release() {
            c.outputs.clear();
            c.arrays.clear();
            c.backend = nullptr;
          }
        } release{*call};
        op_table().at(call->op)(*call);
        for (auto& [name, array] : call->outputs) {
          std::vector<float>& host = call->results[name];
          host.resize(size_t(array->size()));
          backend->download(host.data(), array->get(), array->size());
        }
        return "";
      },
      [call, backend_name, storage](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        Napi::Object outputs = Napi::Object::New(env);
        for (const auto& [name, values] : call->results) outputs.Set(name, to_typed_array(env, values));
        r.Set("outputs", outputs);
        if (call->has_scalar_result) r.Set("scalar", call->scalar_result);
        r.Set("backend", *backend_name);
        r.Set("dtype", *storage);
        return r;
      });
}

// timeAttention({device, sequences, seqLen, heads, kvHeads, headDim, causal, repeat})
//   -> Promise<{seconds, bestSeconds, backend}>: the backend's attention op
// on `sequences` packed sequences of seqLen queries over their own seqLen
// keys (prefill / training shape), timed over `repeat` calls after one
// warm-up, each call waited for (a one-float download). Inputs are constant
// (attention's cost does not depend on the values).
Napi::Value TimeAttention(const Napi::CallbackInfo& info) {
  const char* fn = "timeAttention";
  Napi::Object o = options_object(info, fn);
  struct Job {
    std::string device, backend;
    int64_t sequences, seq_len, heads, kv_heads, head_dim, repeat;
    bool causal;
    double seconds = 0, best = 0;
  };
  auto job = std::make_shared<Job>();
  job->device = o.Get("device").IsString() ? o.Get("device").As<Napi::String>().Utf8Value() : "cuda";
  job->sequences = integer_field(o, "sequences", fn);
  job->seq_len = integer_field(o, "seqLen", fn);
  job->heads = integer_field(o, "heads", fn);
  job->kv_heads = integer_field(o, "kvHeads", fn);
  job->head_dim = integer_field(o, "headDim", fn);
  job->repeat = integer_field(o, "repeat", fn);
  job->causal = boolean_field(o, "causal", fn);
  if (job->device != "cpu" && job->device != "cuda")
    throw Napi::TypeError::New(info.Env(), "timeAttention: `device` must be \"cpu\" or \"cuda\"");
  if (job->sequences < 1 || job->seq_len < 1 || job->heads < 1 || job->kv_heads < 1 || job->head_dim < 1 ||
      job->repeat < 1 || job->heads % job->kv_heads != 0)
    throw Napi::RangeError::New(info.Env(), "timeAttention: sizes and repeat must be positive, heads a multiple of kvHeads");
  return PromiseWorker::Start(
      info.Env(),
      [job]() -> std::string {
        std::unique_ptr<Backend> backend = job->device == "cuda" ? make_cuda_backend() : make_cpu_backend();
        job->backend = backend->name();
        const int64_t rows = job->sequences * job->seq_len;
        DeviceArray q(*backend, rows * job->heads * job->head_dim), k(*backend, rows * job->kv_heads * job->head_dim),
            v(*backend, rows * job->kv_heads * job->head_dim), out(*backend, rows * job->heads * job->head_dim);
        backend->fill(q.get(), 0.01f, q.size());
        backend->fill(k.get(), 0.02f, k.size());
        backend->fill(v.get(), 0.5f, v.size());
        std::vector<int32_t> slots(static_cast<size_t>(rows));
        for (int64_t i = 0; i < rows; ++i) slots[size_t(i)] = int32_t(i);
        AttentionArgs a;
        a.q = q.get();
        a.k_pool = k.get();
        a.v_pool = v.get();
        a.out = out.get();
        a.heads = job->heads;
        a.kv_heads = job->kv_heads;
        a.head_dim = job->head_dim;
        a.scale = float(1.0 / std::sqrt(double(job->head_dim)));
        for (int64_t s = 0; s < job->sequences; ++s)
          a.sequences.push_back({s * job->seq_len, job->seq_len, slots.data() + s * job->seq_len, job->seq_len, job->causal});
        float probe = 0;
        backend->attention(a);  // warm-up
        backend->download(&probe, out.get(), 1);
        double total = 0, best = std::numeric_limits<double>::infinity();
        for (int64_t r = 0; r < job->repeat; ++r) {
          const auto start = std::chrono::steady_clock::now();
          backend->attention(a);
          backend->download(&probe, out.get(), 1);
          const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          total += seconds;
          best = std::min(best, seconds);
        }
        job->seconds = total / double(job->repeat);
        job->best = best;
        return "";
      },
      [job](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("seconds", job->seconds);
        r.Set("bestSeconds", job->best);
        r.Set("backend", job->backend);
        return r;
      });
}

void register_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("linear", Napi::Function::New(env, Linear, "linear"));
  exports.Set("timeAttention", Napi::Function::New(env, TimeAttention, "timeAttention"));
  exports.Set("runOp", Napi::Function::New(env, RunOp, "runOp"));
}

const ModuleRegistration registration(register_ops);

}  // namespace
}  // namespace st::addon
