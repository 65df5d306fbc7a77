// CUDA versions of the batched matching entry points (match_cuda.h). Host
// pointers in and out: each call copies its inputs to the device, runs one
// kernel and copies the results back. Results equal the CPU functions in
// match_cpu.cpp: the same formulas (ciou.h is shared) and, for the
// assignment, the same algorithm step by step (hungarian.cpp), so ties are
// broken the same way.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/device.h"
#include "match/ciou.h"
#include "match/match.h"
#include "match/match_cuda.h"

namespace st::match::cuda {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kWarpBlock = kWarp * kWarpsPerBlock;
constexpr int kMaxGrid = 65535;
constexpr int kCiouBlock = 128;
// Column loops step by 32 in int; keep every dimension far from INT_MAX.
constexpr int64_t kMaxDimension = int64_t(1) << 30;

// ---------------------------------------------------------------- host helpers

std::string cuda_error(const char* what, cudaError_t error) {
  return std::string("CUDA error during ") + what + ": " + cudaGetErrorString(error) + " (" +
         cudaGetErrorName(error) + ")";
}

#define ST_CUDA_TRY(expr, what)                         \
  do {                                                  \
    const cudaError_t st_error_ = (expr);               \
    if (st_error_ != cudaSuccess) {                     \
      cudaGetLastError(); /* clear non-sticky errors */ \
      return cuda_error(what, st_error_);               \
    }                                                   \
  } while (0)

// A device array freed on every path out of the calling function.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }

  cudaError_t allocate(size_t count) {
    count_ = count;
    if (count == 0) return cudaSuccess;
    return cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T));
  }
  cudaError_t upload(const T* host, cudaStream_t stream) {
    if (count_ == 0) return cudaSuccess;
    return cudaMemcpyAsync(ptr_, host, count_ * sizeof(T), cudaMemcpyHostToDevice, stream);
  }
  cudaError_t download(T* host, cudaStream_t stream) const {
    if (count_ == 0) return cudaSuccess;
    return cudaMemcpyAsync(host, ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost, stream);
  }
  T* get() const { return ptr_; }
  size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

// Every call runs on the calling thread's own default stream, so calls from
// several host threads do not serialise on the legacy stream.
const cudaStream_t kStream = cudaStreamPerThread;

// "" when the backend can run; selects the first device of a supported
// architecture for the calling thread.
std::string prepare_device() {
  const st::cuda::RuntimeInfo& info = st::cuda::runtime_info();
  if (!info.unavailable_reason.empty()) return "CUDA backend unavailable: " + info.unavailable_reason;
  int device = 0;
  for (const st::cuda::DeviceInfo& d : info.devices) {
    if (d.compute_major >= 8) {
      device = d.index;
      break;
    }
  }
  ST_CUDA_TRY(cudaSetDevice(device), "cudaSetDevice");
  return "";
}

std::string launch_and_wait(const char* kernel) {
  ST_CUDA_TRY(cudaGetLastError(), kernel);  // launch errors
  ST_CUDA_TRY(cudaStreamSynchronize(kStream), kernel);  // execution errors
  return "";
}

int grid_for(int64_t items, int64_t per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return int(std::min<int64_t>(std::max<int64_t>(blocks, 1), kMaxGrid));
}

std::string problem_error(int64_t i, const std::string& what) {
  return "problem " + std::to_string(i) + ": " + what;
}

// ------------------------------------------------------------- CIoU matrices

// One block per problem (the grid loops when there are more problems than
// blocks); the threads cover the problem's preds x gts entries.
__global__ void ciou_kernel(const double* __restrict__ pred_boxes, const int64_t* __restrict__ pred_offsets,
                            const double* __restrict__ gt_boxes, const int64_t* __restrict__ gt_offsets,
                            const int64_t* __restrict__ matrix_offsets, int64_t size, double* __restrict__ out) {
  for (int64_t i = blockIdx.x; i < size; i += gridDim.x) {
    const int64_t np = pred_offsets[i + 1] - pred_offsets[i];
    const int64_t ng = gt_offsets[i + 1] - gt_offsets[i];
    const double* pred = pred_boxes + 4 * pred_offsets[i];
    const double* gt = gt_boxes + 4 * gt_offsets[i];
    double* m = out + matrix_offsets[i];
    const int64_t entries = np * ng;
    for (int64_t k = threadIdx.x; k < entries; k += blockDim.x)
      m[k] = mapped_ciou(pred + 4 * (k / ng), gt + 4 * (k % ng));
  }
}

