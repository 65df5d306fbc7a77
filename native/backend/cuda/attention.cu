// Attention on the GPU, forward and backward, over packed variable-length
// sequences whose keys and values live in slot pools (the paged KV cache, or
// a packed training batch), with causal or full masks and grouped-query heads.
//
// Tiled with an online softmax, as in FlashAttention: a block holds a tile of
// 16 query rows in shared memory and streams the keys through in tiles of 32,
// so no [queries x keys] matrix is ever stored. The query rows of a block are
// (query, head) pairs of one kv head: the heads of a GQA group share every
// key tile they load, and a decode step (one query per sequence) still fills
// a block with its group's heads. fp32 on CUDA cores: the fp32 storage path
// (bf16 storage goes to the tensor-core kernels of flash_attention.cu and
// decode_attention.cu). Templates on the storage type T of q, the pools and the
// outputs: tiles are converted to fp32 as they are loaded into shared
// memory, and outputs rounded once as they are stored. dk/dv of bf16 pools
// are summed in fp32 buffers and added to the pools at the end.
//
// The backward recomputes: a forward pass gives each row's log-sum-exp and
// output, D = dout . out per row, then one kernel owns dq per query tile and
// another owns dk/dv per key tile, each recomputing the probabilities of its
// tile, so neither needs atomics on its own output. dk/dv are added to the
// pools with atomicAdd, which is exact-once per element unless two sequences
// share a slot.
#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/flash_attention.cuh"
#include "backend/cuda/kernels.cuh"

namespace st::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kRowTile = 16;                            // rows a block owns (query rows, or keys in dk/dv)
constexpr int kColTile = 32;                            // columns streamed per step (keys, or query rows in dk/dv)
constexpr int kLanesPerRow = kThreads / kRowTile;       // 8 threads share a row, within one warp
constexpr int kColsPerLane = kColTile / kLanesPerRow;   // 4 score columns per thread
constexpr int64_t kMaxHeadDim = 256;
constexpr size_t kDefaultSharedLimit = 48 * 1024;

static_assert(kThreads % 32 == 0 && 32 % kLanesPerRow == 0, "a row's lanes must sit in one warp");

struct Sequence {
  int64_t q_offset, k_start;  // first query row; first entry of its slots in the packed slot list
  int32_t q_len, k_len, causal;
};

// A block's work: rows [start, start + kRowTile) of one sequence and kv head
// (query rows are query * group + head-in-group; in dk/dv, keys).
struct Item {
  int32_t seq, kv_head, start;
};

template <class T>
struct Params {
  const T* q;
  const T* k_pool;
  const T* v_pool;
  int64_t heads, kv_heads, hd, group;
  float scale;
  const Sequence* seqs;
  const Item* items;
  const int32_t* slots;
};

// Keys query qi sees (may be <= 0 when a causal sequence has fewer keys than queries).
__device__ inline int64_t visible_keys(const Sequence& s, int64_t qi) {
  return s.causal ? int64_t(s.k_len) - s.q_len + qi + 1 : s.k_len;
}

