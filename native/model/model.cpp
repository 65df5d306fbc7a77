#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <stdexcept>

#include "model/checkpoint.h"
#include "model/decode_graph.h"
#include "model/decoder.h"
#include "backend/sampling_rule.h"
#include "model/optimizer_shards.h"

namespace st::model {

Qwen25VL::Qwen25VL(std::unique_ptr<Backend> backend, const ModelConfig& config, const std::string& dir,
                   int64_t image_cache_bytes)
    : backend_(std::move(backend)),
      config_(config),
      weights_(load_weights(*backend_, config_, dir)),
      image_cache_(image_cache_bytes) {}

void Qwen25VL::weights_changed() {
  ++weights_version_;
  image_cache_.clear();  // at once: their memory is wanted for the next rollout
}

std::vector<float> Qwen25VL::vision(const float* pixels, const std::vector<GridThw>& grids, VisionLayout* layout) {
  *layout = vision_layout(config_.vision, grids);
  DeviceArray out = vision_forward(*backend_, config_, weights_, pixels, grids);
  std::vector<float> host(static_cast<size_t>(out.size()));
  backend_->download(host.data(), out.get(), out.size());
  return host;
}

DeviceArray Qwen25VL::image_features(const std::vector<const Prompt*>& prompts, int64_t* rows) {
  const VisionConfig& v = config_.vision;
  const int64_t P = v.patch_dim(), U = v.merge * v.merge, Do = v.out_hidden;
  struct Image {
    const float* pixels;
    GridThw grid;
    int64_t tokens;  // merged tokens, = its image-pad tokens
  };
  std::vector<Image> images;
  *rows = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Prompt& p = *prompts[i];
    int64_t patches = 0;
    for (const GridThw& g : p.grids) {
      if (g[0] < 1 || g[1] < 1 || g[2] < 1 || g[1] % v.merge || g[2] % v.merge)
        throw std::invalid_argument("prompt " + std::to_string(i) + ": image grid (" + std::to_string(g[0]) + ", " +
                                    std::to_string(g[1]) + ", " + std::to_string(g[2]) +
                                    ") is not a positive grid of whole merge units");
      images.push_back({p.pixels.data() + patches * P, g, g[0] * g[1] * g[2] / U});
      patches += g[0] * g[1] * g[2];
      *rows += images.back().tokens;
    }
    if (int64_t(p.pixels.size()) != patches * P)
      throw std::invalid_argument("prompt " + std::to_string(i) + ": pixel values hold " +
                                  std::to_string(p.pixels.size()) + " numbers but the image grids need " +
                                  std::to_string(patches) + " patches of " + std::to_string(P));
  }
  if (images.empty()) return DeviceArray();
  DeviceArray out(*backend_, *rows * Do);  // [I, Do]
  int64_t at = 0;
  for (const Image& image : images) {
    const ImageKey key = image_key(image.pixels, image.tokens * U * P, image.grid);
    const DeviceArray* cached = image_cache_.find(key, weights_version_);
    if (cached) {
      backend_->copy(out.get() + at * Do, cached->get(), image.tokens * Do);
    } else {
      DeviceArray features = vision_forward(*backend_, config_, weights_, image.pixels, {image.grid});
      backend_->copy(out.get() + at * Do, features.get(), image.tokens * Do);
      image_cache_.insert(key, weights_version_, std::move(features));
    }
    at += image.tokens;
  }
  return out;
}

namespace {

// Appends one unpadded row to a decoder batch: its tokens, their positions
// (from a [3, 1, n] rope index) and which of them carry image features.
void append_row(DecoderBatch& batch, std::vector<int64_t> (&streams)[3], KvCache::SequenceId cache_id,
                const int32_t* ids, const int64_t* positions, int64_t n, int64_t stride, int32_t image_token,
                int64_t image_limit = -1) {
  // Only the first image_limit tokens (the prompt) may carry image features.
  if (image_limit < 0) image_limit = n;
  DecoderSequence s;
  s.cache_id = cache_id;
  s.offset = int64_t(batch.ids.size());
  s.length = n;
  for (int64_t i = 0; i < n; ++i) {
    if (i < image_limit && ids[i] == image_token) batch.image_rows.push_back(int32_t(batch.ids.size()));
    batch.ids.push_back(ids[i]);
    for (int k = 0; k < 3; ++k) streams[k].push_back(positions[k * stride + i]);
  }
  batch.sequences.push_back(s);
}

void finish_positions(DecoderBatch& batch, std::vector<int64_t> (&streams)[3]) {
  batch.positions.clear();
  for (auto& s : streams) batch.positions.insert(batch.positions.end(), s.begin(), s.end());
}

void check_image_rows(const DecoderBatch& batch, int64_t feature_rows) {
  if (int64_t(batch.image_rows.size()) != feature_rows)
    throw std::invalid_argument("the prompts hold " + std::to_string(batch.image_rows.size()) +
                                " image tokens but the images give " + std::to_string(feature_rows) + " features");
}

}  // namespace

