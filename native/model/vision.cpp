#include "model/vision.h"

#include "model/rotary.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace st::model {

VisionLayout vision_layout(const VisionConfig& config, const std::vector<GridThw>& grids) {
  VisionLayout layout;
  const int64_t m = config.merge;
  const int64_t unit = m * m;
  const int64_t ws = config.window_size / m / config.patch;  // merged tokens per window side
  layout.cu_window_seqlens.push_back(0);
  layout.cu_seqlens.push_back(0);
  int64_t merged_offset = 0;
  for (const GridThw& g : grids) {
    const int64_t frames = g[0], gh = g[1], gw = g[2];
    const int64_t lh = gh / m, lw = gw / m;
    for (int64_t f = 0; f < frames; ++f) {
      // rotary positions in the processor's patch order
      for (int64_t bh = 0; bh < lh; ++bh)
        for (int64_t bw = 0; bw < lw; ++bw)
          for (int64_t ih = 0; ih < m; ++ih)
            for (int64_t iw = 0; iw < m; ++iw) {
              layout.rot_pos_ids.push_back(int32_t(bh * m + ih));
              layout.rot_pos_ids.push_back(int32_t(bw * m + iw));
            }
      // windows row-major, merged tokens row-major inside each
      for (int64_t wy = 0; wy < lh; wy += ws)
        for (int64_t wx = 0; wx < lw; wx += ws) {
          int64_t count = 0;
          for (int64_t y = wy; y < std::min(lh, wy + ws); ++y)
            for (int64_t x = wx; x < std::min(lw, wx + ws); ++x, ++count)
              layout.window_index.push_back(int32_t(merged_offset + y * lw + x));
          layout.cu_window_seqlens.push_back(layout.cu_window_seqlens.back() + int32_t(count * unit));
        }
      layout.cu_seqlens.push_back(layout.cu_seqlens.back() + int32_t(gh * gw));
      merged_offset += lh * lw;
    }
  }
  layout.patches = merged_offset * unit;
  return layout;
}

namespace {

// Non-causal attention within the blocks [cu[i], cu[i+1]) of the sequence.
std::vector<AttentionSequence> blocks(const std::vector<int32_t>& cu, const std::vector<int32_t>& slots) {
  std::vector<AttentionSequence> out;
  for (size_t i = 0; i + 1 < cu.size(); ++i) {
    if (cu[i + 1] == cu[i]) continue;
    AttentionSequence s;
    s.q_offset = cu[i];
    s.q_len = cu[i + 1] - cu[i];
    s.key_slots = slots.data() + cu[i];
    s.k_len = s.q_len;
    s.causal = false;
    out.push_back(s);
  }
  return out;
}

}  // namespace

DeviceArray vision_forward(Backend& backend, const ModelConfig& config, const Weights& weights,
                           const float* pixel_values, const std::vector<GridThw>& grids,
                           const VisionLayout& layout) {
  (void)grids;
  const VisionConfig& v = config.vision;
  const int64_t n = layout.patches, d = v.hidden, hd = v.head_dim(), unit = v.merge * v.merge;
  const int64_t merged = n / unit;

  // Patch embedding (Conv3d with kernel = stride = the patch) as one product.
  DeviceArray pixels(backend, n * v.patch_dim());
  backend.upload(pixels.get(), pixel_values, n * v.patch_dim());
  DeviceArray embedded(backend, n * d);
  backend.linear(pixels.get(), weights.patch_embed.get(), nullptr, embedded.get(), n, v.patch_dim(), d);

  // Rotary tables per patch, and the patches, in window order.
  const std::vector<int32_t> patch_order = window_patch_order(layout, unit);
  const RotaryTables rope = vision_rotary(backend, hd, layout, patch_order);
  DeviceArray x(backend, n * d);
  backend.gather_rows(embedded.get(), patch_order.data(), n, x.get(), d);

  std::vector<int32_t> identity(static_cast<size_t>(n));
  std::iota(identity.begin(), identity.end(), 0);
  const std::vector<AttentionSequence> windows = blocks(layout.cu_window_seqlens, identity);
  // Full attention runs per frame; frames are contiguous in window order too.
  const std::vector<AttentionSequence> frames = blocks(layout.cu_seqlens, identity);

  DeviceArray h(backend, n * d), qkv(backend, n * 3 * d), q(backend, n * d), k(backend, n * d), val(backend, n * d);
  DeviceArray attn(backend, n * d), proj(backend, n * d);
  DeviceArray gate(backend, n * v.intermediate), up(backend, n * v.intermediate);
  for (int64_t b = 0; b < v.depth; ++b) {
    const VisionBlockWeights& w = weights.vision_blocks[size_t(b)];
    backend.rmsnorm(x.get(), w.norm1.get(), h.get(), n, d, 1e-6f);
    backend.linear(h.get(), w.qkv_w.get(), w.qkv_b.get(), qkv.get(), n, d, 3 * d);
    backend.copy_columns(qkv.get(), n, 3 * d, 0, d, q.get());
    backend.copy_columns(qkv.get(), n, 3 * d, d, d, k.get());
    backend.copy_columns(qkv.get(), n, 3 * d, 2 * d, d, val.get());
    backend.rotary(q.get(), rope.cos.get(), rope.sin.get(), n, v.heads, hd);
    backend.rotary(k.get(), rope.cos.get(), rope.sin.get(), n, v.heads, hd);
    AttentionArgs args;
    args.q = q.get();
    args.k_pool = k.get();
    args.v_pool = val.get();
    args.out = attn.get();
    args.heads = args.kv_heads = v.heads;
    args.head_dim = hd;
    args.scale = float(1.0 / std::sqrt(double(hd)));
    const bool full = std::find(v.fullatt_blocks.begin(), v.fullatt_blocks.end(), b) != v.fullatt_blocks.end();
    args.sequences = full ? frames : windows;
    backend.attention(args);
    backend.linear(attn.get(), w.proj_w.get(), w.proj_b.get(), proj.get(), n, d, d);
    backend.add(x.get(), proj.get(), n * d);
    backend.rmsnorm(x.get(), w.norm2.get(), h.get(), n, d, 1e-6f);
    backend.linear(h.get(), w.gate_w.get(), w.gate_b.get(), gate.get(), n, d, v.intermediate);
    backend.linear(h.get(), w.up_w.get(), w.up_b.get(), up.get(), n, d, v.intermediate);
    backend.swiglu(gate.get(), up.get(), gate.get(), n * v.intermediate);
    backend.linear(gate.get(), w.down_w.get(), w.down_b.get(), proj.get(), n, v.intermediate, d);
    backend.add(x.get(), proj.get(), n * d);
  }

  // Merger: the `unit` patches of a merged token side by side, two layers,
  // then back from window order to raster order.
  backend.rmsnorm(x.get(), weights.merger_norm.get(), h.get(), n, d, 1e-6f);
  DeviceArray hidden(backend, merged * unit * d), y(backend, merged * v.out_hidden), out(backend, merged * v.out_hidden);
  backend.linear(h.get(), weights.merger_fc1_w.get(), weights.merger_fc1_b.get(), hidden.get(), merged, unit * d,
                 unit * d);
  backend.gelu(hidden.get(), merged * unit * d);
  backend.linear(hidden.get(), weights.merger_fc2_w.get(), weights.merger_fc2_b.get(), y.get(), merged, unit * d,
                 v.out_hidden);
  backend.scatter_rows(y.get(), layout.window_index.data(), merged, out.get(), v.out_hidden);
  return out;
}

}  // namespace st::model
