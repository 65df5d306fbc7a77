// CUDA EMULATION ON THE CPU -- for tests only. A fake libcublas for the
// emulation build: the CUDA backend opens it with dlopen, as it opens the
// real one (SPATIALTHINKER_CUBLAS=/path/to/libcublas_emulated.so), and
// resolves the same entry points, so its loading code and the arguments it
// passes are exercised.
//
// cublasGemmEx here follows cuBLAS's documented semantics, not the caller's
// intent: column-major operands, op(A) = A or A^T per transa (likewise B),
// leading dimensions, alpha and beta (with beta == 0, C is not read), the
// argument checks cuBLAS makes (CUBLAS_STATUS_INVALID_VALUE for negative
// sizes, unknown ops and leading dimensions below their minimum), fp32 data
// only, and CUBLAS_COMPUTE_32F_FAST_TF32 rounding the inputs to TF32 (10-bit
// mantissa, to nearest with ties away from zero) as the tensor cores do. A
// caller that passes what would be wrong on a GPU gets the same wrong answer
// here. It also asks the emulator (through the stream, emulated_stream.h)
// whether every matrix it reads or writes lies inside device memory: where
// a real cuBLAS would fault, this one fails with
// CUBLAS_STATUS_EXECUTION_FAILED and says why on stderr.
//
// Products are naive loops on the calling thread, accumulated in fp32 in
// order of k: slow, and nothing about real cuBLAS's speed or blocking.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "emulated_stream.h"

