// Flash attention on the tensor cores over bf16 tensors (flash_attention.cuh
// says what it takes): the forward with an online softmax and the backward
// that recomputes the probabilities from the forward's log-sum-exp, neither
// ever holding a [queries x keys] matrix.
//
// Forward: a block owns 64 query rows ((query, head) pairs of one kv head,
// so the heads of a GQA group share every key tile) as 4 warps of 16; each
// warp keeps its Q fragments in registers and streams 32-key tiles of K and
// V through shared memory: S = Q K^T and O += P V are mma.sync m16n8k16 with
// fp32 accumulators, P rounded to bf16 for the second product.
//
// Backward (FlashAttention-2's split): D = rowsum(dO * O) per row, then one
// kernel owns dq per 64-row query tile (S and dP = dO V^T recomputed per key
// tile, dQ += dS K) and another owns dk, dv per 64-key tile (S^T and dP^T per
// 32-row query tile, dV += P^T dO, dK += dS^T Q), each writing its own output
// without atomics; dk and dv are added to the fp32 pools with atomicAdd,
// exact-once per element unless two sequences share a slot.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/flash_attention.cuh"
#include "backend/cuda/kernels.cuh"

namespace st::cuda {
namespace flash {

int padded_head_dim(int64_t hd) {
  for (int dp : {16, 32, 64, 80, 96, 128, 192, 256})
    if (hd <= dp) return dp;
  return 256;
}

Plan::Plan(const Bf16AttentionArgs& a, int rows_per_item, int key_rows, int splits, cudaStream_t stream,
           const char* op) {
  if (a.heads <= 0 || a.kv_heads <= 0 || a.heads % a.kv_heads != 0)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": heads (" + std::to_string(a.heads) +
                                ") must be a positive multiple of kv_heads (" + std::to_string(a.kv_heads) + ")");
  if (a.head_dim <= 0 || a.head_dim > kFlashMaxHeadDim)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": head_dim " + std::to_string(a.head_dim) +
                                " is outside the supported 1.." + std::to_string(kFlashMaxHeadDim));
  const int64_t group = a.heads / a.kv_heads;
  std::vector<Sequence> seqs;
  std::vector<int32_t> slots;
  std::vector<Item> query_work, key_work;
  for (const AttentionSequence& as : *a.sequences) {
    if (as.q_len <= 0) continue;
    if (as.q_len > INT32_MAX / group || as.k_len > INT32_MAX)
      throw std::invalid_argument(std::string("CUDA backend: ") + op + ": a sequence is too long");
    const int32_t index = int32_t(seqs.size());
    seqs.push_back(Sequence{as.q_offset, int64_t(slots.size()), int32_t(as.q_len), int32_t(as.k_len), as.causal ? 1 : 0});
    slots.insert(slots.end(), as.key_slots, as.key_slots + as.k_len);
    rows_ = std::max(rows_, as.q_offset + as.q_len);
    max_k_len_ = std::max(max_k_len_, int32_t(as.k_len));
    for (int32_t h = 0; h < a.kv_heads; ++h) {
      if (rows_per_item > 0)
        for (int64_t start = 0; start < as.q_len * group; start += rows_per_item)
          for (int split = 0; split < std::max(splits, 1); ++split) query_work.push_back({index, h, int32_t(start), split});
      if (key_rows > 0)
        for (int64_t start = 0; start < as.k_len; start += key_rows) key_work.push_back({index, h, int32_t(start), 0});
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
  params_ = Params{a.q, a.k_pool, a.v_pool, a.heads, a.kv_heads, a.head_dim, group, a.scale,
                   seqs_->get(), items_->get(), slots_->get()};
}

Params Plan::query_params() const { return params_; }

Params Plan::key_params() const {
  Params p = params_;
  p.items = items_->get() + query_items_;
  return p;
}

}  // namespace flash

namespace {

using namespace flash;

constexpr int kQueryTile = kWarps * kMmaRows;  // query rows of a forward or dq block
constexpr int kKeyTile = 32;                   // keys streamed per step
constexpr int kKeyBlock = kWarps * kMmaRows;   // keys of a dk/dv block
constexpr int kRowStep = 32;                   // query rows streamed per dk/dv step

constexpr int kColumnStride = kKeyTile + 8;  // transposed tiles of 32 keys or rows

template <int Dp>
size_t forward_shared() {
  return size_t((kQueryTile + kKeyTile) * kRowStride<Dp> + Dp * kColumnStride) * sizeof(__nv_bfloat16);
}
template <int Dp>
size_t dq_shared() {
  return size_t((2 * kQueryTile + 2 * kKeyTile) * kRowStride<Dp> + Dp * kColumnStride) * sizeof(__nv_bfloat16);
}
template <int Dp>
size_t dkdv_shared() {
  return size_t((2 * kKeyBlock + 2 * kRowStep) * kRowStride<Dp> + 2 * Dp * kColumnStride) * sizeof(__nv_bfloat16) +
         2 * kRowStep * sizeof(float);
}

// This lane's two accumulator rows (g and g + 8 of its warp's 16) as rows
// of the sequence, and how many keys each sees (0 past the sequence).
struct LaneRows {
  int64_t row[2], visible[2];
  __device__ LaneRows(const Params& p, const Sequence& s, int64_t warp_start) {
    const int64_t rows_total = int64_t(s.q_len) * p.group;
    const int g = (threadIdx.x % 32) >> 2;
    for (int r = 0; r < 2; ++r) {
      row[r] = warp_start + g + 8 * r;
      visible[r] = row[r] < rows_total ? min(int64_t(s.k_len), visible_keys(s, row[r] / p.group)) : 0;
    }
  }
};

// Keys the query rows [start, start + count) need between them.
__device__ inline int64_t keys_needed(const Params& p, const Sequence& s, int64_t start, int count) {
  const int64_t rows_total = int64_t(s.q_len) * p.group;
  const int64_t last_row = min(rows_total, start + count) - 1;
  return max(int64_t(0), min(int64_t(s.k_len), visible_keys(s, last_row / p.group)));
}

// ---------------------------------------------------------------- forward

template <int Dp>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(Params p, __nv_bfloat16* out, float* lse) {
  constexpr int ldk = kRowStride<Dp>, ldv = kColumnStride;
  ST_DYNAMIC_SHARED(uint4, smem);
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem);  // [kQueryTile][ldk]
  __nv_bfloat16* sk = sq + kQueryTile * ldk;                    // [kKeyTile][ldk]
  __nv_bfloat16* svt = sk + kKeyTile * ldk;                     // [Dp][ldv]: V transposed
  const Item it = p.items[blockIdx.x];
  const Sequence s = p.seqs[it.seq];
  const int warp = threadIdx.x / 32, t = threadIdx.x % 4;
  const LaneRows lr(p, s, int64_t(it.start) + warp * kMmaRows);
  const int64_t key_end = keys_needed(p, s, it.start, kQueryTile);

