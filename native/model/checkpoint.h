#pragma once
// Checkpoint I/O of a model's parameters and AdamW state, straight between
// backend memory and safetensors files: written through the streaming writer
// (one buffer, bf16 conversion in C++), read from the memory-mapped files.
// Nothing passes through JavaScript.
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/safetensors_writer.h"
#include "model/config.h"
#include "model/weights.h"
#include "train/optimizer_strategy.h"

namespace st::model {

// The shape each parameter has in a hub checkpoint (patch_embed is
// [D, C, T, p, p]), by hub name, from the config alone.
std::vector<int64_t> hub_shape(const ModelConfig& config, const std::string& name);

// The model's weights as a Hugging Face set of files (<dir>/model.safetensors
// or shards with their index), by hub name and hub shape, in `dtype` (F32 or BF16).
WrittenSet save_weights(Backend& backend, const ModelConfig& config, Weights& weights, const std::string& dir,
                        DType dtype, const SafetensorsWriteOptions& options);

// The optimiser state as <dir>/optimizer.safetensors (or shards), its
// metadata naming the strategy ("optimizer_strategy") and the state's dtype
// ("optimizer_state_dtype"):
//  adamw:      "master.<name>" (fp32 weights, when `with_master`),
//              "adam_m.<name>" and "adam_v.<name>" (when the moments exist), F32;
//  adamw_bf16: "adam_m.<name>", "adam_v.<name>" and "kahan_c.<name>" (the
//              compensation), BF16, which holds them exactly; no master copy
//              (the weights are bf16 values: a bf16 or fp32 save is exact).
WrittenSet save_optimizer_state(Backend& backend, const ModelConfig& config, Weights& weights, Weights* adam_m,
                                Weights* adam_v, const std::string& dir, bool with_master,
                                const SafetensorsWriteOptions& options,
                                train::OptimizerStrategy strategy = train::OptimizerStrategy::AdamW,
                                Weights* compensation = nullptr);

// What restore_optimizer_state found in the files.
struct RestoredState {
  bool master = false, moments = false;
};

// Reads <dir>/optimizer.safetensors (or its shards) through the mapping into
// `weights` (the master copy, when saved) and `adam_m`/`adam_v` (and
// `compensation` for adamw_bf16) when saved; they must be allocated, on the
// backend or in its host memory. Throws FormatError naming the file and
// tensor for a missing tensor, a wrong size or dtype, and for state written
// by the other strategy (there is no conversion between them).
RestoredState restore_optimizer_state(Backend& backend, Weights& weights, Weights* adam_m, Weights* adam_v,
                                      const std::string& dir,
                                      train::OptimizerStrategy strategy = train::OptimizerStrategy::AdamW,
                                      Weights* compensation = nullptr);

// Whether <dir> holds optimiser moments (so the caller knows to allocate them).
bool optimizer_files_hold_moments(const std::string& dir);

}  // namespace st::model
