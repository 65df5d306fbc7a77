#include "model/training.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "model/rope_index.h"
#include "model/rotary.h"

namespace st::model {
namespace {

// Activations of one transformer block kept for its backward pass.
struct BlockActivations {
  DeviceArray x_in, h1, q, k, v, attn, x_mid, h2, gate, up, act;
};

// The shared shape of a vision block and a decoder layer: pre-norm attention
// (fused or separate q/k/v with biases) and a SwiGLU MLP. Vision blocks pass
// their fused qkv as three row slices of one matrix.
struct BlockParams {
  const float *norm1, *norm2, *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob, *gw, *gb, *uw, *ub, *dw, *db;
  float eps;
  int64_t dim, heads, kv_heads, head_dim, hidden;
};
struct BlockGrads {
  float *norm1, *norm2, *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob, *gw, *gb, *uw, *ub, *dw, *db;
};

BlockParams vision_params(const VisionConfig& v, const VisionBlockWeights& w) {
  const int64_t d = v.hidden;
  return {w.norm1.get(), w.norm2.get(), w.qkv_w.get(), w.qkv_b.get(), w.qkv_w.get() + d * d, w.qkv_b.get() + d,
          w.qkv_w.get() + 2 * d * d, w.qkv_b.get() + 2 * d, w.proj_w.get(), w.proj_b.get(), w.gate_w.get(),
          w.gate_b.get(), w.up_w.get(), w.up_b.get(), w.down_w.get(), w.down_b.get(), 1e-6f, d, v.heads, v.heads,
          v.head_dim(), v.intermediate};
}
BlockGrads vision_grads(const VisionConfig& v, VisionBlockWeights& g) {
  const int64_t d = v.hidden;
  return {g.norm1.get(), g.norm2.get(), g.qkv_w.get(), g.qkv_b.get(), g.qkv_w.get() + d * d, g.qkv_b.get() + d,
          g.qkv_w.get() + 2 * d * d, g.qkv_b.get() + 2 * d, g.proj_w.get(), g.proj_b.get(), g.gate_w.get(),
          g.gate_b.get(), g.up_w.get(), g.up_b.get(), g.down_w.get(), g.down_b.get()};
}
BlockParams decoder_params(const TextConfig& t, const DecoderLayerWeights& w) {
  return {w.input_norm.get(), w.post_norm.get(), w.q_w.get(), w.q_b.get(), w.k_w.get(), w.k_b.get(), w.v_w.get(),
          w.v_b.get(), w.o_w.get(), nullptr, w.gate_w.get(), nullptr, w.up_w.get(), nullptr, w.down_w.get(), nullptr,
          t.rms_eps, t.hidden, t.heads, t.kv_heads, t.head_dim(), t.intermediate};
}
BlockGrads decoder_grads(DecoderLayerWeights& g) {
  return {g.input_norm.get(), g.post_norm.get(), g.q_w.get(), g.q_b.get(), g.k_w.get(), g.k_b.get(), g.v_w.get(),
          g.v_b.get(), g.o_w.get(), nullptr, g.gate_w.get(), nullptr, g.up_w.get(), nullptr, g.down_w.get(), nullptr};
}

void block_forward(Backend& b, const BlockParams& p, DeviceArray& x, int64_t n, const float* cos, const float* sin,
                   AttentionArgs args, BlockActivations& s) {
  const int64_t d = p.dim, qw = p.heads * p.head_dim, kvw = p.kv_heads * p.head_dim, f = p.hidden;
  s.x_in = DeviceArray(b, n * d);
  b.copy(s.x_in.get(), x.get(), n * d);
  s.h1 = DeviceArray(b, n * d);
  b.rmsnorm(x.get(), p.norm1, s.h1.get(), n, d, p.eps);
  s.q = DeviceArray(b, n * qw);
  s.k = DeviceArray(b, n * kvw);
  s.v = DeviceArray(b, n * kvw);
  b.linear(s.h1.get(), p.qw, p.qb, s.q.get(), n, d, qw);
  b.linear(s.h1.get(), p.kw, p.kb, s.k.get(), n, d, kvw);
  b.linear(s.h1.get(), p.vw, p.vb, s.v.get(), n, d, kvw);
  b.rotary(s.q.get(), cos, sin, n, p.heads, p.head_dim);
  b.rotary(s.k.get(), cos, sin, n, p.kv_heads, p.head_dim);
  s.attn = DeviceArray(b, n * qw);
  args.q = s.q.get();
  args.k_pool = s.k.get();
  args.v_pool = s.v.get();
  args.out = s.attn.get();
  b.attention(args);
  DeviceArray out(b, n * d);
  b.linear(s.attn.get(), p.ow, p.ob, out.get(), n, qw, d);
  b.add(x.get(), out.get(), n * d);
  s.x_mid = DeviceArray(b, n * d);
  b.copy(s.x_mid.get(), x.get(), n * d);
  s.h2 = DeviceArray(b, n * d);
  b.rmsnorm(x.get(), p.norm2, s.h2.get(), n, d, p.eps);
  s.gate = DeviceArray(b, n * f);
  s.up = DeviceArray(b, n * f);
  s.act = DeviceArray(b, n * f);
  b.linear(s.h2.get(), p.gw, p.gb, s.gate.get(), n, d, f);
  b.linear(s.h2.get(), p.uw, p.ub, s.up.get(), n, d, f);
  b.swiglu(s.gate.get(), s.up.get(), s.act.get(), n * f);
  b.linear(s.act.get(), p.dw, p.db, out.get(), n, f, d);
  b.add(x.get(), out.get(), n * d);
}

// dx holds d loss / d block output on entry and d loss / d block input on exit.
void block_backward(Backend& b, const BlockParams& p, const BlockGrads& g, DeviceArray& dx, int64_t n,
                    const float* cos, const float* sin, AttentionArgs args, BlockActivations& s) {
  const int64_t d = p.dim, qw = p.heads * p.head_dim, kvw = p.kv_heads * p.head_dim, f = p.hidden;
  DeviceArray dact(b, n * f), dgate(b, n * f), dup(b, n * f), dh(b, n * d), dpart(b, n * d);
  b.linear_backward(s.act.get(), p.dw, dx.get(), dact.get(), g.dw, g.db, n, f, d);
  b.swiglu_backward(s.gate.get(), s.up.get(), dact.get(), dgate.get(), dup.get(), n * f);
  b.linear_backward(s.h2.get(), p.gw, dgate.get(), dh.get(), g.gw, g.gb, n, d, f);
  b.linear_backward(s.h2.get(), p.uw, dup.get(), dpart.get(), g.uw, g.ub, n, d, f);
  b.add(dh.get(), dpart.get(), n * d);
  b.rmsnorm_backward(s.x_mid.get(), p.norm2, dh.get(), dpart.get(), g.norm2, n, d, p.eps);
  b.add(dx.get(), dpart.get(), n * d);  // now d loss / d x_mid

  DeviceArray dattn(b, n * qw), dq(b, n * qw), dk(b, n * kvw), dv(b, n * kvw);
  b.linear_backward(s.attn.get(), p.ow, dx.get(), dattn.get(), g.ow, g.ob, n, qw, d);
  b.fill(dk.get(), 0.0f, n * kvw);
  b.fill(dv.get(), 0.0f, n * kvw);
  args.q = s.q.get();
  args.k_pool = s.k.get();
  args.v_pool = s.v.get();
  args.out = nullptr;
  b.attention_backward(args, dattn.get(), dq.get(), dk.get(), dv.get());
  b.rotary_backward(dq.get(), cos, sin, n, p.heads, p.head_dim);
  b.rotary_backward(dk.get(), cos, sin, n, p.kv_heads, p.head_dim);
  b.linear_backward(s.h1.get(), p.qw, dq.get(), dh.get(), g.qw, g.qb, n, d, qw);
  b.linear_backward(s.h1.get(), p.kw, dk.get(), dpart.get(), g.kw, g.kb, n, d, kvw);
  b.add(dh.get(), dpart.get(), n * d);
  b.linear_backward(s.h1.get(), p.vw, dv.get(), dpart.get(), g.vw, g.vb, n, d, kvw);
  b.add(dh.get(), dpart.get(), n * d);
  b.rmsnorm_backward(s.x_in.get(), p.norm1, dh.get(), dpart.get(), g.norm1, n, d, p.eps);
  b.add(dx.get(), dpart.get(), n * d);
}

// Gradient checkpointing: drop everything but the block's input...
void keep_input_only(BlockActivations& s) {
  DeviceArray input = std::move(s.x_in);
  s = BlockActivations();
  s.x_in = std::move(input);
}

// ...and rebuild the rest from it just before the block's backward.
void recompute(Backend& b, const BlockParams& p, int64_t n, const float* cos, const float* sin,
               const AttentionArgs& args, BlockActivations& s) {
  DeviceArray x(b, n * p.dim);
  b.copy(x.get(), s.x_in.get(), n * p.dim);
  block_forward(b, p, x, n, cos, sin, args, s);
}

std::vector<AttentionSequence> spans(const std::vector<int32_t>& bounds, const std::vector<int32_t>& slots, bool causal) {
  std::vector<AttentionSequence> out;
  for (size_t i = 0; i + 1 < bounds.size(); ++i)
    if (bounds[i + 1] > bounds[i])
      out.push_back({bounds[i], bounds[i + 1] - bounds[i], slots.data() + bounds[i], bounds[i + 1] - bounds[i], causal});
  return out;
}

}  // namespace

TrainResult train_forward_backward(Backend& b, const ModelConfig& config, const Weights& w, Weights& grads,
                                   const std::vector<TrainSequence>& batch, const TrainOptions& options) {
  const TextConfig& t = config.text;
  const VisionConfig& vc = config.vision;
  const int64_t D = t.hidden, hd = t.head_dim();

  // ---- inputs: packed tokens, positions, loss rows and targets
  std::vector<int32_t> ids, bounds{0}, image_rows, loss_rows, targets, sequence_of;
  std::vector<int64_t> streams[3];
  std::vector<float> pixels, old_logp, ref_logp, advantages;
  std::vector<GridThw> grids;
  for (size_t si = 0; si < batch.size(); ++si) {
    const TrainSequence& s = batch[si];
    const int64_t len = int64_t(s.ids.size()), completion = len - s.prompt_len;
    const bool grpo = options.objective == TrainOptions::Objective::kGrpo;
    if (s.prompt_len < 1 || completion < 0)
      throw std::invalid_argument("training sequence " + std::to_string(si) + ": prompt_len must be in [1, length]");
    if (completion == 0)
      throw std::invalid_argument("training sequence " + std::to_string(si) + ": the completion is empty");
    if (options.max_sequence_length > 0 && len > options.max_sequence_length)
      throw std::invalid_argument("training sequence " + std::to_string(si) + " has " + std::to_string(len) +
                                  " tokens, more than the maximum of " + std::to_string(options.max_sequence_length));
    if (grpo && (int64_t(s.old_logp.size()) != completion ||
                 (options.loss.kl_coef != 0.0 && int64_t(s.ref_logp.size()) != completion)))
      throw std::invalid_argument("training sequence " + std::to_string(si) +
                                  ": one old (and reference) log-prob per completion token is needed");
    const std::vector<int64_t> positions = continued_positions(config, s.ids.data(), s.prompt_len, len, s.grids);
    const int32_t base = bounds.back();
    for (int64_t i = 0; i < len; ++i) {
      if (i < s.prompt_len && s.ids[size_t(i)] == config.image_token_id) image_rows.push_back(base + int32_t(i));
      ids.push_back(s.ids[size_t(i)]);
      for (int k = 0; k < 3; ++k) streams[k].push_back(positions[size_t(k * len + i)]);
    }
    for (int64_t j = 0; j < completion; ++j) {
      loss_rows.push_back(base + int32_t(s.prompt_len - 1 + j));
      targets.push_back(s.ids[size_t(s.prompt_len + j)]);
      sequence_of.push_back(int32_t(si));
      old_logp.push_back(grpo ? s.old_logp[size_t(j)] : 0.0f);
      ref_logp.push_back(grpo && options.loss.kl_coef != 0.0 ? s.ref_logp[size_t(j)] : 0.0f);
      advantages.push_back(s.advantage);
    }
    bounds.push_back(base + int32_t(len));
    pixels.insert(pixels.end(), s.pixels.begin(), s.pixels.end());
    grids.insert(grids.end(), s.grids.begin(), s.grids.end());
  }
  const int64_t M = int64_t(ids.size()), T = int64_t(targets.size());
  std::vector<int32_t> slots(static_cast<size_t>(M));
  std::iota(slots.begin(), slots.end(), 0);
  std::vector<int64_t> positions;
  for (auto& st : streams) positions.insert(positions.end(), st.begin(), st.end());

  // ---- vision forward
  const VisionLayout layout = vision_layout(vc, grids);
  const int64_t N = layout.patches, Dv = vc.hidden, unit = vc.merge * vc.merge, merged = N / unit;
  if (int64_t(image_rows.size()) != merged)
    throw std::invalid_argument("training batch: " + std::to_string(image_rows.size()) + " image tokens but the images give " +
                                std::to_string(merged));
  const std::vector<int32_t> patch_order = window_patch_order(layout, unit);
  const int64_t vhd = vc.head_dim();
  const RotaryTables vrope = vision_rotary(b, vhd, layout, patch_order);
  DeviceArray px(b, N * vc.patch_dim()), embedded(b, N * Dv), vx(b, N * Dv);
  if (N > 0) {
    b.upload(px.get(), pixels.data(), N * vc.patch_dim());
    b.linear(px.get(), w.patch_embed.get(), nullptr, embedded.get(), N, vc.patch_dim(), Dv);
    b.gather_rows(embedded.get(), patch_order.data(), N, vx.get(), Dv);
  }
  std::vector<int32_t> vslots(static_cast<size_t>(N));
  std::iota(vslots.begin(), vslots.end(), 0);
  AttentionArgs vargs;
  vargs.heads = vargs.kv_heads = vc.heads;
  vargs.head_dim = vhd;
  vargs.scale = float(1.0 / std::sqrt(double(vhd)));
  const auto windows = spans(layout.cu_window_seqlens, vslots, false), frames = spans(layout.cu_seqlens, vslots, false);
  std::vector<BlockActivations> vacts(static_cast<size_t>(N > 0 ? vc.depth : 0));
  auto vargs_for = [&](int64_t block) {
    AttentionArgs a = vargs;
    const bool full = std::find(vc.fullatt_blocks.begin(), vc.fullatt_blocks.end(), block) != vc.fullatt_blocks.end();
    a.sequences = full ? frames : windows;
    return a;
  };
  for (int64_t blk = 0; blk < int64_t(vacts.size()); ++blk) {
    block_forward(b, vision_params(vc, w.vision_blocks[size_t(blk)]), vx, N, vrope.cos.get(), vrope.sin.get(), vargs_for(blk),
                  vacts[size_t(blk)]);
    if (options.checkpoint_layers) keep_input_only(vacts[size_t(blk)]);
  }
  DeviceArray mnorm(b, N * Dv), mpre(b, merged * unit * Dv), mact(b, merged * unit * Dv), my(b, merged * D),
      features(b, merged * D);
  if (N > 0) {
    b.rmsnorm(vx.get(), w.merger_norm.get(), mnorm.get(), N, Dv, 1e-6f);
    b.linear(mnorm.get(), w.merger_fc1_w.get(), w.merger_fc1_b.get(), mpre.get(), merged, unit * Dv, unit * Dv);
    b.copy(mact.get(), mpre.get(), merged * unit * Dv);
    b.gelu(mact.get(), merged * unit * Dv);
    b.linear(mact.get(), w.merger_fc2_w.get(), w.merger_fc2_b.get(), my.get(), merged, unit * Dv, D);
    b.scatter_rows(my.get(), layout.window_index.data(), merged, features.get(), D);
  }

  // ---- decoder forward
  const RotaryTables rope = mrope(b, t, positions, M);
  for (int32_t id : ids)
    if (id < 0 || id >= t.vocab)
      throw std::invalid_argument("training batch: token id " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string(t.vocab));
  DeviceArray x(b, M * D);
  b.embedding(ids.data(), M, w.embed_tokens.get(), x.get(), D);
  if (merged > 0) b.scatter_rows(features.get(), image_rows.data(), merged, x.get(), D);
  AttentionArgs targs;
  targs.heads = t.heads;
  targs.kv_heads = t.kv_heads;
  targs.head_dim = hd;
  targs.scale = float(1.0 / std::sqrt(double(hd)));
  targs.sequences = spans(bounds, slots, true);
  std::vector<BlockActivations> acts(static_cast<size_t>(t.layers));
  for (int64_t l = 0; l < t.layers; ++l) {
    block_forward(b, decoder_params(t, w.layers[size_t(l)]), x, M, rope.cos.get(), rope.sin.get(), targs, acts[size_t(l)]);
    if (options.checkpoint_layers) keep_input_only(acts[size_t(l)]);
  }
  DeviceArray xl(b, T * D), hl(b, T * D);
  b.gather_rows(x.get(), loss_rows.data(), T, xl.get(), D);
  b.rmsnorm(xl.get(), w.final_norm.get(), hl.get(), T, D, t.rms_eps);

  // ---- loss
  TrainResult result;
  result.logp.resize(size_t(T));
  std::vector<float> entropy(static_cast<size_t>(T));
  b.token_logprobs(hl.get(), w.lm_head_weight(), T, D, t.vocab, targets.data(), options.temperature, result.logp.data(),
                   entropy.data());
  for (float e : entropy) result.entropy += double(e) / double(std::max<int64_t>(T, 1));
  train::PolicyLossInput in;
  in.tokens = T;
  in.logp = result.logp.data();
  in.old_logp = old_logp.data();
  in.ref_logp = ref_logp.data();
  in.advantages = advantages.data();
  in.sequence = sequence_of.data();
  in.batch_tokens = options.batch_tokens;
  in.batch_sequences = options.batch_sequences;
  result.loss = options.objective == TrainOptions::Objective::kSft ? train::cross_entropy_loss(in, options.loss.aggregation)
                                                                   : train::policy_loss(in, options.loss);

  // ---- backward
  float* dhead = grads.lm_head.get() ? grads.lm_head.get() : grads.embed_tokens.get();
  DeviceArray dhl(b, T * D), dxl(b, T * D), dx(b, M * D);
  b.token_logprobs_backward(hl.get(), w.lm_head_weight(), T, D, t.vocab, targets.data(), options.temperature,
                            result.loss.dlogp.data(), dhl.get(), dhead);
  b.rmsnorm_backward(xl.get(), w.final_norm.get(), dhl.get(), dxl.get(), grads.final_norm.get(), T, D, t.rms_eps);
  b.fill(dx.get(), 0.0f, M * D);
  b.scatter_rows(dxl.get(), loss_rows.data(), T, dx.get(), D);  // loss rows are distinct
  for (int64_t l = t.layers - 1; l >= 0; --l) {
    const BlockParams params = decoder_params(t, w.layers[size_t(l)]);
    if (options.checkpoint_layers) recompute(b, params, M, rope.cos.get(), rope.sin.get(), targs, acts[size_t(l)]);
    block_backward(b, params, decoder_grads(grads.layers[size_t(l)]), dx, M, rope.cos.get(), rope.sin.get(), targs, acts[size_t(l)]);
    acts[size_t(l)] = BlockActivations();  // free as we go
  }
  // Embedding rows of text tokens; image rows flow back into the vision tower.
  std::vector<int32_t> text_rows, text_ids;
  {
    std::vector<char> is_image(static_cast<size_t>(M), 0);
    for (int32_t r : image_rows) is_image[size_t(r)] = 1;
    for (int64_t r = 0; r < M; ++r)
      if (!is_image[size_t(r)]) {
        text_rows.push_back(int32_t(r));
        text_ids.push_back(ids[size_t(r)]);
      }
  }
  DeviceArray dtext(b, int64_t(text_rows.size()) * D);
  b.gather_rows(dx.get(), text_rows.data(), int64_t(text_rows.size()), dtext.get(), D);
  b.embedding_backward(text_ids.data(), int64_t(text_ids.size()), dtext.get(), grads.embed_tokens.get(), D);
  if (merged == 0 || options.skip_vision_backward) return result;

  DeviceArray dfeat(b, merged * D), dy(b, merged * D), dact(b, merged * unit * Dv), dnorm(b, N * Dv), dvx(b, N * Dv);
  b.gather_rows(dx.get(), image_rows.data(), merged, dfeat.get(), D);
  b.gather_rows(dfeat.get(), layout.window_index.data(), merged, dy.get(), D);
  b.linear_backward(mact.get(), w.merger_fc2_w.get(), dy.get(), dact.get(), grads.merger_fc2_w.get(),
                    grads.merger_fc2_b.get(), merged, unit * Dv, D);
  b.gelu_backward(mpre.get(), dact.get(), merged * unit * Dv);
  b.linear_backward(mnorm.get(), w.merger_fc1_w.get(), dact.get(), dnorm.get(), grads.merger_fc1_w.get(),
                    grads.merger_fc1_b.get(), merged, unit * Dv, unit * Dv);
  b.rmsnorm_backward(vx.get(), w.merger_norm.get(), dnorm.get(), dvx.get(), grads.merger_norm.get(), N, Dv, 1e-6f);
  for (int64_t blk = int64_t(vacts.size()) - 1; blk >= 0; --blk) {
    const BlockParams params = vision_params(vc, w.vision_blocks[size_t(blk)]);
    if (options.checkpoint_layers) recompute(b, params, N, vrope.cos.get(), vrope.sin.get(), vargs_for(blk), vacts[size_t(blk)]);
    block_backward(b, params, vision_grads(vc, grads.vision_blocks[size_t(blk)]), dvx, N, vrope.cos.get(), vrope.sin.get(),
                   vargs_for(blk), vacts[size_t(blk)]);
    vacts[size_t(blk)] = BlockActivations();
  }
  DeviceArray dembedded(b, N * Dv);
  b.scatter_rows(dvx.get(), patch_order.data(), N, dembedded.get(), Dv);  // undo the window permutation
  b.linear_backward(px.get(), w.patch_embed.get(), dembedded.get(), nullptr, grads.patch_embed.get(), nullptr, N,
                    vc.patch_dim(), Dv);
  return result;
}

}  // namespace st::model