std::vector<float> Qwen25VL::forward(const int32_t* ids, const int32_t* mask, int64_t rows, int64_t seq_len,
                                     const float* pixels, const std::vector<GridThw>& grids, RopeIndex* rope) {
  *rope = rope_index(config_, ids, mask, rows, seq_len, grids);
  Prompt all;
  all.grids = grids;
  if (!grids.empty()) {
    const int64_t n = vision_layout(config_.vision, grids).patches * config_.vision.patch_dim();
    all.pixels.assign(pixels, pixels + n);
  }
  int64_t feature_rows = 0;
  DeviceArray features = image_features({&all}, &feature_rows);

  KvCache cache(*backend_, config_.text);
  DecoderBatch batch;
  std::vector<int64_t> streams[3];
  std::vector<std::pair<int64_t, int64_t>> where;  // (row, column) of each packed token
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> row_ids;
    std::vector<int64_t> row_pos[3];
    for (int64_t i = 0; i < seq_len; ++i) {
      if (!mask[r * seq_len + i]) continue;
      row_ids.push_back(ids[r * seq_len + i]);
      for (int k = 0; k < 3; ++k) row_pos[k].push_back(rope->positions[size_t((k * rows + r) * seq_len + i)]);
      where.emplace_back(r, i);
    }
    std::vector<int64_t> flat;
    for (auto& p : row_pos) flat.insert(flat.end(), p.begin(), p.end());
    append_row(batch, streams, cache.create(), row_ids.data(), flat.data(), int64_t(row_ids.size()),
               int64_t(row_ids.size()), config_.image_token_id);
  }
  finish_positions(batch, streams);
  check_image_rows(batch, feature_rows);
  batch.image_features = features.get();
  for (int64_t i = 0; i < int64_t(batch.ids.size()); ++i) batch.logit_rows.push_back(int32_t(i));

  const int64_t vocab = config_.text.vocab;
  std::vector<float> out(static_cast<size_t>(rows * seq_len * vocab), 0.0f);
  if (batch.ids.empty()) return out;
  DeviceArray hidden = decoder_forward(*backend_, config_, weights_, cache, batch);
  DeviceArray all_logits = logits(*backend_, config_, weights_, hidden.get(), int64_t(batch.ids.size()));
  std::vector<float> host(static_cast<size_t>(all_logits.size()));
  backend_->download(host.data(), all_logits.get(), all_logits.size());
  for (size_t t = 0; t < where.size(); ++t)
    std::copy(host.begin() + int64_t(t) * vocab, host.begin() + int64_t(t + 1) * vocab,
              out.begin() + (where[t].first * seq_len + where[t].second) * vocab);
  return out;
}

std::vector<std::vector<float>> Qwen25VL::logprobs(const std::vector<Prompt>& prompts,
                                                   const std::vector<std::vector<int32_t>>& completions,
                                                   float temperature) {
  if (prompts.size() != completions.size())
    throw std::invalid_argument("logprobs needs one completion per prompt");
  std::vector<const Prompt*> pointers;
  for (const Prompt& p : prompts) pointers.push_back(&p);
  int64_t feature_rows = 0;
  DeviceArray features = image_features(pointers, &feature_rows);
  KvCache cache(*backend_, config_.text);
  DecoderBatch batch;
  std::vector<int64_t> streams[3];
  std::vector<int32_t> targets;
  for (size_t p = 0; p < prompts.size(); ++p) {
    if (prompts[p].ids.empty()) throw std::invalid_argument("prompt " + std::to_string(p) + " is empty");
    std::vector<int32_t> seq = prompts[p].ids;
    seq.insert(seq.end(), completions[p].begin(), completions[p].end());
    const int64_t prompt_len = int64_t(prompts[p].ids.size());
    const std::vector<int64_t> positions =
        continued_positions(config_, seq.data(), prompt_len, int64_t(seq.size()), prompts[p].grids);
    const int64_t first = int64_t(batch.ids.size());
    append_row(batch, streams, cache.create(), seq.data(), positions.data(), int64_t(seq.size()), int64_t(seq.size()),
               config_.image_token_id, prompt_len);
    for (size_t j = 0; j < completions[p].size(); ++j) {
      batch.logit_rows.push_back(int32_t(first + prompt_len - 1 + int64_t(j)));
      targets.push_back(completions[p][j]);
    }
  }
  finish_positions(batch, streams);
  check_image_rows(batch, feature_rows);
  batch.image_features = features.get();
  for (int32_t t : targets)
    if (t < 0 || t >= config_.text.vocab)
      throw std::invalid_argument("completion token " + std::to_string(t) + " is outside the vocabulary");
  std::vector<float> flat(targets.size());
  if (!targets.empty()) {
    DeviceArray hidden = decoder_forward(*backend_, config_, weights_, cache, batch);
    backend_->token_logprobs(hidden.get(), weights_.lm_head_weight(), int64_t(targets.size()), config_.text.hidden,
                             config_.text.vocab, targets.data(), temperature, flat.data());
  }
  std::vector<std::vector<float>> out;
  size_t at = 0;
  for (const auto& c : completions) {
    out.emplace_back(flat.begin() + int64_t(at), flat.begin() + int64_t(at + c.size()));
    at += c.size();
  }
  return out;
}

