#include "model/kv_cache.h"

#include <algorithm>
#include <stdexcept>

namespace st::model {

KvCache::KvCache(Backend& backend, const TextConfig& config, int64_t block_size)
    : backend_(backend),
      layers_(config.layers),
      row_width_(config.kv_heads * config.head_dim()),
      block_size_(block_size),
      keys_(size_t(config.layers)),
      values_(size_t(config.layers)) {}

KvCache::SequenceId KvCache::create() {
  SequenceId id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = SequenceId(sequences_.size());
    sequences_.emplace_back();
  }
  sequences_[size_t(id)] = Sequence{true, {}, {}};
  return id;
}

KvCache::SequenceId KvCache::fork(SequenceId parent) {
  const Sequence copy = sequences_[size_t(parent)];
  const SequenceId id = create();
  for (int32_t b : copy.blocks) ++block_refs_[size_t(b)];
  sequences_[size_t(id)].blocks = copy.blocks;
  sequences_[size_t(id)].slots = copy.slots;
  return id;
}

void KvCache::release(SequenceId id) {
  Sequence& s = sequences_[size_t(id)];
  if (!s.live) return;
  for (int32_t b : s.blocks) drop_block(b);
  s = Sequence{};
  free_ids_.push_back(id);
}

std::vector<int32_t> KvCache::append(SequenceId id, int64_t count) {
  Sequence& s = sequences_[size_t(id)];
  std::vector<int32_t> added;
  added.reserve(size_t(count));
  int64_t length = int64_t(s.slots.size());
  // Writing into a shared, partly filled last block: take a private copy.
  if (count > 0 && length % block_size_ != 0 && block_refs_[size_t(s.blocks.back())] > 1) {
    const int32_t shared = s.blocks.back();
    const int32_t own = take_block();
    for (int64_t l = 0; l < layers_; ++l) {
      const int64_t n = block_size_ * row_width_;
      backend_.copy(keys_[size_t(l)].get() + own * n, keys_[size_t(l)].get() + shared * n, n);
      backend_.copy(values_[size_t(l)].get() + own * n, values_[size_t(l)].get() + shared * n, n);
    }
    drop_block(shared);
    s.blocks.back() = own;
    const int64_t filled = length % block_size_;
    for (int64_t i = 0; i < filled; ++i) s.slots[size_t(length - filled + i)] = int32_t(own * block_size_ + i);
  }
  for (int64_t i = 0; i < count; ++i, ++length) {
    if (length % block_size_ == 0) s.blocks.push_back(take_block());
    const int32_t slot = int32_t(s.blocks.back() * block_size_ + length % block_size_);
    s.slots.push_back(slot);
    added.push_back(slot);
  }
  return added;
}

int32_t KvCache::take_block() {
  if (free_blocks_.empty()) grow(std::max<int64_t>(64, capacity_blocks()));
  const int32_t b = free_blocks_.back();
  free_blocks_.pop_back();
  block_refs_[size_t(b)] = 1;
  return b;
}

void KvCache::drop_block(int32_t block) {
  if (--block_refs_[size_t(block)] == 0) free_blocks_.push_back(block);
}

// Pools grow by reallocation; existing rows keep their slot numbers.
void KvCache::grow(int64_t blocks) {
  const int64_t old_blocks = capacity_blocks(), new_blocks = old_blocks + blocks;
  const int64_t old_rows = old_blocks * block_size_ * row_width_, new_rows = new_blocks * block_size_ * row_width_;
  for (int64_t l = 0; l < layers_; ++l) {
    for (auto* pool : {&keys_[size_t(l)], &values_[size_t(l)]}) {
      DeviceArray bigger(backend_, new_rows);
      if (old_rows > 0) backend_.copy(bigger.get(), pool->get(), old_rows);
      *pool = std::move(bigger);
    }
  }
  block_refs_.resize(size_t(new_blocks), 0);
  for (int64_t b = new_blocks - 1; b >= old_blocks; --b) free_blocks_.push_back(int32_t(b));
}

}  // namespace st::model
