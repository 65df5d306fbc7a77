#pragma once
// M-RoPE position ids for mixed image/text rows (shared/spec/qwen25vl.md §6).
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/vision_layout.h"

namespace st::model {

struct RopeIndex {
  std::vector<int64_t> positions;  // [3, rows, seq_len]; padding gets 1
  std::vector<int64_t> deltas;     // [rows]: max position + 1 - seq_len
};

// ids and mask are [rows, seq_len]; grids are the images of all rows, in
// order. Throws std::invalid_argument naming the row when a run of image
// tokens does not match the next image's size or images are left over.
RopeIndex rope_index(const ModelConfig& config, const int32_t* ids, const int32_t* mask, int64_t rows,
                     int64_t seq_len, const std::vector<GridThw>& grids);

// Positions [3, 1, len] of one prompt (ids[0, prompt_len)) followed by its
// completion: the prompt as rope_index places it, then each completion token
// one further on all three streams, as decoding placed it. A completion token
// is text whatever its id: a sampled <|image_pad|> carries no image.
std::vector<int64_t> continued_positions(const ModelConfig& config, const int32_t* ids, int64_t prompt_len, int64_t len,
                                         const std::vector<GridThw>& grids);

}  // namespace st::model