std::vector<Completion> Qwen25VL::generate(const std::vector<Prompt>& prompts, const GenerateOptions& options,
                                           const GenerateControl& control) {
  struct Active {
    size_t completion;
    KvCache::SequenceId cache_id;
    int64_t delta;
    uint64_t seed;
  };
  const int64_t vocab = config_.text.vocab;
  KvCache cache(*backend_, config_.text);
  std::vector<Completion> completions(prompts.size() * size_t(options.samples));
  std::vector<Active> active;
  size_t next_prompt = 0;
  // Decode steps as captured graphs where they pay (the CUDA backend); the
  // per-step logits kept for inspection come only from the eager path.
  std::unique_ptr<DecodeGraphs> graphs;
  if (!options.keep_step_logits && decode_graphs_wanted(*backend_))
    graphs = std::make_unique<DecodeGraphs>(*backend_, config_, weights_, cache, options.sampling);
  auto cancelled = [&] { return control.cancel && control.cancel->load(); };
  auto is_stop = [&](int32_t t) {
    return std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), t) != options.stop_token_ids.end();
  };
  // Draws one token for each of `rows` rows of device logits [rows, vocab]
  // (row i for sequence seeds[i], at its completion's length); only the
  // tokens and their log-probs come to the host.
  std::vector<float> step_logits_host;
  auto draw = [&](const DeviceArray& logits_rows, const std::vector<Active>& who, const std::vector<size_t>& row_of,
                  std::vector<int32_t>* tokens, std::vector<float>* logprobs) {
    std::vector<uint64_t> seeds, counters;
    for (size_t i = 0; i < who.size(); ++i) {
      seeds.push_back(who[i].seed);
      counters.push_back(uint64_t(completions[who[i].completion].tokens.size()));
    }
    tokens->assign(who.size(), 0);
    logprobs->assign(who.size(), 0.0f);
    // The sampler reads one row per sequence: the prefill's samples share
    // their prompt's row, gathered here on the device.
    DeviceArray rows;
    ConstDevicePtr source = logits_rows.get();
    bool identity = row_of.size() == size_t(logits_rows.size() / std::max<int64_t>(vocab, 1));
    for (size_t i = 0; identity && i < row_of.size(); ++i) identity = row_of[i] == i;
    if (!identity) {
      std::vector<int32_t> gather(row_of.begin(), row_of.end());
      rows = DeviceArray(*backend_, int64_t(gather.size()) * vocab, logits_rows.type());
      backend_->gather_rows(logits_rows.get(), gather.data(), int64_t(gather.size()), rows.get(), vocab);
      source = rows.get();
    }
    if (!who.empty())
      backend_->sample_tokens(source, int64_t(who.size()), vocab, options.sampling, seeds.data(), counters.data(),
                              tokens->data(), logprobs->data());
    if (options.keep_step_logits) {
      step_logits_host.resize(size_t(int64_t(who.size()) * vocab));
      backend_->download(step_logits_host.data(), source, int64_t(who.size()) * vocab);
    }
  };
  // Records a sampled token; returns whether the sequence goes on.
  auto record = [&](Active& a, int32_t token, float logprob, size_t row) {
    Completion& c = completions[a.completion];
    c.tokens.push_back(token);
    c.logprobs.push_back(logprob);
    if (options.keep_step_logits)
      c.step_logits.insert(c.step_logits.end(), step_logits_host.begin() + int64_t(row) * vocab,
                           step_logits_host.begin() + int64_t(row + 1) * vocab);
    if (control.on_token) control.on_token(c);
    if (is_stop(token) || (control.stop_requested && control.stop_requested(c.prompt, c.sample)))
      c.finish_reason = "stop";
    else if (int64_t(c.tokens.size()) >= options.max_new_tokens) c.finish_reason = "length";
    return c.finish_reason.empty();
  };

  while ((next_prompt < prompts.size() || !active.empty()) && !cancelled()) {
    // Admit prompts while their samples fit in the batch: one prefill per
    // prompt, shared by its samples through forked cache sequences.
    std::vector<size_t> admitted;
    int64_t room = options.max_batch - int64_t(active.size());
    while (next_prompt < prompts.size() && (room >= options.samples || (active.empty() && admitted.empty()))) {
      admitted.push_back(next_prompt++);
      room -= options.samples;
    }
    if (!admitted.empty()) {
      std::vector<const Prompt*> pointers;
      for (size_t p : admitted) pointers.push_back(&prompts[p]);
      int64_t feature_rows = 0;
      DeviceArray features = image_features(pointers, &feature_rows);
      DecoderBatch batch;
      std::vector<int64_t> streams[3];
      std::vector<int64_t> deltas;
      for (size_t p : admitted) {
        const Prompt& prompt = prompts[p];
        if (prompt.ids.empty()) throw std::invalid_argument("prompt " + std::to_string(p) + " is empty");
        const std::vector<int32_t> ones(prompt.ids.size(), 1);
        const RopeIndex rope =
            rope_index(config_, prompt.ids.data(), ones.data(), 1, int64_t(prompt.ids.size()), prompt.grids);
        append_row(batch, streams, cache.create(), prompt.ids.data(), rope.positions.data(),
                   int64_t(prompt.ids.size()), int64_t(prompt.ids.size()), config_.image_token_id);
        batch.logit_rows.push_back(int32_t(batch.ids.size() - 1));
        deltas.push_back(rope.deltas[0]);
      }
      finish_positions(batch, streams);
      check_image_rows(batch, feature_rows);
      batch.image_features = features.get();
      DeviceArray hidden = decoder_forward(*backend_, config_, weights_, cache, batch);
      DeviceArray prefill_logits = logits(*backend_, config_, weights_, hidden.get(), int64_t(admitted.size()));
      std::vector<Active> fresh;
      std::vector<size_t> row_of;
      for (size_t i = 0; i < admitted.size(); ++i) {
        const KvCache::SequenceId prompt_seq = batch.sequences[i].cache_id;
        for (int64_t s = 0; s < options.samples; ++s) {
          const size_t index = admitted[i] * size_t(options.samples) + size_t(s);
          completions[index].prompt = int64_t(admitted[i]);
          completions[index].sample = s;
          const uint64_t stream =
              uint64_t(options.first_prompt_index + int64_t(admitted[i]) * options.prompt_index_stride) *
                  uint64_t(options.samples) + uint64_t(s);
          fresh.push_back({index, cache.fork(prompt_seq), deltas[i], sampling::sequence_seed(options.seed, stream)});
          row_of.push_back(i);
        }
        cache.release(prompt_seq);  // its blocks live on in the samples' forks
      }
      std::vector<int32_t> tokens;
      std::vector<float> logprobs;
      draw(prefill_logits, fresh, row_of, &tokens, &logprobs);
      for (size_t j = 0; j < fresh.size(); ++j) {
        if (record(fresh[j], tokens[j], logprobs[j], j)) active.push_back(fresh[j]);
        else cache.release(fresh[j].cache_id);
      }
      continue;
    }

    // One decode step for every active sequence.
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;
    if (graphs) {
      std::vector<DecodeGraphs::Row> rows;
      for (const Active& a : active) {
        Completion& c = completions[a.completion];
        const int64_t position = cache.length(a.cache_id) + a.delta;
        c.positions.push_back(position);
        rows.push_back({a.cache_id, c.tokens.back(), position, a.seed, uint64_t(c.tokens.size())});
        ++c.graph_steps;
      }
      graphs->step(rows, &tokens, &logprobs);
    } else {
      DecoderBatch batch;
      std::vector<int64_t> streams[3];
      for (const Active& a : active) {
        Completion& c = completions[a.completion];
        const int64_t position = cache.length(a.cache_id) + a.delta;
        c.positions.push_back(position);
        const int64_t pos3[3] = {position, position, position};
        append_row(batch, streams, a.cache_id, &c.tokens.back(), pos3, 1, 1, -1);
        batch.logit_rows.push_back(int32_t(batch.ids.size() - 1));
      }
      finish_positions(batch, streams);
      DeviceArray hidden = decoder_forward(*backend_, config_, weights_, cache, batch);
      DeviceArray step_logits = logits(*backend_, config_, weights_, hidden.get(), int64_t(active.size()));
      std::vector<size_t> row_of(active.size());
      for (size_t i = 0; i < row_of.size(); ++i) row_of[i] = i;
      draw(step_logits, active, row_of, &tokens, &logprobs);
    }
    std::vector<Active> still;
    for (size_t i = 0; i < active.size(); ++i) {
      if (record(active[i], tokens[i], logprobs[i], i)) still.push_back(active[i]);
      else cache.release(active[i].cache_id);  // its blocks go back at once
    }
    active = std::move(still);
  }
  for (Completion& c : completions)
    if (c.finish_reason.empty()) c.finish_reason = "cancelled";
  return completions;
}

