// CUDA EMULATION ON THE CPU (tests only): checks of the emulator and the
// fake cuBLAS themselves, so that a parity test passing under emulation
// means something. Each check runs a small kernel (or cuBLAS call) whose
// right answer, or whose fault, is known: barriers and shuffles give the
// right sums, and every fault the emulator claims to catch is caught.
// Built as C++ in the emulation build (st_cuda_emulation_selftest); run by
// `npm run test:cuda-emulated` as
//   build-emu/emulation/st_cuda_emulation_selftest build-emu/emulation/libcublas_emulated.so
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/common.cuh"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s - %s\n", ok ? "ok" : "NOT OK", what.c_str());
  if (!ok) ++failures;
}

// The launch's error, cleared, and whether cudaGetErrorString mentions `text`.
bool launch_fails(cudaError_t expected, const char* text) {
  const cudaError_t e = cudaGetLastError();
  return e == expected && std::strstr(cudaGetErrorString(e), text) != nullptr;
}

template <class T>
T* device(size_t n) {
  void* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) std::abort();
  return static_cast<T*>(p);
}

template <class T>
std::vector<T> download(const T* d, size_t n) {
  std::vector<T> h(n);
  if (cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) std::abort();
  return h;
}

// ---- kernels

__global__ void block_sum_kernel(const float* x, int n, float* out) {
  __shared__ float scratch[32];
  float v = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v += x[i];
  const float first = st::cuda::block_sum(v, scratch);
  const float second = st::cuda::block_sum(float(threadIdx.x), scratch);  // scratch reused
  if (threadIdx.x == 0) {
    out[2 * blockIdx.x] = first;
    out[2 * blockIdx.x + 1] = second;
  }
}

__global__ void shuffle_kernel(int* out) {
  const int lane = threadIdx.x % 32;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, lane * 10, 5);
}

__global__ void coordinates_kernel(int* out) {
  const int linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int block = blockIdx.x + gridDim.x * blockIdx.y;
  out[block * blockDim.x * blockDim.y * blockDim.z + linear] = int(threadIdx.x * 10000 + threadIdx.y * 100 + blockIdx.y);
}

__global__ void order_kernel(int* counter, int* slot_of_block) {
  if (threadIdx.x == 0) slot_of_block[blockIdx.x] = atomicAdd(counter, 1);
}

__global__ void atomic_kernel(float* total) { atomicAdd(total, 1.0f); }

__global__ void static_shared_kernel(float* seen) {
  __shared__ float value[1];
  __syncthreads();
  if (threadIdx.x == 0) {
    seen[blockIdx.x] = value[0];  // never written in this block: garbage (NaN here)
    value[0] = 1.0f;
  }
}

__global__ void dynamic_shared_kernel(int words, float* out) {
  ST_DYNAMIC_SHARED(float, smem);
  for (int i = threadIdx.x; i < words; i += blockDim.x) smem[i] = float(i);
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = smem[words - 1];
}

__global__ void uninitialised_dynamic_shared_kernel(float* out) {
  ST_DYNAMIC_SHARED(float, smem);
  if (threadIdx.x == 0) out[0] = smem[3];
}

__global__ void dynamic_overrun_kernel(int words) {
  ST_DYNAMIC_SHARED(float, smem);
  if (threadIdx.x == 0) smem[words] = 1.0f;  // one past the end
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 64) __syncthreads();  // the other threads exit without it
}

__global__ void deadlock_kernel() {
  if (threadIdx.x >= 32 && threadIdx.x < 48) __syncwarp();  // half of warp 1
  else __syncthreads();                                     // never all threads
}

__global__ void mixed_warp_ops_kernel(float* out) {
  float v = 1.0f;
  if (threadIdx.x % 2 == 0) v = __shfl_xor_sync(0xffffffffu, v, 1);
  else __syncwarp();
  out[threadIdx.x] = v;
}

__global__ void exited_lane_kernel(float* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = st::cuda::warp_sum(1.0f);
}

__global__ void overrun_kernel(float* x, int n) {
  if (threadIdx.x == 0) x[n] = 1.0f;  // one past the end
}

__global__ void underrun_kernel(float* x) {
  if (threadIdx.x == 0) x[-1] = 1.0f;
}

