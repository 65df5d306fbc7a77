#pragma once
// The Qwen2 text decoder over packed sequences with a paged KV cache
// (shared/spec/qwen25vl.md §5, §7): prefill and decode are the same call,
// with q_len = prompt length or 1. Its layers are model/block.h's block;
// the embedding and final norm here serve training too.
//
// Dimension legend (see also model/block.h):
//   N   packed rows of the call (new tokens of every sequence)
//   D   text hidden; V vocab; R rows whose output is wanted
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/block.h"
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
  ConstDevicePtr image_features;
  // Rows whose logits are wanted, in the order they are returned.
  std::vector<int32_t> logit_rows;
};

BlockParams decoder_layer_params(const TextConfig& config, const DecoderLayerWeights& w);
BlockGrads decoder_layer_grads(DecoderLayerWeights& g);

// Heads, scale and the sequences of a decoder attention (causal).
AttentionArgs decoder_attention(const TextConfig& config, std::vector<AttentionSequence> sequences);

// ids (host, N) -> x [N, D]: token embeddings, then image features [I, D]
// (backend memory) in place of image_rows (host, I). An id outside the
// vocabulary is an error; `what` names the input in it.
DeviceArray embed_tokens(Backend& backend, const ModelConfig& config, const Weights& weights,
                         const std::vector<int32_t>& ids, const std::vector<int32_t>& image_rows,
                         ConstDevicePtr image_features, const std::string& what);

// x [N, D] -> rmsnorm(x[rows], final_norm) [R, D]; `selected` receives the
// gathered rows x[rows] when not null (the norm's backward reads them).
DeviceArray final_norm_rows(Backend& backend, const ModelConfig& config, const Weights& weights, ConstDevicePtr x,
                            const std::vector<int32_t>& rows, DeviceArray* selected);

// Runs the layers, appending each sequence's new keys/values to the cache.
// Returns the final-norm hidden states of logit_rows ([n, hidden], backend
// memory); logits() turns them into [n, vocab].
DeviceArray decoder_forward(Backend& backend, const ModelConfig& config, const Weights& weights, KvCache& cache,
                            const DecoderBatch& batch);

// hidden [rows, hidden] -> logits [rows, vocab] (backend memory, fp32 whatever the storage type)
DeviceArray logits(Backend& backend, const ModelConfig& config, const Weights& weights, ConstDevicePtr hidden,
                   int64_t rows);

}  // namespace st::model