TrainResult Qwen25VL::accumulate_gradients(const std::vector<TrainSequence>& batch, const TrainOptions& options) {
  if (!grads_) grads_ = std::make_unique<Weights>(zeros_like(*backend_, weights_, Storage::F32));
  return train_forward_backward(*backend_, config_, weights_, *grads_, batch, options);
}

void Qwen25VL::zero_gradients() {
  if (!grads_) return;
  for (auto& [name, array] : named_parameters(*grads_)) backend_->fill(array->get(), 0.0f, array->size());
}

bool Freeze::trainable(const std::string& name) const {
  if (name.rfind("visual.merger.", 0) == 0) return !merger;
  if (name.rfind("visual.", 0) == 0) return !vision;
  return !language;
}

std::vector<dist::FlatPiece> Qwen25VL::pieces_of(Weights& arrays) {
  std::vector<std::pair<float*, int64_t>> list;
  for (auto& [name, array] : named_parameters(arrays)) list.emplace_back(array->get().f32("a data-parallel array"), array->size());
  return dist::flat_pieces(list);
}

void Qwen25VL::attach_communicator(std::shared_ptr<dist::Communicator> comm, const DataParallelOptions& options) {
  if (!comm) throw std::invalid_argument("attach_communicator: no communicator");
  if (optimizer_step_count_ > 0 || adam_m_ || shard_m_.get())
    throw std::logic_error("attach a process group before the first optimizer step, not after");
  if (options.bucket_bytes < int64_t(sizeof(float)))
    throw std::invalid_argument("attach_communicator: bucket_bytes must be at least 4");
  comm_ = std::move(comm);
  dp_options_ = options;
  int64_t total = 0;
  for (auto& [name, array] : named_parameters(weights_)) total += array->size();
  split_ = dist::split_evenly(total, comm_->world_size());
  try {
    check_data_parallel_layout();
  } catch (...) {
    comm_.reset();
    throw;
  }
  if (comm_->world_size() > 1) {
    // Every rank loaded the same files; the broadcast makes "the same" exact.
    weights_changed();
    for (auto& [name, array] : named_parameters(weights_)) comm_->broadcast(array->get().f32("a weight"), array->size(), 0);
  }
}

