// N-API: the Qwen2.5-VL model object. Loading, vision, forward, log-probs and
// generation run on worker threads; weights and activations stay native, only
// ids, pixel patches, log-probs and (for checks) logits cross over.
#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <utility>

#include "addon/exports.h"
#include "addon/process_group.h"
#include "addon/promise_worker.h"
#include "addon/typed_arrays.h"
#include "engine/safetensors.h"
#include "model/model.h"
#include "train/policy_loss.h"

namespace st::addon {
namespace {

// What one generate or logprobs call can be told while it waits or runs:
// abort (its AbortSignal fired) or end one of its completions (a stop
// string). Each call has its own, so an abort reaches only its call.
struct CallControl {
  std::atomic<bool> cancel{false};
  std::mutex stop_mutex;
  std::set<std::pair<int64_t, int64_t>> stop;  // (prompt, sample) pairs to end
};

// A model shared by its JS wrapper and the calls in flight. Calls run one at
// a time (they share the engine's threads anyway), in the order they were
// made: `calls` holds the waiting ones on the JavaScript thread.
struct ModelHandle {
  std::unique_ptr<model::Qwen25VL> model;
  // Set at load; read by info() without waiting for the running call.
  double parameters = 0;
  std::string backend;
  // Main thread only.
  SerialQueue calls;
  bool disposed = false;
  std::map<int64_t, std::shared_ptr<CallControl>> controls;  // by the caller's call id
  // Never contended while every call goes through `calls`; it keeps the
  // model safe from a call that does not.
  std::mutex busy;
};

// Runs `body` on the model, turning exceptions into messages.
template <class F>
std::string guarded(const std::shared_ptr<ModelHandle>& handle, F&& body) {
  std::lock_guard<std::mutex> lock(handle->busy);
  if (!handle->model) return "the model was disposed";
  try {
    body(*handle->model);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

int64_t integer(const Napi::Object& o, const char* field, const char* fn) { return integer_field(o, field, fn); }

std::vector<model::GridThw> grids_of(const Napi::Object& o, const char* fn) {
  std::vector<model::GridThw> grids;
  if (o.Get("grids").IsUndefined()) return grids;
  const std::vector<int32_t> flat = copy_typed_array<int32_t>(o, "grids", fn);
  if (flat.size() % 3 != 0) throw Napi::RangeError::New(o.Env(), std::string(fn) + ": `grids` holds [t, h, w] triples");
  for (size_t i = 0; i < flat.size(); i += 3) grids.push_back({flat[i], flat[i + 1], flat[i + 2]});
  return grids;
}

template <class T>
Napi::Array to_array_of(Napi::Env env, const std::vector<std::vector<T>>& rows) {
  Napi::Array out = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out.Set(uint32_t(i), to_typed_array(env, rows[i]));
  return out;
}

std::vector<float> optional_floats(const Napi::Object& o, const char* field, const char* fn) {
  if (o.Get(field).IsUndefined()) return {};
  const Napi::Value v = o.Get(field);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(o.Env(), std::string(fn) + ": `" + field + "` must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int32_t> int32s(const Napi::Object& o, const char* field, const char* fn) {
  return copy_typed_array<int32_t>(o, field, fn);
}

std::vector<model::Prompt> prompts_of(const Napi::Object& options, const char* fn) {
  Napi::Value v = options.Get("prompts");
  if (!v.IsArray()) throw Napi::TypeError::New(options.Env(), std::string(fn) + ": `prompts` must be an array");
  Napi::Array array = v.As<Napi::Array>();
  std::vector<model::Prompt> prompts;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    if (!array.Get(i).IsObject()) throw Napi::TypeError::New(options.Env(), std::string(fn) + ": each prompt is an object");
    Napi::Object p = array.Get(i).As<Napi::Object>();
    model::Prompt prompt;
    prompt.ids = int32s(p, "ids", fn);
    prompt.pixels = optional_floats(p, "pixels", fn);
    prompt.grids = grids_of(p, fn);
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

// The optimiser strategy fields of an optimizerStep or restoreOptimizerState
// call: `strategy` ("adamw" when absent) and `offloadOptimizer` (false).
train::OptimizerConfig optimizer_config_of(const Napi::Object& o, const char* fn) {
  train::OptimizerConfig config;
  if (!o.Get("strategy").IsUndefined()) {
    try {
      config.strategy = train::parse_optimizer_strategy(string_field(o, "strategy", fn));
    } catch (const std::invalid_argument& e) {
      throw Napi::TypeError::New(o.Env(), std::string(fn) + ": " + e.what());
    }
  }
  if (!o.Get("offloadOptimizer").IsUndefined()) config.offload = boolean_field(o, "offloadOptimizer", fn);
  return config;
}

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("info", &NativeModel::Info), InstanceMethod("vision", &NativeModel::Vision),
                        InstanceMethod("forward", &NativeModel::Forward),
                        InstanceMethod("logprobs", &NativeModel::Logprobs),
                        InstanceMethod("generate", &NativeModel::Generate),
                        InstanceMethod("cancel", &NativeModel::Cancel),
                        InstanceMethod("stopSequence", &NativeModel::StopSequence),
                        InstanceMethod("trainGradients", &NativeModel::TrainGradients),
                        InstanceMethod("zeroGradients", &NativeModel::ZeroGradients),
                        InstanceMethod("optimizerStep", &NativeModel::OptimizerStep),
                        InstanceMethod("parameters", &NativeModel::Parameters),
                        InstanceMethod("gradients", &NativeModel::Gradients),
                        InstanceMethod("setParameters", &NativeModel::SetParameters),
                        InstanceMethod("exportOptimizerState", &NativeModel::ExportOptimizerState),
                        InstanceMethod("saveWeights", &NativeModel::SaveWeights),
                        InstanceMethod("saveOptimizerState", &NativeModel::SaveOptimizerState),
                        InstanceMethod("restoreOptimizerState", &NativeModel::RestoreOptimizerState),
                        InstanceMethod("setOptimizerState", &NativeModel::SetOptimizerState),
                        InstanceMethod("attachProcessGroup", &NativeModel::AttachProcessGroup),
                        InstanceMethod("reduceScalars", &NativeModel::ReduceScalars),
                        InstanceMethod("barrier", &NativeModel::Barrier),
                        InstanceMethod("saveOptimizerShard", &NativeModel::SaveOptimizerShard),
                        InstanceMethod("dispose", &NativeModel::Dispose)});
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    if (info.Length() < 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeModel is created by loadModel()");
    handle_ = *info[0].As<Napi::External<std::shared_ptr<ModelHandle>>>().Data();
  }

 private:
  // Every call on the model waits its turn in the model's queue.
  Napi::Promise Run(Napi::Env env, std::function<std::string()> work, std::function<Napi::Value(Napi::Env)> result,
                    std::function<void()> settled = nullptr) {
    return handle_->calls.Submit(env, std::move(work), std::move(result), std::move(settled));
  }

  // A generate or logprobs call's own control, under the id its caller chose
  // (`call`); dropped when the call settles.
  std::shared_ptr<CallControl> Register(int64_t id, const char* fn, Napi::Env env) {
    if (handle_->controls.count(id) != 0)
      throw Napi::TypeError::New(env, std::string(fn) + ": call id " + std::to_string(id) + " is already in flight");
    auto control = std::make_shared<CallControl>();
    handle_->controls.emplace(id, control);
    return control;
  }
  std::function<void()> Unregister(int64_t id) {
    auto handle = handle_;
    return [handle, id] { handle->controls.erase(id); };
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    if (handle_->disposed) return info.Env().Null();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("parameters", handle_->parameters);
    out.Set("backend", handle_->backend);
    return out;
  }

  Napi::Value Vision(const Napi::CallbackInfo& info) {
    const char* fn = "vision";
    Napi::Object o = options_object(info, fn);
    auto pixels = std::make_shared<std::vector<float>>(optional_floats(o, "pixels", fn));
    auto grids = std::make_shared<std::vector<model::GridThw>>(grids_of(o, fn));
    auto out = std::make_shared<std::vector<float>>();
    auto layout = std::make_shared<model::VisionLayout>();
    auto handle = handle_;
    return Run(info.Env(),
        [=]() {
          return guarded(handle, [&](model::Qwen25VL& m) {
            const model::VisionLayout expected = model::vision_layout(m.config().vision, *grids);
            if (int64_t(pixels->size()) != expected.patches * m.config().vision.patch_dim())
              throw std::invalid_argument("vision: `pixels` does not match `grids`");
            *out = m.vision(pixels->data(), *grids, layout.get());
          });
        },
        [=](Napi::Env env) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("embeds", to_typed_array(env, *out));
          r.Set("windowIndex", to_typed_array(env, layout->window_index));
          r.Set("cuWindowSeqlens", to_typed_array(env, layout->cu_window_seqlens));
          r.Set("cuSeqlens", to_typed_array(env, layout->cu_seqlens));
          r.Set("rotPosIds", to_typed_array(env, layout->rot_pos_ids));
          return r;
        });
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    const char* fn = "forward";
    Napi::Object o = options_object(info, fn);
    struct Input {
      std::vector<int32_t> ids, mask;
      int64_t rows, seq_len;
      std::vector<float> pixels;
      std::vector<model::GridThw> grids;
    };
    auto in = std::make_shared<Input>();
    in->ids = int32s(o, "ids", fn);
    in->mask = int32s(o, "mask", fn);
    in->rows = integer(o, "rows", fn);
    in->seq_len = integer(o, "seqLen", fn);
    in->pixels = optional_floats(o, "pixels", fn);
    in->grids = grids_of(o, fn);
    if (int64_t(in->ids.size()) != in->rows * in->seq_len || in->mask.size() != in->ids.size())
      throw Napi::RangeError::New(info.Env(), "forward: `ids` and `mask` must hold rows x seqLen entries");
    auto logits = std::make_shared<std::vector<float>>();
    auto rope = std::make_shared<model::RopeIndex>();
    auto handle = handle_;
    return Run(info.Env(),
        [=]() {
          return guarded(handle, [&](model::Qwen25VL& m) {
            if (!in->grids.empty() &&
                int64_t(in->pixels.size()) != model::vision_layout(m.config().vision, in->grids).patches *
                                                  m.config().vision.patch_dim())
              throw std::invalid_argument("forward: `pixels` does not match `grids`");
            *logits = m.forward(in->ids.data(), in->mask.data(), in->rows, in->seq_len, in->pixels.data(), in->grids,
                                rope.get());
          });
        },
        [=](Napi::Env env) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("logits", to_typed_array(env, *logits));
          std::vector<double> positions(rope->positions.begin(), rope->positions.end());
          std::vector<double> deltas(rope->deltas.begin(), rope->deltas.end());
          r.Set("positions", to_typed_array(env, positions));
          r.Set("deltas", to_typed_array(env, deltas));
          return r;
        });
  }

