#pragma once
// Complete IoU of two boxes mapped to the reward's scale, exactly as the
// SpatialThinker reference scorer computes it (shared/spec/rewards.md §4).
// Written once for host and device so the CPU and CUDA backends cannot drift.
#include <cmath>

#if defined(__CUDACC__)
#define ST_HOST_DEVICE __host__ __device__
#else
#define ST_HOST_DEVICE
#endif

namespace st::match {

// Boxes are [x1, y1, x2, y2]. No clamping: an inverted box has negative width
// or height and a negative area, as in the reference. The result lies in
// (-0.25, 1]; far-apart boxes of very different aspect ratio go below 0.
ST_HOST_DEVICE inline double mapped_ciou(const double* a, const double* b) {
  const double eps = 1e-7;
  const double wa = a[2] - a[0], ha = a[3] - a[1];
  const double wb = b[2] - b[0], hb = b[3] - b[1];
  const double iw = fmax(0.0, fmin(a[2], b[2]) - fmax(a[0], b[0]));
  const double ih = fmax(0.0, fmin(a[3], b[3]) - fmax(a[1], b[1]));
  const double inter = iw * ih;
  const double iou = inter / (wa * ha + wb * hb - inter + eps);
  const double dx = (a[0] + a[2]) * 0.5 - (b[0] + b[2]) * 0.5;
  const double dy = (a[1] + a[3]) * 0.5 - (b[1] + b[3]) * 0.5;
  const double cw = fmax(a[2], b[2]) - fmin(a[0], b[0]);
  const double ch = fmax(a[3], b[3]) - fmin(a[1], b[1]);
  const double c2 = cw * cw + ch * ch + eps;
  const double pi = 3.14159265358979323846;
  const double dt = atan(wb / (hb + eps)) - atan(wa / (ha + eps));
  const double v = (4.0 / (pi * pi)) * dt * dt;
  const double denom = (1.0 - iou) + v;
  const double alpha = denom == 0.0 ? 0.0 : v / denom;
  const double ciou = iou - (dx * dx + dy * dy) / c2 - alpha * v;
  return (ciou + 1.0) / 2.0;
}

// The value the spatial reward uses: mapped_ciou, except that a pair whose
// CIoU is not finite (possible only for coordinates near the double range,
// where areas overflow) counts as 0 instead of poisoning the reward with NaN.
ST_HOST_DEVICE inline double reward_mciou(const double* a, const double* b) {
  const double m = mapped_ciou(a, b);
  const bool finite = (m - m) == 0.0;  // false for +-inf and NaN, on host and device alike
  return finite ? m : 0.0;
}

}  // namespace st::match