std::vector<double> Qwen25VL::reduce_scalars(const std::vector<double>& values, dist::ReduceOp op) {
  if (!comm_) return values;
  return dist::all_reduce_doubles(*backend_, *comm_, values, op);
}

void Qwen25VL::barrier() {
  if (comm_) comm_->barrier();
}

double Qwen25VL::gradient_norm(const Freeze& freeze) {
  if (!grads_) return 0.0;
  double total = 0.0;
  const auto named = named_parameters(*grads_);
  if (!comm_ || comm_->world_size() == 1) {
    for (auto& [name, array] : named)
      if (freeze.trainable(name)) total += backend_->sum_squares(array->get(), array->size());
    return std::sqrt(total);
  }
  // Each rank sums the squares of its own range (the gradients are already
  // reduced, so every rank could sum them all; splitting the work by range
  // gives ZeRO-1 and the replicated optimiser the same bits).
  const std::vector<dist::FlatPiece> pieces = pieces_of(*grads_);
  const int rank = comm_->rank();
  for (size_t i = 0; i < pieces.size(); ++i)
    if (freeze.trainable(named[i].first))
      dist::for_each_overlap(std::vector<dist::FlatPiece>{pieces[i]}, split_.begin(rank), split_.end(rank),
                             [&](const dist::FlatPiece& p, int64_t first, int64_t count) {
                               total += backend_->sum_squares(p.data + first, count);
                             });
  return std::sqrt(dist::all_reduce_doubles(*backend_, *comm_, {total}, dist::ReduceOp::Sum)[0]);
}

