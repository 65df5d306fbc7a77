// cuBLAS, opened with dlopen at run time: the build machines have no cuBLAS
// headers or libraries, and a binary linked against it would not even load
// where it is missing. The handful of entry points used are declared here
// from the cuBLAS API reference (signatures and enum values as in
// cublas_api.h; every enum is passed as a C int).
#include <dlfcn.h>

#include <climits>
#include <cstdlib>
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cublas.h"
#include "backend/cuda/kernels.cuh"

namespace st::cuda {
namespace {

constexpr int kStatusSuccess = 0;            // CUBLAS_STATUS_SUCCESS
constexpr int kOpN = 0, kOpT = 1;            // CUBLAS_OP_N, CUBLAS_OP_T
constexpr int kCompute32F = 68;              // CUBLAS_COMPUTE_32F
constexpr int kCompute32FFastTF32 = 77;      // CUBLAS_COMPUTE_32F_FAST_TF32
constexpr int kGemmDefault = -1;             // CUBLAS_GEMM_DEFAULT
constexpr int kMajor = 0, kMinor = 1, kPatch = 2;  // libraryPropertyType

using CreateFn = int (*)(void** handle);                       // cublasCreate_v2
using DestroyFn = int (*)(void* handle);                       // cublasDestroy_v2
using SetStreamFn = int (*)(void* handle, cudaStream_t stream);  // cublasSetStream_v2
using GemmExFn = int (*)(void* handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* a,
                         int a_type, int lda, const void* b, int b_type, int ldb, const void* beta, void* c,
                         int c_type, int ldc, int compute_type, int algo);  // cublasGemmEx
using GemmStridedBatchedExFn = int (*)(void* handle, int transa, int transb, int m, int n, int k, const void* alpha,
                                      const void* a, int a_type, int lda, long long stride_a, const void* b,
                                      int b_type, int ldb, long long stride_b, const void* beta, void* c, int c_type,
                                      int ldc, long long stride_c, int batch, int compute_type,
                                      int algo);  // cublasGemmStridedBatchedEx
using GetPropertyFn = int (*)(int type, int* value);                       // cublasGetProperty
using StatusStringFn = const char* (*)(int status);                        // cublasGetStatusString

struct Library {
  CublasInfo info;
  CreateFn create = nullptr;
  DestroyFn destroy = nullptr;
  SetStreamFn set_stream = nullptr;
  GemmExFn gemm_ex = nullptr;
  GemmStridedBatchedExFn gemm_strided_batched_ex = nullptr;
  StatusStringFn status_string = nullptr;
};

// Newest first: the runtime this build links is CUDA 13, and a CUDA 12
// cuBLAS runs on any driver new enough for it.
constexpr const char* kCandidates[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};

// The fake cuBLAS of the CPU emulation build (native/tests/cuda_emulation)
// exports this symbol; it computes on host memory, so a GPU build must
// never use it, and the emulation build must use nothing else.
constexpr const char* kEmulationMarker = "st_emulated_cublas";

Library load() {
  Library lib;
  std::string tried;
  void* handle = nullptr;
  // SPATIALTHINKER_CUBLAS names the library to open instead of the search.
  const char* chosen = std::getenv("SPATIALTHINKER_CUBLAS");
  if (chosen != nullptr && *chosen != '\0') {
    handle = dlopen(chosen, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      lib.info.error = std::string("cuBLAS could not be loaded from SPATIALTHINKER_CUBLAS=") + chosen + " (" +
                       (why ? why : "dlopen failed") + ")";
      return lib;
    }
    lib.info.library = chosen;
  } else {
    for (const char* name : kCandidates) {
      handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (handle != nullptr) {
        lib.info.library = name;
        break;
      }
      const char* why = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (why ? why : name);
    }
  }
  if (handle == nullptr) {
    lib.info.error = "cuBLAS could not be loaded (" + tried +
                     "). The CUDA backend's matrix products need it: install cuBLAS (the CUDA toolkit's "
                     "libcublas, or the nvidia-cublas-cu12 / nvidia-cublas pip package) and put its directory on "
                     "LD_LIBRARY_PATH, or name the file with SPATIALTHINKER_CUBLAS";
    return lib;
  }
  const bool fake = dlsym(handle, kEmulationMarker) != nullptr;
#ifdef ST_CUDA_EMULATION
  if (!fake) {
    lib.info.error = lib.info.library +
                     " is not the emulation's fake cuBLAS: this build runs CUDA kernels under a CPU emulation, on "
                     "host memory, and needs SPATIALTHINKER_CUBLAS=<build-emu>/emulation/libcublas_emulated.so";
    return lib;
  }
#else
  if (fake) {
    lib.info.error = lib.info.library +
                     " is the fake cuBLAS of the CPU emulation build (tests only), which cannot work on a GPU";
    return lib;
  }
#endif
  // The library stays loaded for the life of the process.
  auto symbol = [&](const char* name) -> void* {
    void* p = dlsym(handle, name);
    if (p == nullptr && lib.info.error.empty())
      lib.info.error = lib.info.library + " has no symbol " + name + " (too old a cuBLAS?)";
    return p;
  };
  lib.create = reinterpret_cast<CreateFn>(symbol("cublasCreate_v2"));
  lib.destroy = reinterpret_cast<DestroyFn>(symbol("cublasDestroy_v2"));
  lib.set_stream = reinterpret_cast<SetStreamFn>(symbol("cublasSetStream_v2"));
  lib.gemm_ex = reinterpret_cast<GemmExFn>(symbol("cublasGemmEx"));
  lib.gemm_strided_batched_ex = reinterpret_cast<GemmStridedBatchedExFn>(symbol("cublasGemmStridedBatchedEx"));
  auto get_property = reinterpret_cast<GetPropertyFn>(symbol("cublasGetProperty"));
  // Optional (cuBLAS >= 11.4): readable status names in errors.
  lib.status_string = reinterpret_cast<StatusStringFn>(dlsym(handle, "cublasGetStatusString"));
  if (!lib.info.error.empty()) return lib;
  int major = 0, minor = 0, patch = 0;
  if (get_property(kMajor, &major) == kStatusSuccess && get_property(kMinor, &minor) == kStatusSuccess &&
      get_property(kPatch, &patch) == kStatusSuccess)
    lib.info.version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  lib.info.found = true;
  return lib;
}

const Library& library() {
  static const Library lib = load();  // thread-safe one-time initialisation
  return lib;
}

std::string status_text(int status) {
  const Library& lib = library();
  const char* name = lib.status_string ? lib.status_string(status) : nullptr;
  return name ? std::string(name) + " (" + std::to_string(status) + ")" : "status " + std::to_string(status);
}

// cudaDataType of an array (library_types.h): CUDA_R_32F, CUDA_R_16BF.
int data_type(Storage s) { return s == Storage::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

// The inputs of one product share a type; fp32 inputs take TF32 when asked,
// bf16 inputs always accumulate in fp32.
int compute_type(ConstDevicePtr a, ConstDevicePtr b, bool tf32, const char* what) {
  if (a.type() != b.type())
    throw std::invalid_argument(std::string("CUDA backend: ") + what + ": the operands are " + storage_name(a.type()) +
                                " and " + storage_name(b.type()) + "; a product takes one input type");
  return a.type() == Storage::F32 && tf32 ? kCompute32FFastTF32 : kCompute32F;
}

int as_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw std::runtime_error(std::string("CUDA backend: ") + what + ": dimension " + std::to_string(v) +
                             " does not fit cuBLAS's 32-bit sizes");
  return int(v);
}

}  // namespace

const CublasInfo& cublas_info() { return library().info; }

Gemm::Gemm(cudaStream_t stream, bool tf32) : stream_(stream), tf32_(tf32) {
  const Library& lib = library();
  if (!lib.info.found) throw std::runtime_error("CUDA backend: " + lib.info.error);
  int status = lib.create(&handle_);
  if (status != kStatusSuccess)
    throw std::runtime_error("CUDA backend: cublasCreate failed: " + status_text(status) + " (" + lib.info.library +
                             ")");
  status = lib.set_stream(handle_, stream_);
  if (status != kStatusSuccess) {
    lib.destroy(handle_);
    throw std::runtime_error("CUDA backend: cublasSetStream failed: " + status_text(status));
  }
}

Gemm::~Gemm() {
  if (handle_ != nullptr) library().destroy(handle_);
}

// Row-major products as column-major cuBLAS calls: a row-major [r, c] array
// is a column-major [c, r] one, so each product is computed transposed.

void Gemm::xwt(ConstDevicePtr x, ConstDevicePtr w, DevicePtr y, int64_t m, int64_t k, int64_t n, float beta) {
  // y^T [n, m] = w [n, k] (stored as w^T, ld k) x^T [k, m] (ld k)
  gemm(true, false, n, m, k, w, k, x, k, beta, y, n, "linear (y = x w^T)");
}

void Gemm::dyw(ConstDevicePtr dy, ConstDevicePtr w, DevicePtr dx, int64_t m, int64_t n, int64_t k, float beta) {
  // dx^T [k, m] = w^T [k, n] (ld k) dy^T [n, m] (ld n)
  gemm(false, false, k, m, n, w, k, dy, n, beta, dx, k, "linear backward (dx = dy w)");
}

void Gemm::dytx(ConstDevicePtr dy, ConstDevicePtr x, DevicePtr dw, int64_t m, int64_t n, int64_t k, float beta) {
  // dw^T [k, n] = x^T [k, m] (ld k) (dy^T [n, m], ld n)^T
  gemm(false, true, k, n, m, x, k, dy, n, beta, dw, k, "linear backward (dw += dy^T x)");
}

void Gemm::xwt_batched(ConstDevicePtr x, int64_t x_stride, ConstDevicePtr w, int64_t w_stride, DevicePtr y,
                       int64_t y_stride, int64_t batch, int64_t m, int64_t k, int64_t n, float beta) {
  const char* what = "batched product (y = x w^T)";
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) throw std::logic_error(std::string(what) + ": k = 0");
  const int compute = compute_type(x, w, tf32_, what);
  const float alpha = 1.0f;
  // As xwt: y_b^T [n, m] = w_b [n, k] (as w_b^T, ld k) x_b^T [k, m] (ld k).
  const int status = library().gemm_strided_batched_ex(
      handle_, kOpT, kOpN, as_int(n, what), as_int(m, what), as_int(k, what), &alpha, w.data(), data_type(w.type()),
      as_int(k, what), w_stride, x.data(), data_type(x.type()), as_int(k, what), x_stride, &beta, y.data(),
      data_type(y.type()), as_int(n, what), y_stride, as_int(batch, what), compute, kGemmDefault);
  if (status != kStatusSuccess)
    throw std::runtime_error(std::string("CUDA backend: cublasGemmStridedBatchedEx failed in ") + what + ": " +
                             status_text(status) + " (batch " + std::to_string(batch) + ", m " + std::to_string(m) +
                             ", n " + std::to_string(n) + ", k " + std::to_string(k) + ")");
}

