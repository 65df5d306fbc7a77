#include "model/decoder.h"

#include "model/rotary.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace st::model {


DeviceArray decoder_forward(Backend& backend, const ModelConfig& config, const Weights& weights, KvCache& cache,
                            const DecoderBatch& batch) {
  const TextConfig& t = config.text;
  const int64_t rows = int64_t(batch.ids.size()), d = t.hidden, hd = t.head_dim();
  const int64_t q_width = t.heads * hd, kv_width = t.kv_heads * hd;

  // Cache slots first: growing the pools moves them.
  std::vector<int32_t> new_slots(static_cast<size_t>(rows));
  for (const DecoderSequence& s : batch.sequences) {
    const std::vector<int32_t> slots = cache.append(s.cache_id, s.length);
    std::copy(slots.begin(), slots.end(), new_slots.begin() + s.offset);
  }
  std::vector<AttentionSequence> attention;
  for (const DecoderSequence& s : batch.sequences) {
    AttentionSequence a;
    a.q_offset = s.offset;
    a.q_len = s.length;
    a.key_slots = cache.slots(s.cache_id).data();
    a.k_len = cache.length(s.cache_id);
    a.causal = true;
    attention.push_back(a);
  }

  const RotaryTables rope = mrope(backend, t, batch.positions, rows);

  // An id past the table would read outside it: garbage on the CPU, and on a
  // GPU a fault that poisons the whole CUDA context.
  for (int32_t id : batch.ids)
    if (id < 0 || id >= t.vocab)
      throw std::invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string(t.vocab));
  DeviceArray x(backend, rows * d);
  backend.embedding(batch.ids.data(), rows, weights.embed_tokens.get(), x.get(), d);
  if (!batch.image_rows.empty())
    backend.scatter_rows(batch.image_features, batch.image_rows.data(), int64_t(batch.image_rows.size()), x.get(), d);

  DeviceArray h(backend, rows * d), q(backend, rows * q_width), k(backend, rows * kv_width), v(backend, rows * kv_width);
  DeviceArray attn(backend, rows * q_width), out(backend, rows * d);
  DeviceArray gate(backend, rows * t.intermediate), up(backend, rows * t.intermediate);
  for (int64_t l = 0; l < t.layers; ++l) {
    const DecoderLayerWeights& w = weights.layers[size_t(l)];
    backend.rmsnorm(x.get(), w.input_norm.get(), h.get(), rows, d, t.rms_eps);
    backend.linear(h.get(), w.q_w.get(), w.q_b.get(), q.get(), rows, d, q_width);
    backend.linear(h.get(), w.k_w.get(), w.k_b.get(), k.get(), rows, d, kv_width);
    backend.linear(h.get(), w.v_w.get(), w.v_b.get(), v.get(), rows, d, kv_width);
    backend.rotary(q.get(), rope.cos.get(), rope.sin.get(), rows, t.heads, hd);
    backend.rotary(k.get(), rope.cos.get(), rope.sin.get(), rows, t.kv_heads, hd);
    backend.scatter_rows(k.get(), new_slots.data(), rows, cache.keys(l), kv_width);
    backend.scatter_rows(v.get(), new_slots.data(), rows, cache.values(l), kv_width);
    AttentionArgs args;
    args.q = q.get();
    args.k_pool = cache.keys(l);
    args.v_pool = cache.values(l);
    args.out = attn.get();
    args.heads = t.heads;
    args.kv_heads = t.kv_heads;
    args.head_dim = hd;
    args.scale = float(1.0 / std::sqrt(double(hd)));
    args.sequences = attention;
    backend.attention(args);
    backend.linear(attn.get(), w.o_w.get(), nullptr, out.get(), rows, q_width, d);
    backend.add(x.get(), out.get(), rows * d);
    backend.rmsnorm(x.get(), w.post_norm.get(), h.get(), rows, d, t.rms_eps);
    backend.linear(h.get(), w.gate_w.get(), nullptr, gate.get(), rows, d, t.intermediate);
    backend.linear(h.get(), w.up_w.get(), nullptr, up.get(), rows, d, t.intermediate);
    backend.swiglu(gate.get(), up.get(), gate.get(), rows * t.intermediate);
    backend.linear(gate.get(), w.down_w.get(), nullptr, out.get(), rows, t.intermediate, d);
    backend.add(x.get(), out.get(), rows * d);
  }
  const int64_t wanted = int64_t(batch.logit_rows.size());
  DeviceArray selected(backend, wanted * d), normed(backend, wanted * d);
  backend.gather_rows(x.get(), batch.logit_rows.data(), wanted, selected.get(), d);
  backend.rmsnorm(selected.get(), weights.final_norm.get(), normed.get(), wanted, d, t.rms_eps);
  return normed;
}

DeviceArray logits(Backend& backend, const ModelConfig& config, const Weights& weights, const float* hidden,
                   int64_t rows) {
  DeviceArray out(backend, rows * config.text.vocab);
  backend.linear(hidden, weights.lm_head_weight(), nullptr, out.get(), rows, config.text.hidden, config.text.vocab);
  return out;
}

}  // namespace st::model