double Qwen25VL::optimizer_step(const train::AdamWOptions& options, double max_grad_norm, const Freeze& freeze) {
  // A data-parallel rank with no sequences in a mini-batch still takes part
  // in its collectives, with zero gradients.
  if (!grads_ && comm_ && comm_->world_size() > 1) grads_ = std::make_unique<Weights>(zeros_like(*backend_, weights_, Storage::F32));
  if (!grads_) throw std::logic_error("optimizer_step before any gradients were accumulated");
  const auto named_grads = named_parameters(*grads_);
  if (comm_ && comm_->world_size() > 1) {
    // Frozen parameters have no gradient to reduce.
    std::vector<std::pair<float*, int64_t>> trainable;
    for (auto& [name, array] : named_grads)
      if (freeze.trainable(name)) trainable.emplace_back(array->get().f32("a gradient"), array->size());
    dist::all_reduce_arrays(*backend_, *comm_, trainable, dp_options_.bucket_bytes / int64_t(sizeof(float)));
  }
  const double norm = gradient_norm(freeze);
  if (!std::isfinite(norm)) return norm;
  allocate_optimizer_state();
  const float scale = float(max_grad_norm > 0 ? train::clip_coefficient(norm, max_grad_norm) : 1.0);
  ++optimizer_step_count_;
  weights_changed();
  auto p = named_parameters(weights_);
  if (zero1_active()) {
    // AdamW is elementwise: updating a range gives the bits the whole-array
    // step gives there. (ZeRO-1 runs strategy adamw on fp32 storage only:
    // check_data_parallel_layout.)
    const int rank = comm_->rank();
    const int64_t begin = split_.begin(rank), end = split_.end(rank);
    const std::vector<dist::FlatPiece> wp = pieces_of(weights_), gp = pieces_of(*grads_);
    for (size_t i = 0; i < wp.size(); ++i) {
      if (!freeze.trainable(p[i].first)) continue;
      dist::for_each_overlap(std::vector<dist::FlatPiece>{wp[i]}, begin, end,
                             [&](const dist::FlatPiece& w, int64_t first, int64_t count) {
                               const int64_t at = w.offset + first - begin;
                               backend_->adamw(w.data + first, gp[i].data + first, shard_m_.get() + at,
                                               shard_v_.get() + at, count, optimizer_step_count_, scale, options);
                             });
    }
    dist::all_gather_ranges(*backend_, *comm_, wp, split_, dp_options_.bucket_bytes / int64_t(sizeof(float)));
    return norm;
  }
  auto m = named_parameters(*adam_m_), v = named_parameters(*adam_v_);
  std::vector<std::pair<std::string, DeviceArray*>> c;
  if (kahan_c_) c = named_parameters(*kahan_c_);
  // adamw over bf16 storage updates the fp32 master copy, then rounds it into the weights.
  if (master_) p = named_parameters(*master_);
  for (size_t i = 0; i < p.size(); ++i)
    if (freeze.trainable(p[i].first))
      train::apply_optimizer_step(*backend_, optimizer_config_, p[i].second->get(), named_grads[i].second->get(),
                                  m[i].second->get(), v[i].second->get(), c.empty() ? DevicePtr() : c[i].second->get(),
                                  p[i].second->size(), optimizer_step_count_, scale, options);
  if (master_) round_master_into_weights();
  return norm;
}

void Qwen25VL::round_master_into_weights() {
  auto w = named_parameters(weights_), master = named_parameters(*master_);
  for (size_t i = 0; i < w.size(); ++i) backend_->copy(w[i].second->get(), master[i].second->get(), w[i].second->size());
}

void Qwen25VL::configure_optimizer(const train::OptimizerConfig& config) {
  if ((adam_m_ || shard_m_.get()) &&
      (config.strategy != optimizer_config_.strategy || config.offload != optimizer_config_.offload))
    throw std::invalid_argument("the optimizer state is " + train::describe(optimizer_config_) +
                                "; it cannot be continued as " + train::describe(config) +
                                " (resume with the worker.actor.optim.strategy and offload the state was made with)");
  optimizer_config_ = config;
  check_data_parallel_layout();
}

void Qwen25VL::check_data_parallel_layout() const {
  if (!comm_ || comm_->world_size() <= 1) return;
  // The collectives move fp32 arrays; bf16 storage (CUDA's default) and the
  // bf16 optimiser state are single-process only for now.
  if (backend_->storage() != Storage::F32)
    throw std::invalid_argument(std::string("data-parallel training needs fp32 storage; this ") + backend_->name() +
                                " backend stores " + storage_name(backend_->storage()) +
                                " (load the model with dtype fp32)");
  if (dp_options_.zero1 &&
      (optimizer_config_.strategy != train::OptimizerStrategy::AdamW || optimizer_config_.offload))
    throw std::invalid_argument("ZeRO-1 (trainer.zero1) shards the adamw optimiser on the device; " +
                                train::describe(optimizer_config_) +
                                " is not sharded: set trainer.zero1=false or worker.actor.optim.strategy=adamw "
                                "without offload");
}