// --------------------------------------------------------- warp Hungarian

// One problem's solver workspace in global memory, for the wide shape
// R <= C: u, col_of_row and row_visited use R entries, the others C. Every
// array is sized max(rows, cols) + 1 so either orientation fits.
struct Workspace {
  double* u;
  double* v;
  double* shortest;
  int32_t* path;
  int32_t* col_of_row;
  int32_t* row_of_col;
  int32_t* remaining;
  int32_t* row_visited;
  int32_t* col_visited;
};

constexpr int kWorkspaceDoubles = 3;
constexpr int kWorkspaceInts = 6;

// Workspaces of a whole batch: problem i owns entries [offsets[i], offsets[i+1])
// of each array; the arrays lie one after another in two buffers.
struct WorkspacePool {
  double* doubles;  // u | v | shortest, each `total` long
  int32_t* ints;    // path | col_of_row | row_of_col | remaining | row_visited | col_visited
  const int64_t* offsets;
  int64_t total;

  __device__ Workspace at(int64_t i) const {
    const int64_t o = offsets[i];
    return Workspace{doubles + o,        doubles + total + o,  doubles + 2 * total + o,
                     ints + o,           ints + total + o,     ints + 2 * total + o,
                     ints + 3 * total + o, ints + 4 * total + o, ints + 5 * total + o};
  }
};

// A candidate column of the augmenting-path search, summarising a set of
// scan positions exactly as AssignmentSolver::augmenting_path's sequential
// scan would choose among them: the lowest distance; among equal distances a
// free column, the one scanned last; among equal non-free ones, the one
// scanned first.
struct Candidate {
  double distance;
  int position;  // index into `remaining`, -1 for none
  bool free;
};

// The better of two candidates drawn from disjoint sets of positions. This is
// the minimum under a total order, so it is associative and commutative and
// a butterfly reduction leaves the same winner on every lane.
__device__ inline Candidate better(const Candidate& a, const Candidate& b) {
  if (b.distance < a.distance) return b;
  if (b.distance == a.distance) {
    if (a.free && b.free) return b.position > a.position ? b : a;
    if (b.free) return b;
    if (!a.free) return b.position < a.position ? b : a;
  }
  return a;
}

