#pragma once
// The decode step captured once per batch shape and replayed (a CUDA graph
// on the CUDA backend: one launch for the embedding, every layer, the final
// norm, the logits and the sampling, instead of some ten launches a layer).
//
// A graph reads fixed arrays, so everything a step changes is data in one
// backend array uploaded before each replay: the token ids, the rotary
// tables, each sequence's new cache slot, its key count and slot list, and
// its seed and counter; tokens and log-probs come back in one download.
// A shape is (rows, table stride, pools): rows are padded up to a power of
// two (padding rows attend to one reserved cache slot and are dropped), and
// the stride, the longest key list a graph serves, to a power of two of at
// least 256; a pool that grows (and moves) makes its graphs stale.
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace st::model {

class DecodeGraphs {
 public:
  DecodeGraphs(Backend& backend, const ModelConfig& config, const Weights& weights, KvCache& cache,
               const SamplingOptions& sampling);

  // One sequence's step: its last token, that token's M-RoPE position (the
  // same on all three streams in decode), and its random stream.
  struct Row {
    KvCache::SequenceId cache_id;
    int32_t token;
    int64_t position;
    uint64_t seed, counter;
  };
  // Appends each row's slot to the cache, runs the step and returns one
  // token and its log-prob per row.
  void step(const std::vector<Row>& rows, std::vector<int32_t>* tokens, std::vector<float>* logprobs);

  int64_t captures() const { return captures_; }
  int64_t replays() const { return replays_; }

 private:
  struct Shape {
    int64_t rows, stride;
    const void* pool;
    bool operator<(const Shape& o) const {
      return rows != o.rows ? rows < o.rows : stride != o.stride ? stride < o.stride : pool < o.pool;
    }
  };
  // Offsets (int32 entries) of each input in the step's input array.
  struct Layout {
    int64_t ids, slots, lengths, table, cos, sin, seeds, counters, total;
  };
  struct Graph {
    Layout layout{};
    DeviceArray inputs;   // I32 [layout.total]
    DeviceArray outputs;  // I32 [2 * rows]: tokens, then log-probs' bits
    std::unique_ptr<OpGraph> graph;
  };

  Layout layout_of(const Shape& shape) const;
  Graph& graph_for(const Shape& shape);
  void enqueue(const Shape& shape, Graph& g);

  Backend& backend_;
  const ModelConfig& config_;
  const Weights& weights_;
  KvCache& cache_;
  SamplingOptions sampling_;
  KvCache::SequenceId padding_sequence_;
  int32_t padding_slot_;
  std::map<Shape, std::unique_ptr<Graph>> graphs_;
  std::vector<int32_t> staging_;
  int64_t captures_ = 0, replays_ = 0;
};

// Whether generate() decodes through DecodeGraphs: on the CUDA backend with
// bf16 storage (where its decode kernels are) unless
// SPATIALTHINKER_DECODE_GRAPHS=0; =1 asks for them on any backend that
// can (the CPU backend replays its recorded calls: the tests' check that the
// graph path computes what the eager one does).
bool decode_graphs_wanted(const Backend& backend);

}  // namespace st::model
