#pragma once
// A loaded Qwen2.5-VL: the entry points the addon exposes. One call at a time
// per model (the addon serialises them); each call may use every thread.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "distributed/communicator.h"
#include "distributed/data_parallel.h"
#include "engine/safetensors_writer.h"
#include "model/config.h"
#include "model/image_cache.h"
#include "model/kv_cache.h"
#include "model/rope_index.h"
#include "model/sampler.h"
#include "model/training.h"
#include "train/adamw.h"
#include "train/optimizer_strategy.h"
#include "model/vision.h"
#include "model/weights.h"

namespace st::model {

// One prompt: its token ids (no padding) and its images' pixel patches.
struct Prompt {
  std::vector<int32_t> ids;
  std::vector<float> pixels;  // [sum rows, patch_dim]
  std::vector<GridThw> grids;
};

struct GenerateOptions {
  SamplingOptions sampling;
  int64_t samples = 1;  // completions per prompt, sharing its prefill
  int64_t max_new_tokens = 256;
  std::vector<int32_t> stop_token_ids;
  uint64_t seed = 0;
  // Prompt p's index in the batch its random streams follow: first + p *
  // stride. A data-parallel rank that takes prompts r, r + W, ... of a batch
  // passes (r, W) and draws the completions the whole batch would.
  int64_t first_prompt_index = 0, prompt_index_stride = 1;
  int64_t max_batch = 64;  // sequences decoded together
  bool keep_step_logits = false;
};

struct Completion {
  int64_t prompt = 0, sample = 0;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int64_t> positions;  // M-RoPE position of each token fed back
  std::vector<float> step_logits;  // [tokens, vocab] when kept
  std::string finish_reason;       // "stop", "length" or "cancelled"
  int64_t graph_steps = 0;         // decode steps of it run as a replayed graph
};

struct GenerateControl {
  const std::atomic<bool>* cancel = nullptr;
  // Called on the engine thread after every sampled token.
  std::function<void(const Completion&)> on_token;
  // Asked after every token: true ends that completion (a stop string seen
  // by the caller).
  std::function<bool(int64_t prompt, int64_t sample)> stop_requested;
};

// Parts of the model that training leaves untouched.
struct Freeze {
  bool vision = false, merger = false, language = false;
  bool trainable(const std::string& name) const;
};

// How a model attached to a process group trains (world size > 1).
struct DataParallelOptions {
  // ZeRO-1: each rank keeps the AdamW moments of its range of the flattened
  // parameters only (distributed/data_parallel.h), updates that range, and
  // the ranges are all-gathered after the step. Off: every rank keeps all
  // moments and takes the whole step itself.
  bool zero1 = true;
  // The gradient all-reduce's bucket, and the parameter all-gather's chunk.
  int64_t bucket_bytes = int64_t(25) << 20;
};

class Qwen25VL {
 public:
  // image_cache_bytes: budget of the image-feature cache (0: off).
  Qwen25VL(std::unique_ptr<Backend> backend, const ModelConfig& config, const std::string& dir,
           int64_t image_cache_bytes);

  const ModelConfig& config() const { return config_; }
  Backend& backend() { return *backend_; }
  int64_t parameter_count() const { return weights_.parameter_count; }

  // Vision tower on host pixels; returns host [tokens, out_hidden].
  std::vector<float> vision(const float* pixels, const std::vector<GridThw>& grids, VisionLayout* layout);

  // Full forward of padded rows [rows, seq_len] (mask 1 = real token): logits
  // [rows, seq_len, vocab] on real tokens (0 on padding), and the rope index.
  std::vector<float> forward(const int32_t* ids, const int32_t* mask, int64_t rows, int64_t seq_len,
                             const float* pixels, const std::vector<GridThw>& grids, RopeIndex* rope);

  // log p(completion_j | prompt, completion_<j) for each prompt, at a
  // temperature, through the tiled log-prob gather.
  std::vector<std::vector<float>> logprobs(const std::vector<Prompt>& prompts,
                                           const std::vector<std::vector<int32_t>>& completions,
                                           float temperature);

  std::vector<Completion> generate(const std::vector<Prompt>& prompts, const GenerateOptions& options,
                                   const GenerateControl& control);

  // Data parallelism: every later optimizer_step() sums the gradients over
  // the group's ranks first (the trainer divides each rank's loss by the
  // global batch's counts, so the sum is the global batch's gradient), and
  // rank 0's weights are broadcast now so every rank starts from the same
  // ones. Before the first optimiser step only.
  void attach_communicator(std::shared_ptr<dist::Communicator> comm, const DataParallelOptions& options);
  // The attached group (null when none): its rank and world size.
  dist::Communicator* communicator() { return comm_.get(); }
  bool zero1_active() const { return comm_ && comm_->world_size() > 1 && dp_options_.zero1; }
  const dist::ShardSplit& shard_split() const { return split_; }
  // Values combined over the group (identical bits on every rank); the
  // values themselves without a group.
  std::vector<double> reduce_scalars(const std::vector<double>& values, dist::ReduceOp op);
  // A barrier over the group (nothing without one).
  void barrier();

