// N-API entry points for batched box matching: argument checks on the main
// thread, the work on a worker thread, typed arrays back.
#include <memory>

#include "addon/exports.h"
#include "addon/promise_worker.h"
#include "addon/typed_arrays.h"
#include "match/match.h"
#include "match/match_cuda.h"

namespace st::addon {
namespace {

enum class Device { kCpu, kCuda };

Device device_option(const Napi::Object& options, const char* fn) {
  Napi::Value value = required(options, "device", fn);
  const std::string name = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  throw Napi::TypeError::New(options.Env(), std::string(fn) + ": `device` must be \"cpu\" or \"cuda\"");
}

// Box sets arrive as flat [x1, y1, x2, y2] arrays plus a count per problem;
// the engine wants prefix offsets.
struct BoxPairs {
  std::vector<double> pred_boxes, gt_boxes;
  std::vector<int64_t> pred_offsets, gt_offsets;

  BoxPairs(const Napi::Object& options, const char* fn) {
    pred_boxes = copy_typed_array<double>(options, "predBoxes", fn);
    gt_boxes = copy_typed_array<double>(options, "gtBoxes", fn);
    pred_offsets = offsets(copy_typed_array<int32_t>(options, "predCounts", fn), options, fn, "predCounts");
    gt_offsets = offsets(copy_typed_array<int32_t>(options, "gtCounts", fn), options, fn, "gtCounts");
    if (pred_offsets.size() != gt_offsets.size())
      throw Napi::RangeError::New(options.Env(), std::string(fn) + ": `predCounts` and `gtCounts` differ in length");
    if (4 * pred_offsets.back() != int64_t(pred_boxes.size()))
      throw Napi::RangeError::New(options.Env(), std::string(fn) + ": `predBoxes` must hold 4 numbers per predicted box (" +
                                                     std::to_string(4 * pred_offsets.back()) + " expected, got " +
                                                     std::to_string(pred_boxes.size()) + ")");
    if (4 * gt_offsets.back() != int64_t(gt_boxes.size()))
      throw Napi::RangeError::New(options.Env(), std::string(fn) + ": `gtBoxes` must hold 4 numbers per ground-truth box (" +
                                                     std::to_string(4 * gt_offsets.back()) + " expected, got " +
                                                     std::to_string(gt_boxes.size()) + ")");
  }

  static std::vector<int64_t> offsets(const std::vector<int32_t>& counts, const Napi::Object& options,
                                      const char* fn, const char* field) {
    std::vector<int64_t> out(counts.size() + 1, 0);
    for (size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] < 0)
        throw Napi::RangeError::New(options.Env(), std::string(fn) + ": `" + field + "` has a negative count at " +
                                                       std::to_string(i));
      out[i + 1] = out[i] + counts[i];
    }
    return out;
  }

  match::BoxPairBatch view() const {
    match::BoxPairBatch batch;
    batch.pred_boxes = pred_boxes.data();
    batch.pred_offsets = pred_offsets.data();
    batch.gt_boxes = gt_boxes.data();
    batch.gt_offsets = gt_offsets.data();
    batch.size = int64_t(pred_offsets.size()) - 1;
    return batch;
  }
};

// ciouMatrices({predBoxes, predCounts, gtBoxes, gtCounts, device}) ->
//   Promise<Float64Array>: each problem's [preds x gts] mapped-CIoU matrix,
//   row-major, concatenated in problem order.
Napi::Value CiouMatrices(const Napi::CallbackInfo& info) {
  const char* fn = "ciouMatrices";
  Napi::Object options = options_object(info, fn);
  const Device device = device_option(options, fn);
  auto pairs = std::make_shared<BoxPairs>(options, fn);
  auto out = std::make_shared<std::vector<double>>();
  return PromiseWorker::Start(
      info.Env(),
      [pairs, out, device]() -> std::string {
        const match::BoxPairBatch batch = pairs->view();
        std::string error = match::validate(batch);
        if (!error.empty()) return error;
        out->resize(match::matrix_offsets(batch).back());
        if (device == Device::kCuda) return match::cuda::ciou_matrices(batch, out->data());
        match::ciou_matrices_cpu(batch, out->data());
        return "";
      },
      [out](Napi::Env env) -> Napi::Value { return to_typed_array(env, *out); });
}

