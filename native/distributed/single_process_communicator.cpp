#include <cstring>

#include "distributed/communicator.h"

namespace st::dist {
namespace {

// Every collective over a world of one is a copy at most.
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend_name() const override { return "single"; }
  void all_reduce(float*, int64_t, ReduceOp) override {}
  void reduce_scatter(const float* in, float* out, int64_t count, ReduceOp) override {
    if (in != out) std::memmove(out, in, size_t(count) * sizeof(float));
  }
  void all_gather(const float* in, float* out, int64_t count) override {
    if (in != out) std::memmove(out, in, size_t(count) * sizeof(float));
  }
  void broadcast(float*, int64_t, int) override {}
  void barrier() override {}
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() {
  return std::make_unique<SingleProcessCommunicator>();
}

}  // namespace st::dist