  load_query_rows<Dp>(p, s, it.kv_head, it.start, kQueryTile, p.q, sq, ldk);
  __syncthreads();
  uint32_t qf[Dp / 16][4];
#pragma unroll
  for (int ks = 0; ks < Dp / 16; ++ks) load_a(qf[ks], sq, ldk, warp * kMmaRows, ks * 16);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, o[Dp / 8][4];
#pragma unroll
  for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) o[nt][i] = 0.0f;

  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyTile) {
    __syncthreads();  // the previous step is done with sk and svt
    load_key_rows<Dp>(p, s, it.kv_head, k0, key_end, kKeyTile, p.k_pool, sk, ldk, 0, kThreads);
    load_key_columns<Dp>(p, s, it.kv_head, k0, key_end, kKeyTile, p.v_pool, svt, ldv, 0, kThreads);
    __syncthreads();
    online_softmax_step<Dp, kKeyTile>(qf, sk, ldk, svt, ldv, k0, lr.visible, p.scale, m, l, o);
  }
  const int64_t rows_total = int64_t(s.q_len) * p.group;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float total = quad_sum(l[r]);
    if (lr.row[r] >= rows_total) continue;
    // A row that sees no key gets zeros, as on the CPU.
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    const int64_t at = row_head(p, s, it.kv_head, lr.row[r]);
#pragma unroll
    for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t d = nt * 8 + 2 * t + j;
        if (d < p.hd) out[at * p.hd + d] = __float2bfloat16(o[nt][2 * r + j] * inv);
      }
    if (lse != nullptr && t == 0) lse[at] = total > 0.0f ? m[r] + logf(total) : -INFINITY;
  }
}

