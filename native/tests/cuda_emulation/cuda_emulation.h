#pragma once
// CUDA EMULATION ON THE CPU -- for tests only, never a GPU.
//
// The emulation build (CMake option SPATIALTHINKER_CUDA_EMULATION, build dir
// build-emu/, `npm run test:cuda-emulated`) compiles the CUDA backend's .cu
// sources as ordinary C++ with this header force-included (-include), so
// that their kernels run on the CPU under an emulation of the CUDA execution
// model and the CPU/CUDA parity tests can exercise them on a machine with no
// GPU. The kernel sources are the real ones; only the launch syntax and the
// dynamic shared memory declaration go through two macros of common.cuh
// (ST_LAUNCH, ST_DYNAMIC_SHARED), which are the CUDA syntax under nvcc.
//
// The model (emulator.cpp has the details):
//   - the CUDA headers are the real ones (types, enums, declarations); the
//     runtime functions the sources call are implemented in emulator.cpp on
//     host memory, for one emulated device of compute capability 8.0, which
//     is offered only with SPATIALTHINKER_CUDA_EMULATION=1 in the environment;
//   - a launch runs its blocks one at a time (in a shuffled order unless
//     ST_CUDA_EMULATION_BLOCK_ORDER=forward), each block's threads as a team
//     of real std::threads, so __syncthreads, __syncwarp and the warp
//     shuffles are real barriers and exchanges among those threads;
//   - bf16 values and conversions are <cuda_bf16.h>'s own host code (round
//     to nearest even, as the hardware's cvt.rn); the tensor-core product
//     (mma.sync m16n8k16 bf16 -> fp32, through common.cuh's wrapper) is a
//     warp collective that gathers the 32 lanes' fragments at the PTX ISA's
//     documented layout and multiplies in fp32;
//   - __shared__ variables are statics in a section of their own and dynamic
//     shared memory is a per-launch buffer, both filled with NaN bytes before
//     every block; device memory is NaN bytes when allocated and guarded;
//   - a barrier some threads can never reach (deadlock, a thread that has
//     exited, lanes of a warp in different warp ops) fails the launch with a
//     message instead of hanging, as do launch configurations a GPU would
//     reject (block > 1024 threads, dynamic shared memory past 48 KiB without
//     the opt-in attribute or past the sm_80 opt-in limit of 163 KiB), kernel
//     writes outside device allocations and host pointers passed to kernels.
// What it cannot check: races between blocks of one launch and the memory
// model, warp-synchronous code that relies on more than the ops emulated
// here, the GPU's math library (expf, erff, ... are glibc's here), fused
// multiply-adds, the tensor cores' own rounding of an mma's sums (emulated
// in fp32 in a fixed order, see mma_m16n8k16_bf16 below), static shared
// memory sizes, registers and __launch_bounds__,
// host code dereferencing device pointers (both are host memory here),
// asynchrony (every operation completes before its call returns), real
// cuBLAS, and performance.
#ifndef ST_CUDA_EMULATION
#error "cuda_emulation.h belongs to the CPU emulation build (ST_CUDA_EMULATION) only"
#endif

#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// The CUDA headers define __global__, __device__, __host__ and
// __forceinline__ for a host compiler (empty, or inline); these two they
// leave to nvcc.
// __shared__ variables are statics (one block runs at a time, and its team
// of threads shares them) in a section of their own, which the emulator
// fills with NaN bytes before every block: shared memory starts as garbage
// on a GPU, not as what the previous block left. (GCC honours the section
// for functions of internal linkage, as the kernels in anonymous namespaces
// are; a __shared__ elsewhere would keep its values between blocks.)
#undef __shared__
#define __shared__ static __attribute__((section("st_emu_shared")))
#define __launch_bounds__(...)

// The runtime's C++ overload that takes a kernel itself (cuda_runtime.h
// declares it for nvcc only).
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* func, enum cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

// The built-in variables, per emulated thread.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace st_emu {

struct LaunchConfig {
  dim3 grid, block;
  size_t dynamic_shared;
  cudaStream_t stream;
  const void* function;  // the kernel, for cudaFuncSetAttribute's settings
  const char* name;
};