// linearSumAssignment({costs, rows, cols, device}) ->
//   Promise<{rowToCol: Int32Array, totals: Float64Array}>
Napi::Value LinearSumAssignment(const Napi::CallbackInfo& info) {
  const char* fn = "linearSumAssignment";
  Napi::Object options = options_object(info, fn);
  const Device device = device_option(options, fn);
  struct Input {
    std::vector<double> costs;
    std::vector<int32_t> rows, cols;
    std::vector<int64_t> offsets;
  };
  auto in = std::make_shared<Input>();
  in->costs = copy_typed_array<double>(options, "costs", fn);
  in->rows = copy_typed_array<int32_t>(options, "rows", fn);
  in->cols = copy_typed_array<int32_t>(options, "cols", fn);
  if (in->rows.size() != in->cols.size())
    throw Napi::RangeError::New(info.Env(), "linearSumAssignment: `rows` and `cols` differ in length");
  in->offsets.assign(in->rows.size() + 1, 0);
  int64_t total_rows = 0;
  for (size_t i = 0; i < in->rows.size(); ++i) {
    if (in->rows[i] < 0 || in->cols[i] < 0)
      throw Napi::RangeError::New(info.Env(), "linearSumAssignment: negative shape for problem " + std::to_string(i));
    in->offsets[i + 1] = in->offsets[i] + int64_t(in->rows[i]) * in->cols[i];
    total_rows += in->rows[i];
  }
  if (in->offsets.back() != int64_t(in->costs.size()))
    throw Napi::RangeError::New(info.Env(), "linearSumAssignment: `costs` has " + std::to_string(in->costs.size()) +
                                                " entries but rows x cols add up to " + std::to_string(in->offsets.back()));
  auto row_to_col = std::make_shared<std::vector<int32_t>>(total_rows);
  auto totals = std::make_shared<std::vector<double>>(in->rows.size());
  return PromiseWorker::Start(
      info.Env(),
      [in, row_to_col, totals, device]() -> std::string {
        match::CostBatch batch;
        batch.costs = in->costs.data();
        batch.rows = in->rows.data();
        batch.cols = in->cols.data();
        batch.offsets = in->offsets.data();
        batch.size = int64_t(in->rows.size());
        std::string error = match::validate(batch);
        if (!error.empty()) return error;
        if (device == Device::kCuda)
          return match::cuda::linear_sum_assignment(batch, row_to_col->data(), totals->data());
        return match::linear_sum_assignment_cpu(batch, row_to_col->data(), totals->data());
      },
      [row_to_col, totals](Napi::Env env) -> Napi::Value {
        Napi::Object result = Napi::Object::New(env);
        result.Set("rowToCol", to_typed_array(env, *row_to_col));
        result.Set("totals", to_typed_array(env, *totals));
        return result;
      });
}

// spatialScores({predBoxes, predCounts, gtBoxes, gtCounts, similarity,
//   semanticWeight, iouWeight, device}) ->
//   Promise<{scores: Float64Array, gtToPred: Int32Array, gtMciou: Float64Array}>
Napi::Value SpatialScores(const Napi::CallbackInfo& info) {
  const char* fn = "spatialScores";
  Napi::Object options = options_object(info, fn);
  const Device device = device_option(options, fn);
  struct Input {
    BoxPairs pairs;
    std::vector<double> similarity;
    double semantic_weight, iou_weight;
    Input(const Napi::Object& options, const char* fn) : pairs(options, fn) {}
  };
  auto in = std::make_shared<Input>(options, fn);
  in->similarity = copy_typed_array<double>(options, "similarity", fn);
  in->semantic_weight = number_field(options, "semanticWeight", fn);
  in->iou_weight = number_field(options, "iouWeight", fn);
  const int64_t expected = match::matrix_offsets(in->pairs.view()).back();
  if (int64_t(in->similarity.size()) != expected)
    throw Napi::RangeError::New(info.Env(), "spatialScores: `similarity` must hold preds x gts entries per problem (" +
                                                std::to_string(expected) + " expected, got " +
                                                std::to_string(in->similarity.size()) + ")");
  auto result = std::make_shared<match::SpatialResult>();
  return PromiseWorker::Start(
      info.Env(),
      [in, result, device]() -> std::string {
        match::SpatialBatch batch;
        batch.boxes = in->pairs.view();
        batch.similarity = in->similarity.data();
        batch.semantic_weight = in->semantic_weight;
        batch.iou_weight = in->iou_weight;
        std::string error = match::validate(batch);
        if (!error.empty()) return error;
        if (device == Device::kCuda) return match::cuda::spatial_scores(batch, result.get());
        return match::spatial_scores_cpu(batch, result.get());
      },
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("scores", to_typed_array(env, result->score));
        out.Set("gtToPred", to_typed_array(env, result->gt_to_pred));
        out.Set("gtMciou", to_typed_array(env, result->gt_mciou));
        return out;
      });
}

void register_match(Napi::Env env, Napi::Object exports) {
  exports.Set("ciouMatrices", Napi::Function::New(env, CiouMatrices, "ciouMatrices"));
  exports.Set("linearSumAssignment", Napi::Function::New(env, LinearSumAssignment, "linearSumAssignment"));
  exports.Set("spatialScores", Napi::Function::New(env, SpatialScores, "spatialScores"));
}

const ModuleRegistration registration(register_match);

}  // namespace

}  // namespace st::addon
