#pragma once
// Making a process group: every rank calls make_process_group with the same
// world size, master address and port (torchrun's RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT). Rank 0 hosts the rendezvous store; every rank
// joins it, and the call returns once all ranks have arrived and the
// collectives' transport is connected, or throws one line naming the ranks
// that did not arrive within the timeout.
#include <chrono>
#include <memory>
#include <string>

#include "distributed/communicator.h"

namespace st::dist {

enum class GroupDevice { Cpu, Cuda };

struct GroupOptions {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  GroupDevice device = GroupDevice::Cpu;
  // Rendezvous and every collective wait at most this long for the others.
  std::chrono::milliseconds timeout{60000};
};

// A world of one needs no store and no transport (the single-process
// communicator); larger worlds get Gloo on the CPU and NCCL on CUDA.
std::unique_ptr<Communicator> make_process_group(const GroupOptions& options);

// What this build and machine can do, for runtimeInfo() and the errors of
// make_process_group.
struct DistributedInfo {
  bool gloo = false;          // linked at build time
  std::string gloo_reason;    // why not, when not
  bool nccl_compiled = false; // a CUDA build (NCCL is opened at run time)
  std::string nccl_library;   // the library a CUDA group would open
  std::string nccl_error;     // a CUDA build only: "" when it opened, else why not
};
DistributedInfo distributed_info();

// Implementations, for make_process_group: each takes over the joined
// group's rendezvous (it keeps the store for the life of the group).
class Rendezvous;
std::unique_ptr<Communicator> make_gloo_communicator(std::unique_ptr<Rendezvous> group);
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Rendezvous> group);
bool gloo_compiled();
// "" when Gloo is linked; else why not.
std::string gloo_missing_reason();
bool nccl_compiled();
// SPATIALTHINKER_NCCL, or libnccl.so.2.
std::string nccl_library_name();
// Opens NCCL (once per process): "" when it loaded, else why not, naming the file.
std::string nccl_load_error();

}  // namespace st::dist