  // Training: adds the batch's gradients to the model's gradient buffers
  // (allocated on first use) and returns the loss, log-probs and metrics.
  TrainResult accumulate_gradients(const std::vector<TrainSequence>& batch, const TrainOptions& options);
  void zero_gradients();
  // Global L2 norm of the accumulated gradients of the trainable parameters.
  double gradient_norm(const Freeze& freeze);
  // Clips by the global norm and takes one AdamW step on fp32 master weights
  // with fp32 moments; returns the norm before clipping. A non-finite norm
  // skips the step (nothing changes) and is returned as is.
  double optimizer_step(const train::AdamWOptions& options, double max_grad_norm, const Freeze& freeze = Freeze());
  // The optimiser strategy and where its state lives (adamw by default, on
  // the backend). Once state exists (a step taken or restored) it cannot
  // change: std::invalid_argument naming both.
  void configure_optimizer(const train::OptimizerConfig& config);
  const train::OptimizerConfig& optimizer_config() const { return optimizer_config_; }
  int64_t optimizer_steps() const { return optimizer_step_count_; }
  // Host copies of named parameters or gradients (hub names), for checks and checkpoints.
  std::vector<std::pair<std::string, std::vector<float>>> parameters();
  std::vector<std::pair<std::string, std::vector<float>>> gradients();
  // Replaces parameters by name (checkpoint resume); every name must exist
  // with the same size, else std::invalid_argument naming it.
  void set_parameters(const std::vector<std::pair<std::string, std::vector<float>>>& values);
  // AdamW moments by parameter name, and the step count (empty before the first step).
  void optimizer_state(std::vector<std::pair<std::string, std::vector<float>>>* m,
                       std::vector<std::pair<std::string, std::vector<float>>>* v);
  void set_optimizer_state(const std::vector<std::pair<std::string, std::vector<float>>>& m,
                           const std::vector<std::pair<std::string, std::vector<float>>>& v, int64_t step);

  // Checkpoints, written and read natively (model/checkpoint.h): the weights
  // as a Hugging Face set of safetensors files in F32 or BF16; the optimiser
  // state (fp32 master when asked, AdamW moments once they exist) as
  // optimizer.safetensors. Restoring sets the step count to `step`.
  WrittenSet save_weights(const std::string& dir, DType dtype, const SafetensorsWriteOptions& options);
  WrittenSet save_optimizer_state(const std::string& dir, bool with_master, const SafetensorsWriteOptions& options);
  void restore_optimizer_state(const std::string& dir, int64_t step);
  // ZeRO-1: this rank's range of the optimiser state as
  // <dir>/optimizer-rank<r>-of-<W>.safetensors (model/optimizer_shards.h).
  WrittenSet save_optimizer_shard(const std::string& dir, bool with_master, const SafetensorsWriteOptions& options);

 private:
  std::vector<std::pair<std::string, std::vector<float>>> host_copy(Weights& arrays);
  // The arrays of `arrays` as pieces of the flattened list.
  std::vector<dist::FlatPiece> pieces_of(Weights& arrays);
  // ZeRO-1: the moments' full arrays gathered from every rank's range (a
  // collective), and the way back (this rank keeps its range).
  Weights gather_moments(DeviceArray& shard);
  void keep_own_range(Weights& full, DeviceArray& shard);
  // Refuses a data-parallel layout the collectives cannot serve yet.
  void check_data_parallel_layout() const;
  void upload_named(Weights& arrays, const std::vector<std::pair<std::string, std::vector<float>>>& values,
                    const char* what);
  // Vision features of every prompt's images, in backend memory, in the
  // order of their image-pad tokens. Each image is encoded alone (so its
  // features do not depend on the rest of the batch) or taken from the cache.
  DeviceArray image_features(const std::vector<const Prompt*>& prompts, int64_t* rows);
  // The weights changed: features computed before are stale.
  void weights_changed();

  std::unique_ptr<Backend> backend_;
  ModelConfig config_;
  Weights weights_;
  std::unique_ptr<Weights> grads_, adam_m_, adam_v_;
  // adamw_bf16's Kahan compensation (train/optimizer_strategy.h); null for adamw.
  std::unique_ptr<Weights> kahan_c_;
  // adamw over bf16 weights: the fp32 master copy the update runs on; the
  // bf16 weights are its rounding, refreshed after every step.
  std::unique_ptr<Weights> master_;
  void round_master_into_weights();
  train::OptimizerConfig optimizer_config_;
  void allocate_optimizer_state();
  int64_t optimizer_step_count_ = 0;
  std::shared_ptr<dist::Communicator> comm_;
  DataParallelOptions dp_options_;
  dist::ShardSplit split_;
  DeviceArray shard_m_, shard_v_;  // ZeRO-1: the moments of [split_.begin(rank), split_.end(rank))
  int64_t weights_version_ = 0;
  ImageFeatureCache image_cache_;
};

}  // namespace st::model
