// The decode step's attention on the tensor cores over bf16 KV pages: each
// sequence has a few query rows per kv head (one token times the GQA group,
// e.g. 8 rows for Qwen2.5-VL-3B's 16 heads over 2 kv heads), read through its
// key slots (the pages of the paged KV cache), and a long context.
//
// One block per (sequence, kv head, key range): the keys are split into
// `splits` ranges so that a few long sequences still fill the GPU. The 16
// query rows (padding past the group's rows) are one mma tile; the block's 4
// warps take turns over 32-key tiles of the range, each with its own slice
// of shared memory and its own online softmax, and merge their (max, sum,
// output) at the end. A second kernel merges the ranges:
//   M = max_s m_s, L = sum_s l_s e^(m_s - M), out = sum_s o_s e^(m_s - M) / L
// with o_s the range's unnormalised output, all in fp32.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "backend/cuda/device.h"
#include "backend/cuda/flash_attention.cuh"
#include "backend/cuda/kernels.cuh"

namespace st::cuda {
namespace {

using namespace flash;

constexpr int kDecodeRows = kMmaRows;  // one tile of query rows per (sequence, kv head)
constexpr int kDecodeKeyTile = 32;
constexpr int kColumnStride = kDecodeKeyTile + 8;
constexpr int kMinKeysPerSplit = 256;  // below this a split costs more than it saves


// The query tile, then per warp a key tile and its V transposed; the merge
// of the warps reuses the warps' tiles as fp32 once they are done.
template <int Dp>
constexpr size_t kWarpTilesBytes = size_t(kDecodeKeyTile * kRowStride<Dp> + Dp * kColumnStride) * sizeof(__nv_bfloat16);
template <int Dp>
constexpr size_t merge_bytes() {
  return size_t(kWarps) * kDecodeRows * (Dp + 2) * sizeof(float);
}
template <int Dp>
constexpr size_t decode_shared() {
  return size_t(kDecodeRows * kRowStride<Dp>) * sizeof(__nv_bfloat16) +
         std::max(kWarps * kWarpTilesBytes<Dp>, merge_bytes<Dp>());
}

// Each block: partial_o[block][16][hd] (unnormalised) and partial_ml[block][16][2] = (max, sum).
template <int Dp>
__global__ void __launch_bounds__(kThreads) decode_partial_kernel(Params p, int64_t chunk, float* partial_o,
                                                                  float* partial_ml) {
  constexpr int ldk = kRowStride<Dp>, ldv = kColumnStride;
  ST_DYNAMIC_SHARED(uint4, smem);
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem);  // [16][ldk]
  unsigned char* warp_area = reinterpret_cast<unsigned char*>(sq + kDecodeRows * ldk);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane % 4;
  __nv_bfloat16* sk = reinterpret_cast<__nv_bfloat16*>(warp_area + warp * kWarpTilesBytes<Dp>);  // [32][ldk]
  __nv_bfloat16* svt = sk + kDecodeKeyTile * ldk;                                                   // [Dp][ldv]
  const Item it = p.items[blockIdx.x];
  const Sequence s = p.seqs[it.seq];
  const int64_t rows_total = int64_t(s.q_len) * p.group;
  const int64_t key_end = max(int64_t(0), min(int64_t(s.k_len), visible_keys(s, (min(rows_total, int64_t(it.start) + kDecodeRows) - 1) / p.group)));
  const int64_t lo = int64_t(it.split) * chunk, hi = min(key_end, lo + chunk);

  load_query_rows<Dp>(p, s, it.kv_head, it.start, kDecodeRows, p.q, sq, ldk);
  __syncthreads();
  uint32_t qf[Dp / 16][4];
#pragma unroll
  for (int ks = 0; ks < Dp / 16; ++ks) load_a(qf[ks], sq, ldk, 0, ks * 16);
  int64_t visible[2];
  for (int r = 0; r < 2; ++r) {
    const int64_t row = int64_t(it.start) + g + 8 * r;
    visible[r] = row < rows_total ? min(hi, visible_keys(s, row / p.group)) : 0;
  }
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, o[Dp / 8][4];
#pragma unroll
  for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) o[nt][i] = 0.0f;

  for (int64_t k0 = lo + warp * kDecodeKeyTile; k0 < hi; k0 += kWarps * kDecodeKeyTile) {
    load_key_rows<Dp>(p, s, it.kv_head, k0, hi, kDecodeKeyTile, p.k_pool, sk, ldk, warp * 32, 32);
    load_key_columns<Dp>(p, s, it.kv_head, k0, hi, kDecodeKeyTile, p.v_pool, svt, ldv, warp * 32, 32);
    __syncwarp();
    online_softmax_step<Dp, kDecodeKeyTile>(qf, sk, ldk, svt, ldv, k0, visible, p.scale, m, l, o);
    __syncwarp();  // the warp is done with its tiles before the next load
  }
  for (int r = 0; r < 2; ++r) l[r] = quad_sum(l[r]);

