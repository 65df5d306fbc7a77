// CUDA EMULATION ON THE CPU -- for tests only, never a GPU (see
// cuda_emulation.h for what it is for and what it cannot check).
//
// The CUDA runtime functions the backend's sources call, on host memory, for
// one emulated device ("CUDA emulation on the CPU (not a GPU)", compute
// capability 8.0), and the execution of kernel launches:
//
//   - The device is there only when SPATIALTHINKER_CUDA_EMULATION=1 (the
//     test script sets it): a benchmark or `doctor` that loads this build by
//     mistake finds no CUDA device, with a reason saying why.
//   - Every operation runs to completion before its call returns, whatever
//     the stream; streams are checked (a destroyed or never created stream is
//     an error) but order nothing.
//   - Device memory is host memory, 256-byte aligned, filled with 0xFF bytes
//     (NaN as float or double) when allocated and when freed, with guard
//     bytes on both sides that are checked after every launch (and poisoned
//     for AddressSanitizer in a -fsanitize=address build, which then catches
//     reads too). Copies and memsets must lie inside live allocations on
//     their device side and outside them on their host side (the direction
//     must be right); pointer arguments of kernels must be null or device
//     memory.
//   - A launch is checked as a GPU would (block <= 1024 threads and within
//     1024 x 1024 x 64, grid within 2^31-1 x 65535 x 65535, dynamic shared
//     memory <= 48 KiB unless cudaFuncSetAttribute raised the kernel's limit,
//     which may not pass the sm_80 opt-in limit of 163 KiB, parameters <= 4
//     KiB), then runs its blocks one at a time, in a shuffled order by
//     default (ST_CUDA_EMULATION_BLOCK_ORDER=forward runs them in order), so
//     results that depend on the order of blocks differ between runs. A
//     block's threads are a team of real std::threads (kept for reuse); its
//     barriers (__syncthreads, and __syncwarp and the shuffles among the 32
//     lanes of a warp) are real barriers. A barrier that can never complete
//     -- every live thread waits, a thread has exited while others wait for
//     it, the lanes of a warp are in different warp ops -- fails the launch
//     with a description instead of hanging. Shared memory (the __shared__
//     statics and the dynamic buffer) is filled with NaN bytes before every
//     block, and the dynamic buffer is guarded against overruns.
//   - Errors are reported as the runtime reports them (return values and the
//     per-thread last error); a failure found while a kernel runs becomes
//     cudaErrorLaunchFailure (or cudaErrorIllegalAddress) for the launching
//     thread, with the emulator's description appended to
//     cudaGetErrorString's text and printed to stderr. Unlike on a GPU, such
//     errors are not sticky.
//
// It is slow: every emulated thread of every block is a real thread waking
// up, and every barrier a rendezvous of real threads.
#include <sys/sysinfo.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emulation.h"
#include "emulated_stream.h"

// Built with AddressSanitizer, the guards around device allocations and
// dynamic shared memory are also poisoned, so that reads past them are caught
// too (the guard bytes alone catch writes).
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ST_EMU_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define ST_EMU_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ST_EMU_POISON(p, n) ((void)(p), (void)(n))
#define ST_EMU_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

struct CUstream_st {
  st_emu_abi::StreamHeader header;  // first: the fake cuBLAS reads it
  unsigned flags;
};

namespace st_emu {
namespace {
struct GraphSteps;
}
}  // namespace st_emu

struct CUgraph_st {
  std::shared_ptr<st_emu::GraphSteps> steps;
};

struct CUgraphExec_st {
  std::shared_ptr<st_emu::GraphSteps> steps;
};

struct CUmemPoolHandle_st {
  int device;
};

namespace st_emu {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 1024;
constexpr size_t kWarpSlotBytes = 64;  // what one lane contributes to a shuffle or an emulated mma
constexpr size_t kDefaultSharedLimit = 48 * 1024;
constexpr size_t kOptinSharedLimit = 163 * 1024;  // sm_80 (A100), the lowest architecture the build targets
constexpr size_t kAlignment = 256;
constexpr size_t kGuardBytes = 256;
constexpr unsigned char kGuardByte = 0xA5;
constexpr unsigned char kGarbageByte = 0xFF;  // NaN as float and double
constexpr const char* kDeviceName = "CUDA emulation on the CPU (not a GPU)";

void log(const std::string& message) { std::fprintf(stderr, "[cuda-emulation] %s\n", message.c_str()); }

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", p);
  return buf;
}

std::string dims(dim3 d) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "(%u, %u, %u)", d.x, d.y, d.z);
  return buf;
}

// ------------------------------------------------------------------ errors

thread_local cudaError_t last_error = cudaSuccess;
thread_local cudaError_t detail_code = cudaSuccess;
thread_local std::string detail;

cudaError_t fail(cudaError_t code, const std::string& why, bool print = true) {
  last_error = code;
  detail_code = code;
  detail = why;
  if (print) log(why);
  return code;
}

// The emulated device is offered only to whoever asks for it, so that a
// benchmark or doctor run that loads this build by mistake finds no device
// rather than a "GPU" that is the CPU.
bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SPATIALTHINKER_CUDA_EMULATION");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

const char* error_name(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidPitchValue: return "cudaErrorInvalidPitchValue";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    default: return "cudaErrorUnknown";
  }
}

const char* error_text(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    default: return "unknown error";
  }
}

// ------------------------------------------------------------------ memory

// A live allocation: `bytes` at `start`, inside a block from aligned_alloc
// that has kGuardBytes of guard before and the rounding plus kGuardBytes
// after, checked after every launch.
struct Allocation {
  size_t bytes;
  unsigned char* base;
  size_t total;
};