// What a launch passes besides the kernel: its pointer arguments (each must
// be null or device memory) and the size of its parameters (at most 4 KiB).
struct LaunchArguments {
  const void* const* pointers;
  size_t pointer_count;
  size_t parameter_bytes;
};

// Runs `thread_body(context)` once for every thread of every block of the
// launch, then returns; errors become the last error (cudaGetLastError).
void run_launch(const LaunchConfig& config, const LaunchArguments& arguments, void (*thread_body)(const void*),
                const void* context);

// The dynamic shared memory of the block in flight.
void* dynamic_shared_memory();

// The exchange behind the warp shuffles; `bytes` <= 8.
void warp_exchange(const void* mine, void* theirs, size_t bytes, int source_lane, const char* op);
// Every lane's `bytes` (<= 64) into all[32 * bytes], in lane order, for
// every lane: one barrier of the warp (the emulated tensor-core op).
void warp_gather(const void* mine, void* all, size_t bytes, const char* op);
void sync_threads();
void sync_warp(unsigned mask);

// Stream capture (emulator.cpp): whether the stream is recording a graph,
// and records a launch's replay there (false when it is not capturing).
bool stream_capturing(cudaStream_t stream);
bool capture_launch(cudaStream_t stream, std::function<void()> replay);

template <class... P>
class Launcher {
 public:
  Launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream, const char* name)
      : kernel_(kernel), config_{grid, block, shared, stream, reinterpret_cast<const void*>(kernel), name} {}

  // Arguments are converted to the kernel's parameter types once, as a
  // launch does; every thread then gets its own copy of them. On a capturing
  // stream the converted arguments are kept for the graph's replays.
  template <class... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    if (stream_capturing(config_.stream)) {
      auto params = std::make_shared<const std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
      capture_launch(config_.stream, [kernel = kernel_, config = config_, params] { run(kernel, config, *params); });
      return;
    }
    const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    run(kernel_, config_, params);
  }

  static void run(void (*kernel)(P...), const LaunchConfig& config, const std::tuple<std::decay_t<P>...>& params) {
    const void* pointers[sizeof...(P) + 1] = {};
    size_t count = 0;
    std::apply(
        [&](const auto&... p) {
          (
              [&](const auto& v) {
                if constexpr (std::is_pointer_v<std::decay_t<decltype(v)>>) pointers[count++] = v;
              }(p),
              ...);
        },
        params);
    const LaunchArguments arguments{pointers, count, (size_t(0) + ... + sizeof(std::decay_t<P>))};
    struct Context {
      void (*kernel)(P...);
      const std::tuple<std::decay_t<P>...>* params;
    } context{kernel, &params};
    run_launch(
        config, arguments,
        [](const void* c) {
          const Context* ctx = static_cast<const Context*>(c);
          std::apply(ctx->kernel, *ctx->params);
        },
        &context);
  }

 private:
  void (*kernel_)(P...);
  LaunchConfig config_;
};

template <class... P>
Launcher<P...> launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream,
                        const char* name) {
  return Launcher<P...>(kernel, grid, block, shared, stream, name);
}

}  // namespace st_emu

// ---- device functions

inline void __syncthreads() { st_emu::sync_threads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { st_emu::sync_warp(mask); }

template <class T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "__shfl_xor_sync of an unsupported type");
  if (mask != 0xffffffffu || width != warpSize) st_emu::sync_warp(mask);  // reports the unsupported mask or width
  const int lane = int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % warpSize;
  T out;
  st_emu::warp_exchange(&value, &out, sizeof(T), lane ^ (lane_mask & (warpSize - 1)), "__shfl_xor_sync");
  return out;
}

// The lane of the calling thread in its warp.
inline int emulated_lane() {
  return int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % warpSize;
}

template <class T>
inline T __shfl_sync(unsigned mask, T value, int source_lane, int width = warpSize) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "__shfl_sync of an unsupported type");
  if (mask != 0xffffffffu || width != warpSize) st_emu::sync_warp(mask);  // reports the unsupported mask or width
  T out;
  st_emu::warp_exchange(&value, &out, sizeof(T), source_lane & (warpSize - 1), "__shfl_sync");
  return out;
}