__global__ void read_kernel(const float* x, float* out) { out[threadIdx.x] = x[threadIdx.x]; }

__global__ void empty_kernel() {}

__global__ void shfl_kernel(int* out) {
  const int lane = threadIdx.x % 32;
  out[3 * threadIdx.x] = __shfl_sync(0xffffffffu, lane * 10, (lane * 7 + 3) % 32);
  out[3 * threadIdx.x + 1] = __shfl_down_sync(0xffffffffu, lane * 10, 5);
  out[3 * threadIdx.x + 2] = int(__shfl_sync(0xffffffffu, float(lane) + 0.5f, 31 - lane) * 2.0f);
}

__global__ void bf16_round_kernel(const float* x, int n, uint16_t* out) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const __nv_bfloat16 b = __float2bfloat16(x[i]);
    memcpy(&out[i], &b, sizeof(uint16_t));
  }
}

// One m16n8k16 product: A [16][16] and B [16][8] (k x n) row-major bf16 in
// global memory, loaded into the fragments exactly as the layout in
// common.cuh says; D written back from its fragment the same way.
__global__ void mma_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c, float* d) {
  const int lane = threadIdx.x, g = lane >> 2, t = lane % 4;
  const uint32_t af[4] = {st::cuda::load_bf16x2(a + g * 16 + 2 * t), st::cuda::load_bf16x2(a + (g + 8) * 16 + 2 * t),
                          st::cuda::load_bf16x2(a + g * 16 + 2 * t + 8),
                          st::cuda::load_bf16x2(a + (g + 8) * 16 + 2 * t + 8)};
  const uint32_t bf[2] = {st::cuda::pair_bf16(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]),
                          st::cuda::pair_bf16(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g])};
  const float cf[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
  float df[4];
  st::cuda::mma_bf16_m16n8k16(df, af, bf, cf);
  d[g * 8 + 2 * t] = df[0];
  d[g * 8 + 2 * t + 1] = df[1];
  d[(g + 8) * 8 + 2 * t] = df[2];
  d[(g + 8) * 8 + 2 * t + 1] = df[3];
}

// pack_bf16x2 puts its first value in the low half: the lower index.
__global__ void pack_kernel(uint32_t* out) {
  if (threadIdx.x == 0) out[0] = st::cuda::pack_bf16x2(1.0f, -2.0f);
}

// ---- fake cuBLAS

using GemmExFn = int (*)(void*, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int,
                         const void*, void*, int, int, int, int);

