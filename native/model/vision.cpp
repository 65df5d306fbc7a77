#include "model/vision.h"

#include <algorithm>
#include <atomic>
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

// Non-causal attention within the blocks [cu[i], cu[i+1]) of the rows.
std::vector<AttentionSequence> spans(const std::vector<int32_t>& cu, const std::vector<int32_t>& slots) {
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

std::atomic<int64_t> images_encoded{0};

}  // namespace

int64_t vision_tower_images() { return images_encoded.load(); }
void reset_vision_tower_images() { images_encoded.store(0); }

BlockParams vision_block_params(const VisionConfig& v, const VisionBlockWeights& w) {
  // q, k and v are the row blocks [0, Dv), [Dv, 2Dv), [2Dv, 3Dv) of the fused qkv.
  const int64_t d = v.hidden;
  return {w.norm1.get(),  w.norm2.get(),  w.qkv_w.get(), w.qkv_b.get(), w.qkv_w.get() + d * d, w.qkv_b.get() + d,
          w.qkv_w.get() + 2 * d * d, w.qkv_b.get() + 2 * d, w.proj_w.get(), w.proj_b.get(), w.gate_w.get(),
          w.gate_b.get(), w.up_w.get(), w.up_b.get(), w.down_w.get(), w.down_b.get(), v.rms_eps, d, v.heads, v.heads,
          v.head_dim(), v.intermediate};
}

BlockGrads vision_block_grads(const VisionConfig& v, VisionBlockWeights& g) {
  const int64_t d = v.hidden;
  return {g.norm1.get(), g.norm2.get(), g.qkv_w.get(), g.qkv_b.get(), g.qkv_w.get() + d * d, g.qkv_b.get() + d,
          g.qkv_w.get() + 2 * d * d, g.qkv_b.get() + 2 * d, g.proj_w.get(), g.proj_b.get(), g.gate_w.get(),
          g.gate_b.get(), g.up_w.get(), g.up_b.get(), g.down_w.get(), g.down_b.get()};
}

AttentionArgs VisionInput::attention(const VisionConfig& v, int64_t block) const {
  AttentionArgs args;
  args.heads = args.kv_heads = v.heads;
  args.head_dim = v.head_dim();
  args.scale = float(1.0 / std::sqrt(double(v.head_dim())));
  const bool full = std::find(v.fullatt_blocks.begin(), v.fullatt_blocks.end(), block) != v.fullatt_blocks.end();
  // Full attention runs per frame; frames are contiguous in window order too.
  args.sequences = spans(full ? layout.cu_seqlens : layout.cu_window_seqlens, slots);
  return args;
}

VisionInput vision_embed(Backend& b, const VisionConfig& v, const Weights& w, const float* pixels,
                         const std::vector<GridThw>& grids) {
  images_encoded += int64_t(grids.size());
  VisionInput in;
  in.layout = vision_layout(v, grids);
  const int64_t N = in.layout.patches, P = v.patch_dim(), Dv = v.hidden, U = v.merge * v.merge;
  in.patch_order = window_patch_order(in.layout, U);
  in.rope = vision_rotary(b, v, in.layout, in.patch_order);
  in.slots.resize(static_cast<size_t>(N));
  std::iota(in.slots.begin(), in.slots.end(), 0);
  in.pixels = DeviceArray(b, N * P);
  b.upload(in.pixels.get(), pixels, N * P);
  DeviceArray embedded(b, N * Dv);                                                      // [N, Dv] processor order
  b.linear(in.pixels.get(), w.patch_embed.get(), nullptr, embedded.get(), N, P, Dv);
  in.x = DeviceArray(b, N * Dv);                                                        // [N, Dv] window order
  b.gather_rows(embedded.get(), in.patch_order.data(), N, in.x.get(), Dv);
  return in;
}