// A lane past the end of the warp reads its own value, as on a GPU.
template <class T>
inline T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "__shfl_down_sync of an unsupported type");
  if (mask != 0xffffffffu || width != warpSize) st_emu::sync_warp(mask);
  const int lane = emulated_lane();
  const int source = lane + int(delta) < warpSize ? lane + int(delta) : lane;
  T out;
  st_emu::warp_exchange(&value, &out, sizeof(T), source, "__shfl_down_sync");
  return out;
}

namespace st_emu {

// bf16 bits (the upper half of an fp32's) as the fp32 they are, exactly.
inline float bf16_bits_to_float(uint16_t bits) {
  const uint32_t u = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 d, a, b, c as a warp
// collective: D[16 x 8] = A[16 x 16] B[16 x 8] + C, each lane holding the
// fragments of the PTX ISA's figures for m16n8k16 (floating point types), with
// g = lane >> 2 (groupID) and t = lane % 4 (threadID_in_group), each .b32
// register two bf16 with the lower column or row index in its low 16 bits:
//   a[0] = A[g][2t..2t+1]      a[1] = A[g+8][2t..2t+1]
//   a[2] = A[g][2t+8..2t+9]    a[3] = A[g+8][2t+8..2t+9]
//   b[0] = B[2t..2t+1][g]      b[1] = B[2t+8..2t+9][g]
//   c[0..1] = C[g][2t..2t+1]   c[2..3] = C[g+8][2t..2t+1]  (d likewise)
// The hardware's products of two bf16 are exact in fp32, and so are they
// here; the PTX ISA does not specify the order or rounding of the sum of the
// 16 products and c, and measurements of the tensor cores (Fasi, Higham,
// Mikaitis and Pranesh, "Numerical behavior of NVIDIA tensor cores", 2021)
// show a multi-operand addition that aligns significands to the largest and
// truncates the bits shifted out, rounding the result toward zero. The
// emulation instead adds c and the 16 products in k order in fp32 with
// round-to-nearest: the two can differ by a few units in the last place of
// the fp32 result (relative ~16 * 2^-23 of the largest term), far below
// the bf16 rounding of the inputs that the tests' tolerances are built on.
inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  struct Fragments {
    uint32_t a[4], b[2];
  } mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}}, all[32];
  warp_gather(&mine, all, sizeof mine, "mma.sync.m16n8k16");
  // A[row][k] and B[k][col] from the lanes that hold them.
  auto element = [](uint32_t reg, int high) { return bf16_bits_to_float(uint16_t(high ? reg >> 16 : reg & 0xffffu)); };
  auto a_at = [&](int row, int k) {
    const int lane = (row % 8) * 4 + (k % 8) / 2, reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return element(all[lane].a[reg], k % 2);
  };
  auto b_at = [&](int k, int col) {
    const int lane = col * 4 + (k % 8) / 2, reg = k >= 8 ? 1 : 0;
    return element(all[lane].b[reg], k % 2);
  };
  const int lane = emulated_lane(), g = lane >> 2, t = lane % 4;
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i % 2);
    float sum = c[i];
    for (int k = 0; k < 16; ++k) sum += a_at(row, k) * b_at(k, col);
    out[i] = sum;
  }
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

}  // namespace st_emu

template <class T>
inline T atomicAdd(T* address, T value) {
  static_assert(std::is_arithmetic_v<T>, "atomicAdd of an unsupported type");
  return std::atomic_ref<T>(*address).fetch_add(value);
}

// Round-to-nearest double arithmetic: the emulated sources are compiled with
// -ffp-contract=off, so these are never fused.
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __double2float_rn(double a) { return float(a); }

// CUDA's min and max for any pair of arithmetic types (fminf/fmaxf
// semantics for floating point: a NaN loses to a number).
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) return std::fmin(C(a), C(b));
  else return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) return std::fmax(C(a), C(b));
  else return C(a) < C(b) ? C(b) : C(a);
}
