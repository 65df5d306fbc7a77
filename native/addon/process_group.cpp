// createProcessGroup() and the ProcessGroup object: the collectives on
// Float32Arrays, for metrics and tests (a model's gradients are reduced in
// C++, through communicator_of). Calls on one group run one at a time, in the
// order they were made: every rank must issue the same collectives in the
// same order, so the order JavaScript made them in is the one kept.
#include "addon/process_group.h"

#include <cstring>
#include <vector>

#include "addon/exports.h"
#include "addon/promise_worker.h"
#include "addon/typed_arrays.h"
#include "backend/backend.h"
#include "distributed/process_group.h"

namespace st::addon {
namespace {

// Marks the JavaScript objects that are ProcessGroups (napi type tags), so
// communicator_of can refuse anything else.
constexpr napi_type_tag kProcessGroupTag = {0x5a7a1a17c0117ec7ULL, 0x9b0d5e3f2c4a6e81ULL};

struct GroupHandle {
  std::shared_ptr<dist::Communicator> comm;
  // CUDA groups stage Float32Arrays through device memory.
  std::unique_ptr<Backend> staging;
};

dist::ReduceOp reduce_op(const Napi::Value& value, const char* fn) {
  const std::string name = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (name == "sum") return dist::ReduceOp::Sum;
  if (name == "max") return dist::ReduceOp::Max;
  if (name == "min") return dist::ReduceOp::Min;
  throw Napi::TypeError::New(value.Env(), std::string(fn) + ": `op` must be \"sum\", \"max\" or \"min\"");
}

std::vector<float> floats_argument(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": the data must be a Float32Array");
  auto array = info[0].As<Napi::Float32Array>();
  std::vector<float> out(array.ElementLength());
  if (!out.empty()) std::memcpy(out.data(), array.Data(), out.size() * sizeof(float));
  return out;
}

// Runs `collective` on backend memory: the host vectors themselves on the
// CPU, device copies on CUDA. `in` is copied up; `out` (sized by the caller)
// comes back.
void on_backend_memory(GroupHandle& g, std::vector<float>& in, std::vector<float>& out,
                       const std::function<void(float* in, float* out)>& collective) {
  if (!g.staging) {
    collective(in.data(), out.data());
    return;
  }
  Backend& b = *g.staging;
  float* device_in = in.empty() ? nullptr : b.alloc(int64_t(in.size()), Storage::F32).f32();
  float* device_out = out.empty() ? nullptr : b.alloc(int64_t(out.size()), Storage::F32).f32();
  try {
    if (device_in) b.upload(device_in, in.data(), int64_t(in.size()));
    collective(device_in, device_out);
    if (device_out) b.download(out.data(), device_out, int64_t(out.size()));
  } catch (...) {
    if (device_in) b.free(device_in);
    if (device_out) b.free(device_out);
    throw;
  }
  if (device_in) b.free(device_in);
  if (device_out) b.free(device_out);
}

class ProcessGroup : public Napi::ObjectWrap<ProcessGroup> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ProcessGroup",
                       {InstanceAccessor("rank", &ProcessGroup::Rank, nullptr),
                        InstanceAccessor("worldSize", &ProcessGroup::WorldSize, nullptr),
                        InstanceAccessor("backend", &ProcessGroup::BackendName, nullptr),
                        InstanceMethod("allReduce", &ProcessGroup::AllReduce),
                        InstanceMethod("reduceScatter", &ProcessGroup::ReduceScatter),
                        InstanceMethod("allGather", &ProcessGroup::AllGather),
                        InstanceMethod("broadcast", &ProcessGroup::Broadcast),
                        InstanceMethod("barrier", &ProcessGroup::Barrier),
                        InstanceMethod("setTimeout", &ProcessGroup::SetTimeout),
                        InstanceMethod("destroy", &ProcessGroup::Destroy)});
  }

  explicit ProcessGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroup>(info) {
    if (info.Length() < 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "ProcessGroup is created by createProcessGroup()");
    handle_ = *info[0].As<Napi::External<std::shared_ptr<GroupHandle>>>().Data();
    rank_ = handle_->comm->rank();
    world_size_ = handle_->comm->world_size();
    backend_ = handle_->comm->backend_name();
    napi_type_tag_object(info.Env(), info.This(), &kProcessGroupTag);
  }

  std::shared_ptr<dist::Communicator> communicator(const char* fn) {
    if (!handle_) throw Napi::Error::New(Env(), std::string(fn) + ": the process group was destroyed");
    return handle_->comm;
  }

 private:
  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), rank_); }
  Napi::Value WorldSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), world_size_); }
  Napi::Value BackendName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), backend_); }

  std::shared_ptr<GroupHandle> live(const char* fn) {
    if (!handle_) throw Napi::Error::New(Env(), std::string(fn) + ": the process group was destroyed");
    return handle_;
  }

  // Submits a collective whose result is `out` (a Float32Array) or nothing.
  Napi::Value Submit(Napi::Env env, std::function<void(GroupHandle&, std::vector<float>&)> work,
                     std::shared_ptr<std::vector<float>> out, bool returns_array, const char* fn) {
    std::shared_ptr<GroupHandle> g = live(fn);
    return queue_.Submit(
        env,
        [g, out, work]() -> std::string {
          work(*g, *out);
          return "";
        },
        [out, returns_array](Napi::Env env) -> Napi::Value {
          if (!returns_array) return env.Undefined();
          return to_typed_array(env, *out);
        });
  }

  // allReduce(data, op) -> Promise<Float32Array>
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    const char* fn = "allReduce";
    auto data = std::make_shared<std::vector<float>>(floats_argument(info, fn));
    const dist::ReduceOp op = reduce_op(info[1], fn);
    return Submit(info.Env(), [data, op](GroupHandle& g, std::vector<float>& out) {
      out = *data;
      // In place: on the CPU in and result are the same buffer.
      on_backend_memory(g, out, out, [&](float* in, float* result) {
        g.comm->all_reduce(in, int64_t(out.size()), op);
        if (in != result) g.staging->copy(result, in, int64_t(out.size()));
      });
    }, std::make_shared<std::vector<float>>(), true, fn);
  }

  // reduceScatter(data, op) -> Promise<Float32Array>: data has worldSize
  // blocks; the result is the reduction of every rank's block `rank`.
  Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
    const char* fn = "reduceScatter";
    auto data = std::make_shared<std::vector<float>>(floats_argument(info, fn));
    const dist::ReduceOp op = reduce_op(info[1], fn);
    if (data->size() % size_t(world_size_) != 0)
      throw Napi::RangeError::New(info.Env(), std::string(fn) + ": the data's length " + std::to_string(data->size()) +
                                                  " is not a multiple of the world size " + std::to_string(world_size_));
    const int64_t count = int64_t(data->size()) / world_size_;
    return Submit(info.Env(), [data, op, count](GroupHandle& g, std::vector<float>& out) {
      out.assign(size_t(count), 0.0f);
      on_backend_memory(g, *data, out, [&](float* in, float* result) { g.comm->reduce_scatter(in, result, count, op); });
    }, std::make_shared<std::vector<float>>(), true, fn);
  }

  // allGather(data) -> Promise<Float32Array> of worldSize * data.length
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    const char* fn = "allGather";
    auto data = std::make_shared<std::vector<float>>(floats_argument(info, fn));
    const int world = world_size_;
    return Submit(info.Env(), [data, world](GroupHandle& g, std::vector<float>& out) {
      out.assign(data->size() * size_t(world), 0.0f);
      on_backend_memory(g, *data, out, [&](float* in, float* result) { g.comm->all_gather(in, result, int64_t(data->size())); });
    }, std::make_shared<std::vector<float>>(), true, fn);
  }

  // broadcast(data, root) -> Promise<Float32Array>: root's data on every rank
  // (every rank passes an array of the same length).
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    const char* fn = "broadcast";
    auto data = std::make_shared<std::vector<float>>(floats_argument(info, fn));
    if (info.Length() < 2 || !info[1].IsNumber())
      throw Napi::TypeError::New(info.Env(), std::string(fn) + ": `root` must be a rank number");
    const int root = info[1].As<Napi::Number>().Int32Value();
    if (root < 0 || root >= world_size_)
      throw Napi::RangeError::New(info.Env(), std::string(fn) + ": root " + std::to_string(root) + " is not a rank of a world of " +
                                                  std::to_string(world_size_));
    return Submit(info.Env(), [data, root](GroupHandle& g, std::vector<float>& out) {
      out = *data;
      on_backend_memory(g, out, out, [&](float* in, float* result) {
        g.comm->broadcast(in, int64_t(out.size()), root);
        if (in != result) g.staging->copy(result, in, int64_t(out.size()));
      });
    }, std::make_shared<std::vector<float>>(), true, fn);
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    return Submit(info.Env(), [](GroupHandle& g, std::vector<float>&) { g.comm->barrier(); },
                  std::make_shared<std::vector<float>>(), false, "barrier");
  }

  // setTimeout(ms): the wait of the collectives made after it.
  Napi::Value SetTimeout(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber() || !(info[0].As<Napi::Number>().DoubleValue() > 0))
      throw Napi::TypeError::New(info.Env(), "setTimeout: the timeout must be a positive number of milliseconds");
    const auto ms = std::chrono::milliseconds(int64_t(info[0].As<Napi::Number>().DoubleValue()));
    std::shared_ptr<GroupHandle> g = live("setTimeout");
    return queue_.Submit(
        info.Env(), [g, ms]() -> std::string {
          g->comm->set_timeout(ms);
          return "";
        },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  // destroy(): after the calls already made. A model that holds the group
  // keeps it alive until it lets go.
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    std::shared_ptr<GroupHandle> g = std::move(handle_);
    handle_.reset();
    if (!g) return queue_.Submit(info.Env(), [] { return std::string(); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
    return queue_.Submit(
        info.Env(), [g]() mutable -> std::string {
          g.reset();
          return "";
        },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  std::shared_ptr<GroupHandle> handle_;
  int rank_ = 0, world_size_ = 1;
  std::string backend_;
  SerialQueue queue_;
};

// createProcessGroup({rank, worldSize, masterAddr, masterPort, device, timeoutMs})
//   -> Promise<ProcessGroup>, once every rank has joined.
Napi::Value CreateProcessGroup(const Napi::CallbackInfo& info) {
  const char* fn = "createProcessGroup";
  Napi::Object o = options_object(info, fn);
  dist::GroupOptions options;
  options.rank = int(integer_field(o, "rank", fn));
  options.world_size = int(integer_field(o, "worldSize", fn));
  options.master_addr = string_field(o, "masterAddr", fn);
  options.master_port = int(integer_field(o, "masterPort", fn));
  const std::string device = string_field(o, "device", fn);
  if (device != "cpu" && device != "cuda")
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": unknown device \"" + device + "\" (use \"cpu\" or \"cuda\")");
  options.device = device == "cuda" ? dist::GroupDevice::Cuda : dist::GroupDevice::Cpu;
  const int64_t timeout_ms = integer_field(o, "timeoutMs", fn);
  if (timeout_ms <= 0) throw Napi::RangeError::New(info.Env(), std::string(fn) + ": `timeoutMs` must be > 0");
  options.timeout = std::chrono::milliseconds(timeout_ms);
  auto handle = std::make_shared<GroupHandle>();
  auto* constructor = static_cast<Napi::FunctionReference*>(info.Data());
  return PromiseWorker::Start(
      info.Env(),
      [handle, options]() -> std::string {
        // The group first: it says what a CUDA group is missing (a CUDA build, NCCL).
        handle->comm = dist::make_process_group(options);
        if (options.device == dist::GroupDevice::Cuda && options.world_size > 1) handle->staging = make_cuda_backend();
        return "";
      },
      [handle, constructor](Napi::Env env) -> Napi::Value {
        auto external = Napi::External<std::shared_ptr<GroupHandle>>::New(
            env, new std::shared_ptr<GroupHandle>(handle), [](Napi::Env, std::shared_ptr<GroupHandle>* p) { delete p; });
        return constructor->New({external});
      });
}

void register_process_group(Napi::Env env, Napi::Object exports) {
  auto* constructor = new Napi::FunctionReference(Napi::Persistent(ProcessGroup::Define(env)));
  env.AddCleanupHook([constructor] { delete constructor; });
  exports.Set("createProcessGroup", Napi::Function::New(env, CreateProcessGroup, "createProcessGroup", constructor));
}

const ModuleRegistration registration(register_process_group);

}  // namespace

std::shared_ptr<dist::Communicator> communicator_of(const Napi::Value& value, const char* fn) {
  bool tagged = false;
  if (value.IsObject()) napi_check_object_type_tag(value.Env(), value, &kProcessGroupTag, &tagged);
  if (!tagged) throw Napi::TypeError::New(value.Env(), std::string(fn) + ": expected a ProcessGroup (createProcessGroup)");
  return ProcessGroup::Unwrap(value.As<Napi::Object>())->communicator(fn);
}

}  // namespace st::addon