void check_cublas(const char* path, cudaStream_t stream) {
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  expect(lib != nullptr, std::string("the fake cuBLAS loads from ") + path);
  if (lib == nullptr) return;
  expect(dlsym(lib, "st_emulated_cublas") != nullptr, "it carries the emulation marker");
  auto create = reinterpret_cast<int (*)(void**)>(dlsym(lib, "cublasCreate_v2"));
  auto destroy = reinterpret_cast<int (*)(void*)>(dlsym(lib, "cublasDestroy_v2"));
  auto set_stream = reinterpret_cast<int (*)(void*, cudaStream_t)>(dlsym(lib, "cublasSetStream_v2"));
  auto gemm = reinterpret_cast<GemmExFn>(dlsym(lib, "cublasGemmEx"));
  void* handle = nullptr;
  expect(create(&handle) == 0 && set_stream(handle, stream) == 0, "cublasCreate and cublasSetStream");

  // Column-major operands padded to leading dimensions past their rows.
  const int m = 3, n = 4, k = 5;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (const float beta : {0.0f, 0.5f}) {
        const int a_rows = ta ? k : m, a_cols = ta ? m : k, lda = a_rows + 2;
        const int b_rows = tb ? n : k, b_cols = tb ? k : n, ldb = b_rows + 1;
        const int ldc = m + 3;
        std::vector<float> a(size_t(lda) * a_cols), b(size_t(ldb) * b_cols), c(size_t(ldc) * n);
        for (size_t i = 0; i < a.size(); ++i) a[i] = float(int(i * 7 % 11) - 5);
        for (size_t i = 0; i < b.size(); ++i) b[i] = float(int(i * 5 % 9) - 4);
        for (size_t i = 0; i < c.size(); ++i) c[i] = beta == 0.0f ? NAN : float(i % 4);
        float* da = device<float>(a.size());
        float* db = device<float>(b.size());
        float* dc = device<float>(c.size());
        cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
        const float alpha = 1.5f;
        const int status = gemm(handle, ta, tb, m, n, k, &alpha, da, 0, lda, db, 0, ldb, &beta, dc, 0, ldc, 68, -1);
        const std::vector<float> got = download(dc, c.size());
        bool ok = status == 0;
        for (int j = 0; j < n; ++j)
          for (int i = 0; i < ldc; ++i) {
            const float before = c[size_t(i) + size_t(j) * ldc];
            const float value = got[size_t(i) + size_t(j) * ldc];
            if (i >= m) {  // rows past m are not touched
              ok = ok && (std::isnan(before) ? std::isnan(value) : value == before);
              continue;
            }
            double s = 0.0;
            for (int l = 0; l < k; ++l) {
              const double x = ta ? a[size_t(l) + size_t(i) * lda] : a[size_t(i) + size_t(l) * lda];
              const double y = tb ? b[size_t(j) + size_t(l) * ldb] : b[size_t(l) + size_t(j) * ldb];
              s += x * y;
            }
            const double want = alpha * s + (beta == 0.0f ? 0.0 : beta * before);
            ok = ok && std::fabs(value - want) <= 1e-4 * (1.0 + std::fabs(want));
          }
        expect(ok, std::string("cublasGemmEx op(A) ") + (ta ? "T" : "N") + ", op(B) " + (tb ? "T" : "N") +
                       ", beta " + (beta == 0.0f ? "0 (C not read)" : "0.5") + ", padded leading dimensions");
        cudaFree(da);
        cudaFree(db);
        cudaFree(dc);
      }

  float* small = device<float>(8);
  const float one = 1.0f, zero = 0.0f;
  expect(gemm(handle, 0, 0, 4, 2, 2, &one, small, 0, 3, small, 0, 2, &zero, small, 0, 4, 68, -1) == 7,
         "lda below m (op N) is CUBLAS_STATUS_INVALID_VALUE");
  expect(gemm(handle, 1, 0, 2, 2, 4, &one, small, 0, 2, small, 0, 4, &zero, small, 0, 2, 68, -1) == 7,
         "lda below k (op T) is CUBLAS_STATUS_INVALID_VALUE");
  expect(gemm(handle, 0, 0, 2, 2, 2, &one, small, 2, 2, small, 0, 2, &zero, small, 0, 2, 68, -1) == 15,
         "a non-fp32 operand is CUBLAS_STATUS_NOT_SUPPORTED");
  expect(gemm(handle, 0, 0, 4, 4, 1, &one, small, 0, 4, small, 0, 1, &zero, small, 0, 4, 68, -1) == 13 &&
             launch_fails(cudaErrorLaunchFailure, "past the end"),
         "C of 16 floats in an allocation of 8 fails (a real cuBLAS would fault)");
  std::vector<float> host(8, 1.0f);
  expect(gemm(handle, 0, 0, 2, 2, 2, &one, host.data(), 0, 2, small, 0, 2, &zero, small, 0, 2, 68, -1) == 13 &&
             launch_fails(cudaErrorLaunchFailure, "not device memory"),
         "a host matrix fails");

  // TF32: 1 + 2^-12 keeps its last bit in fp32, not in TF32.
  const float fine = 1.0f + std::ldexp(1.0f, -12);
  cudaMemcpy(small, std::vector<float>{fine, 1.0f}.data(), 8, cudaMemcpyHostToDevice);
  gemm(handle, 0, 0, 1, 1, 1, &one, small, 0, 1, small + 1, 0, 1, &zero, small + 2, 0, 1, 68, -1);
  gemm(handle, 0, 0, 1, 1, 1, &one, small, 0, 1, small + 1, 0, 1, &zero, small + 3, 0, 1, 77, -1);
  const std::vector<float> r = download(small, 4);
  expect(r[2] == fine && r[3] == 1.0f, "CUBLAS_COMPUTE_32F keeps fp32 inputs; _FAST_TF32 rounds them to TF32");
  cudaFree(small);
  expect(destroy(handle) == 0, "cublasDestroy");
}

}  // namespace

