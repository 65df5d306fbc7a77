// Token log-probabilities over the vocabulary, forward and backward, without
// ever holding the [rows x vocab] logits: a tile of rows by a tile of the
// vocabulary is computed by cuBLAS, folded into per-row running statistics
// (max, sum of exp, sum of exp * z, the target's z: an online log-sum-exp)
// and overwritten by the next tile. The backward recomputes each tile's
// logits, turns them into d loss / d logit in place and feeds them to two
// products, so it holds no more than the forward.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/kernels.cuh"

namespace st::cuda {
namespace {

// 512 rows x 16384 vocabulary entries: 32 MiB of logits at a time.
constexpr int64_t kRowTile = 512, kVocabTile = 16384;
constexpr int kThreads = 256;

struct RowState {
  double max, sum, zsum, target;  // of z = logit / T: running max, sum exp(z - max), sum exp(z - max) z, target's z
};

// One block per row of the tile: the tile's max, then its sums relative to
// it (exp in float, sums in double), merged into the row's state.
__global__ void tile_statistics_kernel(const float* tile, int64_t rows, int64_t cols, int64_t v0,
                                       const int32_t* targets, float inv_t, bool first, RowState* state) {
  __shared__ float scratch_f[32];
  __shared__ double scratch_d[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = tile + r * cols;
    float top = -INFINITY;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) top = fmaxf(top, row[j] * inv_t);
    top = block_max(top, scratch_f, -INFINITY);
    double sum = 0.0, zsum = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float z = row[j] * inv_t;
      const double e = expf(z - top);
      sum += e;
      zsum += e * z;
    }
    sum = block_sum(sum, scratch_d);
    zsum = block_sum(zsum, scratch_d);
    if (threadIdx.x == 0) {
      RowState s = first ? RowState{-INFINITY, 0.0, 0.0, 0.0} : state[r];
      const double m = fmax(s.max, double(top));
      const double old_scale = s.max == -INFINITY ? 0.0 : exp(s.max - m);
      const double new_scale = exp(double(top) - m);
      s.sum = s.sum * old_scale + sum * new_scale;
      s.zsum = s.zsum * old_scale + zsum * new_scale;
      s.max = m;
      const int64_t t = targets[r];
      if (t >= v0 && t < v0 + cols) s.target = double(row[t - v0] * inv_t);
      state[r] = s;
    }
  }
}

// log p(target) = z_target - lse; entropy = lse - E[z]; lse kept for the backward.
__global__ void finish_kernel(const RowState* state, int64_t rows, float* out, float* entropy, double* lse) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    const RowState s = state[r];
    const double l = s.max + log(s.sum);
    if (out != nullptr) out[r] = float(s.target - l);
    if (entropy != nullptr) entropy[r] = float(l - s.zsum / s.sum);
    if (lse != nullptr) lse[r] = l;
  }
}

// In place: logit -> d loss / d logit = dlogp (onehot(target) - softmax) / T.
__global__ void dlogit_kernel(float* tile, int64_t rows, int64_t cols, int64_t v0, const int32_t* targets,
                              const float* dlogp, const double* lse, float inv_t) {
  const int64_t total = rows * cols;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols, j = idx % cols;
    const float p = expf(float(double(tile[idx] * inv_t) - lse[r]));  // the difference in double, exp in float
    const float onehot = v0 + j == targets[r] ? 1.0f : 0.0f;
    tile[idx] = dlogp[r] * (onehot - p) * inv_t;
  }
}

unsigned row_blocks(int64_t rows) { return unsigned(std::min<int64_t>(rows, int64_t(1) << 20)); }

void check_shapes(int64_t dim, int64_t vocab, float temperature, const char* op) {
  if (vocab <= 0 || dim <= 0)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": dim and vocab must be positive");
  if (!(temperature > 0.0f))
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": temperature must be positive");
}

// Runs the statistics of rows [r0, r0 + nr) over the whole vocabulary.
void row_tile_statistics(Gemm& gemm, const float* hidden, const float* head, int64_t r0, int64_t nr, int64_t dim,
                         int64_t vocab, const int32_t* targets, float inv_t, float* logits, RowState* state,
                         cudaStream_t s, const char* op) {
  for (int64_t v0 = 0; v0 < vocab; v0 += kVocabTile) {
    const int64_t nv = std::min(kVocabTile, vocab - v0);
    gemm.xwt(hidden + r0 * dim, head + v0 * dim, logits, nr, dim, nv, 0.0f);
    ST_LAUNCH(tile_statistics_kernel, row_blocks(nr), kThreads, 0, s)(logits, nr, nv, v0, targets + r0, inv_t,
                                                                      v0 == 0, state);
    check_launch(op);
  }
}

}  // namespace