void Gemm::gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, ConstDevicePtr a, int64_t lda,
                ConstDevicePtr b, int64_t ldb, float beta, DevicePtr c, int64_t ldc, const char* what) {
  if (m == 0 || n == 0) return;
  const int compute = compute_type(a, b, tf32_, what);
  if (k == 0) {
    // An empty sum: C = beta C. (cuBLAS would reject the zero leading dimensions.)
    if (beta == 0.0f) check(cudaMemsetAsync(c.data(), 0, size_t(m * n * storage_bytes(c.type())), stream_), what);
    else if (beta != 1.0f) throw std::logic_error(std::string(what) + ": k = 0 with beta other than 0 or 1");
    return;
  }
  const float alpha = 1.0f;
  const int status = library().gemm_ex(
      handle_, trans_a ? kOpT : kOpN, trans_b ? kOpT : kOpN, as_int(m, what), as_int(n, what), as_int(k, what), &alpha,
      a.data(), data_type(a.type()), as_int(lda, what), b.data(), data_type(b.type()), as_int(ldb, what), &beta,
      c.data(), data_type(c.type()), as_int(ldc, what), compute, kGemmDefault);
  if (status != kStatusSuccess)
    throw std::runtime_error(std::string("CUDA backend: cublasGemmEx failed in ") + what + ": " + status_text(status) +
                             " (m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " + std::to_string(k) +
                             ")");
}

}  // namespace st::cuda
