#pragma once
// Runs engine work on libuv's thread pool and settles a Promise with the
// result, so long calls never block the JavaScript event loop. Inputs are
// copied out of JavaScript before the work starts: nothing the worker reads
// can be moved or freed by the garbage collector while it runs.
#include <napi.h>

#include <deque>
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

  // Runs on the main thread once the promise is about to settle (success or
  // error), before the worker deletes itself.
  void OnSettled(std::function<void()> settled) { settled_ = std::move(settled); }
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      std::string error = work_();
      if (!error.empty()) SetError(error);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Settled();
    deferred_.Resolve(result_(Env()));
  }
  void OnError(const Napi::Error& error) override {
    Settled();
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<std::string()> work_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::function<void()> settled_;

  void Settled() {
    if (settled_) std::exchange(settled_, nullptr)();
  }
};

// Calls that must run one at a time (those on one model) wait here, on the
// JavaScript thread, until the previous one settles. Waiting on a mutex
// inside Execute() instead would hold a libuv pool thread per waiting call:
// with the default four, four waiting calls would stall every fs, dns and
// crypto request of the process. Used on the main thread only.
class SerialQueue {
 public:
  // `settled` (optional) runs on the main thread when the call settles,
  // before the next call starts.
  Napi::Promise Submit(Napi::Env env, std::function<std::string()> work,
                       std::function<Napi::Value(Napi::Env)> result, std::function<void()> settled = nullptr) {
    auto* worker = new PromiseWorker(env, std::move(work), std::move(result));
    worker->OnSettled([this, settled = std::move(settled)] {
      if (settled) settled();
      Next();
    });
    Napi::Promise promise = worker->Promise();
    if (running_) {
      waiting_.push_back(worker);
    } else {
      running_ = true;
      worker->Queue();
    }
    return promise;
  }

  bool Idle() const { return !running_; }

 private:
  void Next() {
    if (waiting_.empty()) {
      running_ = false;
      return;
    }
    PromiseWorker* next = waiting_.front();
    waiting_.pop_front();
    next->Queue();
  }

  bool running_ = false;
  std::deque<PromiseWorker*> waiting_;
};

}  // namespace st::addon
