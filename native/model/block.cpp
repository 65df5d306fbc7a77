#include "model/block.h"

#include <stdexcept>

namespace st::model {
namespace {

DevicePtr grown(Backend& b, DeviceArray& a, int64_t count) {
  a.ensure(b, count);
  return a.get();
}

}  // namespace

void block_forward(Backend& b, const BlockParams& p, DevicePtr x, int64_t n, const BlockRotary& rope, AttentionArgs args,
                   BlockActivations& s, bool for_backward, const KvCacheWrite* cache) {
  const int64_t D = p.dim, Q = p.heads * p.head_dim, K = p.kv_heads * p.head_dim, F = p.hidden;
  if (for_backward) b.copy(grown(b, s.x_in, n * D), x, n * D);

  // ---- attention
  DevicePtr h1 = grown(b, s.h1, n * D);                        // [N, D]
  b.rmsnorm(x, p.norm1, h1, n, D, p.eps);
  DevicePtr q = grown(b, s.q, n * Q);                          // [N, Q]
  DevicePtr k = grown(b, s.k, n * K);                          // [N, K]
  DevicePtr v = grown(b, s.v, n * K);                          // [N, K]
  b.linear(h1, p.qw, p.qb, q, n, D, Q);
  b.linear(h1, p.kw, p.kb, k, n, D, K);
  b.linear(h1, p.vw, p.vb, v, n, D, K);
  b.rotary(q, rope.cos, rope.sin, n, p.heads, p.head_dim);
  b.rotary(k, rope.cos, rope.sin, n, p.kv_heads, p.head_dim);
  if (cache && cache->slots_at) {
    b.scatter_rows_at(k, cache->slots_at, n, cache->k_pool, K);  // [S, K]
    b.scatter_rows_at(v, cache->slots_at, n, cache->v_pool, K);
  } else if (cache) {
    b.scatter_rows(k, cache->slots, n, cache->k_pool, K);  // [S, K]
    b.scatter_rows(v, cache->slots, n, cache->v_pool, K);
  }
  DevicePtr attn = grown(b, s.attn, n * Q);                    // [N, Q]
  if (cache && cache->decode) {
    PagedDecodeArgs decode = *cache->decode;
    decode.q = q;
    decode.k_pool = cache->k_pool;
    decode.v_pool = cache->v_pool;
    decode.out = attn;
    b.paged_decode_attention(decode);
  } else {
    args.q = q;
    args.k_pool = cache ? cache->k_pool : k;
    args.v_pool = cache ? cache->v_pool : v;
    args.out = attn;
    b.attention(args);
  }
  DevicePtr out = grown(b, s.out, n * D);                      // [N, D]
  b.linear(attn, p.ow, p.ob, out, n, Q, D);
  b.add(x, out, n * D);

  // ---- MLP
  if (for_backward) b.copy(grown(b, s.x_mid, n * D), x, n * D);
  DevicePtr h2 = for_backward ? grown(b, s.h2, n * D) : h1;   // [N, D]
  b.rmsnorm(x, p.norm2, h2, n, D, p.eps);
  DevicePtr gate = grown(b, s.gate, n * F);                    // [N, F]
  DevicePtr up = grown(b, s.up, n * F);                        // [N, F]
  b.linear(h2, p.gw, p.gb, gate, n, D, F);
  b.linear(h2, p.uw, p.ub, up, n, D, F);
  DevicePtr act = for_backward ? grown(b, s.act, n * F) : gate;  // [N, F]
  b.swiglu(gate, up, act, n * F);
  b.linear(act, p.dw, p.db, out, n, F, D);
  b.add(x, out, n * D);
  if (for_backward) s.out = DeviceArray();  // scratch only: not kept past the block
}

void block_backward(Backend& b, const BlockParams& p, const BlockGrads& g, DevicePtr dx, int64_t n,
                    const BlockRotary& rope, AttentionArgs args, BlockActivations& s, BlockGradScratch& t) {
  const int64_t D = p.dim, Q = p.heads * p.head_dim, K = p.kv_heads * p.head_dim, F = p.hidden;
  DevicePtr dact = grown(b, t.dact, n * F);    // [N, F]
  DevicePtr dgate = grown(b, t.dgate, n * F);  // [N, F]
  DevicePtr dup = grown(b, t.dup, n * F);      // [N, F]
  DevicePtr dh = grown(b, t.dh, n * D);        // [N, D]
  DevicePtr dpart = grown(b, t.dpart, n * D);  // [N, D]

  // ---- MLP
  b.linear_backward(s.act.get(), p.dw, dx, dact, g.dw, g.db, n, F, D);
  b.swiglu_backward(s.gate.get(), s.up.get(), dact, dgate, dup, n * F);
  b.linear_backward(s.h2.get(), p.gw, dgate, dh, g.gw, g.gb, n, D, F);
  b.linear_backward(s.h2.get(), p.uw, dup, dpart, g.uw, g.ub, n, D, F);
  b.add(dh, dpart, n * D);
  b.rmsnorm_backward(s.x_mid.get(), p.norm2, dh, dpart, g.norm2, n, D, p.eps);
  b.add(dx, dpart, n * D);  // now d loss / d x_mid

  // ---- attention
  DevicePtr dattn = grown(b, t.dattn, n * Q);  // [N, Q]
  DevicePtr dq = grown(b, t.dq, n * Q);        // [N, Q]
  DevicePtr dk = grown(b, t.dk, n * K);        // [N, K]
  DevicePtr dv = grown(b, t.dv, n * K);        // [N, K]
  b.linear_backward(s.attn.get(), p.ow, dx, dattn, g.ow, g.ob, n, Q, D);
  b.fill(dk, 0.0f, n * K);  // the attention backward accumulates into the key/value pools
  b.fill(dv, 0.0f, n * K);
  args.q = s.q.get();
  args.k_pool = s.k.get();
  args.v_pool = s.v.get();
  args.out = nullptr;
  b.attention_backward(args, dattn, dq, dk, dv);
  b.rotary_backward(dq, rope.cos, rope.sin, n, p.heads, p.head_dim);
  b.rotary_backward(dk, rope.cos, rope.sin, n, p.kv_heads, p.head_dim);
  b.linear_backward(s.h1.get(), p.qw, dq, dh, g.qw, g.qb, n, D, Q);
  b.linear_backward(s.h1.get(), p.kw, dk, dpart, g.kw, g.kb, n, D, K);
  b.add(dh, dpart, n * D);
  b.linear_backward(s.h1.get(), p.vw, dv, dpart, g.vw, g.vb, n, D, K);
  b.add(dh, dpart, n * D);
  b.rmsnorm_backward(s.x_in.get(), p.norm1, dh, dpart, g.norm1, n, D, p.eps);
  b.add(dx, dpart, n * D);
}

TrainingBlocks::TrainingBlocks(int64_t blocks, Keep keep)
    : kept_(static_cast<size_t>(keep == Keep::kNothing ? 0 : blocks)), keep_(keep) {}

void TrainingBlocks::forward(Backend& b, int64_t block, const BlockParams& p, DevicePtr x, int64_t n,
                             const BlockRotary& rope, const AttentionArgs& args) {
  if (keep_ == Keep::kAll) {
    block_forward(b, p, x, n, rope, args, kept_[size_t(block)], /*for_backward=*/true);
    return;
  }
  if (keep_ == Keep::kInputs) b.copy(grown(b, kept_[size_t(block)].x_in, n * p.dim), x, n * p.dim);
  block_forward(b, p, x, n, rope, args, scratch_, /*for_backward=*/false);
}

void TrainingBlocks::backward(Backend& b, int64_t block, const BlockParams& p, const BlockGrads& g, DevicePtr dx,
                              int64_t n, const BlockRotary& rope, const AttentionArgs& args) {
  if (keep_ == Keep::kNothing) throw std::logic_error("backward through blocks that kept no activations");
  scratch_ = BlockActivations();  // the forward is over
  BlockActivations& kept = kept_[size_t(block)];
  if (keep_ == Keep::kInputs) {  // rebuild the block's activations from its input
    DeviceArray x(b, n * p.dim);
    b.copy(x.get(), kept.x_in.get(), n * p.dim);
    block_forward(b, p, x.get(), n, rope, args, kept, /*for_backward=*/true);
  }
  block_backward(b, p, g, dx, n, rope, args, kept, grad_scratch_);
  kept = BlockActivations();  // free as we go
  if (block == 0) grad_scratch_ = BlockGradScratch();
}

}  // namespace st::model
