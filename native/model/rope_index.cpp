#include "model/rope_index.h"

#include <algorithm>
#include <stdexcept>

namespace st::model {

RopeIndex rope_index(const ModelConfig& config, const int32_t* ids, const int32_t* mask, int64_t rows,
                     int64_t seq_len, const std::vector<GridThw>& grids) {
  RopeIndex out;
  out.positions.assign(size_t(3 * rows * seq_len), 1);
  out.deltas.assign(size_t(rows), 0);
  const int64_t m = config.vision.merge;
  size_t image = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* row_ids = ids + r * seq_len;
    const int32_t* row_mask = mask + r * seq_len;
    auto at = [&](int64_t stream, int64_t i) -> int64_t& {
      return out.positions[size_t((stream * rows + r) * seq_len + i)];
    };
    int64_t next = 0, highest = -1;
    for (int64_t i = 0; i < seq_len;) {
      if (!row_mask[i]) {
        ++i;
        continue;
      }
      if (row_ids[i] != config.image_token_id) {
        for (int64_t s = 0; s < 3; ++s) at(s, i) = next;
        highest = std::max(highest, next);
        ++next;
        ++i;
        continue;
      }
      if (image >= grids.size())
        throw std::invalid_argument("row " + std::to_string(r) + " has more image token runs than images given (" +
                                    std::to_string(grids.size()) + ")");
      const GridThw& g = grids[image++];
      const int64_t lh = g[1] / m, lw = g[2] / m, count = g[0] * lh * lw;
      int64_t placed = 0;
      for (; i < seq_len && placed < count; ++i) {
        if (!row_mask[i]) continue;
        if (row_ids[i] != config.image_token_id) break;
        const int64_t cell = placed % (lh * lw);
        at(0, i) = next;  // images have one temporal position
        at(1, i) = next + cell / lw;
        at(2, i) = next + cell % lw;
        ++placed;
      }
      if (placed != count)
        throw std::invalid_argument("row " + std::to_string(r) + ": image " + std::to_string(image - 1) + " needs " +
                                    std::to_string(count) + " image tokens but the prompt has " + std::to_string(placed));
      highest = std::max(highest, next + std::max(lh, lw) - 1);
      next += std::max(lh, lw);
    }
    out.deltas[size_t(r)] = highest + 1 - seq_len;
  }
  if (image != grids.size())
    throw std::invalid_argument(std::to_string(grids.size()) + " images were given but the prompts hold " +
                                std::to_string(image));
  return out;
}

std::vector<int64_t> continued_positions(const ModelConfig& config, const int32_t* ids, int64_t prompt_len, int64_t len,
                                         const std::vector<GridThw>& grids) {
  const std::vector<int32_t> ones(size_t(prompt_len), 1);
  const RopeIndex prompt = rope_index(config, ids, ones.data(), 1, prompt_len, grids);
  std::vector<int64_t> positions(size_t(3 * len));
  const int64_t next = prompt_len + prompt.deltas[0];
  for (int64_t k = 0; k < 3; ++k) {
    for (int64_t i = 0; i < prompt_len; ++i) positions[size_t(k * len + i)] = prompt.positions[size_t(k * prompt_len + i)];
    for (int64_t i = prompt_len; i < len; ++i) positions[size_t(k * len + i)] = next + (i - prompt_len);
  }
  return positions;
}

}  // namespace st::model
