#pragma once
// Attention on the tensor cores over bf16 storage: the flash-attention
// forward and backward (flash_attention.cu) and the paged decode with the
// keys split across blocks (decode_attention.cu), over the packed
// variable-length sequences and slot pools of AttentionArgs (backend.h).
//
// Both run mma.sync m16n8k16 with bf16 inputs and fp32 accumulation
// (common.cuh); softmax statistics, the log-sum-exp and the gradients of the
// backward are fp32. Every head dim up to 256 runs: the tiles are padded
// with zeros to the next multiple of 16 (the mma's k), which adds nothing to
// a dot product; 80 and 128 (Qwen2.5-VL's vision and text heads) need no
// padding.
//
// This header also holds what the three kernels share on the device: the
// sequences and work items, the bf16 tile loads into shared memory and the
// fragment loads from it (plain 32-bit loads of bf16 pairs; ldmatrix would
// save instructions, not change a result).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/common.cuh"

namespace st::cuda {

// AttentionArgs with bf16 tensors (same layouts: q and out [rows, heads,
// head_dim], pools [slots, kv_heads, head_dim]).
struct Bf16AttentionArgs {
  const __nv_bfloat16* q = nullptr;
  const __nv_bfloat16* k_pool = nullptr;
  const __nv_bfloat16* v_pool = nullptr;
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  const std::vector<AttentionSequence>* sequences = nullptr;
};

constexpr int64_t kFlashMaxHeadDim = 256;

// out (bf16) and, when not null, each (row, head)'s log-sum-exp of the
// scaled scores (fp32, -inf for a row that sees no key; such rows get zeros).
void flash_attention_forward(const Bf16AttentionArgs& a, __nv_bfloat16* out, float* lse, cudaStream_t s);

// The Backend contract's backward, recomputing the forward for its output
// and log-sum-exp: dq (fp32, overwritten), dk_pool and dv_pool (fp32,
// accumulated; either may be null).
void flash_attention_backward(const Bf16AttentionArgs& a, const __nv_bfloat16* dout, float* dq, float* dk_pool,
                              float* dv_pool, cudaStream_t s);

// One decode step (or a few query rows per sequence: q_len * heads / kv_heads
// <= 16 rows per kv head), the keys of each sequence split into `splits`
// ranges run by separate blocks and combined by a second pass. splits <= 0
// picks a count from the device's multiprocessors and the longest sequence.
void decode_attention(const Bf16AttentionArgs& a, __nv_bfloat16* out, int splits, cudaStream_t s);
// Whether decode_attention takes these sequences (every sequence's rows of a
// kv head fit one 16-row tile).
bool decode_attention_fits(const Bf16AttentionArgs& a);

// The Backend's attention and attention_backward for bf16 storage: q, the
// pools, out, dout and dq bf16; decode_attention when every sequence's rows
// fit its tile, else the flash forward. The backward sums dq, dk and dv in
// fp32 and rounds each once into its bf16 array (dq overwritten on the rows
// the sequences cover, the pools accumulated).
void attention_forward_bf16(const AttentionArgs& a, cudaStream_t s);
void attention_backward_bf16(const AttentionArgs& a, ConstDevicePtr dout, DevicePtr dq, DevicePtr dk_pool,
                             DevicePtr dv_pool, cudaStream_t s);

namespace flash {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMmaRows = 16;  // rows of one warp's tile (the mma's m)

// Row stride of a bf16 tile of Dp columns in shared memory: 16-byte rows for
// the vector copies, and 8 extra elements so that the 8 rows one fragment
// load touches start in different banks.
template <int Dp>
constexpr int kRowStride = Dp + 8;

struct Sequence {
  int64_t q_offset, k_start;  // first query row; first entry of its slots in the packed slot list
  int32_t q_len, k_len, causal;
};

// A block's work: rows [start, ...) of one sequence and kv head (query rows
// are query * group + head-in-group; keys in the dk/dv kernel), and for the
// decode the key range `split` of `splits`.
struct Item {
  int32_t seq, kv_head, start, split;
};

struct Params {
  const __nv_bfloat16* q;
  const __nv_bfloat16* k_pool;
  const __nv_bfloat16* v_pool;
  int64_t heads, kv_heads, hd, group;
  float scale;
  const Sequence* seqs;
  const Item* items;
  const int32_t* slots;
};

// The sequences, their slots and the work lists on the device for one call.
class Plan {
 public:
  // rows_per_item: query rows per item (0: no query items); key_rows: keys
  // per item of the key list (0: none); splits: decode key ranges per item.
  Plan(const Bf16AttentionArgs& a, int rows_per_item, int key_rows, int splits, cudaStream_t stream, const char* op);
  Params query_params() const;
  Params key_params() const;
  int64_t query_items() const { return query_items_; }
  int64_t key_items() const { return key_items_; }
  int64_t rows() const { return rows_; }  // query rows the sequences cover
  int32_t max_k_len() const { return max_k_len_; }

