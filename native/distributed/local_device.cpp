#include "distributed/local_device.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace st::dist {

int device_for_this_process(const std::vector<int>& usable) {
  if (usable.empty()) throw std::runtime_error("no usable CUDA device");
  const char* local_rank = std::getenv("LOCAL_RANK");
  if (!local_rank || !*local_rank) return usable.front();
  char* end = nullptr;
  const long rank = std::strtol(local_rank, &end, 10);
  if (*end != '\0' || rank < 0) throw std::runtime_error(std::string("LOCAL_RANK=\"") + local_rank + "\" is not a local rank");
  if (size_t(rank) >= usable.size())
    throw std::runtime_error("local rank " + std::to_string(rank) + " has no GPU of its own: " + std::to_string(usable.size()) +
                             " usable device(s) on this node (CUDA_VISIBLE_DEVICES limits them); start at most that many workers per node");
  return usable[size_t(rank)];
}

}  // namespace st::dist
