#pragma once
// Whether cuBLAS can be loaded here (the CUDA backend's matrix products need
// it; it is opened with dlopen at run time, never linked). Plain C++, so the
// addon can report it in every build.
#include <string>

namespace st::cuda {

struct CublasInfo {
  bool found = false;
  std::string library;  // the file that loaded, e.g. "libcublas.so.13"
  std::string version;  // e.g. "13.0.2", from cublasGetProperty
  std::string error;    // why not, when not found
};

// Tries once and caches; safe from any thread. Needs no GPU.
const CublasInfo& cublas_info();

}  // namespace st::cuda