void Qwen25VL::allocate_optimizer_state() {
  if (zero1_active()) {
    const int64_t n = split_.end(comm_->rank()) - split_.begin(comm_->rank());
    if (shard_m_.get() || n == 0) return;
    shard_m_ = DeviceArray(*backend_, n);
    shard_v_ = DeviceArray(*backend_, n);
    backend_->fill(shard_m_.get(), 0.0f, n);
    backend_->fill(shard_v_.get(), 0.0f, n);
    return;
  }
  if (adam_m_) return;
  const bool host = optimizer_config_.offload;
  // adamw: fp32 moments. adamw_bf16: moments and compensation in the
  // backend's storage type (bf16 on CUDA; fp32 holding bf16 values on the CPU).
  const bool bf16 = optimizer_config_.strategy == train::OptimizerStrategy::AdamWBf16;
  const Storage state = bf16 ? backend_->storage() : Storage::F32;
  adam_m_ = std::make_unique<Weights>(zeros_like(*backend_, weights_, state, host));
  adam_v_ = std::make_unique<Weights>(zeros_like(*backend_, weights_, state, host));
  if (bf16) kahan_c_ = std::make_unique<Weights>(zeros_like(*backend_, weights_, state, host));
  if (!bf16 && backend_->storage() != Storage::F32) {
    // Kept on the device even with offload: the update writes the weights
    // from it every step.
    master_ = std::make_unique<Weights>(zeros_like(*backend_, weights_, Storage::F32));
    auto w = named_parameters(weights_), master = named_parameters(*master_);
    for (size_t i = 0; i < w.size(); ++i) backend_->copy(master[i].second->get(), w[i].second->get(), w[i].second->size());
  }
}

Weights Qwen25VL::gather_moments(DeviceArray& shard) {
  Weights full = zeros_like(*backend_, weights_, Storage::F32);
  const std::vector<dist::FlatPiece> pieces = pieces_of(full);
  const int rank = comm_->rank();
  const int64_t begin = split_.begin(rank);
  if (shard.get())
    dist::for_each_overlap(pieces, begin, split_.end(rank), [&](const dist::FlatPiece& p, int64_t first, int64_t count) {
      backend_->copy(p.data + first, shard.get() + (p.offset + first - begin), count);
    });
  dist::all_gather_ranges(*backend_, *comm_, pieces, split_, dp_options_.bucket_bytes / int64_t(sizeof(float)));
  return full;
}

void Qwen25VL::keep_own_range(Weights& full, DeviceArray& shard) {
  const int rank = comm_->rank();
  const int64_t begin = split_.begin(rank);
  dist::for_each_overlap(pieces_of(full), begin, split_.end(rank),
                         [&](const dist::FlatPiece& p, int64_t first, int64_t count) {
                           backend_->copy(shard.get() + (p.offset + first - begin), p.data + first, count);
                         });
}

std::vector<std::pair<std::string, std::vector<float>>> Qwen25VL::host_copy(Weights& arrays) {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  for (auto& [name, array] : named_parameters(arrays)) {
    std::vector<float> host(static_cast<size_t>(array->size()));
    if (array->on_host())
      train::host_state_to_floats(array->get(), array->size(), host.data());
    else
      backend_->download(host.data(), array->get(), array->size());
    out.emplace_back(name, std::move(host));
  }
  return out;
}

std::vector<std::pair<std::string, std::vector<float>>> Qwen25VL::parameters() { return host_copy(weights_); }

std::vector<std::pair<std::string, std::vector<float>>> Qwen25VL::gradients() {
  if (!grads_) return {};
  return host_copy(*grads_);
}

void Qwen25VL::upload_named(Weights& arrays, const std::vector<std::pair<std::string, std::vector<float>>>& values,
                            const char* what) {
  auto named = named_parameters(arrays);
  for (const auto& [name, data] : values) {
    auto it = std::find_if(named.begin(), named.end(), [&](const auto& p) { return p.first == name; });
    if (it == named.end()) throw std::invalid_argument(std::string(what) + ": the model has no parameter '" + name + "'");
    if (int64_t(data.size()) != it->second->size())
      throw std::invalid_argument(std::string(what) + ": '" + name + "' has " + std::to_string(data.size()) +
                                  " values, the model " + std::to_string(it->second->size()));
    if (it->second->on_host())
      train::floats_to_host_state(data.data(), it->second->size(), it->second->get());
    else
      backend_->upload(it->second->get(), data.data(), it->second->size());
  }
}

void Qwen25VL::set_parameters(const std::vector<std::pair<std::string, std::vector<float>>>& values) {
  weights_changed();
  upload_named(weights_, values, "set_parameters");
  if (master_) upload_named(*master_, values, "set_parameters (fp32 master copy)");
}

void Qwen25VL::optimizer_state(std::vector<std::pair<std::string, std::vector<float>>>* m,
                               std::vector<std::pair<std::string, std::vector<float>>>* v) {
  m->clear();
  v->clear();
  if (zero1_active()) {
    // Collective: every rank gathers the full moments (a full copy, for checks).
    const bool any =
        dist::all_reduce_doubles(*backend_, *comm_, {optimizer_step_count_ > 0 || shard_m_.get() ? 1.0 : 0.0},
                                 dist::ReduceOp::Max)[0] > 0;
    if (!any) return;
    Weights full_m = gather_moments(shard_m_), full_v = gather_moments(shard_v_);
    *m = host_copy(full_m);
    *v = host_copy(full_v);
    return;
  }
  if (!adam_m_) return;
  *m = host_copy(*adam_m_);
  *v = host_copy(*adam_v_);
}

