#pragma once
// Where every patch of a set of images goes in the vision tower
// (shared/spec/qwen25vl.md §4): the window permutation, the attention blocks
// and the rotary positions. Host-side bookkeeping, no backend.
#include <array>
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace st::model {

using GridThw = std::array<int64_t, 3>;  // frames/2, patch rows, patch cols

struct VisionLayout {
  int64_t patches = 0;                     // N, over all images
  std::vector<int32_t> window_index;       // merged tokens in window order (N/4)
  std::vector<int32_t> cu_window_seqlens;  // window boundaries, in patches
  std::vector<int32_t> cu_seqlens;         // per-frame boundaries, in patches
  std::vector<int32_t> rot_pos_ids;        // [N, 2]: (row, col) in processor order
};

VisionLayout vision_layout(const VisionConfig& config, const std::vector<GridThw>& grids);

}  // namespace st::model