  Napi::Value Logprobs(const Napi::CallbackInfo& info) {
    const char* fn = "logprobs";
    Napi::Object o = options_object(info, fn);
    auto prompts = std::make_shared<std::vector<model::Prompt>>(prompts_of(o, fn));
    auto completions = std::make_shared<std::vector<std::vector<int32_t>>>();
    Napi::Value c = o.Get("completions");
    if (!c.IsArray()) throw Napi::TypeError::New(info.Env(), "logprobs: `completions` must be an array of Int32Array");
    Napi::Array ca = c.As<Napi::Array>();
    for (uint32_t i = 0; i < ca.Length(); ++i) {
      Napi::Object holder = Napi::Object::New(info.Env());
      holder.Set("completion", ca.Get(i));
      completions->push_back(int32s(holder, "completion", fn));
    }
    const double temperature = number_field(o, "temperature", fn);
    const int64_t id = integer_field(o, "call", fn);
    auto out = std::make_shared<std::vector<std::vector<float>>>();
    auto handle = handle_;
    auto control = Register(id, fn, info.Env());
    // The rows come from one forward pass: a call aborted before it starts
    // resolves with none, one aborted during it with all of them.
    return Run(
        info.Env(),
        [=]() {
          if (control->cancel) return std::string();
          return guarded(handle, [&](model::Qwen25VL& m) { *out = m.logprobs(*prompts, *completions, float(temperature)); });
        },
        [=](Napi::Env env) -> Napi::Value { return to_array_of(env, *out); }, Unregister(id));
  }