struct Memory {
  std::mutex mutex;
  std::map<uintptr_t, Allocation> live;  // by start
};

Memory& memory() {
  static Memory* m = new Memory;  // never destroyed: frees may come during exit
  return *m;
}

// Whether [p, p + bytes) lies inside one live allocation; `why` says how not.
bool inside_allocation(const void* p, size_t bytes, std::string* why) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  auto it = m.live.upper_bound(at);
  if (it == m.live.begin()) {
    if (why) *why = hex(p) + " is not device memory";
    return false;
  }
  --it;
  const uintptr_t start = it->first, end = start + it->second.bytes;
  if (at >= end) {
    if (why) *why = hex(p) + " is not device memory";
    return false;
  }
  if (bytes > end - at) {
    if (why)
      *why = std::to_string(bytes) + " bytes at " + hex(p) + " run " + std::to_string(bytes - (end - at)) +
             " bytes past the end of its allocation (" + std::to_string(it->second.bytes) + " bytes at " +
             hex(reinterpret_cast<void*>(start)) + ")";
    return false;
  }
  return true;
}

bool touches_device(const void* p, size_t bytes) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  auto it = m.live.lower_bound(at);
  if (it != m.live.end() && it->first < at + bytes) return true;
  if (it == m.live.begin()) return false;
  --it;
  return at < it->first + it->second.bytes;
}

cudaError_t allocate(void** ptr, size_t bytes, const char* api) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue, std::string(api) + ": null result pointer");
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  const size_t total = kGuardBytes + rounded + kGuardBytes;  // kGuardBytes is a multiple of kAlignment
  auto* base = static_cast<unsigned char*>(std::aligned_alloc(kAlignment, total));
  if (base == nullptr)
    return fail(cudaErrorMemoryAllocation, std::string(api) + ": out of host memory for " + std::to_string(bytes) + " bytes");
  std::memset(base, kGuardByte, total);
  unsigned char* p = base + kGuardBytes;
  std::memset(p, kGarbageByte, bytes);
  ST_EMU_POISON(base, kGuardBytes);
  ST_EMU_POISON(p + bytes, total - kGuardBytes - bytes);
  {
    Memory& m = memory();
    std::lock_guard<std::mutex> lock(m.mutex);
    m.live[reinterpret_cast<uintptr_t>(p)] = Allocation{bytes, base, total};
  }
  *ptr = p;
  return cudaSuccess;
}

cudaError_t release(void* p, const char* api) {
  if (p == nullptr) return cudaSuccess;
  Allocation a;
  {
    Memory& m = memory();
    std::lock_guard<std::mutex> lock(m.mutex);
    auto it = m.live.find(reinterpret_cast<uintptr_t>(p));
    if (it == m.live.end())
      return fail(cudaErrorInvalidValue, std::string(api) + "(" + hex(p) + "): not the start of a live allocation");
    a = it->second;
    m.live.erase(it);
  }
  ST_EMU_UNPOISON(a.base, a.total);
  std::memset(a.base, kGarbageByte, a.total);
  std::free(a.base);
  return cudaSuccess;
}

// Whether p is null or points into (or just past) a live allocation: what a
// kernel may be given as a pointer.
bool kernel_pointer_ok(const void* p) {
  if (p == nullptr) return true;
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  auto it = m.live.upper_bound(at);
  if (it == m.live.begin()) return false;
  --it;
  return at <= it->first + it->second.bytes;
}

// "" when every live allocation's guard bytes are intact; else which is not.
std::string damaged_guard() {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  for (const auto& [start, a] : m.live) {
#if defined(__SANITIZE_ADDRESS__)
    (void)a;
    continue;  // poisoned: AddressSanitizer has already reported any access
#endif
    const unsigned char* user = reinterpret_cast<const unsigned char*>(start);
    auto damaged = [&](const unsigned char* from, const unsigned char* to) {
      for (const unsigned char* q = from; q < to; ++q)
        if (*q != kGuardByte) return q;
      return static_cast<const unsigned char*>(nullptr);
    };
    const unsigned char* q = damaged(a.base, user);
    if (q == nullptr) q = damaged(user + a.bytes, a.base + a.total);
    if (q != nullptr) {
      const std::ptrdiff_t off = q - user;
      return "device memory written outside its allocation: byte " + std::to_string(off) + " relative to the " +
             std::to_string(a.bytes) + "-byte allocation at " + hex(user) +
             (off < 0 ? " (before its start)" : " (past its end)");
    }
  }
  return "";
}

// ------------------------------------------------------------------ streams

int check_range_for_cublas(const void* ptr, size_t bytes, char* why, size_t why_size) {
  std::string reason;
  if (inside_allocation(ptr, bytes, &reason)) return 0;
  if (why != nullptr && why_size > 0) std::snprintf(why, why_size, "%s", reason.c_str());
  return 1;
}

void report_failure_from_cublas(const char* message) { fail(cudaErrorLaunchFailure, message); }

int capture_for_cublas(const void* stream, void (*run)(void*), void* context, void (*destroy)(void*));

const st_emu_abi::Services kServices{check_range_for_cublas, report_failure_from_cublas, capture_for_cublas};

struct Streams {
  std::mutex mutex;
  std::set<cudaStream_t> live;
};

Streams& streams() {
  static Streams* s = new Streams;
  return *s;
}

cudaError_t check_stream(cudaStream_t s, const char* api) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return cudaSuccess;
  Streams& all = streams();
  std::lock_guard<std::mutex> lock(all.mutex);
  if (all.live.count(s) == 0)
    return fail(cudaErrorInvalidResourceHandle, std::string(api) + ": stream " + hex(s) + " was destroyed or never created");
  return cudaSuccess;
}