int main(int argc, char** argv) {
  cudaStream_t s = nullptr;
  expect(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess, "a stream");
  cudaDeviceProp prop;
  const bool got_properties = cudaGetDeviceProperties(&prop, 0) == cudaSuccess;
  expect(got_properties && std::strstr(prop.name, "emulation") != nullptr &&
             std::strstr(prop.name, "not a GPU") != nullptr,
         std::string("the device says it is an emulation: ") + (got_properties ? prop.name : "?"));

  {  // block_sum: warp shuffles and __syncthreads over 256 threads, 3 blocks
    const int n = 1000;
    std::vector<float> x(n);
    double want = 0.0;
    for (int i = 0; i < n; ++i) want += (x[i] = float(i % 17));
    float* dx = device<float>(n);
    float* out = device<float>(6);
    cudaMemcpy(dx, x.data(), n * 4, cudaMemcpyHostToDevice);
    ST_LAUNCH(block_sum_kernel, 3, 256, 0, s)(dx, n, out);
    const cudaError_t e = cudaGetLastError();
    const std::vector<float> got = download(out, 6);
    bool ok = e == cudaSuccess;
    for (int b = 0; b < 3; ++b) ok = ok && got[2 * b] == float(want) && got[2 * b + 1] == 255.0f * 256.0f / 2.0f;
    expect(ok, "block_sum over 256 threads (shuffles, __syncthreads, reused scratch)");
    cudaFree(dx);
    cudaFree(out);
  }
  {
    int* out = device<int>(64);
    ST_LAUNCH(shuffle_kernel, 1, 64, 0, s)(out);
    const std::vector<int> got = download(out, 64);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int t = 0; t < 64; ++t) ok = ok && got[t] == ((t % 32) ^ 5) * 10;
    expect(ok, "__shfl_xor_sync reads the partner lane within each warp");
    cudaFree(out);
  }
  {
    int* out = device<int>(2 * 3 * 32 * 4);
    ST_LAUNCH(coordinates_kernel, dim3(2, 3), dim3(32, 4), 0, s)(out);
    const std::vector<int> got = download(out, 2 * 3 * 32 * 4);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int by = 0; by < 3; ++by)
      for (int bx = 0; bx < 2; ++bx)
        for (int ty = 0; ty < 4; ++ty)
          for (int tx = 0; tx < 32; ++tx)
            ok = ok && got[size_t((bx + 2 * by) * 128 + tx + 32 * ty)] == tx * 10000 + ty * 100 + by;
    expect(ok, "threadIdx and blockIdx in 2-D blocks and grids");
    cudaFree(out);
  }
  {
    int* counter = device<int>(1);
    int* slots = device<int>(64);
    cudaMemset(counter, 0, 4);
    ST_LAUNCH(order_kernel, 64, 32, 0, s)(counter, slots);
    const std::vector<int> got = download(slots, 64);
    std::vector<bool> seen(64, false);
    bool permutation = cudaGetLastError() == cudaSuccess, in_order = true;
    for (int b = 0; b < 64; ++b) {
      permutation = permutation && got[b] >= 0 && got[b] < 64 && !seen[size_t(got[b])];
      if (got[b] >= 0 && got[b] < 64) seen[size_t(got[b])] = true;
      in_order = in_order && got[b] == b;
    }
    const char* order = std::getenv("ST_CUDA_EMULATION_BLOCK_ORDER");
    const bool forward = order != nullptr && std::strcmp(order, "forward") == 0;
    expect(permutation && in_order == forward, forward ? "blocks run in order" : "blocks run in a shuffled order");
    cudaFree(counter);
    cudaFree(slots);
  }
  {
    float* total = device<float>(1);
    cudaMemset(total, 0, 4);
    ST_LAUNCH(atomic_kernel, 7, 128, 0, s)(total);
    expect(download(total, 1)[0] == 7.0f * 128.0f, "atomicAdd from every thread of every block");
    cudaFree(total);
  }
  {
    float* seen = device<float>(4);
    ST_LAUNCH(static_shared_kernel, 4, 64, 0, s)(seen);
    const std::vector<float> got = download(seen, 4);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (float v : got) ok = ok && std::isnan(v);
    expect(ok, "__shared__ memory starts as garbage (NaN) in every block, not as the previous block left it");
    cudaFree(seen);
  }
  {
    float* out = device<float>(2);
    const int words = 20000;  // 80000 bytes: past 48 KiB
    ST_LAUNCH(dynamic_shared_kernel, 2, 128, words * 4, s)(words, out);
    expect(launch_fails(cudaErrorInvalidValue, "past the kernel's limit"),
           "dynamic shared memory past 48 KiB without the attribute is refused");
    expect(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024) ==
               cudaErrorInvalidValue,
           "the attribute may not pass the sm_80 opt-in limit (163 KiB)");
    cudaGetLastError();
    expect(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, words * 4) ==
               cudaSuccess,
           "the attribute raises the kernel's limit");
    ST_LAUNCH(dynamic_shared_kernel, 2, 128, words * 4, s)(words, out);
    const std::vector<float> got = download(out, 2);
    expect(cudaGetLastError() == cudaSuccess && got[0] == float(words - 1) && got[1] == float(words - 1),
           "then the launch runs");
    ST_LAUNCH(uninitialised_dynamic_shared_kernel, 1, 32, 64, s)(out);
    expect(cudaGetLastError() == cudaSuccess && std::isnan(download(out, 1)[0]), "dynamic shared memory starts as NaN");
    ST_LAUNCH(dynamic_overrun_kernel, 1, 32, 64, s)(16);
    expect(launch_fails(cudaErrorLaunchFailure, "wrote past the end"), "a write past the dynamic shared memory fails");
    cudaFree(out);
  }
  ST_LAUNCH(empty_kernel, 1, 1025, 0, s)();
  expect(launch_fails(cudaErrorInvalidConfiguration, "block size"), "a block of 1025 threads is refused");
  ST_LAUNCH(empty_kernel, 0, 32, 0, s)();
  expect(launch_fails(cudaErrorInvalidConfiguration, "grid size"), "an empty grid is refused");
  ST_LAUNCH(divergent_barrier_kernel, 1, 128, 0, s)();
  expect(launch_fails(cudaErrorLaunchFailure, "__syncthreads"), "__syncthreads not reached by every thread fails");
  ST_LAUNCH(deadlock_kernel, 1, 128, 0, s)();
  expect(launch_fails(cudaErrorLaunchFailure, "deadlock"), "a deadlock fails instead of hanging");
  {
    float* out = device<float>(64);
    ST_LAUNCH(mixed_warp_ops_kernel, 1, 64, 0, s)(out);
    expect(launch_fails(cudaErrorLaunchFailure, "different warp ops"), "lanes of a warp in different warp ops fail");
    ST_LAUNCH(exited_lane_kernel, 1, 32, 0, s)(out);
    expect(launch_fails(cudaErrorLaunchFailure, "exited"), "a full-mask shuffle after a lane exited fails");
    cudaFree(out);
  }
  {
    float* x = device<float>(10);
    ST_LAUNCH(overrun_kernel, 1, 32, 0, s)(x, 10);
    expect(launch_fails(cudaErrorIllegalAddress, "past its end"), "a kernel writing past its allocation fails");
    cudaFree(x);
    x = device<float>(10);
    ST_LAUNCH(underrun_kernel, 1, 32, 0, s)(x);
    expect(launch_fails(cudaErrorIllegalAddress, "before its start"), "a kernel writing before its allocation fails");
    cudaFree(x);
    std::vector<float> host(32, 1.0f);
    float* out = device<float>(32);
    ST_LAUNCH(read_kernel, 1, 32, 0, s)(host.data(), out);
    expect(launch_fails(cudaErrorIllegalAddress, "not device memory"), "a host pointer as a kernel argument fails");
    expect(cudaMemcpyAsync(host.data(), out, 32 * 4, cudaMemcpyHostToDevice, s) == cudaErrorInvalidValue,
           "a copy in the wrong direction fails");
    expect(cudaMemcpyAsync(host.data(), out, 33 * 4, cudaMemcpyDeviceToHost, s) == cudaErrorInvalidValue,
           "a copy past the end of an allocation fails");
    expect(cudaMemsetAsync(out + 1, 0, 32 * 4, s) == cudaErrorInvalidValue, "a memset past the end fails");
    expect(cudaFree(out + 1) == cudaErrorInvalidValue, "cudaFree of a pointer inside an allocation fails");
    cudaGetLastError();
    cudaFree(out);
  }
  {  // __shfl_sync (any source lane) and __shfl_down_sync (own value past the end)
    int* out = device<int>(64 * 3);
    ST_LAUNCH(shfl_kernel, 1, 64, 0, s)(out);
    const std::vector<int> got = download(out, 64 * 3);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int th = 0; th < 64; ++th) {
      const int lane = th % 32;
      ok = ok && got[3 * th] == ((lane * 7 + 3) % 32) * 10;
      ok = ok && got[3 * th + 1] == (lane + 5 < 32 ? lane + 5 : lane) * 10;
      ok = ok && got[3 * th + 2] == 2 * (31 - lane) + 1;
    }
    expect(ok, "__shfl_sync reads any lane; __shfl_down_sync reads lane + delta, its own value past the warp");
    cudaFree(out);
  }
  {  // bf16 rounding (cuda_bf16.h, host and emulated device) against a bit-level reference
    auto reference = [](float x) -> uint16_t {
      uint32_t u;
      std::memcpy(&u, &x, 4);
      if (std::isnan(x)) return 0x7fff;                           // the canonical NaN cvt.rn.bf16.f32 gives
      const uint32_t lsb = (u >> 16) & 1u;                         // ties to even
      return uint16_t((u + 0x7fffu + lsb) >> 16);                  // carries into the exponent: up to inf
    };
    std::vector<float> x = {1.0f, 1.00390625f /* 1 + 2^-8: a tie, to even (1) */, 1.01171875f /* tie, to 1.015625 */,
                            1.005859375f, -1.00390625f, -3.3f, 0.0f, -0.0f, INFINITY, -INFINITY, NAN,
                            3.3895314e38f /* max bf16 */, 3.39e38f, 3.4e38f /* past max + half an ulp: inf */,
                            1e-40f /* subnormal, kept */, 1.1754942e-38f, 65504.0f, 1e30f};
    uint32_t seed = 12345;
    for (int i = 0; i < 2000; ++i) {  // random bit patterns, NaNs and infinities included
      seed = seed * 1664525u + 1013904223u;
      float f;
      std::memcpy(&f, &seed, 4);
      x.push_back(f);
    }
    bool host_ok = true;
    for (float v : x) {
      const __nv_bfloat16 b = __float2bfloat16(v);
      uint16_t bits;
      std::memcpy(&bits, &b, 2);
      const uint16_t want = reference(v);
      host_ok = host_ok && (std::isnan(v) ? (bits & 0x7fffu) > 0x7f80u : bits == want);
      host_ok = host_ok && (std::isnan(v) || std::isnan(__bfloat162float(b)) ||
                            __bfloat162float(b) == [&] { uint32_t u = uint32_t(want) << 16; float f; std::memcpy(&f, &u, 4); return f; }());
    }
    expect(host_ok, "__float2bfloat16 rounds to nearest even (ties, overflow to inf, subnormals, NaN stays NaN)");
    float* dx = device<float>(x.size());
    uint16_t* dout = device<uint16_t>(x.size());
    cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    ST_LAUNCH(bf16_round_kernel, 1, 128, 0, s)(dx, int(x.size()), dout);
    const std::vector<uint16_t> got = download(dout, x.size());
    bool ok = cudaGetLastError() == cudaSuccess;
    for (size_t i = 0; i < x.size(); ++i)
      ok = ok && (std::isnan(x[i]) ? (got[i] & 0x7fffu) > 0x7f80u : got[i] == reference(x[i]));
    expect(ok, "in a kernel too");
    cudaFree(dx);
    cudaFree(dout);
    uint32_t* packed = device<uint32_t>(1);
    ST_LAUNCH(pack_kernel, 1, 32, 0, s)(packed);
    expect(download(packed, 1)[0] == 0xC0003F80u, "pack_bf16x2(lo, hi) puts lo in the low 16 bits");
    cudaFree(packed);
  }
  {  // mma.sync m16n8k16 bf16: the documented fragment layout, against a plain product
    std::vector<__nv_bfloat16> a(16 * 16), b(16 * 8);
    std::vector<float> af(a.size()), bf(b.size()), c(16 * 8);
    uint32_t seed = 777;
    auto next = [&] {
      seed = seed * 1664525u + 1013904223u;
      return float(int(seed >> 8) % 2001 - 1000) / 997.0f;
    };
    for (size_t i = 0; i < a.size(); ++i) af[i] = __bfloat162float(a[i] = __float2bfloat16(next()));
    for (size_t i = 0; i < b.size(); ++i) bf[i] = __bfloat162float(b[i] = __float2bfloat16(next()));
    for (float& v : c) v = next();
    __nv_bfloat16* da = device<__nv_bfloat16>(a.size());
    __nv_bfloat16* db = device<__nv_bfloat16>(b.size());
    float* dc = device<float>(c.size());
    float* dd = device<float>(c.size());
    cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
    ST_LAUNCH(mma_kernel, 1, 32, 0, s)(da, db, dc, dd);
    const std::vector<float> got = download(dd, c.size());
    bool ok = cudaGetLastError() == cudaSuccess;
    // The plain product, and what a transposed A or B would give instead:
    // a layout error shows as a mismatch far beyond fp32 rounding.
    double worst = 0.0, transposed_a = 0.0, transposed_b = 0.0;
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j) {
        double want = c[size_t(i) * 8 + j], wrong_a = want, wrong_b = want;
        for (int k = 0; k < 16; ++k) {
          want += double(af[size_t(i) * 16 + k]) * bf[size_t(k) * 8 + j];
          wrong_a += double(af[size_t(k) * 16 + i]) * bf[size_t(k) * 8 + j];
          wrong_b += double(af[size_t(i) * 16 + k]) * bf[size_t(j) * 16 + k];  // B read as [n][k]
        }
        const double v = got[size_t(i) * 8 + j];
        worst = std::max(worst, std::fabs(v - want) / (1.0 + std::fabs(want)));
        transposed_a = std::max(transposed_a, std::fabs(wrong_a - want));
        transposed_b = std::max(transposed_b, std::fabs(wrong_b - want));
      }
    ok = ok && worst <= 16 * std::ldexp(1.0, -23) && transposed_a > 0.1 && transposed_b > 0.1;
    expect(ok, "mma m16n8k16 bf16 (documented fragments) matches A B + C within fp32 rounding (worst " +
                   std::to_string(worst) + ")");
    // Fragment positions one at a time: A = a single 1 at (r, k), B = k-th
    // row numbered by column, C = 0: D must be exactly B's row k at row r.
    bool placed = true;
    for (int r = 0; r < 16 && placed; r += 5)
      for (int k = 0; k < 16 && placed; k += 3) {
        std::vector<__nv_bfloat16> one(16 * 16, __float2bfloat16(0.0f)), rows(16 * 8);
        one[size_t(r) * 16 + k] = __float2bfloat16(1.0f);
        for (int kk = 0; kk < 16; ++kk)
          for (int j = 0; j < 8; ++j) rows[size_t(kk) * 8 + j] = __float2bfloat16(float(kk * 8 + j));
        std::vector<float> zero(16 * 8, 0.0f);
        cudaMemcpy(da, one.data(), one.size() * 2, cudaMemcpyHostToDevice);
        cudaMemcpy(db, rows.data(), rows.size() * 2, cudaMemcpyHostToDevice);
        cudaMemcpy(dc, zero.data(), zero.size() * 4, cudaMemcpyHostToDevice);
        ST_LAUNCH(mma_kernel, 1, 32, 0, s)(da, db, dc, dd);
        const std::vector<float> e = download(dd, 16 * 8);
        for (int i = 0; i < 16; ++i)
          for (int j = 0; j < 8; ++j) placed = placed && e[size_t(i) * 8 + j] == (i == r ? float(k * 8 + j) : 0.0f);
      }
    expect(placed && cudaGetLastError() == cudaSuccess,
           "each A element reaches its row of D and picks its row of B (a swapped or transposed layout fails)");
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    cudaFree(dd);
  }
  if (argc > 1) check_cublas(argv[1], s);
  else expect(false, "usage: st_cuda_emulation_selftest /path/to/libcublas_emulated.so");
  expect(cudaStreamDestroy(s) == cudaSuccess, "cudaStreamDestroy");
  float* x = device<float>(4);
  expect(cudaMemsetAsync(x, 0, 16, s) == cudaErrorInvalidResourceHandle, "a destroyed stream is refused");
  cudaGetLastError();
  cudaFree(x);

  std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
