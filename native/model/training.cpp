#include "model/training.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "model/block.h"
#include "model/decoder.h"
#include "model/rope_index.h"
#include "model/rotary.h"

namespace st::model {
namespace {

// The batch packed into one row set.
//   M rows (every sequence's tokens), T loss rows (completion tokens),
//   I image rows (image-pad tokens, = merged vision tokens)
struct PackedBatch {
  std::vector<int32_t> ids;         // [M]
  std::vector<int32_t> bounds;      // sequence boundaries in rows, [sequences + 1]
  std::vector<int32_t> image_rows;  // [I]
  std::vector<int32_t> loss_rows;   // [T] row whose output predicts each target
  std::vector<int32_t> targets;     // [T]
  std::vector<int32_t> sequence_of; // [T]
  std::vector<int64_t> positions;   // [3, M] M-RoPE
  std::vector<float> pixels;        // [N, P] host
  std::vector<GridThw> grids;
  std::vector<float> old_logp, ref_logp, advantages;  // [T]
};

PackedBatch pack(const ModelConfig& config, const std::vector<TrainSequence>& batch, const TrainOptions& options) {
  PackedBatch p;
  p.bounds.push_back(0);
  std::vector<int64_t> streams[3];
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
    const int32_t base = p.bounds.back();
    for (int64_t i = 0; i < len; ++i) {
      if (i < s.prompt_len && s.ids[size_t(i)] == config.image_token_id) p.image_rows.push_back(base + int32_t(i));
      p.ids.push_back(s.ids[size_t(i)]);
      for (int k = 0; k < 3; ++k) streams[k].push_back(positions[size_t(k * len + i)]);
    }
    for (int64_t j = 0; j < completion; ++j) {
      p.loss_rows.push_back(base + int32_t(s.prompt_len - 1 + j));
      p.targets.push_back(s.ids[size_t(s.prompt_len + j)]);
      p.sequence_of.push_back(int32_t(si));
      p.old_logp.push_back(grpo ? s.old_logp[size_t(j)] : 0.0f);
      p.ref_logp.push_back(grpo && options.loss.kl_coef != 0.0 ? s.ref_logp[size_t(j)] : 0.0f);
      p.advantages.push_back(s.advantage);
    }
    p.bounds.push_back(base + int32_t(len));
    p.pixels.insert(p.pixels.end(), s.pixels.begin(), s.pixels.end());
    p.grids.insert(p.grids.end(), s.grids.begin(), s.grids.end());
  }
  for (auto& st : streams) p.positions.insert(p.positions.end(), st.begin(), st.end());
  return p;
}

// Causal attention within each sequence over the rows' own keys.
std::vector<AttentionSequence> causal_spans(const std::vector<int32_t>& bounds, const std::vector<int32_t>& slots) {
  std::vector<AttentionSequence> out;
  for (size_t i = 0; i + 1 < bounds.size(); ++i)
    if (bounds[i + 1] > bounds[i])
      out.push_back({bounds[i], bounds[i + 1] - bounds[i], slots.data() + bounds[i], bounds[i + 1] - bounds[i], true});
  return out;
}

// Text rows (not image rows) and their ids: the rows whose gradient goes to
// the embedding table (image rows flow back into the vision tower).
void text_rows_of(const PackedBatch& p, std::vector<int32_t>* rows, std::vector<int32_t>* ids) {
  std::vector<char> is_image(p.ids.size(), 0);
  for (int32_t r : p.image_rows) is_image[size_t(r)] = 1;
  for (size_t r = 0; r < p.ids.size(); ++r)
    if (!is_image[r]) {
      rows->push_back(int32_t(r));
      ids->push_back(p.ids[r]);
    }
}

}  // namespace