// ------------------------------------------------------------- backward

// delta[e] = dout[e] . out[e] over the head dim, in fp32, one warp each.
__global__ void flash_delta_kernel(const __nv_bfloat16* dout, const __nv_bfloat16* out, int64_t entries, int64_t hd,
                                   float* delta) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t e = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; e < entries; e += warps) {
    float sum = 0.0f;
    for (int64_t d = threadIdx.x % 32; d < hd; d += 32)
      sum += __bfloat162float(dout[e * hd + d]) * __bfloat162float(out[e * hd + d]);
    sum = warp_sum(sum);
    if (threadIdx.x % 32 == 0) delta[e] = sum;
  }
}

// dq of 64 query rows: over the visible keys, dS = P (dP - D) with
// P = exp(S - lse) and dP = dO V^T, then dQ = scale * dS K.
template <int Dp>
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(Params p, const __nv_bfloat16* dout, const float* lse,
                                                            const float* delta, float* dq) {
  constexpr int ldk = kRowStride<Dp>, ldv = kColumnStride;
  ST_DYNAMIC_SHARED(uint4, smem);
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem);  // [kQueryTile][ldk]
  __nv_bfloat16* sdo = sq + kQueryTile * ldk;                   // [kQueryTile][ldk]
  __nv_bfloat16* sk = sdo + kQueryTile * ldk;                   // [kKeyTile][ldk]
  __nv_bfloat16* sv = sk + kKeyTile * ldk;                      // [kKeyTile][ldk]
  __nv_bfloat16* skt = sv + kKeyTile * ldk;                     // [Dp][ldv]: K transposed
  const Item it = p.items[blockIdx.x];
  const Sequence s = p.seqs[it.seq];
  const int warp = threadIdx.x / 32, t = threadIdx.x % 4;
  const LaneRows lr(p, s, int64_t(it.start) + warp * kMmaRows);
  const int64_t key_end = keys_needed(p, s, it.start, kQueryTile);
  const int64_t rows_total = int64_t(s.q_len) * p.group;
  float row_lse[2], row_delta[2];
  for (int r = 0; r < 2; ++r) {
    const bool valid = lr.row[r] < rows_total;
    const int64_t at = valid ? row_head(p, s, it.kv_head, lr.row[r]) : 0;
    row_lse[r] = valid ? lse[at] : 0.0f;
    row_delta[r] = valid ? delta[at] : 0.0f;
  }

  load_query_rows<Dp>(p, s, it.kv_head, it.start, kQueryTile, p.q, sq, ldk);
  load_query_rows<Dp>(p, s, it.kv_head, it.start, kQueryTile, dout, sdo, ldk);
  __syncthreads();
  uint32_t qf[Dp / 16][4], dof[Dp / 16][4];
#pragma unroll
  for (int ks = 0; ks < Dp / 16; ++ks) {
    load_a(qf[ks], sq, ldk, warp * kMmaRows, ks * 16);
    load_a(dof[ks], sdo, ldk, warp * kMmaRows, ks * 16);
  }
  float acc[Dp / 8][4];
