#pragma once
// Rotary-embedding tables, shared by inference and training so both rotate
// by bit-identical angles: the vision tower's 2-D rotary (row, column of each
// patch) and the decoder's M-RoPE (t, h, w streams by mrope_section).
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/vision_layout.h"

namespace st::model {

// cos and sin, [rows, head_dim] each, in backend memory.
struct RotaryTables {
  DeviceArray cos, sin;
};

// Patch index of each position in window order: merged token i of the window
// permutation covers `unit` consecutive patches.
std::vector<int32_t> window_patch_order(const VisionLayout& layout, int64_t unit);

// Per patch in `patch_order`: angles row * inv[j] and col * inv[j] over
// head_dim / 4 frequencies each (inv[j] = rope_theta^(-2j / (head_dim/2))),
// repeated in both halves.
RotaryTables vision_rotary(Backend& backend, const VisionConfig& config, const VisionLayout& layout,
                           const std::vector<int32_t>& patch_order);

// positions is [3, rows]; frequency j takes its angle from stream t, h or w
// by mrope_section, repeated in both halves.
RotaryTables mrope(Backend& backend, const TextConfig& config, const std::vector<int64_t>& positions, int64_t rows);
// The same tables on the host, [rows, head_dim] each (a captured decode step
// uploads them with its other inputs).
void mrope_tables(const TextConfig& config, const std::vector<int64_t>& positions, int64_t rows, std::vector<float>* cos,
                  std::vector<float>* sin);

}  // namespace st::model
