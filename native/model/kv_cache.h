#pragma once
// A paged key/value cache: every layer's keys and values live in one pool of
// fixed-size blocks, and each sequence owns a list of blocks. Forking a
// sequence shares its blocks (the G samples of a prompt share its prefill);
// the first write into a shared, partly filled block copies it. Released
// sequences return their blocks at once, so a batch can keep admitting work.
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace st::model {

class KvCache {
 public:
  KvCache(Backend& backend, const TextConfig& config, int64_t block_size = 16);

  using SequenceId = int32_t;
  SequenceId create();
  SequenceId fork(SequenceId parent);
  void release(SequenceId id);

  // Reserves `count` more positions for the sequence and returns their slots
  // (rows of the pools), growing the pools when no block is free.
  std::vector<int32_t> append(SequenceId id, int64_t count);
  // Slots of every cached position of the sequence, in order.
  const std::vector<int32_t>& slots(SequenceId id) const { return sequences_[size_t(id)].slots; }
  int64_t length(SequenceId id) const { return int64_t(sequences_[size_t(id)].slots.size()); }

  // Pools in the backend's storage type (bf16 on CUDA by default).
  DevicePtr keys(int64_t layer) { return keys_[size_t(layer)].get(); }
  DevicePtr values(int64_t layer) { return values_[size_t(layer)].get(); }
  int64_t row_width() const { return row_width_; }
  int64_t blocks_in_use() const { return int64_t(block_refs_.size() - free_blocks_.size()); }
  int64_t capacity_blocks() const { return int64_t(block_refs_.size()); }
  int64_t block_size() const { return block_size_; }

 private:
  struct Sequence {
    bool live = false;
    std::vector<int32_t> blocks;
    std::vector<int32_t> slots;
  };
  int32_t take_block();
  void drop_block(int32_t block);
  void grow(int64_t blocks);

  Backend& backend_;
  int64_t layers_, row_width_, block_size_;
  std::vector<DeviceArray> keys_, values_;
  std::vector<int32_t> block_refs_;
  std::vector<int32_t> free_blocks_;
  std::vector<Sequence> sequences_;
  std::vector<SequenceId> free_ids_;
};

}  // namespace st::model