#pragma unroll
  for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nt][i] = 0.0f;

  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyTile) {
    __syncthreads();
    load_key_rows<Dp>(p, s, it.kv_head, k0, key_end, kKeyTile, p.k_pool, sk, ldk, 0, kThreads);
    load_key_rows<Dp>(p, s, it.kv_head, k0, key_end, kKeyTile, p.v_pool, sv, ldk, 0, kThreads);
    load_key_columns<Dp>(p, s, it.kv_head, k0, key_end, kKeyTile, p.k_pool, skt, ldv, 0, kThreads);
    __syncthreads();
    float sacc[kKeyTile / 8][4], dpacc[kKeyTile / 8][4];
#pragma unroll
    for (int nt = 0; nt < kKeyTile / 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) sacc[nt][i] = dpacc[nt][i] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < Dp / 16; ++ks) {
        uint32_t b[2];
        load_b(b, sk, ldk, nt * 8, ks * 16);
        mma_bf16_m16n8k16(sacc[nt], qf[ks], b, sacc[nt]);
        load_b(b, sv, ldk, nt * 8, ks * 16);
        mma_bf16_m16n8k16(dpacc[nt], dof[ks], b, dpacc[nt]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < kKeyTile / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i >> 1;
        const int64_t key = k0 + nt * 8 + 2 * t + (i & 1);
        const float prob = key < lr.visible[r] ? expf(sacc[nt][i] * p.scale - row_lse[r]) : 0.0f;
        sacc[nt][i] = prob * (dpacc[nt][i] - row_delta[r]);
      }
#pragma unroll
    for (int kk = 0; kk < kKeyTile / 16; ++kk) {
      uint32_t a[4];
      accumulators_as_a(a, sacc[2 * kk], sacc[2 * kk + 1]);
#pragma unroll
      for (int nt = 0; nt < Dp / 8; ++nt) {
        uint32_t b[2];
        load_b(b, skt, ldv, nt * 8, kk * 16);
        mma_bf16_m16n8k16(acc[nt], a, b, acc[nt]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (lr.row[r] >= rows_total) continue;
    const int64_t at = row_head(p, s, it.kv_head, lr.row[r]);
#pragma unroll
    for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t d = nt * 8 + 2 * t + j;
        if (d < p.hd) dq[at * p.hd + d] = acc[nt][2 * r + j] * p.scale;
      }
  }
}

// dk, dv of 64 keys (16 per warp): over the query rows that see them, in
// steps of 32 rows, S^T = K Q^T and dP^T = V dO^T, then dV += P^T dO and
// dK += scale * dS^T Q.
template <int Dp>
__global__ void __launch_bounds__(kThreads) flash_dkdv_kernel(Params p, const __nv_bfloat16* dout, const float* lse,
                                                              const float* delta, float* dk_pool, float* dv_pool) {
  constexpr int ldk = kRowStride<Dp>, ldr = kColumnStride;
  static_assert(kRowStep + 8 == kColumnStride, "transposed row tiles share the key tiles' stride");
  ST_DYNAMIC_SHARED(uint4, smem);
  __nv_bfloat16* sk = reinterpret_cast<__nv_bfloat16*>(smem);  // [kKeyBlock][ldk]
  __nv_bfloat16* sv = sk + kKeyBlock * ldk;                     // [kKeyBlock][ldk]
  __nv_bfloat16* sq = sv + kKeyBlock * ldk;                     // [kRowStep][ldk]
  __nv_bfloat16* sdo = sq + kRowStep * ldk;                     // [kRowStep][ldk]
  __nv_bfloat16* sqt = sdo + kRowStep * ldk;                    // [Dp][ldr]
  __nv_bfloat16* sdot = sqt + Dp * ldr;                         // [Dp][ldr]
  float* slse = reinterpret_cast<float*>(sdot + Dp * ldr);      // [kRowStep]
  float* sdelta = slse + kRowStep;                              // [kRowStep]
  const Item it = p.items[blockIdx.x];
  const Sequence s = p.seqs[it.seq];
  const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) >> 2, t = threadIdx.x % 4;
  const int64_t rows_total = int64_t(s.q_len) * p.group;
  int64_t key[2];
  for (int r = 0; r < 2; ++r) key[r] = int64_t(it.start) + warp * kMmaRows + g + 8 * r;
  // The first query that sees the block's first key (causal: key <= k_len - q_len + qi).
  const int64_t first_query = s.causal ? max(int64_t(0), int64_t(it.start) - (int64_t(s.k_len) - s.q_len)) : 0;

  load_key_rows<Dp>(p, s, it.kv_head, it.start, s.k_len, kKeyBlock, p.k_pool, sk, ldk, 0, kThreads);
  load_key_rows<Dp>(p, s, it.kv_head, it.start, s.k_len, kKeyBlock, p.v_pool, sv, ldk, 0, kThreads);
  float dk[Dp / 8][4], dv[Dp / 8][4];
#pragma unroll
  for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) dk[nt][i] = dv[nt][i] = 0.0f;

  for (int64_t row0 = first_query * p.group; row0 < rows_total; row0 += kRowStep) {
    __syncthreads();
    load_query_rows<Dp>(p, s, it.kv_head, row0, kRowStep, p.q, sq, ldk);
    load_query_rows<Dp>(p, s, it.kv_head, row0, kRowStep, dout, sdo, ldk);
    load_query_rows_transposed<Dp>(p, s, it.kv_head, row0, kRowStep, p.q, sqt, ldr);
    load_query_rows_transposed<Dp>(p, s, it.kv_head, row0, kRowStep, dout, sdot, ldr);
    for (int c = threadIdx.x; c < kRowStep; c += blockDim.x) {
      const int64_t row = row0 + c;
      slse[c] = row < rows_total ? lse[row_head(p, s, it.kv_head, row)] : 0.0f;
      sdelta[c] = row < rows_total ? delta[row_head(p, s, it.kv_head, row)] : 0.0f;
    }
    __syncthreads();
    float st[kRowStep / 8][4], dpt[kRowStep / 8][4];
#pragma unroll
    for (int nt = 0; nt < kRowStep / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) st[nt][i] = dpt[nt][i] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < Dp / 16; ++ks) {
      uint32_t ka[4], va[4];
      load_a(ka, sk, ldk, warp * kMmaRows, ks * 16);
      load_a(va, sv, ldk, warp * kMmaRows, ks * 16);
#pragma unroll
      for (int nt = 0; nt < kRowStep / 8; ++nt) {
        uint32_t b[2];
        load_b(b, sq, ldk, nt * 8, ks * 16);
        mma_bf16_m16n8k16(st[nt], ka, b, st[nt]);
        load_b(b, sdo, ldk, nt * 8, ks * 16);
        mma_bf16_m16n8k16(dpt[nt], va, b, dpt[nt]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < kRowStep / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = nt * 8 + 2 * t + (i & 1);
        const int64_t row = row0 + c, k = key[i >> 1];
        const bool seen = k < s.k_len && row < rows_total && k < visible_keys(s, row / p.group);
        const float prob = seen ? expf(st[nt][i] * p.scale - slse[c]) : 0.0f;
        st[nt][i] = prob;
        dpt[nt][i] = prob * (dpt[nt][i] - sdelta[c]);
      }
#pragma unroll
    for (int kk = 0; kk < kRowStep / 16; ++kk) {
      uint32_t pa[4], dsa[4];
      accumulators_as_a(pa, st[2 * kk], st[2 * kk + 1]);
      accumulators_as_a(dsa, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
      for (int nt = 0; nt < Dp / 8; ++nt) {
        uint32_t b[2];
        load_b(b, sdot, ldr, nt * 8, kk * 16);
        mma_bf16_m16n8k16(dv[nt], pa, b, dv[nt]);
        load_b(b, sqt, ldr, nt * 8, kk * 16);
        mma_bf16_m16n8k16(dk[nt], dsa, b, dk[nt]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= s.k_len) continue;
    const int64_t at = key_entry(p, s, it.kv_head, key[r]);
#pragma unroll
    for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t d = nt * 8 + 2 * t + j;
        if (d >= p.hd) continue;
        if (dk_pool != nullptr) atomicAdd(dk_pool + at + d, dk[nt][2 * r + j] * p.scale);
        if (dv_pool != nullptr) atomicAdd(dv_pool + at + d, dv[nt][2 * r + j]);
      }
  }
}

void run_forward(const Plan& plan, int64_t hd, __nv_bfloat16* out, float* lse, cudaStream_t s, const char* op) {
  with_padded_dim(hd, [&](auto dims) {
    constexpr int Dp = decltype(dims)::value;
    launch(flash_forward_kernel<Dp>, dim3(unsigned(plan.query_items())), forward_shared<Dp>(), s, op,
           plan.query_params(), out, lse);
  });
}

// pool[i] += sum[i], rounded once into bf16.
__global__ void accumulate_bf16_kernel(__nv_bfloat16* pool, const float* sum, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    pool[i] = __float2bfloat16(__bfloat162float(pool[i]) + sum[i]);
}

Bf16AttentionArgs bf16_args(const AttentionArgs& a, const char* op) {
  Bf16AttentionArgs b;
  b.q = typed<__nv_bfloat16>(a.q, op, "q");
  b.k_pool = typed<__nv_bfloat16>(a.k_pool, op, "k_pool");
  b.v_pool = typed<__nv_bfloat16>(a.v_pool, op, "v_pool");
  b.heads = a.heads;
  b.kv_heads = a.kv_heads;
  b.head_dim = a.head_dim;
  b.scale = a.scale;
  b.sequences = &a.sequences;
  return b;
}

// The query rows [first, end) the sequences cover, adjacent ranges merged.
std::vector<std::pair<int64_t, int64_t>> covered_rows(const std::vector<AttentionSequence>& sequences) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const AttentionSequence& s : sequences)
    if (s.q_len > 0) ranges.emplace_back(s.q_offset, s.q_offset + s.q_len);
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<int64_t, int64_t>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second) merged.back().second = std::max(merged.back().second, r.second);
    else merged.push_back(r);
  }
  return merged;
}

}  // namespace

