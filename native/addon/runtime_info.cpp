// runtimeInfo(): what the engine was built with and which devices it sees.
#include "addon/exports.h"
#include "backend/cuda/cublas.h"
#include "backend/cuda/device.h"
#include "backend/cpu/gemm.h"
#include "distributed/process_group.h"
#include "engine/thread_pool.h"
#include "model/image_cache.h"
#include "model/vision.h"

namespace st::addon {
namespace {

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::RuntimeInfo& cuda_info = cuda::runtime_info();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", cuda_info.compiled);
  cuda.Set("architectures", cuda_info.architectures);
  cuda.Set("runtimeVersion", cuda_info.runtime_version);
  cuda.Set("driverVersion", cuda_info.driver_version);
  cuda.Set("available", cuda_info.unavailable_reason.empty());
  if (!cuda_info.unavailable_reason.empty()) cuda.Set("reason", cuda_info.unavailable_reason);
  Napi::Array devices = Napi::Array::New(env, cuda_info.devices.size());
  for (size_t i = 0; i < cuda_info.devices.size(); ++i) {
    const cuda::DeviceInfo& d = cuda_info.devices[i];
    Napi::Object device = Napi::Object::New(env);
    device.Set("index", d.index);
    device.Set("name", d.name);
    device.Set("computeCapability", std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor));
    device.Set("totalMemory", double(d.total_memory));
    device.Set("freeMemory", double(d.free_memory));
    device.Set("multiprocessors", d.multiprocessors);
    devices.Set(uint32_t(i), device);
  }
  cuda.Set("devices", devices);
  // cuBLAS is looked for only where it could be used: a CUDA build.
  const cuda::CublasInfo& cublas_info = cuda::cublas_info();
  Napi::Object cublas = Napi::Object::New(env);
  cublas.Set("found", cublas_info.found);
  if (!cublas_info.library.empty()) cublas.Set("library", cublas_info.library);
  if (!cublas_info.version.empty()) cublas.Set("version", cublas_info.version);
  if (!cublas_info.error.empty()) cublas.Set("error", cublas_info.error);
  cuda.Set("cublas", cublas);
  Napi::Object result = Napi::Object::New(env);
  result.Set("threads", default_thread_pool().size());
  result.Set("cpuIsa", cpu::instruction_set());
  result.Set("cuda", cuda);
  const dist::DistributedInfo dist_info = dist::distributed_info();
  Napi::Object distributed = Napi::Object::New(env);
  distributed.Set("gloo", dist_info.gloo);
  if (!dist_info.gloo) distributed.Set("glooReason", dist_info.gloo_reason);
  Napi::Object nccl = Napi::Object::New(env);
  nccl.Set("compiled", dist_info.nccl_compiled);
  nccl.Set("library", dist_info.nccl_library);
  if (dist_info.nccl_compiled) nccl.Set("found", dist_info.nccl_error.empty());
  if (!dist_info.nccl_error.empty()) nccl.Set("error", dist_info.nccl_error);
  distributed.Set("nccl", nccl);
  result.Set("distributed", distributed);
  return result;
}

// engineCounters(reset?) -> {matmulSeconds, visionTowerImages, imageCacheHits}:
// time spent in CPU matrix products, images the vision tower encoded, and
// image features found in a model's cache instead.
Napi::Value EngineCounters(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("matmulSeconds", double(cpu::matmul_nanoseconds()) / 1e9);
  out.Set("visionTowerImages", double(model::vision_tower_images()));
  out.Set("imageCacheHits", double(model::image_cache_hits()));
  if (info.Length() > 0 && info[0].ToBoolean()) {
    cpu::reset_matmul_nanoseconds();
    model::reset_vision_tower_images();
    model::reset_image_cache_hits();
  }
  return out;
}

void register_runtime_info(Napi::Env env, Napi::Object exports) {
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo, "runtimeInfo"));
  exports.Set("engineCounters", Napi::Function::New(env, EngineCounters, "engineCounters"));
}

const ModuleRegistration registration(register_runtime_info);

}  // namespace
}  // namespace st::addon
