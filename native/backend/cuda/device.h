#pragma once
// What the CUDA backend can see at run time. A build without CUDA, a machine
// without a driver and a machine without a GPU all report through here, never
// through a load failure.
#include <cstdint>
#include <string>
#include <vector>

namespace st::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  int64_t total_memory = 0, free_memory = 0;
  int multiprocessors = 0;
  bool usable = false;  // its compute capability is one this build targets
};

struct RuntimeInfo {
  bool compiled = false;        // this build contains the CUDA backend
  std::string architectures;    // e.g. "80;90"
  int runtime_version = 0;      // cudaRuntimeGetVersion, e.g. 13000
  int driver_version = 0;       // 0 when no driver is installed
  std::vector<DeviceInfo> devices;
  std::string unavailable_reason;  // empty when at least one device is usable
};

// Probes once and caches; safe to call from any thread.
const RuntimeInfo& runtime_info();

inline bool available() { return runtime_info().unavailable_reason.empty(); }

}  // namespace st::cuda