void logprob_statistics(Gemm& gemm, const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                        const int32_t* targets, float inv_t, float* logp, float* entropy, double* lse, cudaStream_t s,
                        const char* op) {
  const int64_t row_tile = std::min(rows, kRowTile), vocab_tile = std::min(vocab, kVocabTile);
  Temp<float> logits(row_tile * vocab_tile, s, op);
  Temp<RowState> state(row_tile, s, op);
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const int64_t nr = std::min(kRowTile, rows - r0);
    row_tile_statistics(gemm, hidden, head, r0, nr, dim, vocab, targets, inv_t, logits.get(), state.get(), s, op);
    ST_LAUNCH(finish_kernel, grid_for(nr, kThreads), kThreads, 0, s)(
        state.get(), nr, logp ? logp + r0 : nullptr, entropy ? entropy + r0 : nullptr, lse ? lse + r0 : nullptr);
    check_launch(op);
  }
}

void logprob_backward(Gemm& gemm, const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                      const int32_t* targets, float inv_t, const float* dlogp, const double* lse, float* dhidden,
                      float* dhead, cudaStream_t s, const char* op) {
  const int64_t row_tile = std::min(rows, kRowTile), vocab_tile = std::min(vocab, kVocabTile);
  Temp<float> logits(row_tile * vocab_tile, s, op);
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const int64_t nr = std::min(kRowTile, rows - r0);
    for (int64_t v0 = 0; v0 < vocab; v0 += kVocabTile) {
      const int64_t nv = std::min(kVocabTile, vocab - v0);
      gemm.xwt(hidden + r0 * dim, head + v0 * dim, logits.get(), nr, dim, nv, 0.0f);
      ST_LAUNCH(dlogit_kernel, grid_for(nr * nv, kThreads), kThreads, 0, s)(
          logits.get(), nr, nv, v0, targets + r0, dlogp + r0, lse + r0, inv_t);
      check_launch(op);
      // The first vocabulary tile overwrites dhidden's rows, the rest add.
      if (dhidden != nullptr)
        gemm.dyw(logits.get(), head + v0 * dim, dhidden + r0 * dim, nr, nv, dim, v0 == 0 ? 0.0f : 1.0f);
      if (dhead != nullptr) gemm.dytx(logits.get(), hidden + r0 * dim, dhead + v0 * dim, nr, nv, dim, 1.0f);
    }
  }
}

void token_logprobs(Gemm& gemm, const float* hidden, const float* head, int64_t rows, int64_t dim, int64_t vocab,
                    const int32_t* host_targets, float temperature, float* host_out, float* host_entropy,
                    cudaStream_t s) {
  const char* op = "token_logprobs";
  if (rows <= 0) return;
  check_shapes(dim, vocab, temperature, op);
  const float inv_t = float(1.0 / double(temperature));
  Temp<int32_t> targets(rows, s, op);
  Temp<float> results(2 * rows, s, op);  // log-probs, then entropies
  copy_to_device(targets.get(), host_targets, rows, s, op);
  logprob_statistics(gemm, hidden, head, rows, dim, vocab, targets.get(), inv_t, results.get(), results.get() + rows,
                     nullptr, s, op);
  check(cudaMemcpyAsync(host_out, results.get(), size_t(rows) * sizeof(float), cudaMemcpyDeviceToHost, s), op);
  if (host_entropy != nullptr)
    check(cudaMemcpyAsync(host_entropy, results.get() + rows, size_t(rows) * sizeof(float), cudaMemcpyDeviceToHost,
                          s),
          op);
  check(cudaStreamSynchronize(s), op);
}

void token_logprobs_backward(Gemm& gemm, const float* hidden, const float* head, int64_t rows, int64_t dim,
                             int64_t vocab, const int32_t* host_targets, float temperature, const float* host_dlogp,
                             float* dhidden, float* dhead, cudaStream_t s) {
  const char* op = "token_logprobs_backward";
  if (rows <= 0) return;
  check_shapes(dim, vocab, temperature, op);
  const float inv_t = float(1.0 / double(temperature));
  Temp<int32_t> targets(rows, s, op);
  Temp<float> dlogp(rows, s, op);
  Temp<double> lse(rows, s, op);
  copy_to_device(targets.get(), host_targets, rows, s, op);
  copy_to_device(dlogp.get(), host_dlogp, rows, s, op);
  logprob_statistics(gemm, hidden, head, rows, dim, vocab, targets.get(), inv_t, nullptr, nullptr, lse.get(), s, op);
  logprob_backward(gemm, hidden, head, rows, dim, vocab, targets.get(), inv_t, dlogp.get(), lse.get(), dhidden, dhead,
                   s, op);
}

void check_logprob_shapes(int64_t dim, int64_t vocab, float temperature, const char* op) {
  check_shapes(dim, vocab, temperature, op);
}

}  // namespace st::cuda