// AssignmentSolver::solve_wide and augmenting_path (hungarian.cpp) run by one
// full warp, for R <= C. Entry (r, c), 0-based, of the wide matrix is
// cost[r * rs + c * cs]. The same operations on the same values in the same
// order per entry, and the same choices (the scan order over `remaining` and
// its swap-removal are reproduced, lanes taking positions k = lane, lane + 32,
// ...), so the result equals the CPU's bit for bit, ties included.
// Synchronisation: every loop over rows, columns or positions is split across
// lanes, and each entry is written by at most one lane between two
// __syncwarp() calls; the sequential steps (taking a column out of
// `remaining`, flipping the path) run on lane 0 between barriers. Returns
// false (on every lane) when some row has no finite column left; on success
// col_of_row holds the assignment.
__device__ bool warp_solve_wide(const double* cost, int64_t rs, int64_t cs, int R, int C, const Workspace& w,
                                int lane) {
  const double inf = __longlong_as_double(0x7ff0000000000000LL);
  for (int r = lane; r < R; r += kWarp) {
    w.u[r] = 0.0;
    w.col_of_row[r] = -1;
  }
  for (int c = lane; c < C; c += kWarp) {
    w.v[c] = 0.0;
    w.path[c] = -1;
    w.row_of_col[c] = -1;
  }
  __syncwarp();
  for (int root = 0; root < R; ++root) {
    // ---- augmenting_path: Dijkstra from `root` to the nearest free column.
    for (int k = lane; k < C; k += kWarp) w.remaining[k] = C - k - 1;
    for (int r = lane; r < R; r += kWarp) w.row_visited[r] = 0;
    for (int c = lane; c < C; c += kWarp) {
      w.col_visited[c] = 0;
      w.shortest[c] = inf;
    }
    __syncwarp();
    int left = C;          // uniform
    double distance = 0.0;  // uniform
    int row = root;         // uniform
    int sink;
    for (;;) {
      if (lane == 0) w.row_visited[row] = 1;
      const double* cost_row = cost + int64_t(row) * rs;
      const double u_row = w.u[row];
      // This lane's positions in increasing order with the CPU's rule.
      Candidate mine{inf, -1, false};
      for (int k = lane; k < left; k += kWarp) {
        const int c = w.remaining[k];
        const double reduced = distance + cost_row[int64_t(c) * cs] - u_row - w.v[c];
        if (reduced < w.shortest[c]) {
          w.path[c] = row;
          w.shortest[c] = reduced;
        }
        const double s = w.shortest[c];
        const bool is_free = w.row_of_col[c] == -1;
        if (s < mine.distance || (s == mine.distance && is_free)) mine = Candidate{s, k, is_free};
      }
#pragma unroll
      for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
        Candidate other;
        other.distance = __shfl_xor_sync(kFullMask, mine.distance, offset);
        other.position = __shfl_xor_sync(kFullMask, mine.position, offset);
        other.free = __shfl_xor_sync(kFullMask, int(mine.free), offset) != 0;
        mine = better(mine, other);
      }
      if (mine.position < 0 || mine.distance == inf) return false;  // uniform
      distance = mine.distance;
      const int col = w.remaining[mine.position];
      const int next_row = w.row_of_col[col];  // row_of_col does not change during the search
      __syncwarp();  // every lane is done reading `remaining` and `shortest`
      if (lane == 0) {
        w.col_visited[col] = 1;
        w.remaining[mine.position] = w.remaining[left - 1];
      }
      --left;
      __syncwarp();  // the new `remaining` is visible to every lane
      if (next_row == -1) {
        sink = col;
        break;
      }
      row = next_row;
    }
    // ---- dual update for the rows and columns the search reached
    const double path_cost = distance;
    for (int r = lane; r < R; r += kWarp) {
      if (r == root) w.u[r] += path_cost;
      else if (w.row_visited[r]) w.u[r] += path_cost - w.shortest[w.col_of_row[r]];
    }
    for (int c = lane; c < C; c += kWarp)
      if (w.col_visited[c]) w.v[c] -= path_cost - w.shortest[c];
    __syncwarp();  // col_of_row read above before lane 0 rewrites it
    // ---- flip the path from the free column back to the root
    if (lane == 0) {
      for (int c = sink;;) {
        const int r = w.path[c];
        w.row_of_col[c] = r;
        const int previous = w.col_of_row[r];
        w.col_of_row[r] = c;
        c = previous;
        if (r == root) break;
      }
    }
    __syncwarp();  // u, v, row_of_col and col_of_row visible to every lane
  }
  return true;
}

// AssignmentSolver::solve's assignment for a rows x cols row-major matrix,
// tall matrices solved transposed. Fills row_to_col (rows entries, -1 for
// unassigned rows) and returns true, or returns false without touching it
// when no finite assignment exists. All lanes of the warp must call it; on
// return row_to_col is visible to every lane.
__device__ bool warp_solve(const double* cost, int rows, int cols, const Workspace& w, int32_t* row_to_col,
                           int lane) {
  if (rows == 0 || cols == 0) {
    for (int r = lane; r < rows; r += kWarp) row_to_col[r] = -1;
    __syncwarp();
    return true;
  }
  const bool tall = rows > cols;
  const int R = tall ? cols : rows, C = tall ? rows : cols;
  const int64_t rs = tall ? 1 : cols, cs = tall ? cols : 1;
  if (!warp_solve_wide(cost, rs, cs, R, C, w, lane)) return false;
  if (tall) {
    // Wide row r is original column r; its column is the original row.
    for (int r = lane; r < rows; r += kWarp) row_to_col[r] = -1;
    __syncwarp();
    for (int r = lane; r < R; r += kWarp) row_to_col[w.col_of_row[r]] = r;
  } else {
    for (int r = lane; r < rows; r += kWarp) row_to_col[r] = w.col_of_row[r];
  }
  __syncwarp();
  return true;
}

// ------------------------------------------------------ linear_sum_assignment

// Buffers that one lane writes and another reads within a kernel carry no
// __restrict__, so the compiler never routes their loads through the
// non-coherent read-only cache.