  Napi::Value Generate(const Napi::CallbackInfo& info) {
    const char* fn = "generate";
    Napi::Object o = options_object(info, fn);
    auto prompts = std::make_shared<std::vector<model::Prompt>>(prompts_of(o, fn));
    auto options = std::make_shared<model::GenerateOptions>();
    options->samples = integer_field(o, "samples", fn);
    options->max_new_tokens = integer_field(o, "maxNewTokens", fn);
    options->max_batch = integer_field(o, "maxBatch", fn);
    options->seed = uint64_t(integer_field(o, "seed", fn));
    options->first_prompt_index = integer_field(o, "firstPromptIndex", fn);
    options->prompt_index_stride = integer_field(o, "promptIndexStride", fn);
    if (options->first_prompt_index < 0 || options->prompt_index_stride < 1)
      throw Napi::RangeError::New(info.Env(), "generate: firstPromptIndex must be >= 0 and promptIndexStride >= 1");
    options->sampling.greedy = boolean_field(o, "greedy", fn);
    options->sampling.temperature = number_field(o, "temperature", fn);
    options->sampling.top_k = integer_field(o, "topK", fn);
    options->sampling.top_p = number_field(o, "topP", fn);
    options->keep_step_logits = boolean_field(o, "keepStepLogits", fn);
    if (!o.Get("stopTokenIds").IsUndefined()) options->stop_token_ids = int32s(o, "stopTokenIds", fn);
    if (options->samples < 1 || options->max_new_tokens < 1 || options->max_batch < 1)
      throw Napi::RangeError::New(info.Env(), "generate: samples, maxNewTokens and maxBatch must be at least 1");
    // Streaming: one call per sampled token, queued to the JS thread.
    std::shared_ptr<Napi::ThreadSafeFunction> stream;
    if (info.Length() > 1 && info[1].IsFunction())
      stream = std::make_shared<Napi::ThreadSafeFunction>(
          Napi::ThreadSafeFunction::New(info.Env(), info[1].As<Napi::Function>(), "spatialthinker.generate", 0, 1));
    const int64_t id = integer_field(o, "call", fn);
    auto out = std::make_shared<std::vector<model::Completion>>();
    auto handle = handle_;
    auto call = Register(id, fn, info.Env());
    return Run(
        info.Env(),
        [=]() {
          std::string error = guarded(handle, [&](model::Qwen25VL& m) {
            model::GenerateControl control;
            control.cancel = &call->cancel;
            control.stop_requested = [&](int64_t prompt, int64_t sample) {
              std::lock_guard<std::mutex> lock(call->stop_mutex);
              return call->stop.count({prompt, sample}) != 0;
            };
            if (stream)
              control.on_token = [&](const model::Completion& c) {
                struct Event {
                  int64_t prompt, sample;
                  int32_t token;
                };
                auto* e = new Event{c.prompt, c.sample, c.tokens.back()};
                stream->NonBlockingCall(e, [](Napi::Env env, Napi::Function f, Event* e) {
                  f.Call({Napi::Number::New(env, double(e->prompt)), Napi::Number::New(env, double(e->sample)),
                          Napi::Number::New(env, e->token)});
                  delete e;
                });
              };
            *out = m.generate(*prompts, *options, control);
          });
          if (stream) stream->Release();
          return error;
        },
        [=](Napi::Env env) -> Napi::Value {
          Napi::Array r = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); ++i) {
            const model::Completion& c = (*out)[i];
            Napi::Object item = Napi::Object::New(env);
            // Completion i is sample i % samples of prompt i / samples; the
            // engine leaves the indices of a completion it never started at 0.
            item.Set("prompt", double(int64_t(i) / options->samples));
            item.Set("sample", double(int64_t(i) % options->samples));
            item.Set("tokens", to_typed_array(env, c.tokens));
            item.Set("logprobs", to_typed_array(env, c.logprobs));
            std::vector<double> positions(c.positions.begin(), c.positions.end());
            item.Set("positions", to_typed_array(env, positions));
            if (!c.step_logits.empty()) item.Set("stepLogits", to_typed_array(env, c.step_logits));
            item.Set("finishReason", c.finish_reason);
            item.Set("graphSteps", double(c.graph_steps));
            r.Set(uint32_t(i), item);
          }
          return r;
        },
        Unregister(id));
  }

  // stopSequence(call, prompt, sample): ends one completion of a generate
  // call (a call that has settled is left alone).
  Napi::Value StopSequence(const Napi::CallbackInfo& info) {
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
      throw Napi::TypeError::New(info.Env(), "stopSequence(call, prompt, sample) takes three numbers");
    auto it = handle_->controls.find(info[0].As<Napi::Number>().Int64Value());
    if (it == handle_->controls.end()) return info.Env().Undefined();
    std::lock_guard<std::mutex> lock(it->second->stop_mutex);
    it->second->stop.emplace(info[1].As<Napi::Number>().Int64Value(), info[2].As<Napi::Number>().Int64Value());
    return info.Env().Undefined();
  }

  // trainGradients({sequences: [{ids, promptLen, pixels?, grids?, advantage,
  //   oldLogp, refLogp?}], clipLow, clipHigh, dualClip, klCoef, klEstimator,
  //   aggregation, temperature, batchTokens, batchSequences})
  Napi::Value TrainGradients(const Napi::CallbackInfo& info) {
    const char* fn = "trainGradients";
    Napi::Object o = options_object(info, fn);
    auto batch = std::make_shared<std::vector<model::TrainSequence>>();
    Napi::Value seqs = o.Get("sequences");
    if (!seqs.IsArray()) throw Napi::TypeError::New(info.Env(), "trainGradients: `sequences` must be an array");
    Napi::Array array = seqs.As<Napi::Array>();
    for (uint32_t i = 0; i < array.Length(); ++i) {
      if (!array.Get(i).IsObject()) throw Napi::TypeError::New(info.Env(), "trainGradients: each sequence is an object");
      Napi::Object so = array.Get(i).As<Napi::Object>();
      model::TrainSequence s;
      s.ids = int32s(so, "ids", fn);
      s.prompt_len = integer(so, "promptLen", fn);
      s.pixels = optional_floats(so, "pixels", fn);
      s.grids = grids_of(so, fn);
      s.advantage = float(number_field(so, "advantage", fn));
      s.old_logp = optional_floats(so, "oldLogp", fn);
      s.ref_logp = optional_floats(so, "refLogp", fn);
      batch->push_back(std::move(s));
    }
    auto options = std::make_shared<model::TrainOptions>();
    options->loss.clip_low = number_field(o, "clipLow", fn);
    options->loss.clip_high = number_field(o, "clipHigh", fn);
    options->loss.dual_clip = number_field(o, "dualClip", fn);
    options->loss.kl_coef = number_field(o, "klCoef", fn);
    try {
      options->loss.kl = train::parse_kl_estimator(string_field(o, "klEstimator", fn));
      options->loss.aggregation = train::parse_aggregation(string_field(o, "aggregation", fn));
    } catch (const std::exception& e) {
      throw Napi::RangeError::New(info.Env(), std::string("trainGradients: ") + e.what());
    }
    options->temperature = float(number_field(o, "temperature", fn));
    const std::string objective = string_field(o, "objective", fn);
    if (objective != "grpo" && objective != "sft")
      throw Napi::RangeError::New(info.Env(), "trainGradients: `objective` must be \"grpo\" or \"sft\"");
    options->objective = objective == "sft" ? model::TrainOptions::Objective::kSft : model::TrainOptions::Objective::kGrpo;
    options->max_sequence_length = integer_field(o, "maxSequenceLength", fn);
    options->checkpoint_layers = boolean_field(o, "checkpointLayers", fn);
    options->skip_vision_backward = boolean_field(o, "freezeVision", fn) && boolean_field(o, "freezeMerger", fn);
    options->batch_tokens = integer_field(o, "batchTokens", fn);
    options->batch_sequences = integer_field(o, "batchSequences", fn);
    auto result = std::make_shared<model::TrainResult>();
    auto handle = handle_;
    return Run(info.Env(),
        [=]() { return guarded(handle, [&](model::Qwen25VL& m) { *result = m.accumulate_gradients(*batch, *options); }); },
        [=](Napi::Env env) -> Napi::Value {
          const train::PolicyLossResult& r = result->loss;
          Napi::Object out = Napi::Object::New(env);
          out.Set("loss", r.loss);
          out.Set("pgLoss", r.pg_loss);
          out.Set("klLoss", r.kl_loss);
          out.Set("logp", to_typed_array(env, result->logp));
          out.Set("ratio", to_typed_array(env, r.ratio));
          out.Set("kl", to_typed_array(env, r.kl));
          out.Set("clipfracHigh", r.clipfrac_high);
          out.Set("clipfracLow", r.clipfrac_low);
          out.Set("clipfracDual", r.clipfrac_dual);
          out.Set("ppoKl", r.ppo_kl);
          out.Set("klMean", r.kl_mean);
          out.Set("entropy", result->entropy);
          return out;
        });
  }

  Napi::Value ZeroGradients(const Napi::CallbackInfo& info) {
    auto handle = handle_;
    return Run(info.Env(), [=]() { return guarded(handle, [&](model::Qwen25VL& m) { m.zero_gradients(); }); },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  // optimizerStep({lr, beta1, beta2, eps, weightDecay, maxGradNorm}) -> {gradNorm, clipCoef, skipped, step}:
  // metrics only; the weights and moments stay where they are.
  Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
    const char* fn = "optimizerStep";
    Napi::Object o = options_object(info, fn);
    train::AdamWOptions options;
    options.lr = number_field(o, "lr", fn);
    options.beta1 = number_field(o, "beta1", fn);
    options.beta2 = number_field(o, "beta2", fn);
    options.eps = number_field(o, "eps", fn);
    options.weight_decay = number_field(o, "weightDecay", fn);
    const double max_norm = number_field(o, "maxGradNorm", fn);
    const train::OptimizerConfig optimizer = optimizer_config_of(o, fn);
    model::Freeze freeze;
    freeze.vision = boolean_field(o, "freezeVision", fn);
    freeze.merger = boolean_field(o, "freezeMerger", fn);
    freeze.language = boolean_field(o, "freezeLanguage", fn);
    auto norm = std::make_shared<double>(0.0);
    auto step = std::make_shared<int64_t>(0);
    auto handle = handle_;
    return Run(info.Env(),
        [=]() {
          return guarded(handle, [&](model::Qwen25VL& m) {
            m.configure_optimizer(optimizer);
            *norm = m.optimizer_step(options, max_norm, freeze);
            *step = m.optimizer_steps();
          });
        },
        [=](Napi::Env env) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("gradNorm", *norm);
          const bool skipped = !std::isfinite(*norm);
          out.Set("clipCoef", skipped || max_norm <= 0 ? 1.0 : train::clip_coefficient(*norm, max_norm));
          out.Set("skipped", skipped);
          out.Set("step", double(*step));
          return out;
        });
  }

  Napi::Value NamedArrays(const Napi::CallbackInfo& info, bool gradients) {
    auto out = std::make_shared<std::vector<std::pair<std::string, std::vector<float>>>>();
    auto handle = handle_;
    return Run(info.Env(),
        [=]() { return guarded(handle, [&](model::Qwen25VL& m) { *out = gradients ? m.gradients() : m.parameters(); }); },
        [=](Napi::Env env) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          for (const auto& [name, values] : *out) r.Set(name, to_typed_array(env, values));
          return r;
        });
  }
  Napi::Value Parameters(const Napi::CallbackInfo& info) { return NamedArrays(info, false); }

  using Named = std::vector<std::pair<std::string, std::vector<float>>>;
  static Named named_of(const Napi::Value& value, const char* fn) {
    if (!value.IsObject()) throw Napi::TypeError::New(value.Env(), std::string(fn) + ": expected a record of Float32Array");
    Napi::Object o = value.As<Napi::Object>();
    Named out;
    Napi::Array keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string name = keys.Get(i).As<Napi::String>().Utf8Value();
      Napi::Value v = o.Get(name);
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Napi::TypeError::New(value.Env(), std::string(fn) + ": '" + name + "' must be a Float32Array");
      auto a = v.As<Napi::Float32Array>();
      out.emplace_back(name, std::vector<float>(a.Data(), a.Data() + a.ElementLength()));
    }
    return out;
  }
  static Napi::Object record_of(Napi::Env env, const Named& named) {
    Napi::Object r = Napi::Object::New(env);
    for (const auto& [name, values] : named) r.Set(name, to_typed_array(env, values));
    return r;
  }

  Napi::Value SetParameters(const Napi::CallbackInfo& info) {
    auto values = std::make_shared<Named>(named_of(info.Length() > 0 ? info[0] : info.Env().Undefined(), "setParameters"));
    auto handle = handle_;
    return Run(info.Env(), [=]() { return guarded(handle, [&](model::Qwen25VL& m) { m.set_parameters(*values); }); },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  // Copies every AdamW moment into JavaScript: for tests and tools only.
  Napi::Value ExportOptimizerState(const Napi::CallbackInfo& info) {
    auto m = std::make_shared<Named>(), v = std::make_shared<Named>();
    auto step = std::make_shared<int64_t>(0);
    auto handle = handle_;
    return Run(info.Env(),
        [=]() {
          return guarded(handle, [&](model::Qwen25VL& model) {
            model.optimizer_state(m.get(), v.get());
            *step = model.optimizer_steps();
          });
        },
        [=](Napi::Env env) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("step", double(*step));
          r.Set("m", record_of(env, *m));
          r.Set("v", record_of(env, *v));
          return r;
        });
  }

  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info) {
    const char* fn = "setOptimizerState";
    Napi::Object o = options_object(info, fn);
    auto m = std::make_shared<Named>(named_of(o.Get("m"), fn)), v = std::make_shared<Named>(named_of(o.Get("v"), fn));
    const int64_t step = integer(o, "step", fn);
    auto handle = handle_;
    return Run(info.Env(), [=]() { return guarded(handle, [&](model::Qwen25VL& model) { model.set_optimizer_state(*m, *v, step); }); },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }
  Napi::Value Gradients(const Napi::CallbackInfo& info) { return NamedArrays(info, true); }

  static SafetensorsWriteOptions write_options(const Napi::Object& o, const char* fn) {
    SafetensorsWriteOptions options;
    options.max_shard_bytes = integer_field(o, "maxShardBytes", fn);
    options.buffer_bytes = integer_field(o, "bufferBytes", fn);
    if (options.max_shard_bytes < 1 || options.buffer_bytes < 4)
      throw Napi::RangeError::New(o.Env(), std::string(fn) + ": maxShardBytes must be >= 1 and bufferBytes >= 4");
    return options;
  }
  static std::string dir_of(const Napi::Object& o, const char* fn) {
    if (!o.Get("dir").IsString() || o.Get("dir").As<Napi::String>().Utf8Value().empty())
      throw Napi::TypeError::New(o.Env(), std::string(fn) + ": `dir` must be a non-empty string");
    return o.Get("dir").As<Napi::String>().Utf8Value();
  }
  static Napi::Value written_to_js(Napi::Env env, const WrittenSet& written) {
    Napi::Object out = Napi::Object::New(env);
    Napi::Array files = Napi::Array::New(env, written.files.size());
    for (size_t i = 0; i < written.files.size(); ++i) files.Set(uint32_t(i), written.files[i]);
    out.Set("files", files);
    out.Set("totalSize", double(written.total_size));
    return out;
  }

  // saveWeights({dir, dtype: "bf16" | "fp32", maxShardBytes, bufferBytes}) -> {files, totalSize}
  Napi::Value SaveWeights(const Napi::CallbackInfo& info) {
    const char* fn = "saveWeights";
    Napi::Object o = options_object(info, fn);
    const std::string dir = dir_of(o, fn);
    const std::string dtype = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "";
    if (dtype != "bf16" && dtype != "fp32")
      throw Napi::TypeError::New(info.Env(), "saveWeights: `dtype` must be \"bf16\" or \"fp32\"");
    const SafetensorsWriteOptions options = write_options(o, fn);
    auto written = std::make_shared<WrittenSet>();
    auto handle = handle_;
    return Run(
        info.Env(),
        [=]() {
          return guarded(handle, [&](model::Qwen25VL& m) {
            *written = m.save_weights(dir, dtype == "bf16" ? DType::BF16 : DType::F32, options);
          });
        },
        [=](Napi::Env env) -> Napi::Value { return written_to_js(env, *written); });
  }

  // saveOptimizerState({dir, master, maxShardBytes, bufferBytes}) -> {files, totalSize, step}
  Napi::Value SaveOptimizerState(const Napi::CallbackInfo& info) { return SaveOptimizer(info, false); }


  // restoreOptimizerState({dir, step}): master weights and moments from dir/optimizer*.safetensors.
  Napi::Value RestoreOptimizerState(const Napi::CallbackInfo& info) {
    const char* fn = "restoreOptimizerState";
    Napi::Object o = options_object(info, fn);
    const std::string dir = dir_of(o, fn);
    const int64_t step = integer_field(o, "step", fn);
    const train::OptimizerConfig optimizer = optimizer_config_of(o, fn);
    auto handle = handle_;
    return Run(
        info.Env(),
        [=]() {
          return guarded(handle, [&](model::Qwen25VL& m) {
            m.configure_optimizer(optimizer);
            m.restore_optimizer_state(dir, step);
          });
        },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  // attachProcessGroup({processGroup?, zero1, bucketBytes}) -> {rank, worldSize, backend, zero1, flatTotal,
  // shardBegin, shardEnd}: data-parallel training over the group (none: a
  // world of one). Every rank calls it, before the first optimiser step.
  Napi::Value AttachProcessGroup(const Napi::CallbackInfo& info) {
    const char* fn = "attachProcessGroup";
    Napi::Object o = options_object(info, fn);
    const Napi::Value group = o.Get("processGroup");
    std::shared_ptr<dist::Communicator> comm = group.IsUndefined() || group.IsNull()
                                                   ? std::shared_ptr<dist::Communicator>(dist::make_single_process_communicator())
                                                   : communicator_of(group, fn);
    model::DataParallelOptions options;
    options.zero1 = boolean_field(o, "zero1", fn);
    options.bucket_bytes = integer_field(o, "bucketBytes", fn);
    if (options.bucket_bytes < 4) throw Napi::RangeError::New(info.Env(), "attachProcessGroup: `bucketBytes` must be >= 4");
    auto handle = handle_;
    return Run(
        info.Env(), [=]() { return guarded(handle, [&](model::Qwen25VL& m) { m.attach_communicator(comm, options); }); },
        [=](Napi::Env env) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          const dist::ShardSplit& split = handle->model->shard_split();
          out.Set("rank", comm->rank());
          out.Set("worldSize", comm->world_size());
          out.Set("backend", comm->backend_name());
          out.Set("zero1", handle->model->zero1_active());
          out.Set("flatTotal", double(split.total));
          out.Set("shardBegin", double(split.begin(comm->rank())));
          out.Set("shardEnd", double(split.end(comm->rank())));
          return out;
        });
  }

  // reduceScalars({values: Float64Array, op: "sum" | "max" | "min"}) -> Float64Array, the same bits on every rank.
  Napi::Value ReduceScalars(const Napi::CallbackInfo& info) {
    const char* fn = "reduceScalars";
    Napi::Object o = options_object(info, fn);
    auto values = std::make_shared<std::vector<double>>(copy_typed_array<double>(o, "values", fn));
    const std::string op_name = string_field(o, "op", fn);
    dist::ReduceOp op;
    if (op_name == "sum") op = dist::ReduceOp::Sum;
    else if (op_name == "max") op = dist::ReduceOp::Max;
    else if (op_name == "min") op = dist::ReduceOp::Min;
    else throw Napi::TypeError::New(info.Env(), "reduceScalars: `op` must be \"sum\", \"max\" or \"min\"");
    auto handle = handle_;
    return Run(
        info.Env(), [=]() { return guarded(handle, [&](model::Qwen25VL& m) { *values = m.reduce_scalars(*values, op); }); },
        [=](Napi::Env env) -> Napi::Value { return to_typed_array(env, *values); });
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    auto handle = handle_;
    return Run(info.Env(), [=]() { return guarded(handle, [&](model::Qwen25VL& m) { m.barrier(); }); },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  // saveOptimizerShard({dir, master, maxShardBytes, bufferBytes}) -> {files, totalSize, step}: ZeRO-1, this rank's range.
  Napi::Value SaveOptimizerShard(const Napi::CallbackInfo& info) { return SaveOptimizer(info, true); }

  // The whole optimiser state (optimizer.safetensors), or this rank's ZeRO-1
  // range of it (whose writer sets its own metadata).
  Napi::Value SaveOptimizer(const Napi::CallbackInfo& info, bool shard) {
    const char* fn = shard ? "saveOptimizerShard" : "saveOptimizerState";
    Napi::Object o = options_object(info, fn);
    const std::string dir = dir_of(o, fn);
    const bool master = boolean_field(o, "master", fn);
    SafetensorsWriteOptions options = write_options(o, fn);
    if (!shard) options.metadata = {{"format", "spatialthinker-optimizer"}};
    auto written = std::make_shared<WrittenSet>();
    auto step = std::make_shared<int64_t>(0);
    auto handle = handle_;
    return Run(
        info.Env(),
        [=]() {
          return guarded(handle, [&](model::Qwen25VL& m) {
            *written = shard ? m.save_optimizer_shard(dir, master, options) : m.save_optimizer_state(dir, master, options);
            *step = m.optimizer_steps();
          });
        },
        [=](Napi::Env env) -> Napi::Value {
          Napi::Object out = written_to_js(env, *written).As<Napi::Object>();
          out.Set("step", double(*step));
          return out;
        });
  }


  // cancel(call): aborts one generate or logprobs call, waiting or running;
  // the model's other calls go on.
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "cancel(call) takes a call id");
    auto it = handle_->controls.find(info[0].As<Napi::Number>().Int64Value());
    if (it != handle_->controls.end()) it->second->cancel = true;
    return info.Env().Undefined();
  }

  // Cancels every call made before it, then frees the weights once they
  // have settled; calls made after it reject.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    handle_->disposed = true;
    for (auto& [id, control] : handle_->controls) control->cancel = true;
    auto handle = handle_;
    return Run(
        info.Env(),
        [handle]() {
          std::lock_guard<std::mutex> lock(handle->busy);
          handle->model.reset();
          return std::string();
        },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  std::shared_ptr<ModelHandle> handle_;
};

struct AddonData {
  Napi::FunctionReference model_constructor;
};

model::ModelConfig config_of(const Napi::Object& c, const char* fn) {
  auto sub = [&](const char* field) {
    if (!c.Get(field).IsObject()) throw Napi::TypeError::New(c.Env(), std::string(fn) + ": config." + field + " missing");
    return c.Get(field).As<Napi::Object>();
  };
  model::ModelConfig config;
  Napi::Object t = sub("text"), v = sub("vision");
  config.text.hidden = integer(t, "hidden", fn);
  config.text.intermediate = integer(t, "intermediate", fn);
  config.text.layers = integer(t, "layers", fn);
  config.text.heads = integer(t, "heads", fn);
  config.text.kv_heads = integer(t, "kvHeads", fn);
  config.text.vocab = integer(t, "vocab", fn);
  config.text.rms_eps = float(number_field(t, "rmsEps", fn));
  config.text.rope_theta = number_field(t, "ropeTheta", fn);
  const std::vector<int32_t> section = copy_typed_array<int32_t>(t, "mropeSection", fn);
  if (section.size() != 3) throw Napi::RangeError::New(c.Env(), std::string(fn) + ": mropeSection needs 3 entries");
  for (int i = 0; i < 3; ++i) config.text.mrope_section[size_t(i)] = section[size_t(i)];
  config.text.tie_embeddings = boolean_field(t, "tieEmbeddings", fn);
  config.vision.depth = integer(v, "depth", fn);
  config.vision.hidden = integer(v, "hidden", fn);
  config.vision.heads = integer(v, "heads", fn);
  config.vision.intermediate = integer(v, "intermediate", fn);
  config.vision.out_hidden = integer(v, "outHidden", fn);
  config.vision.patch = integer(v, "patch", fn);
  config.vision.temporal_patch = integer(v, "temporalPatch", fn);
  config.vision.merge = integer(v, "merge", fn);
  config.vision.in_channels = integer(v, "inChannels", fn);
  config.vision.window_size = integer(v, "windowSize", fn);
  config.vision.rms_eps = float(number_field(v, "rmsEps", fn));
  for (int32_t b : copy_typed_array<int32_t>(v, "fullAttentionBlocks", fn)) config.vision.fullatt_blocks.push_back(b);
  config.image_token_id = int32_t(integer(c, "imageTokenId", fn));
  config.vision_start_token_id = int32_t(integer(c, "visionStartTokenId", fn));
  const std::string problem = model::validate(config);
  if (!problem.empty()) throw Napi::RangeError::New(c.Env(), std::string(fn) + ": config.json: " + problem);
  return config;
}

// loadModel({dir, config, device, dtype?, imageCacheBytes}) -> Promise<NativeModel>; dtype
// ("bf16" | "fp32") is the CUDA backend's storage type, unset its default.
Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  const char* fn = "loadModel";
  Napi::Object o = options_object(info, fn);
  if (!o.Get("dir").IsString()) throw Napi::TypeError::New(info.Env(), "loadModel: `dir` must be a string");
  const std::string dir = o.Get("dir").As<Napi::String>().Utf8Value();
  if (!o.Get("config").IsObject()) throw Napi::TypeError::New(info.Env(), "loadModel: `config` must be an object");
  const model::ModelConfig config = config_of(o.Get("config").As<Napi::Object>(), fn);
  const std::string device = string_field(o, "device", fn);
  if (device != "cpu" && device != "cuda")
    throw Napi::TypeError::New(info.Env(), "loadModel: unknown device \"" + device + "\" (use \"cpu\" or \"cuda\")");
  const std::string dtype = o.Get("dtype").IsUndefined() ? "" : string_field(o, "dtype", fn);
  if (!dtype.empty() && dtype != "bf16" && dtype != "fp32")
    throw Napi::TypeError::New(info.Env(), "loadModel: unknown dtype \"" + dtype + "\" (use \"bf16\" or \"fp32\")");
  if (device == "cpu" && dtype == "bf16")
    throw Napi::TypeError::New(info.Env(), "loadModel: the CPU backend is fp32 only (dtype \"bf16\" needs device \"cuda\")");
  const int64_t image_cache_bytes = integer_field(o, "imageCacheBytes", fn);
  if (image_cache_bytes < 0) throw Napi::RangeError::New(info.Env(), "loadModel: `imageCacheBytes` must be >= 0");
  auto handle = std::make_shared<ModelHandle>();
  return PromiseWorker::Start(
      info.Env(),
      [handle, config, dir, device, dtype, image_cache_bytes]() -> std::string {
        try {
          // make_cuda_backend says why when there is no usable GPU or cuBLAS.
          std::unique_ptr<Backend> backend =
              device == "cpu"  ? make_cpu_backend()
              : dtype.empty() ? make_cuda_backend()
                              : make_cuda_backend(dtype == "bf16" ? Storage::BF16 : Storage::F32);
          handle->model = std::make_unique<model::Qwen25VL>(std::move(backend), config, dir, image_cache_bytes);
          handle->parameters = double(handle->model->parameter_count());
          handle->backend = handle->model->backend().name();
        } catch (const std::exception& e) {
          return e.what();
        }
        return "";
      },
      [handle](Napi::Env env) -> Napi::Value {
        AddonData* data = env.GetInstanceData<AddonData>();
        auto external = Napi::External<std::shared_ptr<ModelHandle>>::New(
            env, new std::shared_ptr<ModelHandle>(handle),
            [](Napi::Env, std::shared_ptr<ModelHandle>* p) { delete p; });
        return data->model_constructor.New({external});
      });
}

void register_model(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->model_constructor = Napi::Persistent(NativeModel::Define(env));
  env.SetInstanceData(data);
  exports.Set("loadModel", Napi::Function::New(env, LoadModel, "loadModel"));
}

const ModuleRegistration registration(register_model);

}  // namespace
}  // namespace st::addon
