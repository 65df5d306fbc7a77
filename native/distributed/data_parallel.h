#pragma once
// Data-parallel training over a Communicator: the gradient all-reduce in
// buckets, scalar reductions that give every rank the same bits, and the
// ZeRO-1 split of the flattened parameter list.
//
// The flattened parameter list is model::named_parameters() order, each
// parameter's values in row-major order, one after the other. ZeRO-1 gives
// rank r the contiguous range [r * shard, min((r + 1) * shard, total)) with
// shard = ceil(total / world): every rank owns one range of the same padded
// length (the last ranges may be short or empty; the collectives move the
// padded length, the padding holds nothing).
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "distributed/communicator.h"

namespace st::dist {

struct ShardSplit {
  int64_t total = 0;  // values in the flattened list
  int world = 1;
  int64_t shard = 0;  // padded length of every rank's range
  int64_t begin(int rank) const { return std::min(total, int64_t(rank) * shard); }
  int64_t end(int rank) const { return std::min(total, int64_t(rank + 1) * shard); }
};

ShardSplit split_evenly(int64_t total, int world);

// One array of the flattened list (backend memory) and where it starts in it.
struct FlatPiece {
  float* data = nullptr;
  int64_t offset = 0, size = 0;
};

// The pieces of `arrays` (in order) laid end to end from offset 0.
std::vector<FlatPiece> flat_pieces(const std::vector<std::pair<float*, int64_t>>& arrays);

// Calls fn(piece, first, count) for each part [first, first + count) of a
// piece (in the piece's own indices) that falls inside the flat range [begin, end).
template <class F>
void for_each_overlap(const std::vector<FlatPiece>& pieces, int64_t begin, int64_t end, F fn) {
  for (const FlatPiece& p : pieces) {
    const int64_t lo = std::max(begin, p.offset), hi = std::min(end, p.offset + p.size);
    if (lo < hi) fn(p, lo - p.offset, hi - lo);
  }
}

// Sum over ranks of every array, in place, the last array first (the order
// in which the backward finishes them), in buckets of at most
// bucket_elements values: small arrays are packed into one bucket buffer
// (one collective for many), an array larger than a bucket is reduced in
// place a bucket-sized chunk at a time.
void all_reduce_arrays(Backend& backend, Communicator& comm, const std::vector<std::pair<float*, int64_t>>& arrays,
                       int64_t bucket_elements);

// Each rank's doubles combined over ranks (sum, max or min). Every rank's
// values are gathered bit for bit (a double travels as two floats through
// all_gather, which copies) and combined in rank order, so every rank gets
// the same bits and the result does not depend on the collective's own
// reduction order.
std::vector<double> all_reduce_doubles(Backend& backend, Communicator& comm, const std::vector<double>& values,
                                       ReduceOp op);

// After each rank wrote its own range of the flattened parameters: every
// rank gets every range, chunk_elements per rank and collective at a time
// (bounded scratch, not a full copy of the model).
void all_gather_ranges(Backend& backend, Communicator& comm, const std::vector<FlatPiece>& pieces,
                       const ShardSplit& split, int64_t chunk_elements);

}  // namespace st::dist