void attention_forward_bf16(const AttentionArgs& a, cudaStream_t s) {
  if (a.sequences.empty()) return;
  const char* op = "attention";
  const Bf16AttentionArgs b = bf16_args(a, op);
  __nv_bfloat16* out = typed<__nv_bfloat16>(a.out, op, "out");
  if (decode_attention_fits(b)) decode_attention(b, out, 0, s);
  else flash_attention_forward(b, out, nullptr, s);
}

void attention_backward_bf16(const AttentionArgs& a, ConstDevicePtr dout_ptr, DevicePtr dq_ptr, DevicePtr dk_ptr,
                             DevicePtr dv_ptr, cudaStream_t s) {
  if (a.sequences.empty()) return;
  const char* op = "attention_backward";
  const Bf16AttentionArgs b = bf16_args(a, op);
  const __nv_bfloat16* dout = typed<__nv_bfloat16>(dout_ptr, op, "dout");
  __nv_bfloat16* dq = typed<__nv_bfloat16>(dq_ptr, op, "dq");
  __nv_bfloat16* dk_pool = typed<__nv_bfloat16>(dk_ptr, op, "dk_pool");
  __nv_bfloat16* dv_pool = typed<__nv_bfloat16>(dv_ptr, op, "dv_pool");
  int64_t rows = 0, pool_slots = 0;
  for (const AttentionSequence& seq : a.sequences) {
    if (seq.q_len <= 0) continue;
    rows = std::max(rows, seq.q_offset + seq.q_len);
    for (int64_t j = 0; j < seq.k_len; ++j) pool_slots = std::max<int64_t>(pool_slots, int64_t(seq.key_slots[j]) + 1);
  }
  const int64_t width = a.heads * a.head_dim, pool_values = pool_slots * a.kv_heads * a.head_dim;
  Temp<float> dq_sum(dq != nullptr ? rows * width : 0, s, op);
  Temp<float> dk_sum(dk_pool != nullptr ? pool_values : 0, s, op), dv_sum(dv_pool != nullptr ? pool_values : 0, s, op);
  for (float* sum : {dk_sum.get(), dv_sum.get()})
    if (sum != nullptr) check(cudaMemsetAsync(sum, 0, size_t(pool_values) * sizeof(float), s), op);
  flash_attention_backward(b, dout, dq_sum.get(), dk_sum.get(), dv_sum.get(), s);
  if (dq != nullptr)
    for (const auto& [first, end] : covered_rows(a.sequences))
      convert(DevicePtr(dq + first * width, Storage::BF16), ConstDevicePtr(dq_sum.get() + first * width, Storage::F32),
              (end - first) * width, s);
  for (auto [pool, sum] : {std::pair{dk_pool, dk_sum.get()}, std::pair{dv_pool, dv_sum.get()}}) {
    if (pool == nullptr || pool_values == 0) continue;
    ST_LAUNCH(accumulate_bf16_kernel, grid_for(pool_values, 256), 256, 0, s)(pool, static_cast<const float*>(sum),
                                                                            pool_values);
    check_launch(op);
  }
}

