// CPU implementations of the batched matching entry points (match.h).
#include <atomic>
#include <cmath>
#include <mutex>

#include "engine/thread_pool.h"
#include "match/ciou.h"
#include "match/hungarian.h"
#include "match/match.h"

namespace st::match {

namespace {

// Problems are independent; each worker keeps its own solver workspace.
constexpr int64_t kProblemsPerChunk = 8;

// Remembers the error of the lowest-numbered failing problem so the message
// does not depend on thread scheduling.
class FirstError {
 public:
  void record(int64_t problem, std::string message) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (problem < problem_) {
      problem_ = problem;
      message_ = std::move(message);
    }
  }
  std::string message() const { return message_; }

 private:
  std::mutex mutex_;
  int64_t problem_ = INT64_MAX;
  std::string message_;
};

std::string problem_error(int64_t i, const std::string& what) {
  return "problem " + std::to_string(i) + ": " + what;
}

}  // namespace

std::vector<int64_t> matrix_offsets(const BoxPairBatch& batch) {
  std::vector<int64_t> offsets(batch.size + 1, 0);
  for (int64_t i = 0; i < batch.size; ++i)
    offsets[i + 1] = offsets[i] + batch.preds(i) * batch.gts(i);
  return offsets;
}

std::string validate(const BoxPairBatch& batch) {
  if (batch.size < 0) return "negative batch size";
  if (batch.pred_offsets[0] != 0 || batch.gt_offsets[0] != 0) return "offsets must start at 0";
  for (int64_t i = 0; i < batch.size; ++i) {
    if (batch.preds(i) < 0) return problem_error(i, "prediction offsets decrease");
    if (batch.gts(i) < 0) return problem_error(i, "ground-truth offsets decrease");
  }
  return "";
}

std::string validate(const CostBatch& batch) {
  if (batch.size < 0) return "negative batch size";
  if (batch.offsets[0] != 0) return "offsets must start at 0";
  for (int64_t i = 0; i < batch.size; ++i) {
    if (batch.rows[i] < 0 || batch.cols[i] < 0) return problem_error(i, "negative matrix shape");
    if (batch.offsets[i + 1] - batch.offsets[i] != int64_t(batch.rows[i]) * batch.cols[i])
      return problem_error(i, "offsets disagree with rows x cols");
    const double* c = batch.costs + batch.offsets[i];
    for (int64_t k = 0; k < int64_t(batch.rows[i]) * batch.cols[i]; ++k)
      if (std::isnan(c[k]) || c[k] == -INFINITY)
        return problem_error(i, "cost matrix contains NaN or -inf at entry " + std::to_string(k));
  }
  return "";
}

void ciou_matrices_cpu(const BoxPairBatch& batch, double* out) {
  const std::vector<int64_t> offsets = matrix_offsets(batch);
  default_thread_pool().parallel_for(batch.size, kProblemsPerChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const double* pred = batch.pred_boxes + 4 * batch.pred_offsets[i];
      const double* gt = batch.gt_boxes + 4 * batch.gt_offsets[i];
      double* m = out + offsets[i];
      const int64_t np = batch.preds(i), ng = batch.gts(i);
      for (int64_t p = 0; p < np; ++p)
        for (int64_t g = 0; g < ng; ++g) m[p * ng + g] = mapped_ciou(pred + 4 * p, gt + 4 * g);
    }
  });
}

std::string linear_sum_assignment_cpu(const CostBatch& batch, int32_t* row_to_col, double* total) {
  std::vector<int64_t> row_offsets(batch.size + 1, 0);
  for (int64_t i = 0; i < batch.size; ++i) row_offsets[i + 1] = row_offsets[i] + batch.rows[i];
  FirstError error;
  default_thread_pool().parallel_for(batch.size, 1, [&](int64_t begin, int64_t end) {
    AssignmentSolver solver;
    for (int64_t i = begin; i < end; ++i) {
      if (!solver.solve(batch.costs + batch.offsets[i], batch.rows[i], batch.cols[i],
                        row_to_col + row_offsets[i], total + i))
        error.record(i, problem_error(i, "cost matrix is infeasible (no finite assignment)"));
    }
  });
  return error.message();
}

std::string validate(const SpatialBatch& batch) {
  std::string error = validate(batch.boxes);
  if (!error.empty()) return error;
  // Finite weights and similarities keep every cost finite, so every
  // assignment problem below is feasible.
  if (!std::isfinite(batch.semantic_weight) || !std::isfinite(batch.iou_weight))
    return "semantic and IoU weights must be finite";
  const std::vector<int64_t> offsets = matrix_offsets(batch.boxes);
  for (int64_t i = 0; i < batch.boxes.size; ++i)
    for (int64_t k = offsets[i]; k < offsets[i + 1]; ++k)
      if (!std::isfinite(batch.similarity[k]))
        return problem_error(i, "label similarity is not finite at entry " + std::to_string(k - offsets[i]));
  return "";
}

std::string spatial_scores_cpu(const SpatialBatch& batch, SpatialResult* result) {
  const BoxPairBatch& boxes = batch.boxes;
  const std::vector<int64_t> offsets = matrix_offsets(boxes);
  const int64_t total_gts = boxes.gt_offsets[boxes.size];
  result->score.assign(boxes.size, 0.0);
  result->gt_to_pred.assign(total_gts, -1);
  result->gt_mciou.assign(total_gts, 0.0);
  default_thread_pool().parallel_for(boxes.size, kProblemsPerChunk, [&](int64_t begin, int64_t end) {
    AssignmentSolver solver;
    std::vector<double> mciou, cost;
    std::vector<int32_t> pred_to_gt;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t np = boxes.preds(i), ng = boxes.gts(i);
      if (ng == 0) {
        result->score[i] = np == 0 ? 1.0 : 0.0;
        continue;
      }
      if (np == 0) continue;  // every ground-truth box unmatched: score 0
      const double* pred = boxes.pred_boxes + 4 * boxes.pred_offsets[i];
      const double* gt = boxes.gt_boxes + 4 * boxes.gt_offsets[i];
      const double* sim = batch.similarity + offsets[i];
      mciou.resize(np * ng);
      cost.resize(np * ng);
      pred_to_gt.resize(np);
      for (int64_t k = 0; k < np * ng; ++k) {
        mciou[k] = reward_mciou(pred + 4 * (k / ng), gt + 4 * (k % ng));
        cost[k] = batch.semantic_weight * (1.0 - sim[k]) + batch.iou_weight * (1.0 - mciou[k]);
      }
      // Padding the reference's dummy rows (cost 1e5) when np < ng changes no
      // optimal assignment of the real rows, so the rectangular solve is exact.
      double unused_total;
      solver.solve(cost.data(), int(np), int(ng), pred_to_gt.data(), &unused_total);
      int32_t* gt_to_pred = result->gt_to_pred.data() + boxes.gt_offsets[i];
      double* gt_mciou = result->gt_mciou.data() + boxes.gt_offsets[i];
      for (int64_t p = 0; p < np; ++p) {
        const int32_t g = pred_to_gt[p];
        if (g < 0) continue;
        gt_to_pred[g] = int32_t(p);
        gt_mciou[g] = mciou[p * ng + g];
      }
      double sum = 0.0;  // in ground-truth order, as the reference sums
      for (int64_t g = 0; g < ng; ++g) sum += gt_mciou[g];
      result->score[i] = sum / double(ng);
    }
  });
  return "";
}

}  // namespace st::match
