#pragma once
// Which GPU this process drives. A worker of a distributed job (LOCAL_RANK
// set by `spatialthinker launch`, torchrun or a SLURM wrapper) takes the
// LOCAL_RANK-th usable device, so the ranks of a node never share one; any
// other process takes the first. The CUDA backend and the NCCL communicator
// both ask here, so a rank's model and its collectives are on one device.
#include <vector>

namespace st::dist {

// usable: the indices of the devices this build can run on. Throws one line
// when a launched worker has no device of its own.
int device_for_this_process(const std::vector<int>& usable);

}  // namespace st::dist