  __syncthreads();  // every warp is done with its tiles: the merge area takes their place
  float* merge_o = reinterpret_cast<float*>(warp_area);       // [kWarps][16][Dp]
  float* merge_ml = merge_o + kWarps * kDecodeRows * Dp;      // [kWarps][16][2]
  for (int r = 0; r < 2; ++r) {
    const int row = g + 8 * r;
#pragma unroll
    for (int nt = 0; nt < Dp / 8; ++nt)
#pragma unroll
      for (int j = 0; j < 2; ++j) merge_o[(warp * kDecodeRows + row) * Dp + nt * 8 + 2 * t + j] = o[nt][2 * r + j];
    if (t == 0) {
      merge_ml[(warp * kDecodeRows + row) * 2] = m[r];
      merge_ml[(warp * kDecodeRows + row) * 2 + 1] = l[r];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kDecodeRows * Dp; idx += blockDim.x) {
    const int row = idx / Dp, d = idx % Dp;
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, merge_ml[(w * kDecodeRows + row) * 2]);
    float sum = 0.0f, acc = 0.0f;
    if (mx != -INFINITY)
      for (int w = 0; w < kWarps; ++w) {
        const float mw = merge_ml[(w * kDecodeRows + row) * 2];
        if (mw == -INFINITY) continue;
        const float f = expf(mw - mx);
        sum += merge_ml[(w * kDecodeRows + row) * 2 + 1] * f;
        acc += merge_o[(w * kDecodeRows + row) * Dp + d] * f;
      }
    if (d < p.hd) partial_o[(int64_t(blockIdx.x) * kDecodeRows + row) * p.hd + d] = acc;
    if (d == 0) {
      partial_ml[(int64_t(blockIdx.x) * kDecodeRows + row) * 2] = mx;
      partial_ml[(int64_t(blockIdx.x) * kDecodeRows + row) * 2 + 1] = sum;
    }
  }
}

// out for every (row tile, row, dim): the merge of the tile's `splits` key ranges.
__global__ void decode_merge_kernel(Params p, int splits, int64_t tiles, const float* partial_o,
                                    const float* partial_ml, __nv_bfloat16* out) {
  const int64_t total = tiles * kDecodeRows * p.hd;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t tile = idx / (kDecodeRows * p.hd), row = (idx / p.hd) % kDecodeRows, d = idx % p.hd;
    const Item it = p.items[tile * splits];
    const Sequence s = p.seqs[it.seq];
    const int64_t seq_row = it.start + row;
    if (seq_row >= int64_t(s.q_len) * p.group) continue;
    float mx = -INFINITY;
    for (int sp = 0; sp < splits; ++sp) mx = fmaxf(mx, partial_ml[((tile * splits + sp) * kDecodeRows + row) * 2]);
    float sum = 0.0f, acc = 0.0f;
    if (mx != -INFINITY)
      for (int sp = 0; sp < splits; ++sp) {
        const int64_t b = tile * splits + sp;
        const float ms = partial_ml[(b * kDecodeRows + row) * 2];
        if (ms == -INFINITY) continue;
        const float f = expf(ms - mx);
        sum += partial_ml[(b * kDecodeRows + row) * 2 + 1] * f;
        acc += partial_o[(b * kDecodeRows + row) * p.hd + d] * f;
      }
    // A row that sees no key gets zeros, as on the CPU.
    out[row_head(p, s, it.kv_head, seq_row) * p.hd + d] = __float2bfloat16(sum > 0.0f ? acc / sum : 0.0f);
  }
}

int multiprocessors() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  for (const DeviceInfo& d : runtime_info().devices)
    if (d.index == device) return std::max(d.multiprocessors, 1);
  return 1;
}

// Key ranges per tile: enough blocks for two waves of the multiprocessors,
// but no range shorter than kMinKeysPerSplit.
int pick_splits(int64_t tiles, int64_t max_k_len) {
  const int64_t wanted = (2 * int64_t(multiprocessors()) + tiles - 1) / tiles;
  const int64_t most = std::max<int64_t>(1, max_k_len / kMinKeysPerSplit);
  return int(std::clamp<int64_t>(wanted, 1, std::min<int64_t>(most, 64)));
}

// Both passes over `tiles` (sequence, kv head) tiles of `splits` items each,
// the items and sequences already on the device in p.
void run_decode(const Params& p, int64_t tiles, int splits, int64_t max_k_len, int64_t head_dim, __nv_bfloat16* out,
                cudaStream_t s, const char* op) {
  // Ranges of whole key tiles, so a warp's tile never straddles two blocks.
  const int64_t per_split = (max_k_len + splits - 1) / splits;
  const int64_t chunk = std::max<int64_t>(kDecodeKeyTile, (per_split + kDecodeKeyTile - 1) / kDecodeKeyTile * kDecodeKeyTile);
  const int64_t blocks = tiles * splits;
  Temp<float> partial_o(blocks * kDecodeRows * head_dim, s, op), partial_ml(blocks * kDecodeRows * 2, s, op);
  with_padded_dim(head_dim, [&](auto dims) {
    constexpr int Dp = decltype(dims)::value;
    launch(decode_partial_kernel<Dp>, dim3(unsigned(blocks)), decode_shared<Dp>(), s, op, p, chunk, partial_o.get(),
           partial_ml.get());
  });
  ST_LAUNCH(decode_merge_kernel, grid_for(tiles * kDecodeRows * head_dim, 256), 256, 0, s)(
      p, splits, tiles, static_cast<const float*>(partial_o.get()), static_cast<const float*>(partial_ml.get()), out);
  check_launch(op);
}