// ------------------------------------------------------------------ stream capture and graphs
// Between cudaStreamBeginCapture and cudaStreamEndCapture, work enqueued on
// the stream is recorded instead of run: kernel launches (with copies of
// their arguments), device-to-device copies, memsets and the fake cuBLAS's
// products. cudaGraphLaunch runs the recorded steps in order, reading device
// memory as it is at replay time, as a GPU replays a graph. Stream-ordered
// allocations made during the capture belong to the graph (freed with it),
// as CUDA's graph memory nodes do. What a GPU refuses in a capture fails the
// capture here with a message (cudaStreamEndCapture returns
// cudaErrorStreamCaptureInvalidated): waiting for the stream, and -- stricter
// than CUDA, which allows pinned host memory -- any copy between host and
// device memory, since a graph would replay the host array's capture-time
// address.
struct GraphSteps {
  std::vector<std::function<void()>> steps;
  std::vector<void*> owned;
  ~GraphSteps() {
    for (void* p : owned) release(p, "cudaGraphDestroy");
  }
};

struct Capture {
  std::shared_ptr<GraphSteps> graph;
  std::string invalid;  // why the capture failed, when it did
};

std::mutex& capture_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}

std::map<cudaStream_t, Capture>& captures() {
  static auto* c = new std::map<cudaStream_t, Capture>;
  return *c;
}

Capture* capture_of(cudaStream_t s) {
  if (s == nullptr) return nullptr;
  auto& all = captures();
  auto it = all.find(s);
  return it == all.end() ? nullptr : &it->second;
}

// Records `step` when the stream is capturing; false when it is not.
bool record_step(cudaStream_t s, std::function<void()> step) {
  std::lock_guard<std::mutex> lock(capture_mutex());
  Capture* c = capture_of(s);
  if (c == nullptr) return false;
  if (c->invalid.empty()) c->graph->steps.push_back(std::move(step));
  return true;
}

// Fails the stream's capture (when it is capturing) with `why`.
bool refuse_in_capture(cudaStream_t s, const std::string& why) {
  std::lock_guard<std::mutex> lock(capture_mutex());
  Capture* c = capture_of(s);
  if (c == nullptr) return false;
  if (c->invalid.empty()) c->invalid = why;
  log("stream capture: " + why);
  return true;
}

int capture_for_cublas(const void* stream, void (*run)(void*), void* context, void (*destroy)(void*)) {
  const auto s = static_cast<cudaStream_t>(const_cast<void*>(stream));
  std::lock_guard<std::mutex> lock(capture_mutex());
  Capture* c = capture_of(s);
  if (c == nullptr) return 0;  // not capturing: the caller runs and frees it
  auto owned = std::shared_ptr<void>(context, destroy);
  if (c->invalid.empty()) c->graph->steps.push_back([run, owned] { run(owned.get()); });
  return 1;
}

// ------------------------------------------------------------------ copies

// The device and host sides of a copy of `bytes` from src to dst.
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* api) {
  std::string why;
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault || kind == cudaMemcpyHostToHost || !(dst_device || src_device))
    return fail(cudaErrorInvalidMemcpyDirection, std::string(api) + ": copy kind " + std::to_string(int(kind)) + " is not emulated");
  if (dst_device ? !inside_allocation(dst, bytes, &why) : touches_device(dst, bytes))
    return fail(cudaErrorInvalidValue, std::string(api) + ": destination: " +
                                           (dst_device ? why : hex(dst) + " is device memory, but the copy kind says host"));
  if (src_device ? !inside_allocation(src, bytes, &why) : touches_device(src, bytes))
    return fail(cudaErrorInvalidValue, std::string(api) + ": source: " +
                                           (src_device ? why : hex(src) + " is device memory, but the copy kind says host"));
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst), s = reinterpret_cast<uintptr_t>(src);
  if (d < s + bytes && s < d + bytes) return fail(cudaErrorInvalidValue, std::string(api) + ": source and destination overlap");
  return cudaSuccess;
}

// ------------------------------------------------------------------ kernels

struct Failure {};  // unwinds a thread of a failing block

struct Warp {
  int size = 0;     // lanes that exist
  int arrived = 0;  // lanes waiting in the current warp op
  int exited = 0;
  const char* op = nullptr;
  std::atomic<uint32_t> generation{0};
  alignas(16) unsigned char slots[2][kWarp][kWarpSlotBytes];
};

struct Launch {
  const LaunchConfig* config;
  void (*body)(const void*);
  const void* context;
  std::vector<uint32_t> order;  // linear block indices in execution order
  unsigned char* shared = nullptr;
  size_t shared_bytes = 0;
};

// The block in flight (one at a time) and its synchronisation.
struct Block {
  std::mutex mutex;
  const Launch* launch = nullptr;
  int threads = 0, live = 0, waiting = 0;
  int bar_arrived = 0;
  std::atomic<uint32_t> bar_generation{0};
  Warp warps[kMaxThreads / kWarp];
  std::atomic<bool> failed{false};
  std::string error;
  size_t index = 0;  // position in launch->order
  int done = 0;
  std::atomic<uint32_t> done_generation{0};
};

Block& block() {
  static Block* b = new Block;
  return *b;
}

struct ThreadState {
  bool in_kernel = false;
  int linear = 0, warp = 0, lane = 0;
  unsigned shuffles = 0;
};
thread_local ThreadState me;

dim3 block_coordinates(uint32_t linear, dim3 grid) {
  return dim3(linear % grid.x, (linear / grid.x) % grid.y, linear / (grid.x * grid.y));
}

