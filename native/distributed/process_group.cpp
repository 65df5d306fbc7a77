#include "distributed/process_group.h"

#include <stdexcept>

#include "distributed/rendezvous.h"

namespace st::dist {
namespace {

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend_name() const override { return "single"; }
  void all_reduce(float*, int64_t, ReduceOp) override {}
  void reduce_scatter(const float* in, float* out, int64_t count, ReduceOp) override { copy(in, out, count); }
  void all_gather(const float* in, float* out, int64_t count) override { copy(in, out, count); }
  void broadcast(float*, int64_t, int) override {}
  void barrier() override {}
  std::chrono::milliseconds timeout() const override { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout) override { timeout_ = timeout; }

 private:
  // Host memory on the CPU backend; a CUDA caller of a world of one passes
  // the same pointer for in and out, so nothing is copied there.
  static void copy(const float* in, float* out, int64_t count) {
    if (in != out)
      for (int64_t i = 0; i < count; ++i) out[i] = in[i];
  }
  std::chrono::milliseconds timeout_{60000};
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() {
  return std::make_unique<SingleProcessCommunicator>();
}

DistributedInfo distributed_info() {
  DistributedInfo info;
  info.gloo = gloo_compiled();
  info.gloo_reason = gloo_missing_reason();
  info.nccl_compiled = nccl_compiled();
  info.nccl_library = nccl_library_name();
  if (info.nccl_compiled) info.nccl_error = nccl_load_error();
  return info;
}

std::unique_ptr<Communicator> make_process_group(const GroupOptions& options) {
  if (options.timeout.count() <= 0)
    throw std::runtime_error("process group: the timeout must be positive, got " + std::to_string(options.timeout.count()) + " ms");
  if (options.world_size == 1 && options.rank == 0) {
    auto single = make_single_process_communicator();
    single->set_timeout(options.timeout);
    return single;
  }
  // Refuse before rank 0 opens a port: the other ranks then fail on their
  // own build's identical reason instead of waiting out the rendezvous.
  if (options.device == GroupDevice::Cpu && !gloo_compiled())
    throw std::runtime_error("a CPU process group of " + std::to_string(options.world_size) +
                             " ranks needs Gloo: " + gloo_missing_reason());
  if (options.device == GroupDevice::Cuda && !nccl_compiled())
    throw std::runtime_error("a CUDA process group needs a CUDA build of spatialthinker (this one has no CUDA backend)");
  if (options.device == GroupDevice::Cuda) {
    const std::string missing = nccl_load_error();
    if (!missing.empty()) throw std::runtime_error("a CUDA process group needs NCCL: " + missing);
  }
  auto group = std::make_unique<Rendezvous>(options);
  return options.device == GroupDevice::Cpu ? make_gloo_communicator(std::move(group))
                                            : make_nccl_communicator(std::move(group));
}

}  // namespace st::dist