// The paged decode's sequences (row r: one query, keys from row r of the
// slot table) and work items (tile-major, then split), from the key counts
// on the device: what a captured step must read at replay time.
__global__ void paged_plan_kernel(const int32_t* key_lengths, int64_t rows, int64_t stride, int32_t kv_heads,
                                  int32_t splits, Sequence* seqs, Item* items) {
  const int64_t per_row = int64_t(kv_heads) * splits;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * per_row;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row;
    items[i] = Item{int32_t(r), int32_t((i / splits) % kv_heads), 0, int32_t(i % splits)};
    if (i % per_row == 0) seqs[r] = Sequence{r, r * stride, 1, key_lengths[r], 1};
  }
}

}  // namespace

bool decode_attention_fits(const Bf16AttentionArgs& a) {
  if (a.sequences == nullptr || a.kv_heads <= 0 || a.heads % a.kv_heads != 0) return false;
  const int64_t group = a.heads / a.kv_heads;
  for (const AttentionSequence& s : *a.sequences)
    if (s.q_len * group > kDecodeRows) return false;
  return true;
}

void decode_attention(const Bf16AttentionArgs& a, __nv_bfloat16* out, int splits, cudaStream_t s) {
  if (a.sequences == nullptr || a.sequences->empty()) return;
  const char* op = "attention (decode)";
  if (!decode_attention_fits(a))
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": a sequence has more than " +
                                std::to_string(kDecodeRows) + " query rows per kv head; use the flash forward");
  int64_t tiles = 0, max_k_len = 0;
  for (const AttentionSequence& seq : *a.sequences)
    if (seq.q_len > 0) {
      tiles += a.kv_heads;
      max_k_len = std::max(max_k_len, seq.k_len);
    }
  if (tiles == 0) return;
  if (splits <= 0) splits = pick_splits(tiles, max_k_len);
  const Plan plan(a, kDecodeRows, 0, splits, s, op);
  run_decode(plan.query_params(), tiles, splits, max_k_len, a.head_dim, out, s, op);
}

void paged_decode_attention(const PagedDecodeArgs& a, cudaStream_t s) {
  const char* op = "paged_decode_attention";
  if (a.rows <= 0) return;
  if (a.heads <= 0 || a.kv_heads <= 0 || a.heads % a.kv_heads != 0)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": heads (" + std::to_string(a.heads) +
                                ") must be a positive multiple of kv_heads (" + std::to_string(a.kv_heads) + ")");
  if (a.head_dim <= 0 || a.head_dim > kFlashMaxHeadDim)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": head_dim " + std::to_string(a.head_dim) +
                                " is outside 1.." + std::to_string(kFlashMaxHeadDim));
  if (a.table_stride <= 0 || a.table_stride > INT32_MAX)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": table stride " + std::to_string(a.table_stride));
  if (a.q.type() == Storage::F32) return paged_decode_attention_fp32(a, s);
  if (a.heads / a.kv_heads > kDecodeRows)
    throw std::invalid_argument(std::string("CUDA backend: ") + op + ": a GQA group of " +
                                std::to_string(a.heads / a.kv_heads) + " heads is more than the " +
                                std::to_string(kDecodeRows) + " rows of a decode tile");
  const int64_t tiles = a.rows * a.kv_heads;
  // From the stride, not the step's lengths: fixed for every replay of a graph.
  const int splits = pick_splits(tiles, a.table_stride);
  Temp<Sequence> seqs(a.rows, s, op);
  Temp<Item> items(tiles * splits, s, op);
  ST_LAUNCH(paged_plan_kernel, grid_for(tiles * splits, 256), 256, 0, s)(
      a.key_lengths.i32("paged_decode_attention: key_lengths"), a.rows, a.table_stride, int32_t(a.kv_heads),
      int32_t(splits), seqs.get(), items.get());
  check_launch(op);
  const Params p{typed<__nv_bfloat16>(a.q, op, "q"), typed<__nv_bfloat16>(a.k_pool, op, "k_pool"),
                 typed<__nv_bfloat16>(a.v_pool, op, "v_pool"), a.heads, a.kv_heads, a.head_dim,
                 a.heads / a.kv_heads, a.scale, seqs.get(), items.get(),
                 a.slot_table.i32("paged_decode_attention: slot_table")};
  run_decode(p, tiles, splits, a.table_stride, a.head_dim, typed<__nv_bfloat16>(a.out, op, "out"), s, op);
}

}  // namespace st::cuda