std::string where() {
  return "thread " + dims(dim3(threadIdx.x, threadIdx.y, threadIdx.z)) + " of block " +
         dims(dim3(blockIdx.x, blockIdx.y, blockIdx.z));
}

// With b.mutex held: the first failure wins; every waiter is woken to unwind.
void fail_block(Block& b, const std::string& why) {
  if (!b.failed.load()) {
    b.error = why;
    b.failed.store(true);
  }
  b.bar_generation.fetch_add(1);
  b.bar_generation.notify_all();
  for (Warp& w : b.warps) {
    w.generation.fetch_add(1);
    w.generation.notify_all();
  }
}

std::string deadlock(const Block& b) {
  std::string s = "deadlock: every live thread of block " + dims(dim3(blockIdx.x, blockIdx.y, blockIdx.z)) +
                  " waits and no barrier can complete (" + std::to_string(b.threads - b.live) + " exited";
  if (b.bar_arrived > 0) s += ", " + std::to_string(b.bar_arrived) + " at __syncthreads";
  for (int w = 0; w < (b.threads + kWarp - 1) / kWarp; ++w)
    if (b.warps[w].arrived > 0)
      s += ", " + std::to_string(b.warps[w].arrived) + " lanes of warp " + std::to_string(w) + " in " + b.warps[w].op;
  return s + ")";
}

void require_kernel(const char* op) {
  if (!me.in_kernel) {
    log(std::string(op) + " called outside a kernel");
    std::abort();
  }
}

// Waits (not holding the mutex) until `generation` moves on from `seen`.
void wait_for(Block& b, std::atomic<uint32_t>& generation, uint32_t seen) {
  while (generation.load() == seen) generation.wait(seen);
  if (b.failed.load()) throw Failure{};
}

void warp_arrive(const char* op) {
  Block& b = block();
  Warp& w = b.warps[me.warp];
  std::unique_lock<std::mutex> lock(b.mutex);
  if (b.failed.load()) throw Failure{};
  if (w.size != kWarp) {
    fail_block(b, std::string(op) + " with a full mask in warp " + std::to_string(me.warp) + " of only " +
                      std::to_string(w.size) + " threads (the block size is not a multiple of 32): undefined on a GPU");
    throw Failure{};
  }
  if (w.exited > 0) {
    fail_block(b, where() + ": " + op + " with a full mask after " + std::to_string(w.exited) +
                      " lanes of its warp exited: undefined on a GPU");
    throw Failure{};
  }
  if (w.arrived == 0) {
    w.op = op;
  } else if (std::strcmp(w.op, op) != 0) {
    fail_block(b, where() + ": lanes of warp " + std::to_string(me.warp) + " are in different warp ops (" + w.op +
                      " and " + op + ")");
    throw Failure{};
  }
  if (++w.arrived == w.size) {
    w.arrived = 0;
    b.waiting -= w.size - 1;
    w.generation.fetch_add(1);
    lock.unlock();
    w.generation.notify_all();
    return;
  }
  ++b.waiting;
  if (b.waiting == b.live) {
    fail_block(b, deadlock(b));
    throw Failure{};
  }
  const uint32_t seen = w.generation.load();
  lock.unlock();
  wait_for(b, w.generation, seen);
}

void thread_exit() {
  Block& b = block();
  std::lock_guard<std::mutex> lock(b.mutex);
  Warp& w = b.warps[me.warp];
  --b.live;
  ++w.exited;
  if (b.failed.load()) return;
  if (w.arrived > 0)
    fail_block(b, where() + " exited while " + std::to_string(w.arrived) + " lanes of its warp wait in " + w.op +
                      " (full mask): undefined on a GPU");
  else if (b.bar_arrived > 0)
    fail_block(b, where() + " exited while " + std::to_string(b.bar_arrived) +
                      " threads wait at __syncthreads: undefined on a GPU (every thread of the block must reach it)");
  else if (b.live > 0 && b.waiting == b.live)
    fail_block(b, deadlock(b));
}

// ---- the team of threads that runs the blocks

struct Team {
  std::mutex mutex;
  std::condition_variable start, finish;
  std::vector<std::thread> threads;  // never joined: parked when idle, ended with the process
  uint64_t epoch = 0;
  int active = 0, finished = 0;
  Launch* launch = nullptr;
};

Team& team() {
  static Team* t = new Team;
  return *t;
}

}  // namespace
}  // namespace st_emu

// The statics that __shared__ declares (cuda_emulation.h), placed by the
// linker between these two symbols.
extern "C" unsigned char __start_st_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" unsigned char __stop_st_emu_shared[] __attribute__((weak, visibility("hidden")));

