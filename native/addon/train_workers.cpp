// N-API: the optimiser step and the GRPO policy loss on host arrays. The
// trainer's own step keeps weights, gradients and moments native; these
// entry points serve tests, fixtures and tools.
#include <cmath>
#include <memory>

#include "addon/exports.h"
#include "addon/promise_worker.h"
#include "addon/typed_arrays.h"
#include "backend/backend.h"
#include "train/adamw.h"
#include "train/policy_loss.h"

namespace st::addon {
namespace {

std::vector<std::vector<float>> float_arrays(const Napi::Object& o, const char* field, const char* fn) {
  const Napi::Value v = o.Get(field);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string(fn) + ": `" + field + "` must be an array of Float32Array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::vector<float>> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Object holder = Napi::Object::New(o.Env());
    holder.Set("item", a.Get(i));
    out.push_back(copy_typed_array<float>(holder, "item", fn));
  }
  return out;
}

// adamwStep({params, grads, m, v, step, lr, beta1, beta2, eps, weightDecay, maxGradNorm, device?})
//   -> Promise<{params, m, v, gradNorm, clipCoef, skipped}>: gradients clipped
//   jointly by their global norm, then one AdamW step (skipped, leaving
//   everything unchanged, when the norm is not finite). device "cuda" runs
//   the norm and the step through the CUDA backend (copies in and out).
Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  const char* fn = "adamwStep";
  Napi::Object o = options_object(info, fn);
  struct State {
    std::vector<std::vector<float>> params, grads, m, v;
    int64_t step;
    train::AdamWOptions options;
    double max_grad_norm, norm = 0, coef = 1;
    bool skipped = false;
    bool cuda = false;
  };
  auto s = std::make_shared<State>();
  s->params = float_arrays(o, "params", fn);
  s->grads = float_arrays(o, "grads", fn);
  s->m = float_arrays(o, "m", fn);
  s->v = float_arrays(o, "v", fn);
  s->step = integer_field(o, "step", fn);
  s->options.lr = number_field(o, "lr", fn);
  s->options.beta1 = number_field(o, "beta1", fn);
  s->options.beta2 = number_field(o, "beta2", fn);
  s->options.eps = number_field(o, "eps", fn);
  s->options.weight_decay = number_field(o, "weightDecay", fn);
  s->max_grad_norm = number_field(o, "maxGradNorm", fn);
  const std::string device = string_field(o, "device", fn);
  if (device != "cpu" && device != "cuda")
    throw Napi::TypeError::New(info.Env(), "adamwStep: unknown device \"" + device + "\" (use \"cpu\" or \"cuda\")");
  s->cuda = device == "cuda";
  const size_t n = s->params.size();
  if (s->grads.size() != n || s->m.size() != n || s->v.size() != n || s->step < 1)
    throw Napi::RangeError::New(info.Env(), "adamwStep: params, grads, m and v must have the same tensors; step >= 1");
  for (size_t i = 0; i < n; ++i)
    if (s->grads[i].size() != s->params[i].size() || s->m[i].size() != s->params[i].size() ||
        s->v[i].size() != s->params[i].size())
      throw Napi::RangeError::New(info.Env(), "adamwStep: tensor " + std::to_string(i) + " has mismatched sizes");
  return PromiseWorker::Start(
      info.Env(),
      [s]() -> std::string {
        if (s->cuda) {
          // The same steps as below, on device copies of every array.
          // fp32 throughout: this entry point checks the fp32 step itself.
          auto backend = make_cuda_backend(Storage::F32);
          auto upload = [&](const std::vector<float>& host) {
            DeviceArray a(*backend, int64_t(host.size()), Storage::F32);
            backend->upload(a.get(), host.data(), a.size());
            return a;
          };
          std::vector<DeviceArray> p, g, m, v;
          double total = 0;
          for (size_t i = 0; i < s->params.size(); ++i) {
            p.push_back(upload(s->params[i]));
            g.push_back(upload(s->grads[i]));
            m.push_back(upload(s->m[i]));
            v.push_back(upload(s->v[i]));
            total += backend->sum_squares(g[i].get(), g[i].size());
          }
          s->norm = std::sqrt(total);
          if (!std::isfinite(s->norm)) {
            s->skipped = true;
            return "";
          }
          s->coef = s->max_grad_norm > 0 ? train::clip_coefficient(s->norm, s->max_grad_norm) : 1.0;
          for (size_t i = 0; i < p.size(); ++i) {
            backend->adamw(p[i].get(), g[i].get(), m[i].get(), v[i].get(), p[i].size(), s->step, float(s->coef),
                           s->options);
            backend->download(s->params[i].data(), p[i].get(), p[i].size());
            backend->download(s->m[i].data(), m[i].get(), m[i].size());
            backend->download(s->v[i].data(), v[i].get(), v[i].size());
          }
          return "";
        }
        double total = 0;
        for (const auto& g : s->grads) total += train::sum_squares(g.data(), int64_t(g.size()));
        s->norm = std::sqrt(total);
        if (!std::isfinite(s->norm)) {
          s->skipped = true;
          return "";
        }
        s->coef = s->max_grad_norm > 0 ? train::clip_coefficient(s->norm, s->max_grad_norm) : 1.0;
        for (size_t i = 0; i < s->params.size(); ++i)
          train::adamw_step(s->params[i].data(), s->grads[i].data(), s->m[i].data(), s->v[i].data(),
                            int64_t(s->params[i].size()), s->step, float(s->coef), s->options);
        return "";
      },
      [s](Napi::Env env) -> Napi::Value {
        auto arrays = [&](const std::vector<std::vector<float>>& list) {
          Napi::Array a = Napi::Array::New(env, list.size());
          for (size_t i = 0; i < list.size(); ++i) a.Set(uint32_t(i), to_typed_array(env, list[i]));
          return a;
        };
        Napi::Object r = Napi::Object::New(env);
        r.Set("params", arrays(s->params));
        r.Set("m", arrays(s->m));
        r.Set("v", arrays(s->v));
        r.Set("gradNorm", s->norm);
        r.Set("clipCoef", s->coef);
        r.Set("skipped", s->skipped);
        return r;
      });
}

