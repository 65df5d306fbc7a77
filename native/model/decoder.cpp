#include "model/decoder.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "model/rotary.h"

namespace st::model {

BlockParams decoder_layer_params(const TextConfig& t, const DecoderLayerWeights& w) {
  return {w.input_norm.get(), w.post_norm.get(), w.q_w.get(), w.q_b.get(), w.k_w.get(), w.k_b.get(), w.v_w.get(),
          w.v_b.get(), w.o_w.get(), nullptr, w.gate_w.get(), nullptr, w.up_w.get(), nullptr, w.down_w.get(), nullptr,
          t.rms_eps, t.hidden, t.heads, t.kv_heads, t.head_dim(), t.intermediate};
}

BlockGrads decoder_layer_grads(DecoderLayerWeights& g) {
  return {g.input_norm.get(), g.post_norm.get(), g.q_w.get(), g.q_b.get(), g.k_w.get(), g.k_b.get(), g.v_w.get(),
          g.v_b.get(), g.o_w.get(), nullptr, g.gate_w.get(), nullptr, g.up_w.get(), nullptr, g.down_w.get(), nullptr};
}

AttentionArgs decoder_attention(const TextConfig& t, std::vector<AttentionSequence> sequences) {
  AttentionArgs args;
  args.heads = t.heads;
  args.kv_heads = t.kv_heads;
  args.head_dim = t.head_dim();
  args.scale = float(1.0 / std::sqrt(double(t.head_dim())));
  args.sequences = std::move(sequences);
  return args;
}

DeviceArray embed_tokens(Backend& b, const ModelConfig& config, const Weights& w, const std::vector<int32_t>& ids,
                         const std::vector<int32_t>& image_rows, ConstDevicePtr image_features, const std::string& what) {
  const TextConfig& t = config.text;
  // An id past the table would read outside it: garbage on the CPU, and on a
  // GPU a fault that poisons the whole CUDA context.
  for (int32_t id : ids)
    if (id < 0 || id >= t.vocab)
      throw std::invalid_argument(what + "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string(t.vocab));
  const int64_t N = int64_t(ids.size()), D = t.hidden;
  DeviceArray x(b, N * D);  // [N, D]
  b.embedding(ids.data(), N, w.embed_tokens.get(), x.get(), D);
  if (!image_rows.empty()) b.scatter_rows(image_features, image_rows.data(), int64_t(image_rows.size()), x.get(), D);
  return x;
}

DeviceArray final_norm_rows(Backend& b, const ModelConfig& config, const Weights& w, ConstDevicePtr x,
                            const std::vector<int32_t>& rows, DeviceArray* selected) {
  const int64_t R = int64_t(rows.size()), D = config.text.hidden;
  DeviceArray gathered(b, R * D), normed(b, R * D);  // [R, D]
  b.gather_rows(x, rows.data(), R, gathered.get(), D);
  b.rmsnorm(gathered.get(), w.final_norm.get(), normed.get(), R, D, config.text.rms_eps);
  if (selected) *selected = std::move(gathered);
  return normed;
}

DeviceArray decoder_forward(Backend& b, const ModelConfig& config, const Weights& weights, KvCache& cache,
                            const DecoderBatch& batch) {
  const TextConfig& t = config.text;
  const int64_t N = int64_t(batch.ids.size());

  // Cache slots first: growing the pools moves them.
  std::vector<int32_t> new_slots(static_cast<size_t>(N));  // [N] slot of each new row
  for (const DecoderSequence& s : batch.sequences) {
    const std::vector<int32_t> slots = cache.append(s.cache_id, s.length);
    std::copy(slots.begin(), slots.end(), new_slots.begin() + s.offset);
  }
  std::vector<AttentionSequence> sequences;
  for (const DecoderSequence& s : batch.sequences) {
    AttentionSequence a;
    a.q_offset = s.offset;
    a.q_len = s.length;
    a.key_slots = cache.slots(s.cache_id).data();
    a.k_len = cache.length(s.cache_id);
    a.causal = true;
    sequences.push_back(a);
  }
  const AttentionArgs attention = decoder_attention(t, std::move(sequences));

  const RotaryTables rope = mrope(b, t, batch.positions, N);  // [N, Dh] each
  DeviceArray x = embed_tokens(b, config, weights, batch.ids, batch.image_rows, batch.image_features, "");
  BlockActivations scratch;  // one set for every layer
  for (int64_t l = 0; l < t.layers; ++l) {
    const KvCacheWrite kv{cache.keys(l), cache.values(l), new_slots.data()};
    block_forward(b, decoder_layer_params(t, weights.layers[size_t(l)]), x.get(), N, {rope.cos.get(), rope.sin.get()},
                  attention, scratch, /*for_backward=*/false, &kv);
  }
  return final_norm_rows(b, config, weights, x.get(), batch.logit_rows, nullptr);
}

DeviceArray logits(Backend& backend, const ModelConfig& config, const Weights& weights, ConstDevicePtr hidden,
                   int64_t rows) {
  // fp32 whatever the storage type: log-probs and sampling read these, and a
  // bf16 logit of 20 would be off by up to 0.04.
  DeviceArray out(backend, rows * config.text.vocab, Storage::F32);
  backend.linear(hidden, weights.lm_head_weight(), nullptr, out.get(), rows, config.text.hidden, config.text.vocab);
  return out;
}

}  // namespace st::model
