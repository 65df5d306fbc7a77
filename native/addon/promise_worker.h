#pragma once
// Runs engine work on libuv's thread pool and settles a Promise with the
// result, so long calls never block the JavaScript event loop. Inputs are
// copied out of JavaScript before the work starts: nothing the worker reads
// can be moved or freed by the garbage collector while it runs.
#include <napi.h>

#include <functional>
#include <string>
#include <utility>

namespace st::addon {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  // `work` runs off the main thread and returns "" or an error message;
  // `result` runs on the main thread afterwards to build the resolved value.
  PromiseWorker(Napi::Env env, std::function<std::string()> work,
                std::function<Napi::Value(Napi::Env)> result)
      : Napi::AsyncWorker(env, "spatialthinker"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        result_(std::move(result)) {}

  static Napi::Promise Start(Napi::Env env, std::function<std::string()> work,
                             std::function<Napi::Value(Napi::Env)> result) {
    auto* worker = new PromiseWorker(env, std::move(work), std::move(result));
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();  // the worker deletes itself once settled
    return promise;
  }

 protected:
  void Execute() override {
    try {
      std::string error = work_();
      if (!error.empty()) SetError(error);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(result_(Env())); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<std::string()> work_;
  std::function<Napi::Value(Napi::Env)> result_;
};

}  // namespace st::addon