__device__ inline float row_max(float v) {
  for (int o = kLanesPerRow / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__device__ inline float row_sum(float v) {
  for (int o = kLanesPerRow / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

// acc[i] += sum_c weights[c] rows[c, d] for this lane's dimensions
// d = lane + 8 i: the weights are read once each, the accumulators stay in
// registers.
template <int kDims>
__device__ inline void accumulate(float (&acc)[kDims], const float* weights, const float* rows, int64_t ld, int lane,
                                  int64_t hd) {
  for (int c = 0; c < kColTile; ++c) {
    const float w = weights[c];
    const float* row = rows + c * ld;
#pragma unroll
    for (int i = 0; i < kDims; ++i) {
      const int64_t d = lane + i * kLanesPerRow;
      if (d < hd) acc[i] += w * row[d];
    }
  }
}

// Query row `row` of a tile (query * group + head-in-group) as an offset into
// q/out ([rows, heads, hd]) and into per-(row, head) arrays.
template <class T>
__device__ inline int64_t row_head(const Params<T>& p, const Sequence& s, int32_t kv_head, int64_t row) {
  return (s.q_offset + row / p.group) * p.heads + kv_head * p.group + row % p.group;
}

// Where a thread of a query-tile block stands (forward and dq kernels): its
// row of the tile, whether that row exists, how many keys it sees, and how
// many keys the tile as a whole must stream.
struct QueryTile {
  Item it;
  Sequence s;
  int r, lane;
  int64_t row;
  bool valid;
  int64_t key_end, my_keys;

  template <class T>
  __device__ QueryTile(const Params<T>& p) : it(p.items[blockIdx.x]), s(p.seqs[it.seq]) {
    const int64_t rows_total = int64_t(s.q_len) * p.group;
    r = threadIdx.x / kLanesPerRow;
    lane = threadIdx.x % kLanesPerRow;
    row = it.start + r;
    valid = row < rows_total;
    const int64_t last_row = min(rows_total, int64_t(it.start) + kRowTile) - 1;
    key_end = min(int64_t(s.k_len), visible_keys(s, last_row / p.group));
    my_keys = valid ? min(int64_t(s.k_len), visible_keys(s, row / p.group)) : 0;
  }
};

// Rows [start, start + count) of a [count, ld] shared tile from x (laid out as
// q), times `factor`; zeros past the sequence's rows.
template <class T, class X>
__device__ inline void load_rows(const Params<T>& p, const Sequence& s, int32_t kv_head, int64_t start, int count,
                                 const X* x, float factor, float* tile, int64_t ld) {
  const int64_t rows_total = int64_t(s.q_len) * p.group;
  for (int64_t idx = threadIdx.x; idx < count * p.hd; idx += blockDim.x) {
    const int64_t r = idx / p.hd, d = idx % p.hd, row = start + r;
    tile[r * ld + d] = row < rows_total ? to_f32(x[row_head(p, s, kv_head, row) * p.hd + d]) * factor : 0.0f;
  }
}

// Keys and values [start, min(end, start + count)) of a sequence from the pools.
template <class T>
__device__ inline void load_keys(const Params<T>& p, const Sequence& s, int32_t kv_head, int64_t start, int64_t end,
                                 int count, float* keys, float* values, int64_t ld) {
  for (int64_t idx = threadIdx.x; idx < count * p.hd; idx += blockDim.x) {
    const int64_t c = idx / p.hd, d = idx % p.hd, j = start + c;
    float k = 0.0f, v = 0.0f;
    if (j < end) {
      const int64_t at = (int64_t(p.slots[s.k_start + j]) * p.kv_heads + kv_head) * p.hd + d;
      k = to_f32(p.k_pool[at]);
      v = to_f32(p.v_pool[at]);
    }
    keys[c * ld + d] = k;
    values[c * ld + d] = v;
  }
}

// ---------------------------------------------------------------- forward

// O: the output's type (the storage type, or fp32 for the backward's recomputation).
template <class T, class O, int kDims>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(Params<T> p, O* out, float* lse) {
  ST_DYNAMIC_SHARED(float, smem);
  const int64_t hd = p.hd, ld = hd + 1;  // odd stride: the lanes of a row hit distinct banks
  float* sq = smem;                      // [kRowTile][ld] queries, pre-scaled
  float* sk = sq + kRowTile * ld;        // [kColTile][ld]
  float* sv = sk + kColTile * ld;        // [kColTile][ld]
  float* sp = sv + kColTile * ld;        // [kRowTile][kColTile + 1] probabilities of the step
  const QueryTile t(p);
  const Item& it = t.it;
  const Sequence& s = t.s;
  const int r = t.r, lane = t.lane;
  const int64_t row = t.row, key_end = t.key_end, my_keys = t.my_keys;
  const bool valid = t.valid;

  load_rows(p, s, it.kv_head, it.start, kRowTile, p.q, p.scale, sq, ld);
  float m = -INFINITY, l = 0.0f, acc[kDims];
#pragma unroll
  for (int i = 0; i < kDims; ++i) acc[i] = 0.0f;

  for (int64_t k0 = 0; k0 < key_end; k0 += kColTile) {
    __syncthreads();  // the previous step is done with sk, sv, sp (and sq is loaded)
    load_keys(p, s, it.kv_head, k0, key_end, kColTile, sk, sv, ld);
    __syncthreads();
    float score[kColsPerLane], tile_max = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < kColsPerLane; ++jj) {
      const int c = lane + jj * kLanesPerRow;
      score[jj] = k0 + c < my_keys ? dot(sq + r * ld, sk + c * ld, hd) : -INFINITY;
      tile_max = fmaxf(tile_max, score[jj]);
    }
    const float m_new = fmaxf(m, row_max(tile_max));
    // Nothing visible yet: keep everything at zero rather than exp(-inf + inf).
    const float alpha = m_new == -INFINITY ? 1.0f : expf(m - m_new);
    float sum = 0.0f;
#pragma unroll
    for (int jj = 0; jj < kColsPerLane; ++jj) {
      const float prob = score[jj] == -INFINITY ? 0.0f : expf(score[jj] - m_new);
      sp[r * (kColTile + 1) + lane + jj * kLanesPerRow] = prob;
      sum += prob;
    }
    l = l * alpha + row_sum(sum);
    m = m_new;
    __syncwarp();  // the row's probabilities, written by its 8 lanes, are read by all of them
#pragma unroll
    for (int i = 0; i < kDims; ++i) acc[i] *= alpha;
    accumulate<kDims>(acc, sp + r * (kColTile + 1), sv, ld, lane, hd);
  }
  if (!valid) return;
  // A row that sees no key gets zeros, as on the CPU.
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  const int64_t at = row_head(p, s, it.kv_head, row);
#pragma unroll
  for (int i = 0; i < kDims; ++i) {
    const int64_t d = lane + i * kLanesPerRow;
    if (d < hd) out[at * hd + d] = from_f32<O>(acc[i] * inv);
  }
  if (lse != nullptr && lane == 0) lse[at] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// ------------------------------------------------------------- backward

// delta[row, head] = dout . out over the head dimension, one warp each.
template <class T>
__global__ void attention_delta_kernel(const T* dout, const float* out, int64_t entries, int64_t hd, float* delta) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t e = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; e < entries; e += warps) {
    float s = 0.0f;
    for (int64_t d = threadIdx.x % 32; d < hd; d += 32) s += to_f32(dout[e * hd + d]) * out[e * hd + d];
    s = warp_sum(s);
    if (threadIdx.x % 32 == 0) delta[e] = s;
  }
}

// dq of a tile of query rows: sum over visible keys of p (dp - D) k, scaled.
template <class T, int kDims>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(Params<T> p, const T* dout, const float* lse,
                                                                 const float* delta, T* dq) {
  ST_DYNAMIC_SHARED(float, smem);
  const int64_t hd = p.hd, ld = hd + 1;
  float* sq = smem;                 // [kRowTile][ld] queries, pre-scaled
  float* sdo = sq + kRowTile * ld;  // [kRowTile][ld] output gradients
  float* sk = sdo + kRowTile * ld;  // [kColTile][ld]
  float* sv = sk + kColTile * ld;   // [kColTile][ld]
  float* sds = sv + kColTile * ld;  // [kRowTile][kColTile + 1]
  const QueryTile t(p);
  const Item& it = t.it;
  const Sequence& s = t.s;
  const int r = t.r, lane = t.lane;
  const int64_t row = t.row, key_end = t.key_end, my_keys = t.my_keys;
  const bool valid = t.valid;
  const int64_t at = valid ? row_head(p, s, it.kv_head, row) : 0;
  const float row_lse = valid ? lse[at] : 0.0f, row_delta = valid ? delta[at] : 0.0f;

  load_rows(p, s, it.kv_head, it.start, kRowTile, p.q, p.scale, sq, ld);
  load_rows(p, s, it.kv_head, it.start, kRowTile, dout, 1.0f, sdo, ld);
  float acc[kDims];
#pragma unroll
  for (int i = 0; i < kDims; ++i) acc[i] = 0.0f;

  for (int64_t k0 = 0; k0 < key_end; k0 += kColTile) {
    __syncthreads();
    load_keys(p, s, it.kv_head, k0, key_end, kColTile, sk, sv, ld);
    __syncthreads();
#pragma unroll
    for (int jj = 0; jj < kColsPerLane; ++jj) {
      const int c = lane + jj * kLanesPerRow;
      float ds = 0.0f;
      if (k0 + c < my_keys) {
        const float prob = expf(dot(sq + r * ld, sk + c * ld, hd) - row_lse);
        ds = prob * (dot(sdo + r * ld, sv + c * ld, hd) - row_delta);
      }
      sds[r * (kColTile + 1) + c] = ds;
    }
    __syncwarp();
    accumulate<kDims>(acc, sds + r * (kColTile + 1), sk, ld, lane, hd);
  }
  if (!valid) return;
#pragma unroll
  for (int i = 0; i < kDims; ++i) {
    const int64_t d = lane + i * kLanesPerRow;
    if (d < hd) dq[at * hd + d] = from_f32<T>(acc[i] * p.scale);
  }
}

// dk, dv of a tile of keys: over every query row that sees them,
// dv += p dout and dk += p (dp - D) q (q pre-scaled, which carries the scale).
// dk_pool and dv_pool are fp32: the pools themselves (fp32 storage) or the
// fp32 sums of bf16 ones.
template <class T, int kDims>
__global__ void __launch_bounds__(kThreads) attention_dkdv_kernel(Params<T> p, const T* dout, const float* lse,
                                                                   const float* delta, float* dk_pool,
                                                                   float* dv_pool) {
  ST_DYNAMIC_SHARED(float, smem);
  const int64_t hd = p.hd, ld = hd + 1;
  float* sk = smem;                        // [kRowTile][ld] the block's keys
  float* sv = sk + kRowTile * ld;          // [kRowTile][ld]
  float* sq = sv + kRowTile * ld;          // [kColTile][ld] query rows, pre-scaled
  float* sdo = sq + kColTile * ld;         // [kColTile][ld]
  float* sp = sdo + kColTile * ld;         // [kRowTile][kColTile + 1]
  float* sds = sp + kRowTile * (kColTile + 1);
  float* slse = sds + kRowTile * (kColTile + 1);  // [kColTile]
  float* sdelta = slse + kColTile;                 // [kColTile]
  const Item it = p.items[blockIdx.x];
  const Sequence s = p.seqs[it.seq];
  const int64_t rows_total = int64_t(s.q_len) * p.group;
  const int r = threadIdx.x / kLanesPerRow, lane = threadIdx.x % kLanesPerRow;
  const int64_t key = int64_t(it.start) + r;
  const bool valid = key < s.k_len;
  // The first query that sees the tile's first key (causal: key <= k_len - q_len + qi).
  const int64_t first_query = s.causal ? max(int64_t(0), int64_t(it.start) - (int64_t(s.k_len) - s.q_len)) : 0;

  load_keys(p, s, it.kv_head, it.start, s.k_len, kRowTile, sk, sv, ld);
  float dk[kDims], dv[kDims];
#pragma unroll
  for (int i = 0; i < kDims; ++i) dk[i] = dv[i] = 0.0f;

  for (int64_t row0 = first_query * p.group; row0 < rows_total; row0 += kColTile) {
    __syncthreads();
    load_rows(p, s, it.kv_head, row0, kColTile, p.q, p.scale, sq, ld);
    load_rows(p, s, it.kv_head, row0, kColTile, dout, 1.0f, sdo, ld);
    for (int c = threadIdx.x; c < kColTile; c += blockDim.x) {
      const int64_t row = row0 + c;
      slse[c] = row < rows_total ? lse[row_head(p, s, it.kv_head, row)] : 0.0f;
      sdelta[c] = row < rows_total ? delta[row_head(p, s, it.kv_head, row)] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int jj = 0; jj < kColsPerLane; ++jj) {
      const int c = lane + jj * kLanesPerRow;
      const int64_t row = row0 + c;
      float prob = 0.0f, ds = 0.0f;
      if (valid && row < rows_total && key < visible_keys(s, row / p.group)) {
        prob = expf(dot(sq + c * ld, sk + r * ld, hd) - slse[c]);
        ds = prob * (dot(sdo + c * ld, sv + r * ld, hd) - sdelta[c]);
      }
      sp[r * (kColTile + 1) + c] = prob;
      sds[r * (kColTile + 1) + c] = ds;
    }
    __syncwarp();
    accumulate<kDims>(dv, sp + r * (kColTile + 1), sdo, ld, lane, hd);
    accumulate<kDims>(dk, sds + r * (kColTile + 1), sq, ld, lane, hd);
  }
  if (!valid) return;
  const int64_t at = (int64_t(p.slots[s.k_start + key]) * p.kv_heads + it.kv_head) * hd;
#pragma unroll
  for (int i = 0; i < kDims; ++i) {
    const int64_t d = lane + i * kLanesPerRow;
    if (d < hd) {
      if (dk_pool != nullptr) atomicAdd(dk_pool + at + d, dk[i]);
      if (dv_pool != nullptr) atomicAdd(dv_pool + at + d, dv[i]);
    }
  }
}

// ------------------------------------------------------------------ host

// The sequences, their slots and the block work lists, on the device for
// the duration of one call.
template <class T>
class Plan {
 public:
  Plan(const AttentionArgs& a, bool key_items, cudaStream_t stream, const char* op) {
    if (a.heads <= 0 || a.kv_heads <= 0 || a.heads % a.kv_heads != 0)
      throw std::invalid_argument(std::string("CUDA backend: ") + op + ": heads (" + std::to_string(a.heads) +
                                  ") must be a positive multiple of kv_heads (" + std::to_string(a.kv_heads) + ")");
    if (a.head_dim <= 0 || a.head_dim > kMaxHeadDim)
      throw std::invalid_argument(std::string("CUDA backend: ") + op + ": head_dim " + std::to_string(a.head_dim) +
                                  " is outside the supported 1.." + std::to_string(kMaxHeadDim));
    const int64_t group = a.heads / a.kv_heads;
    std::vector<Sequence> seqs;
    std::vector<int32_t> slots;
    std::vector<Item> query_work, key_work;
    for (const AttentionSequence& as : a.sequences) {
      if (as.q_len <= 0) continue;
      if (as.q_len > INT32_MAX / group || as.k_len > INT32_MAX)
        throw std::invalid_argument(std::string("CUDA backend: ") + op + ": a sequence is too long");
      Sequence s{as.q_offset, int64_t(slots.size()), int32_t(as.q_len), int32_t(as.k_len), as.causal ? 1 : 0};
      slots.insert(slots.end(), as.key_slots, as.key_slots + as.k_len);
      for (int64_t j = 0; j < as.k_len; ++j) pool_slots_ = std::max<int64_t>(pool_slots_, int64_t(as.key_slots[j]) + 1);
      const int32_t index = int32_t(seqs.size());
      seqs.push_back(s);
      rows_ = std::max(rows_, as.q_offset + as.q_len);
      for (int32_t h = 0; h < a.kv_heads; ++h) {
        for (int64_t start = 0; start < as.q_len * group; start += kRowTile)
          query_work.push_back({index, h, int32_t(start)});
        if (key_items)
          for (int64_t start = 0; start < as.k_len; start += kRowTile) key_work.push_back({index, h, int32_t(start)});
      }
    }
    query_items_ = int64_t(query_work.size());
    key_items_ = int64_t(key_work.size());
    seqs_ = std::make_unique<Temp<Sequence>>(int64_t(seqs.size()), stream, op);
    slots_ = std::make_unique<Temp<int32_t>>(int64_t(slots.size()), stream, op);
    items_ = std::make_unique<Temp<Item>>(query_items_ + key_items_, stream, op);
    copy_to_device(seqs_->get(), seqs.data(), int64_t(seqs.size()), stream, op);
    copy_to_device(slots_->get(), slots.data(), int64_t(slots.size()), stream, op);
    copy_to_device(items_->get(), query_work.data(), query_items_, stream, op);
    copy_to_device(items_->get() + query_items_, key_work.data(), key_items_, stream, op);
    params_ = Params<T>{typed<T>(a.q, op, "q"), typed<T>(a.k_pool, op, "k_pool"), typed<T>(a.v_pool, op, "v_pool"),
                        a.heads, a.kv_heads, a.head_dim, group, a.scale, seqs_->get(), items_->get(), slots_->get()};
  }

  Params<T> query_params() const { return params_; }
  Params<T> key_params() const {
    Params<T> p = params_;
    p.items = items_->get() + query_items_;
    return p;
  }
  int64_t query_items() const { return query_items_; }
  int64_t key_items() const { return key_items_; }
  int64_t rows() const { return rows_; }  // query rows the sequences cover
  int64_t pool_slots() const { return pool_slots_; }  // 1 + the largest key slot

 private:
  std::unique_ptr<Temp<Sequence>> seqs_;
  std::unique_ptr<Temp<int32_t>> slots_;
  std::unique_ptr<Temp<Item>> items_;
  Params<T> params_{};
  int64_t query_items_ = 0, key_items_ = 0, rows_ = 0, pool_slots_ = 0;
};

size_t forward_shared(int64_t hd) {
  return size_t((kRowTile + 2 * kColTile) * (hd + 1) + kRowTile * (kColTile + 1)) * sizeof(float);
}
size_t dq_shared(int64_t hd) {
  return size_t((2 * kRowTile + 2 * kColTile) * (hd + 1) + kRowTile * (kColTile + 1)) * sizeof(float);
}
size_t dkdv_shared(int64_t hd) {
  return size_t((2 * kRowTile + 2 * kColTile) * (hd + 1) + 2 * kRowTile * (kColTile + 1) + 2 * kColTile) *
         sizeof(float);
}

template <class Kernel, class... Args>
void launch(Kernel kernel, int64_t blocks, size_t shared, cudaStream_t s, const char* op, Args... args) {
  if (blocks <= 0) return;
  if (shared > kDefaultSharedLimit)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)), op);
  ST_LAUNCH(kernel, unsigned(blocks), kThreads, shared, s)(args...);
  check_launch(op);
}

