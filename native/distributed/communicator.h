#pragma once
// A process group's collectives on backend memory (host memory for the CPU
// backend, device memory for CUDA). Gloo implements it for the CPU backend,
// NCCL for CUDA; a world of one needs neither (every collective is the
// identity). Calls are collective: every rank makes the same calls, with the
// same counts, in the same order. A rank that does not arrive within the
// group's timeout makes the call throw std::runtime_error naming the ranks
// that were waited for, never hang.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace st::dist {

enum class ReduceOp { Sum, Max, Min };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "gloo", "nccl" or "single".
  virtual std::string backend_name() const = 0;

  // In place over count fp32 values.
  virtual void all_reduce(float* data, int64_t count, ReduceOp op) = 0;
  // in: [world_size * count] (rank r's block is in[r * count ..]); out: [count],
  // the reduction of every rank's block `rank()`.
  virtual void reduce_scatter(const float* in, float* out, int64_t count, ReduceOp op) = 0;
  // in: [count] from every rank; out: [world_size * count], rank r's at r * count.
  virtual void all_gather(const float* in, float* out, int64_t count) = 0;
  // In place: every rank ends with root's values.
  virtual void broadcast(float* data, int64_t count, int root) = 0;
  virtual void barrier() = 0;

  // How long one collective waits for the other ranks before it throws.
  virtual std::chrono::milliseconds timeout() const = 0;
  virtual void set_timeout(std::chrono::milliseconds timeout) = 0;
};

// The world of one process: every collective is the identity.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace st::dist
