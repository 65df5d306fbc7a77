#include "model/decode_graph.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "model/block.h"
#include "model/decoder.h"
#include "model/rotary.h"

namespace st::model {
namespace {

int64_t power_of_two_at_least(int64_t n, int64_t floor) {
  int64_t p = floor;
  while (p < n) p *= 2;
  return p;
}

// A typed view of `count` entries at int32 entry `offset` of an I32 array.
DevicePtr view(const DeviceArray& a, int64_t offset, Storage type) {
  return DevicePtr((a.get() + offset).data(), type);
}

}  // namespace

bool decode_graphs_wanted(const Backend& backend) {
  if (const char* v = std::getenv("SPATIALTHINKER_DECODE_GRAPHS"); v != nullptr && *v != '\0') {
    if (std::strcmp(v, "0") == 0) return false;
    if (std::strcmp(v, "1") == 0) return backend.name() != "cuda" || backend.storage() == Storage::BF16;
    throw std::invalid_argument(std::string("SPATIALTHINKER_DECODE_GRAPHS=") + v + " is not 0 or 1");
  }
  return backend.name() == "cuda" && backend.storage() == Storage::BF16;
}

DecodeGraphs::DecodeGraphs(Backend& backend, const ModelConfig& config, const Weights& weights, KvCache& cache,
                           const SamplingOptions& sampling)
    : backend_(backend), config_(config), weights_(weights), cache_(cache), sampling_(sampling) {
  // Padding rows write their keys here and read only this slot.
  padding_sequence_ = cache_.create();
  padding_slot_ = cache_.append(padding_sequence_, 1)[0];
}

DecodeGraphs::Layout DecodeGraphs::layout_of(const Shape& s) const {
  const int64_t hd = config_.text.head_dim();
  Layout l{};
  int64_t at = 0;
  auto take = [&](int64_t entries) {
    const int64_t start = (at + 1) / 2 * 2;  // 8-byte aligned, for the uint64 seeds
    at = start + entries;
    return start;
  };
  l.ids = take(s.rows);
  l.slots = take(s.rows);
  l.lengths = take(s.rows);
  l.table = take(s.rows * s.stride);
  l.cos = take(s.rows * hd);
  l.sin = take(s.rows * hd);
  l.seeds = take(2 * s.rows);
  l.counters = take(2 * s.rows);
  l.total = at;
  return l;
}

void DecodeGraphs::enqueue(const Shape& s, Graph& g) {
  const TextConfig& t = config_.text;
  const Layout& l = g.layout;
  const int64_t N = s.rows, D = t.hidden, hd = t.head_dim();
  DeviceArray x(backend_, N * D);  // [N, D]
  backend_.gather_rows_at(weights_.embed_tokens.get(), view(g.inputs, l.ids, Storage::I32), N, x.get(), D);
  const BlockRotary rope{view(g.inputs, l.cos, Storage::F32), view(g.inputs, l.sin, Storage::F32)};
  PagedDecodeArgs decode;
  decode.slot_table = view(g.inputs, l.table, Storage::I32);
  decode.key_lengths = view(g.inputs, l.lengths, Storage::I32);
  decode.rows = N;
  decode.table_stride = s.stride;
  decode.heads = t.heads;
  decode.kv_heads = t.kv_heads;
  decode.head_dim = hd;
  decode.scale = float(1.0 / std::sqrt(double(hd)));
  const AttentionArgs unused = decoder_attention(t, {});
  BlockActivations scratch;
  for (int64_t layer = 0; layer < t.layers; ++layer) {
    KvCacheWrite kv;
    kv.k_pool = cache_.keys(layer);
    kv.v_pool = cache_.values(layer);
    kv.slots_at = view(g.inputs, l.slots, Storage::I32);
    kv.decode = &decode;
    block_forward(backend_, decoder_layer_params(t, weights_.layers[size_t(layer)]), x.get(), N, rope, unused, scratch,
                  /*for_backward=*/false, &kv);
  }
  DeviceArray normed(backend_, N * D);  // [N, D]
  backend_.rmsnorm(x.get(), weights_.final_norm.get(), normed.get(), N, D, t.rms_eps);
  const DeviceArray step_logits = logits(backend_, config_, weights_, normed.get(), N);  // [N, vocab] fp32
  backend_.sample_tokens_at(step_logits.get(), N, t.vocab, sampling_, view(g.inputs, l.seeds, Storage::U64),
                            view(g.inputs, l.counters, Storage::U64), view(g.outputs, 0, Storage::I32),
                            view(g.outputs, N, Storage::F32));
}

DecodeGraphs::Graph& DecodeGraphs::graph_for(const Shape& s) {
  auto found = graphs_.find(s);
  if (found != graphs_.end()) return *found->second;
  // Graphs of pools that have since moved can never replay again.
  for (auto it = graphs_.begin(); it != graphs_.end();)
    it = it->first.pool != s.pool ? graphs_.erase(it) : std::next(it);
  auto g = std::make_unique<Graph>();
  g->layout = layout_of(s);
  g->inputs = DeviceArray(backend_, g->layout.total, Storage::I32);
  g->outputs = DeviceArray(backend_, 2 * s.rows, Storage::I32);
  Graph* raw = g.get();
  g->graph = backend_.capture([this, s, raw] { enqueue(s, *raw); });
  ++captures_;
  return *graphs_.emplace(s, std::move(g)).first->second;
}

void DecodeGraphs::step(const std::vector<Row>& rows, std::vector<int32_t>* tokens, std::vector<float>* logprobs) {
  const int64_t n = int64_t(rows.size());
  tokens->assign(size_t(n), 0);
  logprobs->assign(size_t(n), 0.0f);
  if (n == 0) return;
  const int64_t vocab = config_.text.vocab, hd = config_.text.head_dim();
  // Slots first: appending may grow (and move) the pools.
  std::vector<int32_t> new_slots(static_cast<size_t>(n));
  int64_t longest = 1;
  for (int64_t r = 0; r < n; ++r) {
    const Row& row = rows[size_t(r)];
    if (row.token < 0 || row.token >= vocab)
      throw std::invalid_argument("token id " + std::to_string(row.token) + " is outside the vocabulary of " +
                                  std::to_string(vocab));
    new_slots[size_t(r)] = cache_.append(row.cache_id, 1)[0];
    longest = std::max(longest, cache_.length(row.cache_id));
  }
  Shape shape{power_of_two_at_least(n, 1), power_of_two_at_least(longest, 256), cache_.keys(0).data()};
  Graph& g = graph_for(shape);
  const Layout& l = g.layout;
  const int64_t N = shape.rows;

  staging_.assign(size_t(l.total), 0);
  std::vector<int64_t> positions(static_cast<size_t>(3 * N), 0);  // [3, N]: padding rows at position 0
  for (int64_t r = 0; r < N; ++r) {
    const bool real = r < n;
    const std::vector<int32_t>& slots = real ? cache_.slots(rows[size_t(r)].cache_id) : cache_.slots(padding_sequence_);
    staging_[size_t(l.ids + r)] = real ? rows[size_t(r)].token : 0;
    staging_[size_t(l.slots + r)] = real ? new_slots[size_t(r)] : padding_slot_;
    staging_[size_t(l.lengths + r)] = int32_t(slots.size());
    std::copy(slots.begin(), slots.end(), staging_.begin() + (l.table + r * shape.stride));
    if (real) {
      for (int stream = 0; stream < 3; ++stream) positions[size_t(stream * N + r)] = rows[size_t(r)].position;
      std::memcpy(&staging_[size_t(l.seeds + 2 * r)], &rows[size_t(r)].seed, sizeof(uint64_t));
      std::memcpy(&staging_[size_t(l.counters + 2 * r)], &rows[size_t(r)].counter, sizeof(uint64_t));
    }
  }
  std::vector<float> cos, sin;
  mrope_tables(config_.text, positions, N, &cos, &sin);
  std::memcpy(&staging_[size_t(l.cos)], cos.data(), size_t(N * hd) * sizeof(float));
  std::memcpy(&staging_[size_t(l.sin)], sin.data(), size_t(N * hd) * sizeof(float));

  backend_.upload_raw(g.inputs.get(), staging_.data(), l.total);
  g.graph->replay();
  ++replays_;
  std::vector<int32_t> out(static_cast<size_t>(2 * N));
  backend_.download_raw(out.data(), g.outputs.get(), 2 * N);
  for (int64_t r = 0; r < n; ++r) {
    (*tokens)[size_t(r)] = out[size_t(r)];
    std::memcpy(&(*logprobs)[size_t(r)], &out[size_t(N + r)], sizeof(float));
  }
}

}  // namespace st::model