// Calls f with the per-lane dimension count the head size needs.
template <class F>
void with_dims(int64_t hd, F&& f) {
  if (hd <= 8 * kLanesPerRow) f(std::integral_constant<int, 8>());
  else if (hd <= 16 * kLanesPerRow) f(std::integral_constant<int, 16>());
  else f(std::integral_constant<int, 32>());
}

template <class T, class O>
void run_forward(const Plan<T>& plan, int64_t hd, O* out, float* lse, cudaStream_t s, const char* op) {
  with_dims(hd, [&](auto dims) {
    launch(attention_forward_kernel<T, O, decltype(dims)::value>, plan.query_items(), forward_shared(hd), s, op,
           plan.query_params(), out, lse);
  });
}

// pool[i] += sum[i], rounded once into the pool's type.
template <class T>
__global__ void add_sums_kernel(T* pool, const float* sum, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    pool[i] = from_f32<T>(to_f32(pool[i]) + sum[i]);
}

template <class T>
void backward(const AttentionArgs& a, ConstDevicePtr dout_ptr, DevicePtr dq_ptr, DevicePtr dk_ptr, DevicePtr dv_ptr,
              cudaStream_t s) {
  const char* op = "attention_backward";
  constexpr bool kFloat = std::is_same_v<T, float>;
  const Plan<T> plan(a, true, s, op);
  const int64_t entries = plan.rows() * a.heads, hd = a.head_dim;
  if (entries == 0) return;
  const T* dout = typed<T>(dout_ptr, op, "dout");
  T* dq = typed<T>(dq_ptr, op, "dq");
  T* dk_pool = typed<T>(dk_ptr, op, "dk_pool");
  T* dv_pool = typed<T>(dv_ptr, op, "dv_pool");
  // The forward again, for each row's output (fp32) and log-sum-exp.
  Temp<float> out(entries * hd, s, op), lse(entries, s, op), delta(entries, s, op);
  check(cudaMemsetAsync(out.get(), 0, size_t(entries * hd) * sizeof(float), s), op);
  check(cudaMemsetAsync(lse.get(), 0, size_t(entries) * sizeof(float), s), op);
  run_forward(plan, hd, out.get(), lse.get(), s, op);
  ST_LAUNCH(attention_delta_kernel<T>, grid_for(entries * 32, 256), 256, 0, s)(dout, out.get(), entries, hd,
                                                                             delta.get());
  check_launch(op);
  // fp32 pools take the sums directly; bf16 ones through fp32 buffers.
  const int64_t pool_values = kFloat ? 0 : plan.pool_slots() * a.kv_heads * hd;
  Temp<float> dk_sum(dk_pool != nullptr ? pool_values : 0, s, op), dv_sum(dv_pool != nullptr ? pool_values : 0, s, op);
  float* dk_into = kFloat ? reinterpret_cast<float*>(dk_pool) : dk_sum.get();
  float* dv_into = kFloat ? reinterpret_cast<float*>(dv_pool) : dv_sum.get();
  if (!kFloat) {
    if (dk_pool != nullptr) check(cudaMemsetAsync(dk_into, 0, size_t(pool_values) * sizeof(float), s), op);
    if (dv_pool != nullptr) check(cudaMemsetAsync(dv_into, 0, size_t(pool_values) * sizeof(float), s), op);
  }
  with_dims(hd, [&](auto dims) {
    constexpr int kDims = decltype(dims)::value;
    if (dq != nullptr)
      launch(attention_dq_kernel<T, kDims>, plan.query_items(), dq_shared(hd), s, op, plan.query_params(), dout,
             static_cast<const float*>(lse.get()), static_cast<const float*>(delta.get()), dq);
    if (dk_pool != nullptr || dv_pool != nullptr)
      launch(attention_dkdv_kernel<T, kDims>, plan.key_items(), dkdv_shared(hd), s, op, plan.key_params(), dout,
             static_cast<const float*>(lse.get()), static_cast<const float*>(delta.get()), dk_into, dv_into);
  });
  if (!kFloat && pool_values > 0) {
    for (auto [pool, sum] : {std::pair<T*, float*>{dk_pool, dk_into}, std::pair<T*, float*>{dv_pool, dv_into}}) {
      if (pool == nullptr) continue;
      ST_LAUNCH(add_sums_kernel<T>, grid_for(pool_values, 256), 256, 0, s)(pool, sum, pool_values);
      check_launch(op);
    }
  }
}

}  // namespace