namespace st_emu {
namespace {

void reset_block(Block& b, const Launch& l) {
  unsigned char* const shared_begin = __start_st_emu_shared;
  unsigned char* const shared_end = __stop_st_emu_shared;
  if (shared_begin != nullptr && shared_end > shared_begin)
    std::memset(shared_begin, kGarbageByte, size_t(shared_end - shared_begin));
  const dim3 bd = l.config->block;
  const int threads = int(bd.x * bd.y * bd.z);
  b.threads = b.live = threads;
  b.waiting = 0;
  b.bar_arrived = 0;
  for (int w = 0; w < (threads + kWarp - 1) / kWarp; ++w) {
    b.warps[w].size = std::min(kWarp, threads - w * kWarp);
    b.warps[w].arrived = 0;
    b.warps[w].exited = 0;
    b.warps[w].op = nullptr;
  }
  b.done = 0;
  if (l.shared != nullptr) {
    ST_EMU_UNPOISON(l.shared + l.shared_bytes, kGuardBytes);
    std::memset(l.shared, kGarbageByte, l.shared_bytes);
    std::memset(l.shared + l.shared_bytes, kGuardByte, kGuardBytes);
    ST_EMU_POISON(l.shared + l.shared_bytes, kGuardBytes);
  }
}

// The end of a block: the last thread checks the guard and readies the next.
void end_block(Block& b, const Launch& l) {
  std::unique_lock<std::mutex> lock(b.mutex);
  if (++b.done < b.threads) {
    const uint32_t seen = b.done_generation.load();
    lock.unlock();
    while (b.done_generation.load() == seen) b.done_generation.wait(seen);
    return;
  }
  ST_EMU_UNPOISON(l.shared + l.shared_bytes, kGuardBytes);
  if (l.shared != nullptr && !b.failed.load())
    for (size_t i = 0; i < kGuardBytes; ++i)
      if (l.shared[l.shared_bytes + i] != kGuardByte) {
        fail_block(b, "block " + dims(block_coordinates(l.order[b.index], l.config->grid)) + " wrote past the end of its " +
                          std::to_string(l.shared_bytes) + " bytes of dynamic shared memory (byte " +
                          std::to_string(l.shared_bytes + i) + ")");
        break;
      }
  ++b.index;
  if (b.index < l.order.size() && !b.failed.load()) reset_block(b, l);
  b.done_generation.fetch_add(1);
  lock.unlock();
  b.done_generation.notify_all();
}

void run_blocks(const Launch& l, int linear) {
  Block& b = block();
  const dim3 bd = l.config->block, grid = l.config->grid;
  me.in_kernel = true;
  me.linear = linear;
  me.warp = linear / kWarp;
  me.lane = linear % kWarp;
  threadIdx = uint3{unsigned(linear) % bd.x, (unsigned(linear) / bd.x) % bd.y, unsigned(linear) / (bd.x * bd.y)};
  blockDim = bd;
  gridDim = grid;
  for (size_t i = 0; i < l.order.size(); ++i) {
    const dim3 c = block_coordinates(l.order[i], grid);
    blockIdx = uint3{c.x, c.y, c.z};
    me.shuffles = 0;
    try {
      l.body(l.context);
    } catch (const Failure&) {
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(b.mutex);
      fail_block(b, where() + ": exception " + e.what());
    } catch (...) {
      std::lock_guard<std::mutex> lock(b.mutex);
      fail_block(b, where() + ": unknown exception");
    }
    thread_exit();
    end_block(b, l);
    if (b.failed.load()) break;
  }
  me.in_kernel = false;
}

void team_thread(int index) {
  Team& t = team();
  uint64_t seen = 0;
  for (;;) {
    Launch* l = nullptr;
    {
      std::unique_lock<std::mutex> lock(t.mutex);
      t.start.wait(lock, [&] { return t.epoch != seen; });
      seen = t.epoch;
      if (index >= t.active) continue;
      l = t.launch;
    }
    run_blocks(*l, index);
    {
      std::lock_guard<std::mutex> lock(t.mutex);
      if (++t.finished == t.active) t.finish.notify_all();
    }
  }
}

struct Settings {
  bool shuffle = true;
};

const Settings& settings() {
  static const Settings s = [] {
    Settings r;
    const char* order = std::getenv("ST_CUDA_EMULATION_BLOCK_ORDER");
    if (order != nullptr && std::strcmp(order, "forward") == 0) r.shuffle = false;
    return r;
  }();
  return s;
}

struct Functions {
  std::mutex mutex;
  std::map<const void*, int> max_dynamic_shared;
};

Functions& functions() {
  static Functions* f = new Functions;
  return *f;
}

std::mutex& launch_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}

}  // namespace

bool stream_capturing(cudaStream_t s) {
  std::lock_guard<std::mutex> lock(capture_mutex());
  return capture_of(s) != nullptr;
}

bool capture_launch(cudaStream_t s, std::function<void()> replay) { return record_step(s, std::move(replay)); }

void* dynamic_shared_memory() {
  require_kernel("dynamic shared memory");
  return block().launch->shared;
}

void sync_threads() {
  require_kernel("__syncthreads");
  Block& b = block();
  std::unique_lock<std::mutex> lock(b.mutex);
  if (b.failed.load()) throw Failure{};
  if (b.live < b.threads) {
    fail_block(b, where() + " reached __syncthreads after " + std::to_string(b.threads - b.live) +
                      " threads of the block exited: undefined on a GPU (every thread of the block must reach it)");
    throw Failure{};
  }
  if (++b.bar_arrived == b.threads) {
    b.bar_arrived = 0;
    b.waiting -= b.threads - 1;
    b.bar_generation.fetch_add(1);
    lock.unlock();
    b.bar_generation.notify_all();
    return;
  }
  ++b.waiting;
  if (b.waiting == b.live) {
    fail_block(b, deadlock(b));
    throw Failure{};
  }
  const uint32_t seen = b.bar_generation.load();
  lock.unlock();
  wait_for(b, b.bar_generation, seen);
}

void sync_warp(unsigned mask) {
  require_kernel("__syncwarp");
  if (mask != 0xffffffffu) {
    Block& b = block();
    std::lock_guard<std::mutex> lock(b.mutex);
    fail_block(b, where() + ": warp ops with a partial mask (or a width below 32) are not emulated");
    throw Failure{};
  }
  warp_arrive("__syncwarp");
}

void warp_exchange(const void* mine, void* theirs, size_t bytes, int source_lane, const char* op) {
  require_kernel(op);
  Warp& w = block().warps[me.warp];
  const int parity = int(me.shuffles++ & 1u);  // alternate slots: one barrier per exchange suffices
  std::memcpy(w.slots[parity][me.lane], mine, bytes);
  warp_arrive(op);
  std::memcpy(theirs, w.slots[parity][source_lane], bytes);
}

