// Token log-probabilities over the vocabulary, forward and backward, without
// ever holding the [rows x vocab] logits: a tile of rows by a tile of the
// vocabulary is computed by cuBLAS, folded into per-row running statistics
// (max, sum of exp, sum of exp * z, the target's z: an online log-sum-exp)
// and overwritten by the next tile. The backward recomputes each tile's
// logits, turns them into d loss / d logit in place and feeds them to two
// products, so it holds no more than the forward.
//
// Precision: hidden and head are in the storage type; the logits tile is
// fp32 whatever it is (cuBLAS writes the fp32 accumulators unrounded), so
// the statistics and log-probs are fp32/double from bf16 inputs. In the
// backward the d loss / d logit tile is rounded to the storage type to feed
// the two products (a product takes one input type), and with bf16 storage
// dhidden is summed over the vocabulary tiles in an fp32 buffer and rounded
// once at the end; dhead is an fp32 gradient.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

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

// logit -> d loss / d logit = dlogp (onehot(target) - softmax) / T, in the
// output type T (in place when T is float: out may be tile).
template <class T>
__global__ void dlogit_kernel(const float* tile, T* out, int64_t rows, int64_t cols, int64_t v0,
                              const int32_t* targets, const float* dlogp, const double* lse, float inv_t) {
  const int64_t total = rows * cols;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols, j = idx % cols;
    const float p = expf(float(double(tile[idx] * inv_t) - lse[r]));  // the difference in double, exp in float
    const float onehot = v0 + j == targets[r] ? 1.0f : 0.0f;
    out[idx] = from_f32<T>(dlogp[r] * (onehot - p) * inv_t);
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
void row_tile_statistics(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t r0, int64_t nr, int64_t dim,
                         int64_t vocab, const int32_t* targets, float inv_t, float* logits, RowState* state,
                         cudaStream_t s, const char* op) {
  for (int64_t v0 = 0; v0 < vocab; v0 += kVocabTile) {
    const int64_t nv = std::min(kVocabTile, vocab - v0);
    gemm.xwt(hidden + r0 * dim, head + v0 * dim, DevicePtr(logits), nr, dim, nv, 0.0f);
    ST_LAUNCH(tile_statistics_kernel, row_blocks(nr), kThreads, 0, s)(logits, nr, nv, v0, targets + r0, inv_t,
                                                                      v0 == 0, state);
    check_launch(op);
  }
}

}  // namespace

void token_logprobs(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim, int64_t vocab,
                    const int32_t* host_targets, float temperature, float* host_out, float* host_entropy,
                    cudaStream_t s) {
  const char* op = "token_logprobs";
  if (rows <= 0) return;
  check_shapes(dim, vocab, temperature, op);
  const float inv_t = float(1.0 / double(temperature));
  const int64_t row_tile = std::min(rows, kRowTile), vocab_tile = std::min(vocab, kVocabTile);
  Temp<int32_t> targets(rows, s, op);
  Temp<float> results(2 * rows, s, op);  // log-probs, then entropies
  Temp<float> logits(row_tile * vocab_tile, s, op);
  Temp<RowState> state(row_tile, s, op);
  copy_to_device(targets.get(), host_targets, rows, s, op);
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const int64_t nr = std::min(kRowTile, rows - r0);
    row_tile_statistics(gemm, hidden, head, r0, nr, dim, vocab, targets.get(), inv_t, logits.get(), state.get(), s,
                        op);
    ST_LAUNCH(finish_kernel, grid_for(nr, kThreads), kThreads, 0, s)(state.get(), nr, results.get() + r0,
                                                                     results.get() + rows + r0, nullptr);
    check_launch(op);
  }
  check(cudaMemcpyAsync(host_out, results.get(), size_t(rows) * sizeof(float), cudaMemcpyDeviceToHost, s), op);
  if (host_entropy != nullptr)
    check(cudaMemcpyAsync(host_entropy, results.get() + rows, size_t(rows) * sizeof(float), cudaMemcpyDeviceToHost,
                          s),
          op);
  check(cudaStreamSynchronize(s), op);
}

void token_logprobs_backward(Gemm& gemm, ConstDevicePtr hidden, ConstDevicePtr head, int64_t rows, int64_t dim,
                             int64_t vocab, const int32_t* host_targets, float temperature, const float* host_dlogp,
                             DevicePtr dhidden, DevicePtr dhead, cudaStream_t s) {
  const char* op = "token_logprobs_backward";
  if (rows <= 0) return;
  check_shapes(dim, vocab, temperature, op);
  typed<float>(dhead, op, "dhead");
  with_storage(hidden.type(), [&](auto t) {
    using T = decltype(t);
    constexpr bool kFloat = std::is_same_v<T, float>;
    typed<T>(dhidden, op, "dhidden");
    const float inv_t = float(1.0 / double(temperature));
    const int64_t row_tile = std::min(rows, kRowTile), vocab_tile = std::min(vocab, kVocabTile);
    Temp<int32_t> targets(rows, s, op);
    Temp<float> dlogp(rows, s, op);
    Temp<float> logits(row_tile * vocab_tile, s, op);
    // bf16 storage: the rounded dlogit tile, and dhidden's fp32 sum over tiles.
    Temp<T> dlogits(kFloat ? 0 : row_tile * vocab_tile, s, op);
    Temp<float> dhidden_sum(kFloat ? 0 : row_tile * dim, s, op);
    Temp<RowState> state(row_tile, s, op);
    Temp<double> lse(row_tile, s, op);
    copy_to_device(targets.get(), host_targets, rows, s, op);
    copy_to_device(dlogp.get(), host_dlogp, rows, s, op);
    T* dlogit_tile = kFloat ? reinterpret_cast<T*>(logits.get()) : dlogits.get();
    for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
      const int64_t nr = std::min(kRowTile, rows - r0);
      row_tile_statistics(gemm, hidden, head, r0, nr, dim, vocab, targets.get(), inv_t, logits.get(), state.get(), s,
                          op);
      ST_LAUNCH(finish_kernel, grid_for(nr, kThreads), kThreads, 0, s)(state.get(), nr, nullptr, nullptr, lse.get());
      check_launch(op);
      const DevicePtr dhidden_rows = kFloat ? dhidden + r0 * dim : DevicePtr(dhidden_sum.get());
      for (int64_t v0 = 0; v0 < vocab; v0 += kVocabTile) {
        const int64_t nv = std::min(kVocabTile, vocab - v0);
        gemm.xwt(hidden + r0 * dim, head + v0 * dim, DevicePtr(logits.get()), nr, dim, nv, 0.0f);
        ST_LAUNCH(dlogit_kernel<T>, grid_for(nr * nv, kThreads), kThreads, 0, s)(
            logits.get(), dlogit_tile, nr, nv, v0, targets.get() + r0, dlogp.get() + r0, lse.get(), inv_t);
        check_launch(op);
        const ConstDevicePtr dl(dlogit_tile, storage_of<T>());
        // The first vocabulary tile overwrites dhidden's rows, the rest add.
        if (dhidden != nullptr) gemm.dyw(dl, head + v0 * dim, dhidden_rows, nr, nv, dim, v0 == 0 ? 0.0f : 1.0f);
        if (dhead != nullptr) gemm.dytx(dl, hidden + r0 * dim, dhead + v0 * dim, nr, nv, dim, 1.0f);
      }
      if (!kFloat && dhidden != nullptr) convert(dhidden + r0 * dim, dhidden_rows, nr * dim, s);
    }
  });
}

}  // namespace st::cuda
