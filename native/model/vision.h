#pragma once
// The vision tower and patch merger (shared/spec/qwen25vl.md §4).
#include <array>
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/weights.h"

namespace st::model {

using GridThw = std::array<int64_t, 3>;  // frames/2, patch rows, patch cols

// Where every patch goes: the window permutation and attention blocks.
struct VisionLayout {
  int64_t patches = 0;                     // N, over all images
  std::vector<int32_t> window_index;       // merged tokens in window order (N/4)
  std::vector<int32_t> cu_window_seqlens;  // window boundaries, in patches
  std::vector<int32_t> cu_seqlens;         // per-frame boundaries, in patches
  std::vector<int32_t> rot_pos_ids;        // [N, 2]: (row, col) in processor order
};

VisionLayout vision_layout(const VisionConfig& config, const std::vector<GridThw>& grids);

// pixel_values: host [N, patch_dim]. Returns [N / merge^2, out_hidden] in the
// order of the image-pad tokens (raster order per image, images in order).
DeviceArray vision_forward(Backend& backend, const ModelConfig& config, const Weights& weights,
                           const float* pixel_values, const std::vector<GridThw>& grids,
                           const VisionLayout& layout);

}  // namespace st::model