// policyLoss({logp, oldLogp, refLogp?, advantages, sequence, clipLow, clipHigh,
//   dualClip, klCoef, klEstimator, aggregation, batchTokens, batchSequences})
Napi::Value PolicyLoss(const Napi::CallbackInfo& info) {
  const char* fn = "policyLoss";
  Napi::Object o = options_object(info, fn);
  struct Job {
    std::vector<float> logp, old_logp, ref_logp, advantages;
    std::vector<int32_t> sequence;
    train::PolicyLossInput input;
    train::PolicyLossOptions options;
    train::PolicyLossResult result;
  };
  auto j = std::make_shared<Job>();
  j->logp = copy_typed_array<float>(o, "logp", fn);
  j->old_logp = copy_typed_array<float>(o, "oldLogp", fn);
  if (!o.Get("refLogp").IsUndefined()) j->ref_logp = copy_typed_array<float>(o, "refLogp", fn);
  j->advantages = copy_typed_array<float>(o, "advantages", fn);
  j->sequence = copy_typed_array<int32_t>(o, "sequence", fn);
  const size_t n = j->logp.size();
  if (j->old_logp.size() != n || j->advantages.size() != n || j->sequence.size() != n ||
      (!j->ref_logp.empty() && j->ref_logp.size() != n))
    throw Napi::RangeError::New(info.Env(), "policyLoss: every per-token array must have the same length");
  j->options.clip_low = number_field(o, "clipLow", fn);
  j->options.clip_high = number_field(o, "clipHigh", fn);
  j->options.dual_clip = number_field(o, "dualClip", fn);
  j->options.kl_coef = number_field(o, "klCoef", fn);
  try {
    j->options.kl = train::parse_kl_estimator(string_field(o, "klEstimator", fn));
    j->options.aggregation = train::parse_aggregation(string_field(o, "aggregation", fn));
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(info.Env(), std::string("policyLoss: ") + e.what());
  }
  j->input.tokens = int64_t(n);
  j->input.batch_tokens = integer_field(o, "batchTokens", fn);
  j->input.batch_sequences = integer_field(o, "batchSequences", fn);
  return PromiseWorker::Start(
      info.Env(),
      [j]() -> std::string {
        j->input.logp = j->logp.data();
        j->input.old_logp = j->old_logp.data();
        j->input.ref_logp = j->ref_logp.empty() ? nullptr : j->ref_logp.data();
        j->input.advantages = j->advantages.data();
        j->input.sequence = j->sequence.data();
        j->result = train::policy_loss(j->input, j->options);
        return "";
      },
      [j](Napi::Env env) -> Napi::Value {
        const train::PolicyLossResult& r = j->result;
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", r.loss);
        out.Set("pgLoss", r.pg_loss);
        out.Set("klLoss", r.kl_loss);
        out.Set("dlogp", to_typed_array(env, r.dlogp));
        out.Set("ratio", to_typed_array(env, r.ratio));
        out.Set("kl", to_typed_array(env, r.kl));
        out.Set("clipfracHigh", r.clipfrac_high);
        out.Set("clipfracLow", r.clipfrac_low);
        out.Set("clipfracDual", r.clipfrac_dual);
        out.Set("ppoKl", r.ppo_kl);
        out.Set("klMean", r.kl_mean);
        return out;
      });
}

void register_train(Napi::Env env, Napi::Object exports) {
  exports.Set("adamwStep", Napi::Function::New(env, AdamwStep, "adamwStep"));
  exports.Set("policyLoss", Napi::Function::New(env, PolicyLoss, "policyLoss"));
}

const ModuleRegistration registration(register_train);

}  // namespace
}  // namespace st::addon