 private:
  std::unique_ptr<Temp<Sequence>> seqs_;
  std::unique_ptr<Temp<int32_t>> slots_;
  std::unique_ptr<Temp<Item>> items_;
  Params params_{};
  int64_t query_items_ = 0, key_items_ = 0, rows_ = 0;
  int32_t max_k_len_ = 0;
};

// The head dim padded to what the kernels are compiled for.
int padded_head_dim(int64_t hd);

// Calls f(std::integral_constant<int, Dp>) for the padded head dim.
template <class F>
void with_padded_dim(int64_t hd, F&& f) {
  switch (padded_head_dim(hd)) {
    case 16: f(std::integral_constant<int, 16>()); break;
    case 32: f(std::integral_constant<int, 32>()); break;
    case 64: f(std::integral_constant<int, 64>()); break;
    case 80: f(std::integral_constant<int, 80>()); break;
    case 96: f(std::integral_constant<int, 96>()); break;
    case 128: f(std::integral_constant<int, 128>()); break;
    case 192: f(std::integral_constant<int, 192>()); break;
    default: f(std::integral_constant<int, 256>()); break;
  }
}

// Launches with the dynamic shared memory raised past 48 KiB when needed.
template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, size_t shared, cudaStream_t s, const char* op, Args... args) {
  if (grid.x == 0 || grid.y == 0) return;
  if (shared > 48 * 1024) check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)), op);
  ST_LAUNCH(kernel, grid, kThreads, shared, s)(args...);
  check_launch(op);
}

// ------------------------------------------------------------ device side

// Keys query qi sees (may be <= 0 when a causal sequence has fewer keys than queries).
__device__ inline int64_t visible_keys(const Sequence& s, int64_t qi) {
  return s.causal ? int64_t(s.k_len) - s.q_len + qi + 1 : s.k_len;
}

// Query row `row` of a sequence (query * group + head-in-group) as a
// (row, head) entry of q/out ([rows, heads, hd]).
__device__ inline int64_t row_head(const Params& p, const Sequence& s, int32_t kv_head, int64_t row) {
  return (s.q_offset + row / p.group) * p.heads + kv_head * p.group + row % p.group;
}

// Copies `hd` bf16 from src (null: zeros) to dst and zero-fills up to Dp, 8
// at a time when both are 16-byte aligned, by `lanes` threads from `lane`.
template <int Dp>
__device__ inline void copy_row(__nv_bfloat16* dst, const __nv_bfloat16* src, int64_t hd, int lane, int lanes) {
  const bool vector = src != nullptr && hd % 8 == 0 && (reinterpret_cast<uintptr_t>(src) % 16) == 0;
  for (int e = lane * 8; e < Dp; e += lanes * 8) {
    if (vector && e + 8 <= hd) {
      *reinterpret_cast<uint4*>(dst + e) = *reinterpret_cast<const uint4*>(src + e);
    } else {
      for (int i = 0; i < 8; ++i) dst[e + i] = src != nullptr && e + i < hd ? src[e + i] : __float2bfloat16(0.0f);
    }
  }
}