// One warp per problem. infeasible[i] is 1 when problem i has no finite
// assignment (its rows are then -1 and its total 0), else 0.
__global__ void assignment_kernel(const double* __restrict__ costs, const int32_t* __restrict__ rows,
                                  const int32_t* __restrict__ cols, const int64_t* __restrict__ offsets,
                                  const int64_t* __restrict__ row_offsets, int64_t size, WorkspacePool pool,
                                  int32_t* row_to_col, double* __restrict__ total,
                                  int32_t* __restrict__ infeasible) {
  const int lane = threadIdx.x & (kWarp - 1);
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t i = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; i < size; i += warps) {
    const int nr = rows[i], nc = cols[i];
    const double* cost = costs + offsets[i];
    int32_t* assignment = row_to_col + row_offsets[i];
    if (!warp_solve(cost, nr, nc, pool.at(i), assignment, lane)) {
      for (int r = lane; r < nr; r += kWarp) assignment[r] = -1;
      if (lane == 0) {
        total[i] = 0.0;
        infeasible[i] = 1;
      }
      continue;
    }
    if (lane == 0) {
      double sum = 0.0;  // in row order, as the CPU sums
      for (int r = 0; r < nr; ++r)
        if (assignment[r] >= 0) sum += cost[int64_t(r) * nc + assignment[r]];
      total[i] = sum;
      infeasible[i] = 0;
    }
  }
}

// -------------------------------------------------------------- spatial scores

// One warp per problem: mciou and cost matrices, the assignment of
// predictions to ground truth, and the per-ground-truth results, exactly as
// spatial_scores_cpu.
__global__ void spatial_kernel(const double* __restrict__ pred_boxes, const int64_t* __restrict__ pred_offsets,
                               const double* __restrict__ gt_boxes, const int64_t* __restrict__ gt_offsets,
                               const int64_t* __restrict__ matrix_offsets, const double* __restrict__ similarity,
                               double semantic_weight, double iou_weight, int64_t size, WorkspacePool pool,
                               double* mciou_all, double* cost_all, int32_t* pred_to_gt_all,
                               double* __restrict__ score, int32_t* gt_to_pred_all, double* gt_mciou_all) {
  const int lane = threadIdx.x & (kWarp - 1);
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t i = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; i < size; i += warps) {
    const int np = int(pred_offsets[i + 1] - pred_offsets[i]);
    const int ng = int(gt_offsets[i + 1] - gt_offsets[i]);
    int32_t* gt_to_pred = gt_to_pred_all + gt_offsets[i];
    double* gt_mciou = gt_mciou_all + gt_offsets[i];
    for (int g = lane; g < ng; g += kWarp) {
      gt_to_pred[g] = -1;
      gt_mciou[g] = 0.0;
    }
    if (ng == 0) {
      if (lane == 0) score[i] = np == 0 ? 1.0 : 0.0;
      continue;
    }
    if (np == 0) {  // every ground-truth box unmatched: score 0
      if (lane == 0) score[i] = 0.0;
      continue;
    }
    const double* pred = pred_boxes + 4 * pred_offsets[i];
    const double* gt = gt_boxes + 4 * gt_offsets[i];
    const double* sim = similarity + matrix_offsets[i];
    double* mciou = mciou_all + matrix_offsets[i];
    double* cost = cost_all + matrix_offsets[i];
    int32_t* pred_to_gt = pred_to_gt_all + pred_offsets[i];
    const int64_t entries = int64_t(np) * ng;
    for (int64_t k = lane; k < entries; k += kWarp) {
      const double m = reward_mciou(pred + 4 * (k / ng), gt + 4 * (k % ng));
      mciou[k] = m;
      // Explicitly rounded operations: the CPU build does not fuse this into
      // an fma, so the device must not either (ties must resolve alike).
      cost[k] = __dadd_rn(__dmul_rn(semantic_weight, __dsub_rn(1.0, sim[k])),
                          __dmul_rn(iou_weight, __dsub_rn(1.0, m)));
    }
    __syncwarp();  // the cost matrix is read by every lane
    // The CPU ignores an infeasible solve (possible only with non-finite
    // weights); here every ground-truth box then stays unmatched.
    const bool solved = warp_solve(cost, np, ng, pool.at(i), pred_to_gt, lane);
    if (solved) {
      for (int p = lane; p < np; p += kWarp) {
        const int32_t g = pred_to_gt[p];
        if (g < 0) continue;
        gt_to_pred[g] = p;
        gt_mciou[g] = mciou[int64_t(p) * ng + g];
      }
    }
    __syncwarp();  // gt_mciou complete before lane 0 sums it
    if (lane == 0) {
      double sum = 0.0;  // in ground-truth order, as the reference sums
      for (int g = 0; g < ng; ++g) sum += gt_mciou[g];
      score[i] = sum / double(ng);
    }
  }
}

