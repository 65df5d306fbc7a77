#pragma once
// The Qwen2 text decoder over packed sequences with a paged KV cache
// (shared/spec/qwen25vl.md §5, §7): prefill and decode are the same call,
// with q_len = prompt length or 1.
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace st::model {

struct DecoderSequence {
  KvCache::SequenceId cache_id;  // its new tokens are appended to this cache sequence
  int64_t offset = 0;            // first row of its new tokens in the packed batch
  int64_t length = 0;            // number of new tokens
};

struct DecoderBatch {
  std::vector<int32_t> ids;        // [rows] packed new tokens of every sequence
  std::vector<int64_t> positions;  // [3, rows] M-RoPE positions (t, h, w)
  std::vector<DecoderSequence> sequences;
  // Rows whose embedding is replaced by image features, in order, and the
  // features (backend memory, [image_rows.size(), hidden]); may be empty.
  std::vector<int32_t> image_rows;
  const float* image_features = nullptr;
  // Rows whose logits are wanted, in the order they are returned.
  std::vector<int32_t> logit_rows;
};

// Runs the layers, appending each sequence's new keys/values to the cache.
// Returns the final-norm hidden states of logit_rows ([n, hidden], backend
// memory); logits() turns them into [n, vocab].
DeviceArray decoder_forward(Backend& backend, const ModelConfig& config, const Weights& weights, KvCache& cache,
                            const DecoderBatch& batch);

// hidden [rows, hidden] -> logits [rows, vocab] (backend memory)
DeviceArray logits(Backend& backend, const ModelConfig& config, const Weights& weights, const float* hidden,
                   int64_t rows);

}  // namespace st::model