void warp_gather(const void* mine, void* all, size_t bytes, const char* op) {
  require_kernel(op);
  if (bytes > kWarpSlotBytes) {
    log(std::string(op) + ": " + std::to_string(bytes) + " bytes per lane, past the emulator's " +
        std::to_string(kWarpSlotBytes));
    std::abort();
  }
  Warp& w = block().warps[me.warp];
  const int parity = int(me.shuffles++ & 1u);  // the same alternation as warp_exchange: one barrier per op
  std::memcpy(w.slots[parity][me.lane], mine, bytes);
  warp_arrive(op);
  for (int lane = 0; lane < kWarp; ++lane)
    std::memcpy(static_cast<unsigned char*>(all) + size_t(lane) * bytes, w.slots[parity][lane], bytes);
}

void run_launch(const LaunchConfig& c, const LaunchArguments& arguments, void (*body)(const void*),
                const void* context) {
  const std::string name = std::string("kernel ") + c.name + " <<<" + dims(c.grid) + ", " + dims(c.block) + ", " +
                           std::to_string(c.dynamic_shared) + ">>>";
  if (check_stream(c.stream, c.name) != cudaSuccess) return;
  if (arguments.parameter_bytes > 4096) {
    fail(cudaErrorInvalidValue, name + ": " + std::to_string(arguments.parameter_bytes) + " bytes of parameters (at most 4096)");
    return;
  }
  for (size_t i = 0; i < arguments.pointer_count; ++i)
    if (!kernel_pointer_ok(arguments.pointers[i])) {
      fail(cudaErrorIllegalAddress, name + ": pointer argument " + std::to_string(i + 1) + " (" +
                                        hex(arguments.pointers[i]) + ") is not device memory");
      return;
    }
  const uint64_t threads = uint64_t(c.block.x) * c.block.y * c.block.z;
  if (c.block.x == 0 || c.block.y == 0 || c.block.z == 0 || c.block.x > 1024 || c.block.y > 1024 || c.block.z > 64 ||
      threads > uint64_t(kMaxThreads)) {
    fail(cudaErrorInvalidConfiguration, name + ": invalid block size (at most 1024 threads, 1024 x 1024 x 64)");
    return;
  }
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.grid.x > 0x7fffffffu || c.grid.y > 65535 ||
      c.grid.z > 65535) {
    fail(cudaErrorInvalidConfiguration, name + ": invalid grid size (each dimension >= 1; y, z <= 65535)");
    return;
  }
  size_t limit = kDefaultSharedLimit;
  {
    Functions& f = functions();
    std::lock_guard<std::mutex> lock(f.mutex);
    auto it = f.max_dynamic_shared.find(c.function);
    if (it != f.max_dynamic_shared.end()) limit = size_t(it->second);
  }
  if (c.dynamic_shared > limit) {
    fail(cudaErrorInvalidValue, name + ": " + std::to_string(c.dynamic_shared) +
                                    " bytes of dynamic shared memory, past the kernel's limit of " +
                                    std::to_string(limit) +
                                    " (48 KiB unless raised by cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize))");
    return;
  }
  const uint64_t blocks = uint64_t(c.grid.x) * c.grid.y * c.grid.z;

  std::lock_guard<std::mutex> serial(launch_mutex());
  static uint64_t launches = 0;
  Launch l;
  l.config = &c;
  l.body = body;
  l.context = context;
  l.order.resize(blocks);
  std::iota(l.order.begin(), l.order.end(), 0u);
  if (settings().shuffle) std::shuffle(l.order.begin(), l.order.end(), std::mt19937_64(++launches));
  std::vector<unsigned char> shared(c.dynamic_shared + kGuardBytes);
  l.shared = shared.data();
  l.shared_bytes = c.dynamic_shared;

  Block& b = block();
  b.launch = &l;
  b.failed.store(false);
  b.error.clear();
  b.index = 0;
  reset_block(b, l);

  Team& t = team();
  {
    std::unique_lock<std::mutex> lock(t.mutex);
    while (t.threads.size() < threads) {
      const int index = int(t.threads.size());
      t.threads.emplace_back(team_thread, index);
    }
    t.active = int(threads);
    t.finished = 0;
    t.launch = &l;
    ++t.epoch;
    t.start.notify_all();
    t.finish.wait(lock, [&] { return t.finished == t.active; });
    t.launch = nullptr;
  }
  b.launch = nullptr;
  if (b.failed.load()) {
    fail(cudaErrorLaunchFailure, name + ": " + b.error);
    return;
  }
  const std::string damaged = damaged_guard();
  if (!damaged.empty()) fail(cudaErrorIllegalAddress, name + ": " + damaged);
}

}  // namespace st_emu

// ------------------------------------------------------------------ the runtime API

using namespace st_emu;

extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char* cudaGetErrorName(cudaError_t error) { return error_name(error); }

