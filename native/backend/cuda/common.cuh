#pragma once
// What every CUDA backend source shares: errors as exceptions, stream-ordered
// temporaries, host-to-device copies of the small host arrays some ops take,
// grid sizing, block reductions, and the storage types (fp32, bf16) with
// their loads and stores.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "backend/backend.h"

// Kernel launches and dynamic shared memory go through these two macros:
// under nvcc they are exactly CUDA's syntax; in the CPU emulation build (a
// test build that compiles these sources as C++, native/tests/cuda_emulation)
// they call the emulator, which runs the kernel's threads on the CPU.
//   ST_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...)
//   ST_DYNAMIC_SHARED(float, smem);  // extern __shared__ float smem[];
// `kernel` must name one function: a template kernel with its arguments.
#ifdef ST_CUDA_EMULATION
#define ST_LAUNCH(kernel, grid, block, shared, stream) ::st_emu::launcher(kernel, grid, block, shared, stream, #kernel)
#define ST_DYNAMIC_SHARED(type, name) type* const name = static_cast<type*>(::st_emu::dynamic_shared_memory())
#else
#define ST_LAUNCH(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#define ST_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace st::cuda {

// Kernel execution is asynchronous: a fault inside a kernel surfaces at the
// next synchronising call, which may belong to a later op. The message says
// so; SPATIALTHINKER_CUDA_SYNC=1 synchronises after every op to pin it down.
[[noreturn]] inline void throw_cuda_error(const char* op, cudaError_t error) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  throw std::runtime_error(std::string("CUDA backend: ") + op + " failed: " + cudaGetErrorString(error) + " (" +
                           cudaGetErrorName(error) +
                           "; kernels run asynchronously, so an earlier op may be at fault: set "
                           "SPATIALTHINKER_CUDA_SYNC=1 to check after every op)");
}

inline void check(cudaError_t error, const char* op) {
  if (error != cudaSuccess) throw_cuda_error(op, error);
}

// After a kernel launch: a bad configuration is reported here, at once.
inline void check_launch(const char* op) { check(cudaGetLastError(), op); }

// Stream-ordered allocation (cudaMallocAsync) so that temporaries and the
// model's short-lived activations never synchronise the device; plain
// cudaMalloc where the driver has no memory pools. The choice is made once,
// before any pool allocation exists, so frees always match their allocations.
inline std::atomic<int>& pool_support() {
  static std::atomic<int> state{-1};  // -1 unknown, 0 no pools, 1 pools
  return state;
}

inline void* device_alloc(size_t bytes, cudaStream_t stream, const char* op) {
  if (bytes == 0) return nullptr;
  void* ptr = nullptr;
  if (pool_support().load() != 0) {
    const cudaError_t error = cudaMallocAsync(&ptr, bytes, stream);
    if (error == cudaSuccess) {
      pool_support().store(1);
      return ptr;
    }
    if (error != cudaErrorNotSupported || pool_support().load() == 1) throw_cuda_error(op, error);
    cudaGetLastError();
    pool_support().store(0);
  }
  check(cudaMalloc(&ptr, bytes), op);
  return ptr;
}

inline void device_free(void* ptr, cudaStream_t stream) {
  if (ptr == nullptr) return;
  // Errors here would come from an earlier fault and are reported by the next
  // checked call; a destructor must not throw.
  if (pool_support().load() == 1) cudaFreeAsync(ptr, stream);
  else cudaFree(ptr);
}

// A device array that lives for one op, freed in stream order.
template <class T>
class Temp {
 public:
  Temp(int64_t count, cudaStream_t stream, const char* op)
      : ptr_(static_cast<T*>(device_alloc(size_t(std::max<int64_t>(count, 0)) * sizeof(T), stream, op))),
        stream_(stream) {}
  Temp(const Temp&) = delete;
  Temp& operator=(const Temp&) = delete;
  ~Temp() { device_free(ptr_, stream_); }
  T* get() const { return ptr_; }

 private:
  T* ptr_;
  cudaStream_t stream_;
};

// A copy of host memory on the device. The host side is pageable memory
// (std::vector, typed arrays), which cudaMemcpyAsync stages before it
// returns, so the host array may change or go away right after this call.
template <class T>
inline void copy_to_device(T* dst, const T* host, int64_t count, cudaStream_t stream, const char* op) {
  if (count > 0) check(cudaMemcpyAsync(dst, host, size_t(count) * sizeof(T), cudaMemcpyHostToDevice, stream), op);
}

// Grid for a grid-stride loop over n items.
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return unsigned(std::min<int64_t>(std::max<int64_t>(blocks, 1), int64_t(1) << 20));
}

constexpr unsigned kFullMask = 0xffffffffu;

template <class T>
__device__ inline T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

template <class T>
__device__ inline T warp_max(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = max(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the total. `scratch` holds 32 values and may be reused after.
template <class T>
__device__ inline T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // an earlier call may still be reading scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : T(0);
  return warp_sum(v);
}

template <class T>
__device__ inline T block_max(T v, T* scratch, T lowest) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : lowest;
  return warp_max(v);
}

// ------------------------------------------------------------ storage types
// Kernels are templates on the element type T of the arrays they load and
// store (float or __nv_bfloat16): they load through to_f32, compute in fp32
// (or double), and store through from_f32<T>, which rounds to nearest even
// once. (cuda_bf16.h's conversions are __host__ __device__, so the CPU
// emulation build runs these same lines.)
using bf16 = __nv_bfloat16;

__host__ __device__ inline float to_f32(float v) { return v; }
__host__ __device__ inline float to_f32(bf16 v) { return __bfloat162float(v); }

template <class T>
__host__ __device__ inline T from_f32(float v);
template <>
__host__ __device__ inline float from_f32<float>(float v) { return v; }
template <>
__host__ __device__ inline bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

template <class T>
constexpr Storage storage_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "fp32 or bf16 only");
  return std::is_same_v<T, bf16> ? Storage::BF16 : Storage::F32;
}

// A DevicePtr as T*, checking its type: an op reached with an array of
// another type says which op and which argument.
template <class T>
T* typed(DevicePtr p, const char* op, const char* what) {
  if (p != nullptr && p.type() != storage_of<T>())
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": " + what + " is " + storage_name(p.type()) +
                                ", expected " + storage_name(storage_of<T>()));
  return static_cast<T*>(p.data());
}
template <class T>
const T* typed(ConstDevicePtr p, const char* op, const char* what) {
  if (p != nullptr && p.type() != storage_of<T>())
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": " + what + " is " + storage_name(p.type()) +
                                ", expected " + storage_name(storage_of<T>()));
  return static_cast<const T*>(p.data());
}

// Calls f(T{}) with T the C++ type of `s`.
template <class F>
decltype(auto) with_storage(Storage s, F&& f) {
  if (s == Storage::BF16) return f(bf16());
  return f(float());
}

}  // namespace st::cuda