namespace {

constexpr int kPagedThreads = 128;  // keys scored per pass; each thread owns head dims d, d + 128

// The paged decode for fp32 storage: one block per (row, head), the keys in
// passes of 128 scored into shared memory, then an online-softmax update of
// each thread's two output dims.
__global__ void paged_decode_fp32_kernel(const float* q, const float* k_pool, const float* v_pool, float* out,
                                         const int32_t* table, const int32_t* lengths, int64_t stride, int64_t heads,
                                         int64_t kv_heads, int64_t hd, float scale) {
  ST_DYNAMIC_SHARED(float, paged_shared);
  float* sq = paged_shared;        // [hd]
  float* scores = sq + hd;         // [kPagedThreads]
  const int64_t r = blockIdx.x, h = blockIdx.y, kvh = h / (heads / kv_heads);
  const int tid = threadIdx.x;
  for (int64_t d = tid; d < hd; d += kPagedThreads) sq[d] = q[(r * heads + h) * hd + d];
  __syncthreads();
  const int64_t n = lengths[r];
  const int32_t* slots = table + r * stride;
  float m = -INFINITY, l = 0.0f, acc[2] = {0.0f, 0.0f};
  for (int64_t k0 = 0; k0 < n; k0 += kPagedThreads) {
    const int64_t count = min(int64_t(kPagedThreads), n - k0);
    if (tid < count) {
      const float* key = k_pool + (int64_t(slots[k0 + tid]) * kv_heads + kvh) * hd;
      float dot = 0.0f;
      for (int64_t d = 0; d < hd; ++d) dot += sq[d] * key[d];
      scores[tid] = dot * scale;
    }
    __syncthreads();
    float top = m;
    for (int64_t j = 0; j < count; ++j) top = fmaxf(top, scores[j]);
    const float keep = m == -INFINITY ? 0.0f : expf(m - top);
    l *= keep;
    acc[0] *= keep;
    acc[1] *= keep;
    for (int64_t j = 0; j < count; ++j) {
      const float p = expf(scores[j] - top);
      l += p;
      const float* value = v_pool + (int64_t(slots[k0 + j]) * kv_heads + kvh) * hd;
      for (int e = 0; e < 2; ++e) {
        const int64_t d = tid + int64_t(e) * kPagedThreads;
        if (d < hd) acc[e] += p * value[d];
      }
    }
    m = top;
    __syncthreads();  // scores are rewritten by the next pass
  }
  for (int e = 0; e < 2; ++e) {
    const int64_t d = tid + int64_t(e) * kPagedThreads;
    if (d < hd) out[(r * heads + h) * hd + d] = l > 0.0f ? acc[e] / l : 0.0f;
  }
}

}  // namespace

