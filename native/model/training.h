#pragma once
// One training forward and backward over a batch of sequences: the model's
// log-probs of each completion token, the GRPO policy loss, and the gradient
// of every parameter, accumulated into a Weights-shaped set of arrays.
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/vision.h"
#include "model/weights.h"
#include "train/policy_loss.h"

namespace st::model {

// A prompt followed by a completion; the loss covers tokens
// ids[prompt_len ..]. Per completion token: rollout and reference log-probs
// (GRPO; SFT needs neither).
struct TrainSequence {
  std::vector<int32_t> ids;
  int64_t prompt_len = 0;
  std::vector<float> pixels;  // the prompt's images
  std::vector<GridThw> grids;
  float advantage = 0;
  std::vector<float> old_logp, ref_logp;  // [ids.size() - prompt_len]
};

struct TrainOptions {
  enum class Objective { kGrpo, kSft };
  Objective objective = Objective::kGrpo;
  train::PolicyLossOptions loss;
  float temperature = 1.0f;
  int64_t batch_tokens = 0, batch_sequences = 0;  // the mini-batch's, see PolicyLossInput
  int64_t max_sequence_length = 0;               // 0: no limit
  // Keep only each block's input and recompute the block in the backward
  // pass: activation memory of one block instead of all of them.
  bool checkpoint_layers = false;
  // No gradients for the vision tower and merger (both frozen): their
  // backward is skipped.
  bool skip_vision_backward = false;
};

struct TrainResult {
  train::PolicyLossResult loss;
  std::vector<float> logp;  // per completion token, sequences in order
  double entropy = 0;       // mean entropy of the policy's next-token distribution over completion tokens
};

// Adds this batch's gradients to `grads` (zeros_like(weights) to start).
TrainResult train_forward_backward(Backend& backend, const ModelConfig& config, const Weights& weights,
                                   Weights& grads, const std::vector<TrainSequence>& batch,
                                   const TrainOptions& options);

}  // namespace st::model