const char* cudaGetErrorString(cudaError_t error) {
  // The emulator's description of this thread's latest failure of this kind.
  thread_local std::string text;
  if (error != cudaSuccess && error == detail_code && !detail.empty()) {
    text = std::string(error_text(error)) + " [CUDA emulation: " + detail + "]";
    return text.c_str();
  }
  return error_text(error);
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  if (version == nullptr) return fail(cudaErrorInvalidValue, "cudaRuntimeGetVersion: null pointer");
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  if (version == nullptr) return fail(cudaErrorInvalidValue, "cudaDriverGetVersion: null pointer");
  *version = 0;  // there is no driver: the emulation stands in for it
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount: null pointer");
  *count = 0;
  if (!enabled())
    return fail(cudaErrorNoDevice,
                "this is the CUDA emulation build (tests only: its kernels run on the CPU, not a GPU); it offers its "
                "emulated device only with SPATIALTHINKER_CUDA_EMULATION=1",
                false);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) + "): the emulation has one device, 0");
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDevice: null pointer");
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return fail(cudaErrorInvalidValue, "cudaMemGetInfo: null pointer");
  struct sysinfo si;
  if (sysinfo(&si) != 0) return fail(cudaErrorNotSupported, "cudaMemGetInfo: sysinfo failed");
  *free_bytes = size_t(si.freeram) * si.mem_unit;
  *total_bytes = size_t(si.totalram) * si.mem_unit;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: null pointer");
  if (device != 0) return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties(" + std::to_string(device) + "): the emulation has one device, 0");
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "%s", kDeviceName);
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  prop->totalGlobalMem = total_bytes;
  prop->sharedMemPerBlock = kDefaultSharedLimit;
  prop->sharedMemPerBlockOptin = kOptinSharedLimit;
  prop->sharedMemPerMultiprocessor = kOptinSharedLimit + 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = kWarp;
  prop->maxThreadsPerBlock = kMaxThreads;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->major = 8;
  prop->minor = 0;
  prop->multiProcessorCount = 1;  // one block at a time
  prop->maxThreadsPerMultiProcessor = kMaxThreads;
  prop->unifiedAddressing = 1;
  prop->memoryPoolsSupported = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  static CUmemPoolHandle_st default_pool{0};
  if (pool == nullptr) return fail(cudaErrorInvalidValue, "cudaDeviceGetDefaultMemPool: null pointer");
  if (device != 0) return fail(cudaErrorInvalidDevice, "cudaDeviceGetDefaultMemPool: the emulation has one device, 0");
  *pool = &default_pool;
  return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void* value) {
  if (pool == nullptr || value == nullptr) return fail(cudaErrorInvalidValue, "cudaMemPoolSetAttribute: null pointer");
  if (attr != cudaMemPoolAttrReleaseThreshold)
    return fail(cudaErrorNotSupported, "cudaMemPoolSetAttribute: attribute " + std::to_string(int(attr)) + " is not emulated");
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (stream == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: null pointer");
  if (flags != cudaStreamDefault && flags != cudaStreamNonBlocking)
    return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: invalid flags " + std::to_string(flags));
  cudaStream_t s = new CUstream_st{{st_emu_abi::kStreamMagic, &kServices}, flags};
  Streams& all = streams();
  std::lock_guard<std::mutex> lock(all.mutex);
  all.live.insert(s);
  *stream = s;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  Streams& all = streams();
  std::lock_guard<std::mutex> lock(all.mutex);
  if (stream == nullptr || all.live.erase(stream) == 0)
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: stream " + hex(stream) + " was destroyed or never created");
  stream->header.magic = 0;
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (refuse_in_capture(stream, "cudaStreamSynchronize on a capturing stream (an op that waits for the device)"))
    return cudaErrorStreamCaptureUnsupported;
  return check_stream(stream, "cudaStreamSynchronize");
}

cudaError_t cudaMalloc(void** ptr, size_t size) { return allocate(ptr, size, "cudaMalloc"); }

cudaError_t cudaFree(void* ptr) { return release(ptr, "cudaFree"); }

cudaError_t cudaMallocAsync(void** ptr, size_t size, cudaStream_t stream) {
  if (const cudaError_t e = check_stream(stream, "cudaMallocAsync"); e != cudaSuccess) return e;
  const cudaError_t e = allocate(ptr, size, "cudaMallocAsync");
  if (e == cudaSuccess && *ptr != nullptr) {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (Capture* c = capture_of(stream)) c->graph->owned.push_back(*ptr);  // the graph's memory
  }
  return e;
}

cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  if (const cudaError_t e = check_stream(stream, "cudaFreeAsync"); e != cudaSuccess) return e;
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (Capture* c = capture_of(stream)) {
      const auto& owned = c->graph->owned;
      if (std::find(owned.begin(), owned.end(), ptr) != owned.end()) return cudaSuccess;  // freed with the graph
      if (c->invalid.empty()) c->invalid = "cudaFreeAsync of memory allocated outside the capture (" + hex(ptr) + ")";
      return cudaErrorStreamCaptureUnsupported;
    }
  }
  return release(ptr, "cudaFreeAsync");
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream) {
  if (const cudaError_t e = check_stream(stream, "cudaMemcpyAsync"); e != cudaSuccess) return e;
  if (count == 0) return cudaSuccess;
  if (const cudaError_t e = check_copy(dst, src, count, kind, "cudaMemcpyAsync"); e != cudaSuccess) return e;
  if (kind != cudaMemcpyDeviceToDevice &&
      refuse_in_capture(stream, std::string("cudaMemcpyAsync ") + (kind == cudaMemcpyHostToDevice ? "host to device" : "device to host") +
                                    " of " + std::to_string(count) + " bytes (an op that takes or returns host arrays)"))
    return cudaErrorStreamCaptureUnsupported;
  if (record_step(stream, [dst, src, count] { std::memcpy(dst, src, count); })) return cudaSuccess;
  std::memcpy(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, count, kind, nullptr);
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              enum cudaMemcpyKind kind, cudaStream_t stream) {
  if (const cudaError_t e = check_stream(stream, "cudaMemcpy2DAsync"); e != cudaSuccess) return e;
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > dpitch || width > spitch)
    return fail(cudaErrorInvalidPitchValue, "cudaMemcpy2DAsync: width " + std::to_string(width) +
                                                " exceeds a pitch (dpitch " + std::to_string(dpitch) + ", spitch " +
                                                std::to_string(spitch) + ")");
  for (size_t r = 0; r < height; ++r) {
    unsigned char* d = static_cast<unsigned char*>(dst) + r * dpitch;
    const unsigned char* s = static_cast<const unsigned char*>(src) + r * spitch;
    if (const cudaError_t e = check_copy(d, s, width, kind, "cudaMemcpy2DAsync"); e != cudaSuccess) return e;
  }
  if (kind != cudaMemcpyDeviceToDevice &&
      refuse_in_capture(stream, "cudaMemcpy2DAsync between host and device memory (an op that takes host arrays)"))
    return cudaErrorStreamCaptureUnsupported;
  auto copy = [=] {
    for (size_t r = 0; r < height; ++r)
      std::memcpy(static_cast<unsigned char*>(dst) + r * dpitch, static_cast<const unsigned char*>(src) + r * spitch,
                  width);
  };
  if (!record_step(stream, copy)) copy();
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
  if (const cudaError_t e = check_stream(stream, "cudaMemsetAsync"); e != cudaSuccess) return e;
  if (count == 0) return cudaSuccess;
  std::string why;
  if (!inside_allocation(ptr, count, &why)) return fail(cudaErrorInvalidValue, "cudaMemsetAsync: " + why);
  if (record_step(stream, [ptr, value, count] { std::memset(ptr, value, count); })) return cudaSuccess;
  std::memset(ptr, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t count) { return cudaMemsetAsync(ptr, value, count, nullptr); }