// Per-problem workspace offsets for wide solves of rows x cols matrices.
std::vector<int64_t> workspace_offsets(int64_t size, const int64_t* rows, const int64_t* cols) {
  std::vector<int64_t> offsets(size + 1, 0);
  for (int64_t i = 0; i < size; ++i) {
    const int64_t k = (rows[i] == 0 || cols[i] == 0) ? 0 : std::max(rows[i], cols[i]) + 1;
    offsets[i + 1] = offsets[i] + k;
  }
  return offsets;
}

// Allocates the pool's buffers and uploads its offsets.
struct PoolBuffers {
  DeviceBuffer<double> doubles;
  DeviceBuffer<int32_t> ints;
  DeviceBuffer<int64_t> offsets;

  std::string create(const std::vector<int64_t>& host_offsets, WorkspacePool* pool) {
    const int64_t total = host_offsets.back();
    ST_CUDA_TRY(doubles.allocate(size_t(kWorkspaceDoubles * total)), "cudaMalloc (solver workspace)");
    ST_CUDA_TRY(ints.allocate(size_t(kWorkspaceInts * total)), "cudaMalloc (solver workspace)");
    ST_CUDA_TRY(offsets.allocate(host_offsets.size()), "cudaMalloc (solver workspace)");
    ST_CUDA_TRY(offsets.upload(host_offsets.data(), kStream), "cudaMemcpy (solver workspace)");
    *pool = WorkspacePool{doubles.get(), ints.get(), offsets.get(), total};
    return "";
  }
};

}  // namespace

std::string ciou_matrices(const BoxPairBatch& batch, double* out) {
  std::string error = prepare_device();
  if (!error.empty()) return error;
  if (batch.size <= 0) return "";
  const std::vector<int64_t> offsets = matrix_offsets(batch);
  const int64_t n = batch.size;

  DeviceBuffer<double> pred_boxes, gt_boxes, d_out;
  DeviceBuffer<int64_t> pred_offsets, gt_offsets, d_offsets;
  ST_CUDA_TRY(pred_boxes.allocate(size_t(4 * batch.pred_offsets[n])), "cudaMalloc (prediction boxes)");
  ST_CUDA_TRY(gt_boxes.allocate(size_t(4 * batch.gt_offsets[n])), "cudaMalloc (ground-truth boxes)");
  ST_CUDA_TRY(pred_offsets.allocate(size_t(n + 1)), "cudaMalloc (offsets)");
  ST_CUDA_TRY(gt_offsets.allocate(size_t(n + 1)), "cudaMalloc (offsets)");
  ST_CUDA_TRY(d_offsets.allocate(size_t(n + 1)), "cudaMalloc (offsets)");
  ST_CUDA_TRY(d_out.allocate(size_t(offsets[n])), "cudaMalloc (CIoU matrices)");
  ST_CUDA_TRY(pred_boxes.upload(batch.pred_boxes, kStream), "cudaMemcpy (prediction boxes)");
  ST_CUDA_TRY(gt_boxes.upload(batch.gt_boxes, kStream), "cudaMemcpy (ground-truth boxes)");
  ST_CUDA_TRY(pred_offsets.upload(batch.pred_offsets, kStream), "cudaMemcpy (offsets)");
  ST_CUDA_TRY(gt_offsets.upload(batch.gt_offsets, kStream), "cudaMemcpy (offsets)");
  ST_CUDA_TRY(d_offsets.upload(offsets.data(), kStream), "cudaMemcpy (offsets)");

  ciou_kernel<<<grid_for(n, 1), kCiouBlock, 0, kStream>>>(pred_boxes.get(), pred_offsets.get(), gt_boxes.get(),
                                                          gt_offsets.get(), d_offsets.get(), n, d_out.get());
  error = launch_and_wait("ciou_kernel");
  if (!error.empty()) return error;
  ST_CUDA_TRY(d_out.download(out, kStream), "cudaMemcpy (CIoU matrices)");
  ST_CUDA_TRY(cudaStreamSynchronize(kStream), "cudaStreamSynchronize");
  return "";
}