// Rows [start, start + count) of a [count][ld] tile from x (laid out as q);
// zeros past the sequence's rows. Every thread of the block takes part.
template <int Dp>
__device__ inline void load_query_rows(const Params& p, const Sequence& s, int32_t kv_head, int64_t start, int count,
                                       const __nv_bfloat16* x, __nv_bfloat16* tile, int ld) {
  const int64_t rows_total = int64_t(s.q_len) * p.group;
  constexpr int kLanes = Dp / 8;  // threads per row
  for (int idx = threadIdx.x; idx < count * kLanes; idx += blockDim.x) {
    const int r = idx / kLanes;
    const int64_t row = start + r;
    copy_row<Dp>(tile + r * ld, row < rows_total ? x + row_head(p, s, kv_head, row) * p.hd : nullptr, p.hd,
                 idx % kLanes, kLanes);
  }
}

// The transpose of such rows: tile[d][r] (for B fragments that pair rows).
template <int Dp>
__device__ inline void load_query_rows_transposed(const Params& p, const Sequence& s, int32_t kv_head, int64_t start,
                                                  int count, const __nv_bfloat16* x, __nv_bfloat16* tile, int ld) {
  const int64_t rows_total = int64_t(s.q_len) * p.group;
  for (int idx = threadIdx.x; idx < count * Dp; idx += blockDim.x) {
    const int r = idx % count, d = idx / count;
    const int64_t row = start + r;
    tile[d * ld + r] =
        row < rows_total && d < p.hd ? x[row_head(p, s, kv_head, row) * p.hd + d] : __float2bfloat16(0.0f);
  }
}

// The pool entry of key j of a sequence.
__device__ inline int64_t key_entry(const Params& p, const Sequence& s, int32_t kv_head, int64_t j) {
  return (int64_t(p.slots[s.k_start + j]) * p.kv_heads + kv_head) * p.hd;
}

// Keys [start, start + count) of a sequence from a pool as rows tile[c][d]
// (zeros from `end`), by threads [first, first + threads) of the block.
template <int Dp>
__device__ inline void load_key_rows(const Params& p, const Sequence& s, int32_t kv_head, int64_t start, int64_t end,
                                     int count, const __nv_bfloat16* pool, __nv_bfloat16* tile, int ld, int first,
                                     int threads) {
  constexpr int kLanes = Dp / 8;
  for (int idx = int(threadIdx.x) - first; idx < count * kLanes; idx += threads) {
    const int c = idx / kLanes;
    const int64_t j = start + c;
    copy_row<Dp>(tile + c * ld, j < end ? pool + key_entry(p, s, kv_head, j) : nullptr, p.hd, idx % kLanes, kLanes);
  }
}

// The same keys transposed, tile[d][c].
template <int Dp>
__device__ inline void load_key_columns(const Params& p, const Sequence& s, int32_t kv_head, int64_t start,
                                        int64_t end, int count, const __nv_bfloat16* pool, __nv_bfloat16* tile, int ld,
                                        int first, int threads) {
  for (int idx = int(threadIdx.x) - first; idx < count * Dp; idx += threads) {
    const int c = idx % count, d = idx / count;
    const int64_t j = start + c;
    tile[d * ld + c] = j < end && d < p.hd ? pool[key_entry(p, s, kv_head, j) + d] : __float2bfloat16(0.0f);
  }
}

// The A fragment of rows [row0, row0 + 16) and columns [k0, k0 + 16) of a
// row-major bf16 tile (common.cuh has the layout).
__device__ inline void load_a(uint32_t (&a)[4], const __nv_bfloat16* tile, int ld, int row0, int k0) {
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane % 4;
  const __nv_bfloat16* top = tile + (row0 + g) * ld + k0 + 2 * t;
  const __nv_bfloat16* bottom = top + 8 * ld;
  a[0] = load_bf16x2(top);
  a[1] = load_bf16x2(bottom);
  a[2] = load_bf16x2(top + 8);
  a[3] = load_bf16x2(bottom + 8);
}