void flash_attention_forward(const Bf16AttentionArgs& a, __nv_bfloat16* out, float* lse, cudaStream_t s) {
  if (a.sequences == nullptr || a.sequences->empty()) return;
  const Plan plan(a, kQueryTile, 0, 1, s, "attention");
  run_forward(plan, a.head_dim, out, lse, s, "attention");
}

void flash_attention_backward(const Bf16AttentionArgs& a, const __nv_bfloat16* dout, float* dq, float* dk_pool,
                              float* dv_pool, cudaStream_t s) {
  if (a.sequences == nullptr || a.sequences->empty()) return;
  const char* op = "attention_backward";
  const Plan plan(a, kQueryTile, kKeyBlock, 1, s, op);
  const int64_t entries = plan.rows() * a.heads, hd = a.head_dim;
  if (entries == 0) return;
  // The forward again, for each row's output and log-sum-exp.
  Temp<__nv_bfloat16> out(entries * hd, s, op);
  Temp<float> lse(entries, s, op), delta(entries, s, op);
  check(cudaMemsetAsync(out.get(), 0, size_t(entries * hd) * sizeof(__nv_bfloat16), s), op);
  check(cudaMemsetAsync(lse.get(), 0, size_t(entries) * sizeof(float), s), op);
  run_forward(plan, hd, out.get(), lse.get(), s, op);
  ST_LAUNCH(flash_delta_kernel, grid_for(entries * 32, 256), 256, 0, s)(dout, out.get(), entries, hd, delta.get());
  check_launch(op);
  with_padded_dim(hd, [&](auto dims) {
    constexpr int Dp = decltype(dims)::value;
    const float* l = lse.get();
    const float* d = delta.get();
    if (dq != nullptr)
      launch(flash_dq_kernel<Dp>, dim3(unsigned(plan.query_items())), dq_shared<Dp>(), s, op, plan.query_params(),
             dout, l, d, dq);
    if (dk_pool != nullptr || dv_pool != nullptr)
      launch(flash_dkdv_kernel<Dp>, dim3(unsigned(plan.key_items())), dkdv_shared<Dp>(), s, op, plan.key_params(),
             dout, l, d, dk_pool, dv_pool);
  });
}

}  // namespace st::cuda