std::string linear_sum_assignment(const CostBatch& batch, int32_t* row_to_col, double* total) {
  std::string error = prepare_device();
  if (!error.empty()) return error;
  if (batch.size <= 0) return "";
  const int64_t n = batch.size;

  std::vector<int64_t> row_offsets(n + 1, 0), rows64(n), cols64(n);
  for (int64_t i = 0; i < n; ++i) {
    rows64[i] = batch.rows[i];
    cols64[i] = batch.cols[i];
    if (rows64[i] >= kMaxDimension || cols64[i] >= kMaxDimension)
      return problem_error(i, "cost matrix too large for the CUDA backend");
    row_offsets[i + 1] = row_offsets[i] + rows64[i];
  }
  const std::vector<int64_t> ws_offsets = workspace_offsets(n, rows64.data(), cols64.data());

  DeviceBuffer<double> costs, d_total;
  DeviceBuffer<int32_t> rows, cols, d_row_to_col, infeasible;
  DeviceBuffer<int64_t> offsets, d_row_offsets;
  PoolBuffers pool_buffers;
  WorkspacePool pool{};
  ST_CUDA_TRY(costs.allocate(size_t(batch.offsets[n])), "cudaMalloc (costs)");
  ST_CUDA_TRY(rows.allocate(size_t(n)), "cudaMalloc (shapes)");
  ST_CUDA_TRY(cols.allocate(size_t(n)), "cudaMalloc (shapes)");
  ST_CUDA_TRY(offsets.allocate(size_t(n + 1)), "cudaMalloc (offsets)");
  ST_CUDA_TRY(d_row_offsets.allocate(size_t(n + 1)), "cudaMalloc (offsets)");
  ST_CUDA_TRY(d_row_to_col.allocate(size_t(row_offsets[n])), "cudaMalloc (assignment)");
  ST_CUDA_TRY(d_total.allocate(size_t(n)), "cudaMalloc (totals)");
  ST_CUDA_TRY(infeasible.allocate(size_t(n)), "cudaMalloc (status)");
  error = pool_buffers.create(ws_offsets, &pool);
  if (!error.empty()) return error;
  ST_CUDA_TRY(costs.upload(batch.costs, kStream), "cudaMemcpy (costs)");
  ST_CUDA_TRY(rows.upload(batch.rows, kStream), "cudaMemcpy (shapes)");
  ST_CUDA_TRY(cols.upload(batch.cols, kStream), "cudaMemcpy (shapes)");
  ST_CUDA_TRY(offsets.upload(batch.offsets, kStream), "cudaMemcpy (offsets)");
  ST_CUDA_TRY(d_row_offsets.upload(row_offsets.data(), kStream), "cudaMemcpy (offsets)");

  assignment_kernel<<<grid_for(n, kWarpsPerBlock), kWarpBlock, 0, kStream>>>(
      costs.get(), rows.get(), cols.get(), offsets.get(), d_row_offsets.get(), n, pool, d_row_to_col.get(),
      d_total.get(), infeasible.get());
  error = launch_and_wait("assignment_kernel");
  if (!error.empty()) return error;

  std::vector<int32_t> status(n);
  ST_CUDA_TRY(d_row_to_col.download(row_to_col, kStream), "cudaMemcpy (assignment)");
  ST_CUDA_TRY(d_total.download(total, kStream), "cudaMemcpy (totals)");
  ST_CUDA_TRY(infeasible.download(status.data(), kStream), "cudaMemcpy (status)");
  ST_CUDA_TRY(cudaStreamSynchronize(kStream), "cudaStreamSynchronize");
  for (int64_t i = 0; i < n; ++i)
    if (status[i] != 0) return problem_error(i, "cost matrix is infeasible (no finite assignment)");
  return "";
}