void vision_embed_backward(Backend& b, const VisionConfig& v, const Weights& w, Weights& grads, const VisionInput& in,
                           ConstDevicePtr dx) {
  const int64_t N = in.layout.patches, Dv = v.hidden;
  DeviceArray dembedded(b, N * Dv);
  b.scatter_rows(dx, in.patch_order.data(), N, dembedded.get(), Dv);  // undo the window permutation
  b.linear_backward(in.pixels.get(), w.patch_embed.get(), dembedded.get(), nullptr, grads.patch_embed.get(), nullptr, N,
                    v.patch_dim(), Dv);
}

DeviceArray merger_forward(Backend& b, const VisionConfig& v, const Weights& w, ConstDevicePtr x,
                           const VisionLayout& layout, MergerActivations* keep) {
  const int64_t N = layout.patches, Dv = v.hidden, U = v.merge * v.merge, M = N / U, Do = v.out_hidden;
  MergerActivations local;
  MergerActivations& s = keep ? *keep : local;
  s.norm = DeviceArray(b, N * Dv);  // [M, U*Dv]: the U patches of a merged token side by side
  b.rmsnorm(x, w.merger_norm.get(), s.norm.get(), N, Dv, v.rms_eps);
  s.pre = DeviceArray(b, M * U * Dv);
  b.linear(s.norm.get(), w.merger_fc1_w.get(), w.merger_fc1_b.get(), s.pre.get(), M, U * Dv, U * Dv);
  DevicePtr act = s.pre.get();  // inference: the GELU in place
  if (keep) {
    s.act = DeviceArray(b, M * U * Dv);
    b.copy(s.act.get(), s.pre.get(), M * U * Dv);
    act = s.act.get();
  }
  b.gelu(act, M * U * Dv);
  DeviceArray y(b, M * Do), features(b, M * Do);  // [M, Do] window order, then raster order
  b.linear(act, w.merger_fc2_w.get(), w.merger_fc2_b.get(), y.get(), M, U * Dv, Do);
  b.scatter_rows(y.get(), layout.window_index.data(), M, features.get(), Do);
  return features;
}

void merger_backward(Backend& b, const VisionConfig& v, const Weights& w, Weights& grads, ConstDevicePtr x,
                     const VisionLayout& layout, const MergerActivations& s, ConstDevicePtr dfeatures,
                     DevicePtr dx) {
  const int64_t N = layout.patches, Dv = v.hidden, U = v.merge * v.merge, M = N / U, Do = v.out_hidden;
  DeviceArray dy(b, M * Do), dact(b, M * U * Dv), dnorm(b, N * Dv);
  b.gather_rows(dfeatures, layout.window_index.data(), M, dy.get(), Do);
  b.linear_backward(s.act.get(), w.merger_fc2_w.get(), dy.get(), dact.get(), grads.merger_fc2_w.get(),
                    grads.merger_fc2_b.get(), M, U * Dv, Do);
  b.gelu_backward(s.pre.get(), dact.get(), M * U * Dv);
  b.linear_backward(s.norm.get(), w.merger_fc1_w.get(), dact.get(), dnorm.get(), grads.merger_fc1_w.get(),
                    grads.merger_fc1_b.get(), M, U * Dv, U * Dv);
  b.rmsnorm_backward(x, w.merger_norm.get(), dnorm.get(), dx, grads.merger_norm.get(), N, Dv, v.rms_eps);
}

DeviceArray vision_forward(Backend& b, const ModelConfig& config, const Weights& w, const float* pixel_values,
                           const std::vector<GridThw>& grids) {
  const VisionConfig& v = config.vision;
  VisionInput in = vision_embed(b, v, w, pixel_values, grids);
  const int64_t N = in.layout.patches;
  BlockActivations scratch;
  for (int64_t blk = 0; blk < v.depth; ++blk)
    block_forward(b, vision_block_params(v, w.vision_blocks[size_t(blk)]), in.x.get(), N,
                  {in.rope.cos.get(), in.rope.sin.get()}, in.attention(v, blk), scratch, /*for_backward=*/false);
  return merger_forward(b, v, w, in.x.get(), in.layout, nullptr);
}

}  // namespace st::model
