#pragma once
// Bicubic resampling of 8-bit interleaved images, bit-exact with Pillow's
// `Image.resize(size, Image.BICUBIC)` (its 8-bit fixed-point path, no
// reducing_gap), which the Qwen2.5-VL reference image processor uses
// (shared/spec/qwen25vl.md §3.2).
//
// The resize is separable: a horizontal pass (only when the width changes)
// whose output is rounded and clamped to 8 bits, then a vertical pass (only
// when the height changes). Each output sample is a weighted sum of input
// samples with Keys' cubic kernel (a = -0.5) stretched by the downscale
// factor, the weights normalised to sum 1 and converted to 22-bit fixed point.
#include <cstdint>
#include <string>
#include <vector>

namespace st {
class ThreadPool;
}

namespace st::vision {

// The taps of one axis: for each output index i, the input samples
// [first[i], first[i] + count[i]) weighted by weights[i * stride + k]
// (22-bit fixed point, k < count[i]).
struct ResampleTaps {
  int64_t stride = 0;
  std::vector<int64_t> first;
  std::vector<int64_t> count;
  std::vector<int32_t> weights;
};

// Pillow's fixed-point precision for 8-bit images: weights are scaled by 2^22.
constexpr int kWeightBits = 22;

// The taps mapping `in_size` samples onto `out_size` (both >= 1).
ResampleTaps bicubic_taps(int64_t in_size, int64_t out_size);

// "" when the shapes describe a valid resize of a buffer of `bytes` bytes,
// else a message naming the offending field (height, width, channels,
// outHeight, outWidth, pixels).
std::string validate_resize(int64_t height, int64_t width, int64_t channels, int64_t out_height,
                            int64_t out_width, uint64_t bytes);

// Resizes `in` ([height, width, channels] u8, row-major, channels
// interleaved) into `out` ([out_height, out_width, channels]). Same size on
// both axes copies. Rows are spread over `pool` (the engine's default pool
// when null). Shapes must pass validate_resize.
void resize_bicubic_u8(const uint8_t* in, int64_t height, int64_t width, int64_t channels, uint8_t* out,
                       int64_t out_height, int64_t out_width, ThreadPool* pool = nullptr);

}  // namespace st::vision