void paged_decode_attention_fp32(const PagedDecodeArgs& a, cudaStream_t s) {
  const char* op = "paged_decode_attention";
  if (a.rows <= 0) return;
  if (a.head_dim > 2 * kPagedThreads)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": head_dim " + std::to_string(a.head_dim) +
                                " is above " + std::to_string(2 * kPagedThreads) + " (fp32 storage)");
  const size_t shared = size_t(a.head_dim + kPagedThreads) * sizeof(float);
  ST_LAUNCH(paged_decode_fp32_kernel, dim3(unsigned(a.rows), unsigned(a.heads)), kPagedThreads, shared, s)(
      typed<float>(a.q, op, "q"), typed<float>(a.k_pool, op, "k_pool"), typed<float>(a.v_pool, op, "v_pool"),
      typed<float>(a.out, op, "out"), a.slot_table.i32("paged_decode_attention: slot_table"),
      a.key_lengths.i32("paged_decode_attention: key_lengths"), a.table_stride, a.heads, a.kv_heads, a.head_dim,
      a.scale);
  check_launch(op);
}

void attention_forward(const AttentionArgs& a, cudaStream_t s) {
  if (a.sequences.empty()) return;
  if (a.q.type() == Storage::BF16) return attention_forward_bf16(a, s);  // tensor cores (flash_attention.cu)
  with_storage(a.q.type(), [&](auto t) {
    using T = decltype(t);
    const Plan<T> plan(a, false, s, "attention");
    run_forward(plan, a.head_dim, typed<T>(a.out, "attention", "out"), nullptr, s, "attention");
  });
}

void attention_backward(const AttentionArgs& a, ConstDevicePtr dout, DevicePtr dq, DevicePtr dk_pool, DevicePtr dv_pool,
                        cudaStream_t s) {
  if (a.sequences.empty()) return;
  if (a.q.type() == Storage::BF16) return attention_backward_bf16(a, dout, dq, dk_pool, dv_pool, s);
  with_storage(a.q.type(), [&](auto t) { backward<decltype(t)>(a, dout, dq, dk_pool, dv_pool, s); });
}

}  // namespace st::cuda