TrainResult train_forward_backward(Backend& b, const ModelConfig& config, const Weights& w, Weights& grads,
                                   const std::vector<TrainSequence>& batch, const TrainOptions& options) {
  const TextConfig& t = config.text;
  const VisionConfig& vc = config.vision;
  const PackedBatch in = pack(config, batch, options);
  const int64_t M = int64_t(in.ids.size()), T = int64_t(in.targets.size()), D = t.hidden;

  // ---- vision forward: patches -> blocks -> merger -> features [I, D]
  const int64_t merged = vision_layout(vc, in.grids).patches / (vc.merge * vc.merge);
  if (int64_t(in.image_rows.size()) != merged)
    throw std::invalid_argument("training batch: " + std::to_string(in.image_rows.size()) +
                                " image tokens but the images give " + std::to_string(merged));
  if (int64_t(in.pixels.size()) != merged * vc.merge * vc.merge * vc.patch_dim())
    throw std::invalid_argument("training batch: the pixel values hold " + std::to_string(in.pixels.size()) +
                                " numbers but the image grids need " + std::to_string(merged * vc.merge * vc.merge) +
                                " patches of " + std::to_string(vc.patch_dim()));
  VisionInput vin;
  const auto keep = options.checkpoint_layers ? TrainingBlocks::Keep::kInputs : TrainingBlocks::Keep::kAll;
  const bool vision_backward = merged > 0 && !options.skip_vision_backward;
  TrainingBlocks vblocks(vc.depth, vision_backward ? keep : TrainingBlocks::Keep::kNothing);
  MergerActivations merger;
  DeviceArray features;
  if (merged > 0) {
    vin = vision_embed(b, vc, w, in.pixels.data(), in.grids);
    for (int64_t blk = 0; blk < vc.depth; ++blk)
      vblocks.forward(b, blk, vision_block_params(vc, w.vision_blocks[size_t(blk)]), vin.x.get(), vin.layout.patches,
                      {vin.rope.cos.get(), vin.rope.sin.get()}, vin.attention(vc, blk));
    features = merger_forward(b, vc, w, vin.x.get(), vin.layout, vision_backward ? &merger : nullptr);
  }

  // ---- decoder forward: tokens -> layers -> final norm of the loss rows [T, D]
  const RotaryTables rope = mrope(b, t, in.positions, M);
  DeviceArray x = embed_tokens(b, config, w, in.ids, in.image_rows, features.get(), "training batch: ");
  std::vector<int32_t> slots(static_cast<size_t>(M));
  std::iota(slots.begin(), slots.end(), 0);
  const AttentionArgs attention = decoder_attention(t, causal_spans(in.bounds, slots));
  TrainingBlocks layers(t.layers, keep);
  for (int64_t l = 0; l < t.layers; ++l)
    layers.forward(b, l, decoder_layer_params(t, w.layers[size_t(l)]), x.get(), M, {rope.cos.get(), rope.sin.get()},
                   attention);
  DeviceArray xl;  // [T, D] the loss rows before the final norm
  const DeviceArray hl = final_norm_rows(b, config, w, x.get(), in.loss_rows, &xl);

  // ---- loss
  TrainResult result;
  result.logp.resize(size_t(T));
  std::vector<float> entropy(static_cast<size_t>(T));
  b.token_logprobs(hl.get(), w.lm_head_weight(), T, D, t.vocab, in.targets.data(), options.temperature,
                   result.logp.data(), entropy.data());
  for (float e : entropy) result.entropy += double(e) / double(std::max<int64_t>(T, 1));
  train::PolicyLossInput loss;
  loss.tokens = T;
  loss.logp = result.logp.data();
  loss.old_logp = in.old_logp.data();
  loss.ref_logp = in.ref_logp.data();
  loss.advantages = in.advantages.data();
  loss.sequence = in.sequence_of.data();
  loss.batch_tokens = options.batch_tokens;
  loss.batch_sequences = options.batch_sequences;
  result.loss = options.objective == TrainOptions::Objective::kSft ? train::cross_entropy_loss(loss, options.loss.aggregation)
                                                                   : train::policy_loss(loss, options.loss);

  // ---- decoder backward
  DevicePtr dhead = grads.lm_head.get() ? grads.lm_head.get() : grads.embed_tokens.get();
  DeviceArray dhl(b, T * D), dxl(b, T * D), dx(b, M * D);
  b.token_logprobs_backward(hl.get(), w.lm_head_weight(), T, D, t.vocab, in.targets.data(), options.temperature,
                            result.loss.dlogp.data(), dhl.get(), dhead);
  b.rmsnorm_backward(xl.get(), w.final_norm.get(), dhl.get(), dxl.get(), grads.final_norm.get(), T, D, t.rms_eps);
  b.fill(dx.get(), 0.0f, M * D);
  b.scatter_rows(dxl.get(), in.loss_rows.data(), T, dx.get(), D);  // loss rows are distinct
  for (int64_t l = t.layers - 1; l >= 0; --l)
    layers.backward(b, l, decoder_layer_params(t, w.layers[size_t(l)]), decoder_layer_grads(grads.layers[size_t(l)]),
                    dx.get(), M, {rope.cos.get(), rope.sin.get()}, attention);
  std::vector<int32_t> text_rows, text_ids;
  text_rows_of(in, &text_rows, &text_ids);
  DeviceArray dtext(b, int64_t(text_rows.size()) * D);
  b.gather_rows(dx.get(), text_rows.data(), int64_t(text_rows.size()), dtext.get(), D);
  b.embedding_backward(text_ids.data(), int64_t(text_ids.size()), dtext.get(), grads.embed_tokens.get(), D);
  if (!vision_backward) return result;

  // ---- vision backward
  const int64_t N = vin.layout.patches;
  DeviceArray dfeatures(b, merged * D), dvx(b, N * vc.hidden);
  b.gather_rows(dx.get(), in.image_rows.data(), merged, dfeatures.get(), D);
  merger_backward(b, vc, w, grads, vin.x.get(), vin.layout, merger, dfeatures.get(), dvx.get());
  for (int64_t blk = vc.depth - 1; blk >= 0; --blk)
    vblocks.backward(b, blk, vision_block_params(vc, w.vision_blocks[size_t(blk)]),
                     vision_block_grads(vc, grads.vision_blocks[size_t(blk)]), dvx.get(), N,
                     {vin.rope.cos.get(), vin.rope.sin.get()}, vin.attention(vc, blk));
  vision_embed_backward(b, vc, w, grads, vin, dvx.get());
  return result;
}

}  // namespace st::model