namespace {

// Values as in cublas_api.h and library_types.h.
constexpr int kSuccess = 0, kNotInitialized = 1, kAllocFailed = 3, kInvalidValue = 7, kArchMismatch = 8,
              kMappingError = 11, kExecutionFailed = 13, kInternalError = 14, kNotSupported = 15,
              kLicenseError = 16;
constexpr int kOpN = 0, kOpT = 1, kOpC = 2;
constexpr int kR32F = 0;                              // CUDA_R_32F
constexpr int kCompute32F = 68, kCompute32FPedantic = 69, kCompute32FFastTF32 = 77;
constexpr int kMajor = 0, kMinor = 1, kPatch = 2;     // libraryPropertyType
constexpr uint64_t kHandleMagic = 0x46414b45424c4153ull;  // "FAKEBLAS"

void* const kLegacyStream = reinterpret_cast<void*>(0x1);
void* const kPerThreadStream = reinterpret_cast<void*>(0x2);

struct Handle {
  uint64_t magic;
  void* stream;
};

void say(const std::string& message) { std::fprintf(stderr, "[cuda-emulation] fake cuBLAS: %s\n", message.c_str()); }

bool valid(const Handle* h) { return h != nullptr && h->magic == kHandleMagic; }

const st_emu_abi::Services* services_of(void* stream) {
  if (stream == nullptr || stream == kLegacyStream || stream == kPerThreadStream) return nullptr;
  const auto* header = static_cast<const st_emu_abi::StreamHeader*>(stream);
  return header->magic == st_emu_abi::kStreamMagic ? header->services : nullptr;
}

// TF32: the top 10 mantissa bits, rounded to nearest, ties away from zero.
float to_tf32(float x) {
  if (!std::isfinite(x)) return x;
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  bits = (bits + 0x1000u) & 0xffffe000u;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// Elements spanned by a column-major [rows, cols] operand with leading dimension ld.
size_t extent(int rows, int cols, int ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return size_t(cols - 1) * size_t(ld) + size_t(rows);
}

}  // namespace

extern "C" {

// Marks this library as the emulation's fake: the CUDA backend refuses it in
// a GPU build and requires it in the emulation build.
__attribute__((visibility("default"))) extern const char st_emulated_cublas[] =
    "fake cuBLAS of spatialthinker's CUDA emulation on the CPU (tests only, not a GPU library)";

__attribute__((visibility("default"))) int cublasCreate_v2(void** handle) {
  if (handle == nullptr) return kInvalidValue;
  *handle = new Handle{kHandleMagic, nullptr};
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasDestroy_v2(void* handle) {
  auto* h = static_cast<Handle*>(handle);
  if (!valid(h)) return kNotInitialized;
  h->magic = 0;
  delete h;
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasSetStream_v2(void* handle, void* stream) {
  auto* h = static_cast<Handle*>(handle);
  if (!valid(h)) return kNotInitialized;
  if (stream != nullptr && stream != kLegacyStream && stream != kPerThreadStream && services_of(stream) == nullptr) {
    say("cublasSetStream: the stream is not a live emulated stream");
    return kInvalidValue;
  }
  h->stream = stream;
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasGetProperty(int type, int* value) {
  if (value == nullptr) return kInvalidValue;
  if (type != kMajor && type != kMinor && type != kPatch) return kInvalidValue;
  *value = 0;  // version 0.0.0: not a cuBLAS release
  return kSuccess;
}

__attribute__((visibility("default"))) const char* cublasGetStatusString(int status) {
  switch (status) {
    case kSuccess: return "CUBLAS_STATUS_SUCCESS";
    case kNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kAllocFailed: return "CUBLAS_STATUS_ALLOC_FAILED";
    case kInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
    case kArchMismatch: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case kMappingError: return "CUBLAS_STATUS_MAPPING_ERROR";
    case kExecutionFailed: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case kInternalError: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case kNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case kLicenseError: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

// C [m, n] = alpha op(A) [m, k] op(B) [k, n] + beta C, column-major.
__attribute__((visibility("default"))) int cublasGemmEx(void* handle, int transa, int transb, int m, int n, int k,
                                                        const void* alpha, const void* a, int a_type, int lda,
                                                        const void* b, int b_type, int ldb, const void* beta, void* c,
                                                        int c_type, int ldc, int compute_type, int algo) {
  auto* h = static_cast<Handle*>(handle);
  if (!valid(h)) return kNotInitialized;
  auto op_ok = [](int op) { return op == kOpN || op == kOpT || op == kOpC; };
  auto at_least = [](int v) { return v > 1 ? v : 1; };
  if (m < 0 || n < 0 || k < 0 || !op_ok(transa) || !op_ok(transb) || alpha == nullptr || beta == nullptr ||
      lda < at_least(transa == kOpN ? m : k) || ldb < at_least(transb == kOpN ? k : n) || ldc < at_least(m))
    return kInvalidValue;
  if (a_type != kR32F || b_type != kR32F || c_type != kR32F) return kNotSupported;
  if (compute_type != kCompute32F && compute_type != kCompute32FPedantic && compute_type != kCompute32FFastTF32)
    return kNotSupported;
  (void)algo;  // every algorithm computes the same product
  if (m == 0 || n == 0) return kSuccess;

  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const bool uses_ab = k > 0 && al != 0.0f;
  const bool a_n = transa == kOpN, b_n = transb == kOpN;

  const st_emu_abi::Services* services = services_of(h->stream);
  if (h->stream != nullptr && h->stream != kLegacyStream && h->stream != kPerThreadStream && services == nullptr) {
    say("cublasGemmEx: the handle's stream was destroyed");
    return kExecutionFailed;
  }
  if (services != nullptr) {
    char why[512];
    auto check = [&](const char* name, const void* p, size_t elements) {
      if (elements == 0 || services->check_device_range(p, elements * sizeof(float), why, sizeof(why)) == 0)
        return true;
      const std::string message = std::string("cublasGemmEx (transa ") + (a_n ? "N" : "T") + ", transb " +
                                  (b_n ? "N" : "T") + ", m " + std::to_string(m) + ", n " + std::to_string(n) +
                                  ", k " + std::to_string(k) + ", lda " + std::to_string(lda) + ", ldb " +
                                  std::to_string(ldb) + ", ldc " + std::to_string(ldc) + "): " + name + ": " + why;
      services->report_failure(("fake cuBLAS: " + message).c_str());  // printed by the emulator
      return false;
    };
    if (uses_ab && (!check("A", a, a_n ? extent(m, k, lda) : extent(k, m, lda)) ||
                    !check("B", b, b_n ? extent(k, n, ldb) : extent(n, k, ldb))))
      return kExecutionFailed;
    if (!check("C", c, extent(m, n, ldc))) return kExecutionFailed;
  }

  struct Product {
    const float *A, *B;
    float* C;
    int m, n, k, lda, ldb, ldc;
    bool a_n, b_n, tf32, uses_ab;
    float al, be;
  };
  auto* product = new Product{static_cast<const float*>(a), static_cast<const float*>(b), static_cast<float*>(c), m, n, k,
                              lda, ldb, ldc, a_n, b_n, compute_type == kCompute32FFastTF32, uses_ab, al, be};
  auto run = [](void* p) {
    const Product& q = *static_cast<const Product*>(p);
    // op(A) by rows and op(B) by columns, each contiguous over k.
    std::vector<float> ar, bc;
    if (q.uses_ab) {
      ar.resize(size_t(q.m) * size_t(q.k));
      bc.resize(size_t(q.n) * size_t(q.k));
      for (int i = 0; i < q.m; ++i)
        for (int l = 0; l < q.k; ++l) {
          const float v = q.a_n ? q.A[size_t(i) + size_t(l) * size_t(q.lda)] : q.A[size_t(l) + size_t(i) * size_t(q.lda)];
          ar[size_t(i) * size_t(q.k) + size_t(l)] = q.tf32 ? to_tf32(v) : v;
        }
      for (int j = 0; j < q.n; ++j)
        for (int l = 0; l < q.k; ++l) {
          const float v = q.b_n ? q.B[size_t(l) + size_t(j) * size_t(q.ldb)] : q.B[size_t(j) + size_t(l) * size_t(q.ldb)];
          bc[size_t(j) * size_t(q.k) + size_t(l)] = q.tf32 ? to_tf32(v) : v;
        }
    }
    for (int j = 0; j < q.n; ++j)
      for (int i = 0; i < q.m; ++i) {
        float sum = 0.0f;
        if (q.uses_ab) {
          const float* x = ar.data() + size_t(i) * size_t(q.k);
          const float* y = bc.data() + size_t(j) * size_t(q.k);
          for (int l = 0; l < q.k; ++l) sum += x[l] * y[l];
        }
        float& out = q.C[size_t(i) + size_t(j) * size_t(q.ldc)];
        out = q.be == 0.0f ? q.al * sum : q.al * sum + q.be * out;
      }
  };
  auto destroy = [](void* p) { delete static_cast<Product*>(p); };
  // On a capturing stream the product is a step of the graph, run at replay.
  if (services != nullptr && services->capture(h->stream, run, product, destroy)) return kSuccess;
  run(product);
  destroy(product);
  return kSuccess;
}

}  // extern "C"