std::string spatial_scores(const SpatialBatch& batch, SpatialResult* result) {
  std::string error = prepare_device();
  if (!error.empty()) return error;
  const BoxPairBatch& boxes = batch.boxes;
  const int64_t n = boxes.size < 0 ? 0 : boxes.size;
  const int64_t total_gts = boxes.gt_offsets[n];
  const int64_t total_preds = boxes.pred_offsets[n];
  result->score.assign(n, 0.0);
  result->gt_to_pred.assign(total_gts, -1);
  result->gt_mciou.assign(total_gts, 0.0);
  if (n == 0) return "";

  std::vector<int64_t> nps(n), ngs(n);
  for (int64_t i = 0; i < n; ++i) {
    nps[i] = boxes.preds(i);
    ngs[i] = boxes.gts(i);
    if (nps[i] >= kMaxDimension || ngs[i] >= kMaxDimension)
      return problem_error(i, "too many boxes for the CUDA backend");
  }
  const std::vector<int64_t> offsets = matrix_offsets(boxes);
  const std::vector<int64_t> ws_offsets = workspace_offsets(n, nps.data(), ngs.data());

  DeviceBuffer<double> pred_boxes, gt_boxes, similarity, mciou, cost, score, gt_mciou;
  DeviceBuffer<int64_t> pred_offsets, gt_offsets, d_offsets;
  DeviceBuffer<int32_t> pred_to_gt, gt_to_pred;
  PoolBuffers pool_buffers;
  WorkspacePool pool{};
  ST_CUDA_TRY(pred_boxes.allocate(size_t(4 * total_preds)), "cudaMalloc (prediction boxes)");
  ST_CUDA_TRY(gt_boxes.allocate(size_t(4 * total_gts)), "cudaMalloc (ground-truth boxes)");
  ST_CUDA_TRY(similarity.allocate(size_t(offsets[n])), "cudaMalloc (similarity)");
  ST_CUDA_TRY(mciou.allocate(size_t(offsets[n])), "cudaMalloc (mciou)");
  ST_CUDA_TRY(cost.allocate(size_t(offsets[n])), "cudaMalloc (costs)");
  ST_CUDA_TRY(score.allocate(size_t(n)), "cudaMalloc (scores)");
  ST_CUDA_TRY(gt_mciou.allocate(size_t(total_gts)), "cudaMalloc (gt mciou)");
  ST_CUDA_TRY(pred_offsets.allocate(size_t(n + 1)), "cudaMalloc (offsets)");
  ST_CUDA_TRY(gt_offsets.allocate(size_t(n + 1)), "cudaMalloc (offsets)");
  ST_CUDA_TRY(d_offsets.allocate(size_t(n + 1)), "cudaMalloc (offsets)");
  ST_CUDA_TRY(pred_to_gt.allocate(size_t(total_preds)), "cudaMalloc (assignment)");
  ST_CUDA_TRY(gt_to_pred.allocate(size_t(total_gts)), "cudaMalloc (gt to pred)");
  error = pool_buffers.create(ws_offsets, &pool);
  if (!error.empty()) return error;
  ST_CUDA_TRY(pred_boxes.upload(boxes.pred_boxes, kStream), "cudaMemcpy (prediction boxes)");
  ST_CUDA_TRY(gt_boxes.upload(boxes.gt_boxes, kStream), "cudaMemcpy (ground-truth boxes)");
  ST_CUDA_TRY(similarity.upload(batch.similarity, kStream), "cudaMemcpy (similarity)");
  ST_CUDA_TRY(pred_offsets.upload(boxes.pred_offsets, kStream), "cudaMemcpy (offsets)");
  ST_CUDA_TRY(gt_offsets.upload(boxes.gt_offsets, kStream), "cudaMemcpy (offsets)");
  ST_CUDA_TRY(d_offsets.upload(offsets.data(), kStream), "cudaMemcpy (offsets)");

  spatial_kernel<<<grid_for(n, kWarpsPerBlock), kWarpBlock, 0, kStream>>>(
      pred_boxes.get(), pred_offsets.get(), gt_boxes.get(), gt_offsets.get(), d_offsets.get(), similarity.get(),
      batch.semantic_weight, batch.iou_weight, n, pool, mciou.get(), cost.get(), pred_to_gt.get(), score.get(),
      gt_to_pred.get(), gt_mciou.get());
  error = launch_and_wait("spatial_kernel");
  if (!error.empty()) return error;
  ST_CUDA_TRY(score.download(result->score.data(), kStream), "cudaMemcpy (scores)");
  ST_CUDA_TRY(gt_to_pred.download(result->gt_to_pred.data(), kStream), "cudaMemcpy (gt to pred)");
  ST_CUDA_TRY(gt_mciou.download(result->gt_mciou.data(), kStream), "cudaMemcpy (gt mciou)");
  ST_CUDA_TRY(cudaStreamSynchronize(kStream), "cudaStreamSynchronize");
  return "";
}

}  // namespace st::match::cuda
