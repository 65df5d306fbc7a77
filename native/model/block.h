#pragma once
// The transformer block of Qwen2.5-VL, forward and backward, written once for
// every use: the vision tower's blocks (q/k/v as row blocks of one fused qkv,
// with biases; MLP biases; windowed or full non-causal attention) and the
// decoder's layers (separate q/k/v with biases, no o/MLP biases, GQA,
// causal), in training (activations kept for the backward, or only the
// block's input with recompute) and in KV-cache inference (nothing kept,
// scratch reused across layers, keys/values appended to the cache).
//
// Dimension legend:
//   N   rows of the call (packed tokens, or patches in window order)
//   D   model width (text hidden, or vision hidden)
//   H   query heads; KV key/value heads (H % KV == 0, GQA); Dh head dim
//   Q   = H * Dh, query and attention-output width
//   K   = KV * Dh, key and value width
//   F   MLP hidden width (intermediate)
//   S   slots of a key/value pool (the KV cache's, or N when the block
//       attends over its own keys)
//
// Forward, on x [N, D] in place (pre-norm, two residuals):
//   h1   = rmsnorm(x, norm1)                      [N, D]
//   q    = h1 Wq^T + bq                           [N, Q]
//   k, v = h1 Wk^T + bk, h1 Wv^T + bv             [N, K]
//   q, k = rotary(q), rotary(k)                   per row's (cos, sin) [N, Dh]
//   attn = softmax(q k^T * Dh^-1/2 + mask) v      [N, Q]  over the pool's keys
//   x   += attn Wo^T (+ bo)                       [N, D]  (x is now x_mid)
//   h2   = rmsnorm(x, norm2)                      [N, D]
//   gate, up = h2 Wg^T (+ bg), h2 Wu^T (+ bu)     [N, F]
//   act  = silu(gate) * up                        [N, F]
//   x   += act Wd^T (+ bd)                        [N, D]
// The backward runs these lines bottom-up; both residual branches add their
// input gradient into dx.
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace st::model {

// One block's parameters (backend memory). Biases may be null.
struct BlockParams {
  ConstDevicePtr norm1, norm2;      // [D] each
  ConstDevicePtr qw, qb;            // [Q, D], [Q]
  ConstDevicePtr kw, kb, vw, vb;    // [K, D], [K] each
  ConstDevicePtr ow, ob;            // [D, Q], [D]
  ConstDevicePtr gw, gb, uw, ub;    // [F, D], [F] each
  ConstDevicePtr dw, db;            // [D, F], [D]
  float eps;                       // of both norms
  int64_t dim, heads, kv_heads, head_dim, hidden;  // D, H, KV, Dh, F
};

// Where the gradients of those parameters accumulate (fp32; null: not wanted).
struct BlockGrads {
  DevicePtr norm1, norm2, qw, qb, kw, kb, vw, vb, ow, ob, gw, gb, uw, ub, dw, db;
};

// Per-row rotary tables, [N, Dh] each (fp32).
struct BlockRotary {
  ConstDevicePtr cos;
  ConstDevicePtr sin;
};

// KV-cache inference: the layer's key and value pools [S, K] and the slot of
// each of the N new rows (host `slots`, or backend I32 `slots_at`), where
// their keys and values are written before the attention reads the pools.
// With `decode`, the attention is the paged decode over its slot table
// (its q, pools and out set by the block) instead of `args`. Without a
// KvCacheWrite the block attends over its own k and v (slots 0 .. N-1).
struct KvCacheWrite {
  DevicePtr k_pool;
  DevicePtr v_pool;
  const int32_t* slots = nullptr;
  ConstDevicePtr slots_at;
  const PagedDecodeArgs* decode = nullptr;
};

// A block's intermediates. In training each block keeps its own for the
// backward pass; in inference one set serves every layer as scratch (arrays
// grow to the largest call and are reused).
struct BlockActivations {
  DeviceArray x_in;        // [N, D] block input (training)
  DeviceArray h1;          // [N, D]
  DeviceArray q;           // [N, Q] after rotary
  DeviceArray k, v;        // [N, K] after rotary (k)
  DeviceArray attn;        // [N, Q]
  DeviceArray x_mid;       // [N, D] after the attention residual (training)
  DeviceArray h2;          // [N, D] (inference: h1's array)
  DeviceArray gate, up;    // [N, F]
  DeviceArray act;         // [N, F] (inference: gate's array)
  DeviceArray out;         // [N, D] residual branch output, scratch
};

// Scratch of the backward pass, reused across blocks.
struct BlockGradScratch {
  DeviceArray dact, dgate, dup;  // [N, F]
  DeviceArray dh, dpart;         // [N, D]
  DeviceArray dattn, dq;         // [N, Q]
  DeviceArray dk, dv;            // [N, K]
};

// x [N, D] in place. `args` carries the heads, scale and sequences (their
// key slots index the cache pools, or the block's own rows); its q, pools
// and out are set here. With `for_backward`, s keeps everything
// block_backward reads.
void block_forward(Backend& b, const BlockParams& p, DevicePtr x, int64_t n, const BlockRotary& rope, AttentionArgs args,
                   BlockActivations& s, bool for_backward, const KvCacheWrite* cache = nullptr);

// dx [N, D] holds d loss / d block output on entry and d loss / d block
// input on exit; parameter gradients accumulate into g. Reads the
// activations a for_backward forward left in s (attention over the block's
// own keys: training).
void block_backward(Backend& b, const BlockParams& p, const BlockGrads& g, DevicePtr dx, int64_t n,
                    const BlockRotary& rope, AttentionArgs args, BlockActivations& s, BlockGradScratch& scratch);

// A stack of blocks in training. Keeps every block's activations (kAll),
// or only each block's input (kInputs: gradient checkpointing), rebuilding
// the rest just before that block's backward: activation memory of one block
// instead of all of them; or nothing (kNothing: a frozen stack whose
// backward is skipped). Blocks run forward in order 0, 1, ... and backward
// in reverse.
class TrainingBlocks {
 public:
  enum class Keep { kAll, kInputs, kNothing };
  TrainingBlocks(int64_t blocks, Keep keep);
  void forward(Backend& b, int64_t block, const BlockParams& p, DevicePtr x, int64_t n, const BlockRotary& rope,
               const AttentionArgs& args);
  // Frees the block's activations once its gradients are taken.
  void backward(Backend& b, int64_t block, const BlockParams& p, const BlockGrads& g, DevicePtr dx, int64_t n,
                const BlockRotary& rope, const AttentionArgs& args);

 private:
  std::vector<BlockActivations> kept_;
  BlockActivations scratch_;  // the forward's intermediates when not kept
  BlockGradScratch grad_scratch_;
  Keep keep_;
};

}  // namespace st::model
