#pragma once
// The vision tower and patch merger (shared/spec/qwen25vl.md §4), as pieces
// that inference (vision_forward) and training (training.cpp) both run: the
// patch embedding with the window permutation and rotary tables, the blocks
// (model/block.h), and the merger, each with its backward.
//
// Dimension legend (see also model/block.h):
//   N   patches of all images (processor order, or window order after the
//       permutation: merged tokens window by window, U patches each)
//   P   = in_channels * temporal_patch * patch^2, values per patch
//   Dv  vision hidden
//   U   = merge^2, patches per merged token; M = N / U merged tokens
//   Do  out_hidden (= text hidden)
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/block.h"
#include "model/config.h"
#include "model/rotary.h"
#include "model/vision_layout.h"
#include "model/weights.h"

namespace st::model {

BlockParams vision_block_params(const VisionConfig& config, const VisionBlockWeights& w);
BlockGrads vision_block_grads(const VisionConfig& config, VisionBlockWeights& g);

// The tower's input: embedded patches in window order, with the tables and
// attention spans every block uses.
struct VisionInput {
  VisionLayout layout;
  std::vector<int32_t> patch_order;  // [N] processor-order patch at each window-order row
  RotaryTables rope;                 // [N, Dh] each, window order
  DeviceArray pixels;                // [N, P] processor order: the patch embedding's input
  DeviceArray x;                     // [N, Dv] window order
  std::vector<int32_t> slots;        // 0 .. N-1: blocks attend over their own keys

  // Windowed, or full per frame for the config's full-attention blocks;
  // non-causal. Points into `slots`.
  AttentionArgs attention(const VisionConfig& config, int64_t block) const;
};

// pixels: host [N, P]. Patch embedding (Conv3d with kernel = stride = the
// patch, as one product), then the window permutation.
VisionInput vision_embed(Backend& backend, const VisionConfig& config, const Weights& weights, const float* pixels,
                         const std::vector<GridThw>& grids);
// dx [N, Dv] (window order, d loss / d input.x): patch-embedding gradient.
void vision_embed_backward(Backend& backend, const VisionConfig& config, const Weights& weights, Weights& grads,
                           const VisionInput& input, ConstDevicePtr dx);

// What the merger's backward reads.
struct MergerActivations {
  DeviceArray norm;  // [N, Dv] = [M, U*Dv]
  DeviceArray pre;   // [M, U*Dv] fc1 output, before the GELU
  DeviceArray act;   // [M, U*Dv] after the GELU
};

// x [N, Dv] window order -> features [M, Do] in the order of the image-pad
// tokens (raster order per image, images in order):
//   h = rmsnorm(x) viewed as [M, U*Dv]; y = fc2(gelu(fc1(h))); unpermute.
DeviceArray merger_forward(Backend& backend, const VisionConfig& config, const Weights& weights, ConstDevicePtr x,
                           const VisionLayout& layout, MergerActivations* keep);
// dfeatures [M, Do] -> dx [N, Dv] (overwritten); parameter gradients accumulate.
void merger_backward(Backend& backend, const VisionConfig& config, const Weights& weights, Weights& grads,
                     ConstDevicePtr x, const VisionLayout& layout, const MergerActivations& kept,
                     ConstDevicePtr dfeatures, DevicePtr dx);

// Images encoded by the vision tower (vision_embed) since the last reset,
// process-wide: a check that cached features are reused.
int64_t vision_tower_images();
void reset_vision_tower_images();

// Inference: pixel_values host [N, P] -> features [M, Do] (backend memory),
// nothing kept, one scratch for every block.
DeviceArray vision_forward(Backend& backend, const ModelConfig& config, const Weights& weights,
                           const float* pixel_values, const std::vector<GridThw>& grids);

}  // namespace st::model
