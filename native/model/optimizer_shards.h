#pragma once
// ZeRO-1 checkpoints: each rank writes its range of the flattened parameter
// list (distributed/data_parallel.h) as <dir>/optimizer-rank<r>-of-<W>.safetensors
// with the fp32 tensors "adam_m", "adam_v" (once the moments exist) and
// "master" (when asked), and the range in the file's metadata (flat_begin,
// flat_end, flat_total). Restoring reads whichever layout a checkpoint has,
// the unsharded optimizer.safetensors (model/checkpoint.h) or shards of any
// world size, into whichever layout this process keeps: the moments of its
// own range, or of every parameter.
#include <string>
#include <vector>

#include "backend/backend.h"
#include "distributed/data_parallel.h"
#include "engine/safetensors_writer.h"
#include "model/checkpoint.h"

namespace st::model {

std::string optimizer_shard_base(int rank, int world);

// The world size of the shards <dir> holds (rank 0's file names it); 0 when none.
int saved_optimizer_world(const std::string& dir);

// m and v: this rank's moments over [split.begin(rank), split.end(rank)) (null: none yet).
WrittenSet save_optimizer_shard(Backend& backend, const std::vector<dist::FlatPiece>& weights, const DeviceArray* m,
                                const DeviceArray* v, const dist::ShardSplit& split, int rank, const std::string& dir,
                                bool with_master, SafetensorsWriteOptions options);

// Where the restored values go: the weights (every parameter, for the
// master copy) and the moments' pieces (a range or every parameter).
struct FlatTargets {
  std::vector<dist::FlatPiece> weights;
  std::vector<std::string> names;  // of the weights' pieces, for the unsharded layout
  std::vector<dist::FlatPiece> m, v;
  int64_t total = 0;
};

// Whether <dir> holds moments in either layout.
bool optimizer_dir_holds_moments(const std::string& dir);

// Reads <dir>'s optimiser state, unsharded or sharded, into `targets`.
// Everything is checked before anything is overwritten; a problem is a
// FormatError naming the file and tensor.
RestoredState restore_flat_optimizer_state(Backend& backend, const std::string& dir, const FlatTargets& targets);

}  // namespace st::model