void Qwen25VL::set_optimizer_state(const std::vector<std::pair<std::string, std::vector<float>>>& m,
                                   const std::vector<std::pair<std::string, std::vector<float>>>& v, int64_t step) {
  allocate_optimizer_state();
  if (zero1_active()) {
    Weights full_m = zeros_like(*backend_, weights_, Storage::F32), full_v = zeros_like(*backend_, weights_, Storage::F32);
    upload_named(full_m, m, "set_optimizer_state (m)");
    upload_named(full_v, v, "set_optimizer_state (v)");
    if (shard_m_.get()) {
      keep_own_range(full_m, shard_m_);
      keep_own_range(full_v, shard_v_);
    }
  } else {
    upload_named(*adam_m_, m, "set_optimizer_state (m)");
    upload_named(*adam_v_, v, "set_optimizer_state (v)");
  }
  optimizer_step_count_ = step;
}

WrittenSet Qwen25VL::save_weights(const std::string& dir, DType dtype, const SafetensorsWriteOptions& options) {
  return model::save_weights(*backend_, config_, weights_, dir, dtype, options);
}

WrittenSet Qwen25VL::save_optimizer_state(const std::string& dir, bool with_master,
                                          const SafetensorsWriteOptions& options) {
  return model::save_optimizer_state(*backend_, config_, master_ ? *master_ : weights_, adam_m_.get(), adam_v_.get(),
                                     dir, with_master || master_ != nullptr, options, optimizer_config_.strategy,
                                     kahan_c_.get());
}

void Qwen25VL::restore_optimizer_state(const std::string& dir, int64_t step) {
  if (step < 0) throw std::invalid_argument("restore_optimizer_state: negative step " + std::to_string(step));
  // ZeRO-1 shards, or shards being read by another world size, go through
  // the flat reader; a single process reading the single-process layout goes
  // through the reader that records and checks the strategy.
  const bool sharded_layout = zero1_active() || saved_optimizer_world(dir) > 0;
  if (sharded_layout && (optimizer_config_.strategy != train::OptimizerStrategy::AdamW || optimizer_config_.offload ||
                         backend_->storage() != Storage::F32))
    throw std::invalid_argument(dir + ": ZeRO-1 optimiser shards hold fp32 adamw state; the run asks for " +
                                train::describe(optimizer_config_) + " on " + storage_name(backend_->storage()) +
                                " storage");
  if (!sharded_layout) {
    if (!adam_m_ && optimizer_dir_holds_moments(dir)) allocate_optimizer_state();
    weights_changed();  // the master copy, when saved, replaces the weights
    model::restore_optimizer_state(*backend_, master_ ? *master_ : weights_, adam_m_.get(), adam_v_.get(), dir,
                                   optimizer_config_.strategy, kahan_c_.get());
    if (master_) round_master_into_weights();
    optimizer_step_count_ = step;
    return;
  }
  if (optimizer_dir_holds_moments(dir)) allocate_optimizer_state();
  weights_changed();  // the master copy, when saved, replaces the weights
  FlatTargets targets;
  targets.weights = pieces_of(weights_);
  for (auto& [name, array] : named_parameters(weights_)) targets.names.push_back(name);
  for (const dist::FlatPiece& p : targets.weights) targets.total += p.size;
  if (zero1_active()) {
    // This rank's range only; a rank whose range is empty reads the master copy alone.
    const int64_t begin = split_.begin(comm_->rank());
    targets.m = {{shard_m_.get().f32("ZeRO-1 moments"), begin, shard_m_.size()}};
    targets.v = {{shard_v_.get().f32("ZeRO-1 moments"), begin, shard_v_.size()}};
  } else if (adam_m_) {
    targets.m = pieces_of(*adam_m_);
    targets.v = pieces_of(*adam_v_);
  }
  restore_flat_optimizer_state(*backend_, dir, targets);
  optimizer_step_count_ = step;
}

WrittenSet Qwen25VL::save_optimizer_shard(const std::string& dir, bool with_master,
                                          const SafetensorsWriteOptions& options) {
  if (!zero1_active()) throw std::logic_error("save_optimizer_shard without ZeRO-1 (world size > 1)");
  return model::save_optimizer_shard(*backend_, pieces_of(weights_), &shard_m_, &shard_v_, split_, comm_->rank(), dir,
                                     with_master, options);
}

}  // namespace st::model
