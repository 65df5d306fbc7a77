#include "model/rotary.h"

#include <cmath>

namespace st::model {
namespace {

RotaryTables upload(Backend& backend, const std::vector<float>& cos, const std::vector<float>& sin) {
  const int64_t n = int64_t(cos.size());
  // fp32 whatever the storage type: they are small, and bf16 tables would add
  // a rounding of up to 2^-8 of every rotated value.
  RotaryTables t{DeviceArray(backend, n, Storage::F32), DeviceArray(backend, n, Storage::F32)};
  backend.upload(t.cos.get(), cos.data(), n);
  backend.upload(t.sin.get(), sin.data(), n);
  return t;
}

}  // namespace

std::vector<int32_t> window_patch_order(const VisionLayout& layout, int64_t unit) {
  std::vector<int32_t> order(static_cast<size_t>(layout.patches));
  for (size_t i = 0; i < layout.window_index.size(); ++i)
    for (int64_t u = 0; u < unit; ++u) order[i * size_t(unit) + size_t(u)] = int32_t(layout.window_index[i] * unit + u);
  return order;
}

RotaryTables vision_rotary(Backend& backend, const VisionConfig& config, const VisionLayout& layout,
                           const std::vector<int32_t>& patch_order) {
  const int64_t hd = config.head_dim(), n = int64_t(patch_order.size()), quarter = hd / 4;
  std::vector<double> inv(static_cast<size_t>(quarter));
  for (int64_t j = 0; j < quarter; ++j) inv[size_t(j)] = 1.0 / std::pow(config.rope_theta, double(2 * j) / double(hd / 2));
  std::vector<float> cos(static_cast<size_t>(n * hd)), sin(static_cast<size_t>(n * hd));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = patch_order[size_t(i)];
    const double row = layout.rot_pos_ids[size_t(2 * p)], col = layout.rot_pos_ids[size_t(2 * p + 1)];
    for (int64_t j = 0; j < 2 * quarter; ++j) {
      const double theta = j < quarter ? row * inv[size_t(j)] : col * inv[size_t(j - quarter)];
      for (int64_t rep = 0; rep < 2; ++rep) {
        cos[size_t(i * hd + rep * 2 * quarter + j)] = float(std::cos(theta));
        sin[size_t(i * hd + rep * 2 * quarter + j)] = float(std::sin(theta));
      }
    }
  }
  return upload(backend, cos, sin);
}

RotaryTables mrope(Backend& backend, const TextConfig& t, const std::vector<int64_t>& positions, int64_t rows) {
  std::vector<float> cos, sin;
  mrope_tables(t, positions, rows, &cos, &sin);
  return upload(backend, cos, sin);
}

void mrope_tables(const TextConfig& t, const std::vector<int64_t>& positions, int64_t rows, std::vector<float>* cos_out,
                  std::vector<float>* sin_out) {
  const int64_t hd = t.head_dim(), half = hd / 2;
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) inv[size_t(j)] = 1.0 / std::pow(t.rope_theta, double(2 * j) / double(hd));
  std::vector<int> stream(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j)
    stream[size_t(j)] = j < t.mrope_section[0] ? 0 : j < t.mrope_section[0] + t.mrope_section[1] ? 1 : 2;
  std::vector<float>& cos = *cos_out;
  std::vector<float>& sin = *sin_out;
  cos.assign(static_cast<size_t>(rows * hd), 0.0f);
  sin.assign(static_cast<size_t>(rows * hd), 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < half; ++j) {
      const double theta = double(positions[size_t(stream[size_t(j)] * rows + r)]) * inv[size_t(j)];
      cos[size_t(r * hd + j)] = cos[size_t(r * hd + j + half)] = float(std::cos(theta));
      sin[size_t(r * hd + j)] = sin[size_t(r * hd + j + half)] = float(std::sin(theta));
    }
}

}  // namespace st::model