// The B fragment (k x n = 16 x 8) whose column n is row n0 + n of `tile`
// over columns [k0, k0 + 16): B = tile[n0.., k0..]^T, i.e. the k index runs
// along a row of the tile, so each pair is two adjacent bf16.
__device__ inline void load_b(uint32_t (&b)[2], const __nv_bfloat16* tile, int ld, int n0, int k0) {
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane % 4;
  const __nv_bfloat16* p = tile + (n0 + g) * ld + k0 + 2 * t;
  b[0] = load_bf16x2(p);
  b[1] = load_bf16x2(p + 8);
}

// Accumulator fragments of two neighbouring 16 x 8 tiles as the A fragment
// of their 16 x 16 (bf16) product operand.
__device__ inline void accumulators_as_a(uint32_t (&a)[4], const float (&left)[4], const float (&right)[4]) {
  a[0] = pack_bf16x2(left[0], left[1]);
  a[1] = pack_bf16x2(left[2], left[3]);
  a[2] = pack_bf16x2(right[0], right[1]);
  a[3] = pack_bf16x2(right[2], right[3]);
}

// Max and sum over the 4 lanes that share an accumulator row (t = lane % 4).
__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ inline float quad_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

// One step of the online softmax for a warp's 16 query rows over a tile of
// kKeys keys (rows of sk, columns of svt), keys [k0, k0 + kKeys) of the
// sequence: S = Q K^T on the tensor cores, the running max m, the per-lane
// partial sum l (its 4 lanes add up at the end) and O rescaled, then
// O += bf16(P) V. `visible[i]` is how many keys row g (i = 0) and g + 8 (i = 1)
// of the warp's tile see. Every lane of the warp must call it.
template <int Dp, int kKeys>
__device__ inline void online_softmax_step(const uint32_t (&qf)[Dp / 16][4], const __nv_bfloat16* sk, int ldk,
                                           const __nv_bfloat16* svt, int ldv, int64_t k0, const int64_t (&visible)[2],
                                           float scale, float (&m)[2], float (&l)[2], float (&o)[Dp / 8][4]) {
  const int t = threadIdx.x % 4;
  float sacc[kKeys / 8][4];
#pragma unroll
  for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) sacc[nt][i] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < Dp / 16; ++ks) {
      uint32_t b[2];
      load_b(b, sk, ldk, nt * 8, ks * 16);
      mma_bf16_m16n8k16(sacc[nt], qf[ks], b, sacc[nt]);
    }
  }
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t key = k0 + nt * 8 + 2 * t + (i & 1);
      const float v = key < visible[i >> 1] ? sacc[nt][i] * scale : -INFINITY;
      sacc[nt][i] = v;
      tile_max[i >> 1] = fmaxf(tile_max[i >> 1], v);
    }
  float alpha[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float m_new = fmaxf(m[r], quad_max(tile_max[r]));
    // Nothing visible yet: keep everything at zero rather than exp(-inf + inf).
    alpha[r] = m_new == -INFINITY ? 1.0f : expf(m[r] - m_new);
    m[r] = m_new;
    l[r] *= alpha[r];
  }
#pragma unroll
  for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float prob = sacc[nt][i] == -INFINITY ? 0.0f : expf(sacc[nt][i] - m[i >> 1]);
      sacc[nt][i] = prob;
      l[i >> 1] += prob;
    }
#pragma unroll
  for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) o[nt][i] *= alpha[i >> 1];
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    uint32_t a[4];
    accumulators_as_a(a, sacc[2 * kk], sacc[2 * kk + 1]);
#pragma unroll
    for (int nt = 0; nt < Dp / 8; ++nt) {
      uint32_t b[2];
      load_b(b, svt, ldv, nt * 8, kk * 16);
      mma_bf16_m16n8k16(o[nt], a, b, o[nt]);
    }
  }
}

}  // namespace flash
}  // namespace st::cuda
