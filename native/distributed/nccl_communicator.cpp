// The CUDA process group: NCCL, opened at run time (libnccl.so.2, or the file
// SPATIALTHINKER_NCCL names), so the engine builds and loads where NCCL is not
// installed. The unique id travels through the rendezvous store. Compiled in
// the CUDA build only (ST_WITH_CUDA); elsewhere it reports the missing backend.
#include <cstdlib>
#include <string>

#include "distributed/local_device.h"
#include "distributed/process_group.h"
#include "distributed/rendezvous.h"

namespace st::dist {

std::string nccl_library_name() {
  const char* chosen = std::getenv("SPATIALTHINKER_NCCL");
  return chosen && *chosen ? chosen : "libnccl.so.2";
}

}  // namespace st::dist

#if defined(ST_WITH_CUDA)

#include <cuda_runtime.h>
#include <dlfcn.h>

#include "backend/cuda/device.h"

#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace st::dist {
namespace {

// The few NCCL declarations used here (nccl.h is not needed to build): the
// ABI of NCCL 2.x, which has kept these values since 2.0.
using ncclComm_t = struct ncclComm*;
struct ncclUniqueId {
  char internal[128];
};
using ncclResult_t = int;
constexpr ncclResult_t ncclSuccess = 0;
constexpr ncclResult_t ncclInProgress = 7;
using ncclDataType_t = int;
constexpr ncclDataType_t ncclFloat32 = 7;
using ncclRedOp_t = int;
constexpr ncclRedOp_t ncclSum = 0, ncclMax = 2, ncclMin = 3;

struct NcclApi {
  ncclResult_t (*GetUniqueId)(ncclUniqueId*);
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*ReduceScatter)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*Broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*);
  const char* (*GetErrorString)(ncclResult_t);
};

template <typename F>
void resolve(void* library, const std::string& path, const char* name, F& out) {
  out = reinterpret_cast<F>(::dlsym(library, name));
  if (!out) throw std::runtime_error("NCCL library " + path + " lacks " + name + " (NCCL 2.x is needed)");
}

// Opened once per process; the handle is kept for the life of the process
// (NCCL's own threads may outlive a communicator).
const NcclApi& nccl() {
  static std::once_flag once;
  static NcclApi api;
  static std::string error;
  std::call_once(once, [] {
    const std::string path = nccl_library_name();
    void* library = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      const char* why = ::dlerror();
      error = "cannot open the NCCL library " + path + " (" + (why ? why : "not found") +
              "); install NCCL 2 or set SPATIALTHINKER_NCCL to its libnccl.so";
      return;
    }
    try {
      resolve(library, path, "ncclGetUniqueId", api.GetUniqueId);
      resolve(library, path, "ncclCommInitRank", api.CommInitRank);
      resolve(library, path, "ncclAllReduce", api.AllReduce);
      resolve(library, path, "ncclReduceScatter", api.ReduceScatter);
      resolve(library, path, "ncclAllGather", api.AllGather);
      resolve(library, path, "ncclBroadcast", api.Broadcast);
      resolve(library, path, "ncclCommDestroy", api.CommDestroy);
      resolve(library, path, "ncclCommAbort", api.CommAbort);
      resolve(library, path, "ncclCommGetAsyncError", api.CommGetAsyncError);
      resolve(library, path, "ncclGetErrorString", api.GetErrorString);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  if (!error.empty()) throw std::runtime_error(error);
  return api;
}

void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw std::runtime_error(std::string("nccl process group: ") + what + ": " + cudaGetErrorString(rc));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  throw std::runtime_error("nccl: unknown reduce op");
}

std::string to_hex(const ncclUniqueId& id) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (char c : id.internal) {
    out += digits[(unsigned char)c >> 4];
    out += digits[(unsigned char)c & 15];
  }
  return out;
}

