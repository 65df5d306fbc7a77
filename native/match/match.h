#pragma once
// Batched box matching for the spatial reward: mapped-CIoU matrices, exact
// minimum-cost assignment, and the fused spatial score that combines them.
// Every entry point works on a whole rollout batch at once; the CPU versions
// spread problems over the thread pool, the CUDA versions (match_cuda.h) run
// one block per problem.
#include <cstdint>
#include <string>
#include <vector>

namespace st::match {

// N box-set pairs. Boxes are 4 doubles [x1, y1, x2, y2]; problem i owns
// prediction boxes pred_offsets[i] .. pred_offsets[i+1] (counted in boxes) and
// likewise for ground truth. Offsets arrays have size + 1 entries.
struct BoxPairBatch {
  const double* pred_boxes = nullptr;
  const int64_t* pred_offsets = nullptr;
  const double* gt_boxes = nullptr;
  const int64_t* gt_offsets = nullptr;
  int64_t size = 0;

  int64_t preds(int64_t i) const { return pred_offsets[i + 1] - pred_offsets[i]; }
  int64_t gts(int64_t i) const { return gt_offsets[i + 1] - gt_offsets[i]; }
};

// Start of each problem's row-major [preds x gts] matrix in a flat array of
// all matrices; size + 1 entries, the last being the total.
std::vector<int64_t> matrix_offsets(const BoxPairBatch& batch);

// N rectangular cost matrices, row-major, problem i at offsets[i] with
// rows[i] x cols[i] entries.
struct CostBatch {
  const double* costs = nullptr;
  const int32_t* rows = nullptr;
  const int32_t* cols = nullptr;
  const int64_t* offsets = nullptr;
  int64_t size = 0;
};

// The fused spatial score's inputs: the boxes, normalised by image size, and
// for each problem a [preds x gts] label-similarity matrix laid out by
// matrix_offsets. cost = semantic_weight (1 - sim) + iou_weight (1 - mciou).
struct SpatialBatch {
  BoxPairBatch boxes;
  const double* similarity = nullptr;
  double semantic_weight = 2.0;
  double iou_weight = 1.0;
};

struct SpatialResult {
  std::vector<double> score;        // per problem: sum of matched mciou / gts
  std::vector<int32_t> gt_to_pred;  // per ground-truth box, -1 when unmatched
  std::vector<double> gt_mciou;     // per ground-truth box, 0 when unmatched
};

// Errors are returned, never thrown across the addon boundary: an empty
// string means success, otherwise a message naming the offending problem.
std::string validate(const BoxPairBatch& batch);
std::string validate(const CostBatch& batch);
std::string validate(const SpatialBatch& batch);

// out has matrix_offsets(batch).back() entries.
void ciou_matrices_cpu(const BoxPairBatch& batch, double* out);

// row_to_col has sum(rows) entries (-1 for an unassigned row), total has
// `size` entries. Returns "" or the error of the first bad problem (NaN or
// -inf entries, or an infeasible matrix of +inf).
std::string linear_sum_assignment_cpu(const CostBatch& batch, int32_t* row_to_col,
                                      double* total);

// The reference's spatial score for each problem (shared/spec/rewards.md §3):
// no ground-truth boxes gives 1 when there are no predictions, else 0. Call
// validate(batch) first.
std::string spatial_scores_cpu(const SpatialBatch& batch, SpatialResult* result);

}  // namespace st::match
