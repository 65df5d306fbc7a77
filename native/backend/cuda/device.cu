// The CUDA runtime probe (device.h). The runtime is linked statically, so this
// file loads on machines with no driver or no GPU; every CUDA call below is
// checked and a failure becomes unavailable_reason, never a crash.
#include <cuda_runtime.h>

#include <cctype>
#include <string>

#include "backend/cuda/device.h"

#ifndef ST_CUDA_ARCHITECTURES
#define ST_CUDA_ARCHITECTURES ""  // CMake passes e.g. "80,90"
#endif

namespace st::cuda {

namespace {

// The lowest architecture in a CMake list such as "80;90" or "80-real;90a",
// as major * 10 + minor; 80 when the list names none.
int lowest_architecture(const std::string& list) {
  int lowest = 0;
  size_t i = 0;
  while (i < list.size()) {
    if (std::isdigit(static_cast<unsigned char>(list[i]))) {
      int value = 0;
      while (i < list.size() && std::isdigit(static_cast<unsigned char>(list[i])))
        value = value * 10 + (list[i++] - '0');
      if (value > 0 && (lowest == 0 || value < lowest)) lowest = value;
      // Skip the rest of this entry ("-real", "a", ...).
      while (i < list.size() && list[i] != ';' && list[i] != ',' && list[i] != ' ') ++i;
    } else {
      ++i;
    }
  }
  return lowest == 0 ? 80 : lowest;
}

// "80;90" -> "sm_80/sm_90"
std::string targets_text(const std::string& list) {
  std::string out, entry;
  auto flush = [&]() {
    if (entry.empty()) return;
    if (!out.empty()) out += "/";
    out += "sm_" + entry;
    entry.clear();
  };
  for (char ch : list) {
    if (ch == ';' || ch == ',' || ch == ' ') flush();
    else entry += ch;
  }
  flush();
  return out.empty() ? "sm_80/sm_90" : out;
}

RuntimeInfo probe() {
  RuntimeInfo info;
  info.compiled = true;
  info.architectures = ST_CUDA_ARCHITECTURES;

  int runtime_version = 0;
  if (cudaRuntimeGetVersion(&runtime_version) == cudaSuccess) info.runtime_version = runtime_version;
  int driver_version = 0;
  // Succeeds with 0 when no driver is installed.
  if (cudaDriverGetVersion(&driver_version) == cudaSuccess) info.driver_version = driver_version;

  int count = 0;
  const cudaError_t count_error = cudaGetDeviceCount(&count);
  if (count_error != cudaSuccess || count <= 0) {
    cudaGetLastError();  // clear the error so later calls do not see it
    const std::string why =
        count_error != cudaSuccess ? cudaGetErrorString(count_error) : "the driver reports no devices";
    info.unavailable_reason =
        "no CUDA device: " + why + " (driver version " + std::to_string(info.driver_version) + ")";
    return info;
  }

  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) {
    previous = -1;
    cudaGetLastError();
  }
  const int lowest = lowest_architecture(info.architectures);
  bool any_usable = false;
  std::string found;
  for (int d = 0; d < count; ++d) {
    DeviceInfo device;
    device.index = d;
    cudaDeviceProp prop;
    const cudaError_t prop_error = cudaGetDeviceProperties(&prop, d);
    if (prop_error != cudaSuccess) {
      cudaGetLastError();
      device.name = std::string("(properties unavailable: ") + cudaGetErrorString(prop_error) + ")";
    } else {
      device.name = prop.name;
      device.compute_major = prop.major;
      device.compute_minor = prop.minor;
      device.multiprocessors = prop.multiProcessorCount;
      device.total_memory = static_cast<int64_t>(prop.totalGlobalMem);
    }
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaSetDevice(d) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      device.free_memory = static_cast<int64_t>(free_bytes);
      if (device.total_memory == 0) device.total_memory = static_cast<int64_t>(total_bytes);
    } else {
      cudaGetLastError();
    }
    device.usable = prop_error == cudaSuccess && device.compute_major * 10 + device.compute_minor >= lowest;
    if (device.usable) any_usable = true;
    if (!found.empty()) found += ", ";
    found += device.name + " (compute capability " + std::to_string(device.compute_major) + "." +
             std::to_string(device.compute_minor) + ")";
    info.devices.push_back(std::move(device));
  }
  if (previous >= 0 && cudaSetDevice(previous) != cudaSuccess) cudaGetLastError();

  if (!any_usable) {
    info.unavailable_reason = "no usable CUDA device: this build targets " + targets_text(info.architectures) +
                              " and needs compute capability " + std::to_string(lowest / 10) + "." +
                              std::to_string(lowest % 10) + " or newer, but found " + found;
  }
  return info;
}

}  // namespace

const RuntimeInfo& runtime_info() {
  static const RuntimeInfo info = probe();  // thread-safe one-time initialisation
  return info;
}

}  // namespace st::cuda