ncclUniqueId from_hex(const std::string& hex) {
  if (hex.size() != 2 * sizeof(ncclUniqueId::internal)) throw std::runtime_error("nccl: malformed unique id in the store");
  ncclUniqueId id{};
  auto value = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i < sizeof id.internal; ++i) id.internal[i] = char(value(hex[2 * i]) << 4 | value(hex[2 * i + 1]));
  return id;
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::unique_ptr<Rendezvous> group)
      : api_(nccl()), group_(std::move(group)), timeout_(group_->options().timeout) {
    const GroupOptions& o = group_->options();
    std::vector<int> usable;
    for (const cuda::DeviceInfo& d : cuda::runtime_info().devices)
      if (d.usable) usable.push_back(d.index);
    device_ = device_for_this_process(usable);
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id{};
    if (o.rank == 0) {
      check(api_.GetUniqueId(&id), "ncclGetUniqueId");
      group_->store().set("nccl/unique_id", to_hex(id));
    } else {
      id = from_hex(group_->store().get("nccl/unique_id", timeout_));
    }
    // The model's backend runs on the current device; NCCL's kernels are
    // ordered after its work by a device-wide synchronisation per call (the
    // backend's stream is not exposed to the process group).
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    ncclResult_t rc = api_.CommInitRank(&comm_, o.world_size, id, o.rank);
    if (rc != ncclSuccess) {
      cudaStreamDestroy(stream_);
      throw std::runtime_error("ncclCommInitRank on rank " + std::to_string(o.rank) + " of " +
                               std::to_string(o.world_size) + " failed: " + api_.GetErrorString(rc));
    }
    group_->arrive("connected");
  }

  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    if (comm_) (broken_.empty() ? api_.CommDestroy : api_.CommAbort)(comm_);
    if (barrier_value_) cudaFree(barrier_value_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  int rank() const override { return group_->options().rank; }
  int world_size() const override { return group_->options().world_size; }
  std::string backend_name() const override { return "nccl"; }
  std::chrono::milliseconds timeout() const override { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout) override {
    std::lock_guard<std::mutex> lock(mutex_);
    timeout_ = timeout;
  }

  void all_reduce(float* data, int64_t count, ReduceOp op) override {
    run("all_reduce", count, [&] { return api_.AllReduce(data, data, size_t(count), ncclFloat32, nccl_op(op), comm_, stream_); });
  }
  void reduce_scatter(const float* in, float* out, int64_t count, ReduceOp op) override {
    run("reduce_scatter", count,
        [&] { return api_.ReduceScatter(in, out, size_t(count), ncclFloat32, nccl_op(op), comm_, stream_); });
  }
  void all_gather(const float* in, float* out, int64_t count) override {
    run("all_gather", count, [&] { return api_.AllGather(in, out, size_t(count), ncclFloat32, comm_, stream_); });
  }
  void broadcast(float* data, int64_t count, int root) override {
    if (root < 0 || root >= world_size())
      throw std::runtime_error("nccl broadcast: root " + std::to_string(root) + " is not a rank of a world of " +
                               std::to_string(world_size()));
    run("broadcast", count, [&] { return api_.Broadcast(data, data, size_t(count), ncclFloat32, root, comm_, stream_); });
  }
  // NCCL has no barrier: an all-reduce of one value is one.
  void barrier() override {
    if (!barrier_value_) {
      check_cuda(cudaSetDevice(device_), "cudaSetDevice");
      check_cuda(cudaMalloc(&barrier_value_, sizeof(float)), "cudaMalloc");
    }
    run("barrier", 1, [&] { return api_.AllReduce(barrier_value_, barrier_value_, 1, ncclFloat32, ncclSum, comm_, stream_); });
  }

 private:
  void check(ncclResult_t rc, const char* what) {
    if (rc != ncclSuccess) throw std::runtime_error(std::string(what) + " failed: " + api_.GetErrorString(rc));
  }

  // Enqueues the collective, then waits for it, polling the stream and
  // NCCL's asynchronous error: a peer that dies or never arrives leaves the
  // kernel spinning forever, so a watchdog aborts the communicator at the
  // timeout instead of hanging.
  template <typename Enqueue>
  void run(const char* name, int64_t count, Enqueue enqueue) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!broken_.empty()) throw std::runtime_error("nccl process group is unusable after an earlier failure: " + broken_);
    const uint64_t sequence = ++sequence_;
    if (count <= 0) return;
    std::string error;
    try {
      // The current device is per host thread, and calls come from any of the pool's.
      check_cuda(cudaSetDevice(device_), "cudaSetDevice");
      check_cuda(cudaDeviceSynchronize(), "waiting for the backend's work before a collective");
      check(enqueue(), name);
      const auto deadline = std::chrono::steady_clock::now() + timeout_;
      while (true) {
        const cudaError_t state = cudaStreamQuery(stream_);
        if (state == cudaSuccess) break;
        if (state != cudaErrorNotReady) check_cuda(state, name);
        ncclResult_t async = ncclSuccess;
        check(api_.CommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
        if (async != ncclSuccess && async != ncclInProgress)
          throw std::runtime_error(std::string("NCCL reported ") + api_.GetErrorString(async));
        if (std::chrono::steady_clock::now() >= deadline)
          throw std::runtime_error("timed out after " + seconds(timeout_));
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      return;
    } catch (const std::exception& e) {
      error = e.what();
    }
    const std::string what = std::string(name) + " #" + std::to_string(sequence);
    std::string message = "nccl " + what + " (" + std::to_string(count) + " fp32) on rank " + std::to_string(rank()) +
                          " of " + std::to_string(world_size()) + " failed: " + error;
    const std::string absent = group_->ranks_absent_from(what, sequence);
    if (!absent.empty()) message += "; " + absent;
    broken_ = message;
    api_.CommAbort(comm_);
    comm_ = nullptr;
    throw std::runtime_error(message);
  }

  const NcclApi& api_;
  std::unique_ptr<Rendezvous> group_;
  std::chrono::milliseconds timeout_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  float* barrier_value_ = nullptr;
  std::mutex mutex_;
  uint64_t sequence_ = 0;
  std::string broken_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Rendezvous> group) {
  return std::make_unique<NcclCommunicator>(std::move(group));
}

bool nccl_compiled() { return true; }

std::string nccl_load_error() {
  try {
    nccl();
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace st::dist

#else  // !ST_WITH_CUDA

#include <stdexcept>

namespace st::dist {

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Rendezvous>) {
  throw std::runtime_error("a CUDA process group needs a CUDA build of spatialthinker (this one has no CUDA backend)");
}

bool nccl_compiled() { return false; }

std::string nccl_load_error() { return "this build of spatialthinker has no CUDA backend"; }

}  // namespace st::dist

#endif
