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
// sizes, unknown ops and leading dimensions below their minimum), the data
// type combinations cuBLAS offers with fp32 compute that the backend uses
// (A and B both CUDA_R_32F with C CUDA_R_32F; A and B both CUDA_R_16BF with
// C CUDA_R_16BF or CUDA_R_32F; anything else CUBLAS_STATUS_NOT_SUPPORTED),
// and CUBLAS_COMPUTE_32F_FAST_TF32 (fp32 inputs only) rounding the inputs to
// TF32 (10-bit mantissa, to nearest with ties away from zero) as the tensor
// cores do. bf16 inputs are widened exactly to fp32, the sum is fp32, and a
// bf16 C is alpha * sum + beta * C computed in fp32 then rounded to nearest
// even, once. cublasGemmStridedBatchedEx is the same product per batch entry,
// each operand `stride` elements after the previous one. A
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
constexpr int kR32F = 0, kR16BF = 14;                // CUDA_R_32F, CUDA_R_16BF
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

// bf16 <-> fp32. Widening is exact (the bf16 bits are fp32's top half);
// narrowing rounds to nearest even, NaN staying a (quiet) NaN.
float from_bf16(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

uint16_t to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if (std::isnan(x)) return uint16_t((bits >> 16) | 0x0040u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

size_t type_size(int type) { return type == kR16BF ? 2 : 4; }

float load(const void* p, int type, size_t i) {
  return type == kR16BF ? from_bf16(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
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

}  // extern "C"

namespace {

// One product, C [m, n] = alpha op(A) [m, k] op(B) [k, n] + beta C
// (column-major), after the arguments were checked. `api` names the entry
// point in messages.
int gemm_one(Handle* h, const char* api, int transa, int transb, int m, int n, int k, float al, const void* a,
             int a_type, int lda, const void* b, int b_type, int ldb, float be, void* c, int c_type, int ldc,
             bool tf32) {
  if (m == 0 || n == 0) return kSuccess;
  const bool uses_ab = k > 0 && al != 0.0f;
  const bool a_n = transa == kOpN, b_n = transb == kOpN;

  const st_emu_abi::Services* services = services_of(h->stream);
  if (h->stream != nullptr && h->stream != kLegacyStream && h->stream != kPerThreadStream && services == nullptr) {
    say(std::string(api) + ": the handle's stream was destroyed");
    return kExecutionFailed;
  }
  if (services != nullptr) {
    char why[512];
    auto check = [&](const char* name, const void* p, size_t elements, int type) {
      if (elements == 0 || services->check_device_range(p, elements * type_size(type), why, sizeof(why)) == 0)
        return true;
      const std::string message = std::string(api) + " (transa " + (a_n ? "N" : "T") + ", transb " +
                                  (b_n ? "N" : "T") + ", m " + std::to_string(m) + ", n " + std::to_string(n) +
                                  ", k " + std::to_string(k) + ", lda " + std::to_string(lda) + ", ldb " +
                                  std::to_string(ldb) + ", ldc " + std::to_string(ldc) + "): " + name + ": " + why;
      services->report_failure(("fake cuBLAS: " + message).c_str());  // printed by the emulator
      return false;
    };
    if (uses_ab && (!check("A", a, a_n ? extent(m, k, lda) : extent(k, m, lda), a_type) ||
                    !check("B", b, b_n ? extent(k, n, ldb) : extent(n, k, ldb), b_type)))
      return kExecutionFailed;
    if (!check("C", c, extent(m, n, ldc), c_type)) return kExecutionFailed;
  }

  // op(A) by rows and op(B) by columns, each contiguous over k, in fp32.
  std::vector<float> ar, bc;
  if (uses_ab) {
    ar.resize(size_t(m) * size_t(k));
    bc.resize(size_t(n) * size_t(k));
    for (int i = 0; i < m; ++i)
      for (int l = 0; l < k; ++l) {
        const float v = load(a, a_type, a_n ? size_t(i) + size_t(l) * size_t(lda) : size_t(l) + size_t(i) * size_t(lda));
        ar[size_t(i) * size_t(k) + size_t(l)] = tf32 ? to_tf32(v) : v;
      }
    for (int j = 0; j < n; ++j)
      for (int l = 0; l < k; ++l) {
        const float v = load(b, b_type, b_n ? size_t(l) + size_t(j) * size_t(ldb) : size_t(j) + size_t(l) * size_t(ldb));
        bc[size_t(j) * size_t(k) + size_t(l)] = tf32 ? to_tf32(v) : v;
      }
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      float sum = 0.0f;
      if (uses_ab) {
        const float* x = ar.data() + size_t(i) * size_t(k);
        const float* y = bc.data() + size_t(j) * size_t(k);
        for (int l = 0; l < k; ++l) sum += x[l] * y[l];
      }
      const size_t at = size_t(i) + size_t(j) * size_t(ldc);
      const float value = be == 0.0f ? al * sum : al * sum + be * load(c, c_type, at);
      if (c_type == kR16BF) static_cast<uint16_t*>(c)[at] = to_bf16(value);
      else static_cast<float*>(c)[at] = value;
    }
  return kSuccess;
}

// The checks both entry points make; kSuccess when the call may go on.
int check_arguments(int transa, int transb, int m, int n, int k, const void* alpha, int a_type, int lda, int b_type,
                    int ldb, const void* beta, int c_type, int ldc, int compute_type) {
  auto op_ok = [](int op) { return op == kOpN || op == kOpT || op == kOpC; };
  auto at_least = [](int v) { return v > 1 ? v : 1; };
  if (m < 0 || n < 0 || k < 0 || !op_ok(transa) || !op_ok(transb) || alpha == nullptr || beta == nullptr ||
      lda < at_least(transa == kOpN ? m : k) || ldb < at_least(transb == kOpN ? k : n) || ldc < at_least(m))
    return kInvalidValue;
  const bool fp32 = a_type == kR32F && b_type == kR32F && c_type == kR32F;
  const bool bf16 = a_type == kR16BF && b_type == kR16BF && (c_type == kR16BF || c_type == kR32F);
  if (!fp32 && !bf16) return kNotSupported;
  if (compute_type != kCompute32F && compute_type != kCompute32FPedantic && compute_type != kCompute32FFastTF32)
    return kNotSupported;
  if (compute_type == kCompute32FFastTF32 && !fp32) return kNotSupported;
  return kSuccess;
}

}  // namespace

extern "C" {

// C [m, n] = alpha op(A) [m, k] op(B) [k, n] + beta C, column-major.
__attribute__((visibility("default"))) int cublasGemmEx(void* handle, int transa, int transb, int m, int n, int k,
                                                        const void* alpha, const void* a, int a_type, int lda,
                                                        const void* b, int b_type, int ldb, const void* beta, void* c,
                                                        int c_type, int ldc, int compute_type, int algo) {
  auto* h = static_cast<Handle*>(handle);
  if (!valid(h)) return kNotInitialized;
  const int status =
      check_arguments(transa, transb, m, n, k, alpha, a_type, lda, b_type, ldb, beta, c_type, ldc, compute_type);
  if (status != kSuccess) return status;
  (void)algo;  // every algorithm computes the same product
  return gemm_one(h, "cublasGemmEx", transa, transb, m, n, k, *static_cast<const float*>(alpha), a, a_type, lda, b,
                  b_type, ldb, *static_cast<const float*>(beta), c, c_type, ldc,
                  compute_type == kCompute32FFastTF32);
}

// The same product for each of batch_count operand triples, operand i of a
// triple starting stride elements (of its type) after operand i - 1.
__attribute__((visibility("default"))) int cublasGemmStridedBatchedEx(
    void* handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* a, int a_type, int lda,
    long long stride_a, const void* b, int b_type, int ldb, long long stride_b, const void* beta, void* c, int c_type,
    int ldc, long long stride_c, int batch_count, int compute_type, int algo) {
  auto* h = static_cast<Handle*>(handle);
  if (!valid(h)) return kNotInitialized;
  const int status =
      check_arguments(transa, transb, m, n, k, alpha, a_type, lda, b_type, ldb, beta, c_type, ldc, compute_type);
  if (status != kSuccess) return status;
  if (batch_count < 0) return kInvalidValue;
  (void)algo;
  for (int i = 0; i < batch_count; ++i) {
    const int r = gemm_one(h, "cublasGemmStridedBatchedEx", transa, transb, m, n, k,
                           *static_cast<const float*>(alpha),
                           static_cast<const char*>(a) + i * stride_a * static_cast<long long>(type_size(a_type)), a_type, lda,
                           static_cast<const char*>(b) + i * stride_b * static_cast<long long>(type_size(b_type)), b_type, ldb,
                           *static_cast<const float*>(beta),
                           static_cast<char*>(c) + i * stride_c * static_cast<long long>(type_size(c_type)), c_type, ldc,
                           compute_type == kCompute32FFastTF32);
    if (r != kSuccess) return r;
  }
  return kSuccess;
}

}  // extern "C"