// Page-locked host memory (the optimiser offload's state): ordinary host
// memory here, NaN bytes like a fresh device allocation, tracked so that
// freeing anything cudaHostAlloc did not hand out fails as on a GPU. It is
// not device memory: a kernel given one of these pointers fails its launch.
namespace {
struct PinnedAllocations {
  std::mutex mutex;
  std::set<void*> live;
};
PinnedAllocations& pinned() {
  static PinnedAllocations p;
  return p;
}
}  // namespace

cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned int flags) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue, "cudaHostAlloc: null pointer");
  if (flags & ~(cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined))
    return fail(cudaErrorInvalidValue, "cudaHostAlloc: invalid flags " + std::to_string(flags));
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) return fail(cudaErrorMemoryAllocation, "cudaHostAlloc: out of host memory for " + std::to_string(size) + " bytes");
  std::memset(p, 0xff, size);
  PinnedAllocations& all = pinned();
  std::lock_guard<std::mutex> lock(all.mutex);
  all.live.insert(p);
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t size) { return cudaHostAlloc(ptr, size, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  PinnedAllocations& all = pinned();
  std::lock_guard<std::mutex> lock(all.mutex);
  if (all.live.erase(ptr) == 0)
    return fail(cudaErrorInvalidValue, "cudaFreeHost: " + hex(ptr) + " was not allocated by cudaHostAlloc or was freed already");
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr, int value) {
  if (func == nullptr) return fail(cudaErrorInvalidDeviceFunction, "cudaFuncSetAttribute: null function");
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || size_t(value) > kOptinSharedLimit)
      return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: " + std::to_string(value) +
                                             " bytes of dynamic shared memory, past the sm_80 opt-in limit of " +
                                             std::to_string(kOptinSharedLimit));
    Functions& f = functions();
    std::lock_guard<std::mutex> lock(f.mutex);
    f.max_dynamic_shared[func] = value;
    return cudaSuccess;
  }
  return fail(cudaErrorNotSupported, "cudaFuncSetAttribute: attribute " + std::to_string(int(attr)) + " is not emulated");
}


cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
  (void)mode;  // one thread drives each stream here: the modes do not differ
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread)
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture: the legacy default stream cannot be captured");
  if (const cudaError_t e = check_stream(stream, "cudaStreamBeginCapture"); e != cudaSuccess) return e;
  std::lock_guard<std::mutex> lock(capture_mutex());
  if (capture_of(stream) != nullptr)
    return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: stream " + hex(stream) + " is already capturing");
  captures()[stream] = Capture{std::make_shared<GraphSteps>(), ""};
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture: null graph pointer");
  *graph = nullptr;
  Capture c;
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    auto it = captures().find(stream);
    if (it == captures().end())
      return fail(cudaErrorIllegalState, "cudaStreamEndCapture: stream " + hex(stream) + " is not capturing");
    c = std::move(it->second);
    captures().erase(it);
  }
  if (!c.invalid.empty()) return fail(cudaErrorStreamCaptureInvalidated, "stream capture invalidated: " + c.invalid);
  *graph = new CUgraph_st{std::move(c.graph)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus* status) {
  if (status == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamIsCapturing: null status pointer");
  std::lock_guard<std::mutex> lock(capture_mutex());
  const Capture* c = capture_of(stream);
  *status = c == nullptr ? cudaStreamCaptureStatusNone
                         : c->invalid.empty() ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusInvalidated;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  (void)flags;
  if (exec == nullptr || graph == nullptr) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: null argument");
  *exec = new CUgraphExec_st{graph->steps};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return fail(cudaErrorInvalidValue, "cudaGraphLaunch: null graph");
  if (const cudaError_t e = check_stream(stream, "cudaGraphLaunch"); e != cudaSuccess) return e;
  if (stream_capturing(stream))
    return fail(cudaErrorStreamCaptureUnsupported, "cudaGraphLaunch into a capturing stream is not emulated");
  for (const auto& step : exec->steps->steps) {
    step();
    if (last_error != cudaSuccess) return last_error;  // a failed launch stops the replay, as on a GPU
  }
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

}  // extern "C"
