#pragma once
// CUDA EMULATION ON THE CPU (tests only): what the fake cuBLAS
// (fake_cublas.cpp) may know of an emulated stream. A cudaStream_t of the
// emulator points to a struct that starts with this header, so the fake
// library, handed the stream by cublasSetStream, can ask the emulator
// whether the matrices it is given lie inside device allocations. It
// depends on nothing else of the emulator (it is a separate shared library,
// opened with dlopen like the real cuBLAS).
#include <cstddef>
#include <cstdint>

namespace st_emu_abi {

constexpr uint64_t kStreamMagic = 0x53545f454d552d31ull;  // "ST_EMU-1"

struct Services {
  // 0 when [ptr, ptr + bytes) lies inside one live device allocation;
  // otherwise nonzero, with the reason written to `why`.
  int (*check_device_range)(const void* ptr, size_t bytes, char* why, size_t why_size);
  // Records an execution failure of work on the stream: printed at once and
  // returned by the emulator's next cudaGetLastError / synchronisation.
  void (*report_failure)(const char* message);
  // When the stream is capturing (cudaStreamBeginCapture): records
  // run(context) as a step of the graph, which owns context from then on
  // (destroy(context) when the graph goes), and returns 1; otherwise 0.
  int (*capture)(const void* stream, void (*run)(void*), void* context, void (*destroy)(void*));
};

struct StreamHeader {
  uint64_t magic;
  const Services* services;
};

}  // namespace st_emu_abi
