// Attention on the CPU, forward and backward, for variable-length sequences
// whose keys live in a slot pool (the paged KV cache, or a packed batch).
//
// Each work item first gathers its keys and values into contiguous buffers
// (transposed where the inner loop runs over keys), so every inner loop is a
// unit-stride loop the compiler vectorises; reductions keep 16 partial sums so
// they vectorise without -ffast-math. The softmax exponent uses a polynomial
// exp on non-positive arguments (about 1 ulp), since libm's exp does not
// vectorise and dominated the old scalar kernel.
#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/row_math.h"
#include "backend/cpu/vector_clones.h"
#include "engine/thread_pool.h"

namespace st::cpu {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kQueriesPerItem = 32;


// exp(x) for x <= 0: 2^n * p(r), r = x - n ln 2 in [-ln2/2, ln2/2], p of degree 6.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (0.166666671633720397949f +
                                          r * (0.0416664853692054748535f + r * (0.00833336077630519866943f +
                                                                                r * 0.00139304355252534151077f)))));
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

ST_VECTOR_CLONES float sum_of(const float* x, int64_t n) {
  float part[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += x[j + l];
  float total = 0.0f;
  for (; j < n; ++j) total += x[j];
  for (int l = 0; l < kLanes; ++l) total += part[l];
  return total;
}

ST_VECTOR_CLONES float dot_of(const float* x, const float* y, int64_t n) {
  float part[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += x[j + l] * y[j + l];
  float total = 0.0f;
  for (; j < n; ++j) total += x[j] * y[j];
  for (int l = 0; l < kLanes; ++l) total += part[l];
  return total;
}

// s[j] = scale * sum_d q[d] kt[d * stride + j], for j < n.
ST_VECTOR_CLONES void scores_of(const float* q, const float* kt, int64_t stride, int64_t n, int64_t hd, float scale,
                                float* s) {
  std::fill(s, s + n, 0.0f);
  for (int64_t d = 0; d < hd; ++d) {
    const float qd = q[d] * scale;
    const float* row = kt + d * stride;
    for (int64_t j = 0; j < n; ++j) s[j] += qd * row[j];
  }
}

// p[j] = exp(s[j] - max s) / sum; returns nothing when n == 0.
ST_VECTOR_CLONES void softmax_in_place(float* s, int64_t n) {
  if (n == 0) return;
  const float top = max_value(s, n);
  for (int64_t j = 0; j < n; ++j) s[j] = exp_nonpositive(s[j] - top);
  const float inv = 1.0f / sum_of(s, n);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

// out[d] = sum_j p[j] rows[j * hd + d]
ST_VECTOR_CLONES void weighted_rows(const float* p, const float* rows, int64_t n, int64_t hd, float* out) {
  std::fill(out, out + hd, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const float pj = p[j];
    const float* r = rows + j * hd;
    for (int64_t d = 0; d < hd; ++d) out[d] += pj * r[d];
  }
}

// rows[j * hd + d] += p[j] x[d]
ST_VECTOR_CLONES void add_outer(const float* p, const float* x, int64_t n, int64_t hd, float* rows) {
  for (int64_t j = 0; j < n; ++j) {
    const float pj = p[j];
    float* r = rows + j * hd;
    for (int64_t d = 0; d < hd; ++d) r[d] += pj * x[d];
  }
}

// The keys (or values) of one kv head of a sequence, gathered from the pool.
void gather(const float* pool, const int32_t* slots, int64_t n, int64_t kv_heads, int64_t kvh, int64_t hd, float* rows,
            float* transposed) {
  for (int64_t j = 0; j < n; ++j) {
    const float* src = pool + (int64_t(slots[j]) * kv_heads + kvh) * hd;
    if (rows) std::memcpy(rows + j * hd, src, size_t(hd) * sizeof(float));
    if (transposed)
      for (int64_t d = 0; d < hd; ++d) transposed[d * n + j] = src[d];
  }
}

int64_t visible_keys(const AttentionSequence& s, int64_t qi) { return s.causal ? s.k_len - s.q_len + qi + 1 : s.k_len; }

}  // namespace

void attention_forward(const AttentionArgs& a) {
  struct Item {
    const AttentionSequence* seq;
    int64_t head, q_begin, q_end;
  };
  std::vector<Item> items;
  for (const AttentionSequence& s : a.sequences)
    for (int64_t h = 0; h < a.heads; ++h)
      for (int64_t q = 0; q < s.q_len; q += kQueriesPerItem) items.push_back({&s, h, q, std::min(s.q_len, q + kQueriesPerItem)});
  const int64_t group = a.heads / a.kv_heads, hd = a.head_dim;
  default_thread_pool().parallel_for(int64_t(items.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kt, v, p;
    for (int64_t t = begin; t < end; ++t) {
      const Item& it = items[size_t(t)];
      const AttentionSequence& s = *it.seq;
      const int64_t kvh = it.head / group;
      const int64_t keys = std::min(s.k_len, visible_keys(s, it.q_end - 1));
      kt.resize(size_t(keys * hd));
      v.resize(size_t(keys * hd));
      p.resize(size_t(std::max<int64_t>(keys, 1)));
      gather(a.k_pool.f32(), s.key_slots, keys, a.kv_heads, kvh, hd, nullptr, kt.data());
      gather(a.v_pool.f32(), s.key_slots, keys, a.kv_heads, kvh, hd, v.data(), nullptr);
      for (int64_t qi = it.q_begin; qi < it.q_end; ++qi) {
        const int64_t row = s.q_offset + qi;
        const int64_t n = std::max<int64_t>(0, visible_keys(s, qi));
        float* out = a.out.f32() + (row * a.heads + it.head) * hd;
        if (n == 0) {
          std::fill(out, out + hd, 0.0f);
          continue;
        }
        scores_of(a.q.f32() + (row * a.heads + it.head) * hd, kt.data(), keys, n, hd, a.scale, p.data());
        softmax_in_place(p.data(), n);
        weighted_rows(p.data(), v.data(), n, hd, out);
      }
    }
  });
}

void attention_backward(const AttentionArgs& a, const float* dout, float* dq, float* dk_pool, float* dv_pool) {
  // One task per (sequence, kv head): it owns that head's key/value slots of
  // the sequence, so the accumulations into dk/dv never race.
  const int64_t group = a.heads / a.kv_heads, hd = a.head_dim;
  const int64_t tasks = int64_t(a.sequences.size()) * a.kv_heads;
  default_thread_pool().parallel_for(tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> k, kt, vt, dk, dv, p, dp;
    for (int64_t t = begin; t < end; ++t) {
      const AttentionSequence& s = a.sequences[size_t(t / a.kv_heads)];
      const int64_t kvh = t % a.kv_heads;
      const int64_t keys = s.k_len;
      k.resize(size_t(keys * hd));
      kt.resize(size_t(keys * hd));
      vt.resize(size_t(keys * hd));
      dk.assign(size_t(keys * hd), 0.0f);
      dv.assign(size_t(keys * hd), 0.0f);
      p.resize(size_t(std::max<int64_t>(keys, 1)));
      dp.resize(size_t(std::max<int64_t>(keys, 1)));
      gather(a.k_pool.f32(), s.key_slots, keys, a.kv_heads, kvh, hd, k.data(), kt.data());
      gather(a.v_pool.f32(), s.key_slots, keys, a.kv_heads, kvh, hd, nullptr, vt.data());
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h)
        for (int64_t qi = 0; qi < s.q_len; ++qi) {
          const int64_t row = s.q_offset + qi;
          const float* q = a.q.f32() + (row * a.heads + h) * hd;
          const float* g = dout + (row * a.heads + h) * hd;
          float* dqr = dq + (row * a.heads + h) * hd;
          const int64_t n = std::max<int64_t>(0, visible_keys(s, qi));
          if (n == 0) {
            std::fill(dqr, dqr + hd, 0.0f);
            continue;
          }
          scores_of(q, kt.data(), keys, n, hd, a.scale, p.data());
          softmax_in_place(p.data(), n);
          scores_of(g, vt.data(), keys, n, hd, 1.0f, dp.data());  // dp[j] = g . v_j
          const float weighted = dot_of(p.data(), dp.data(), n);
          for (int64_t j = 0; j < n; ++j) dp[size_t(j)] = p[size_t(j)] * (dp[size_t(j)] - weighted) * a.scale;  // ds
          weighted_rows(dp.data(), k.data(), n, hd, dqr);
          add_outer(dp.data(), q, n, hd, dk.data());
          add_outer(p.data(), g, n, hd, dv.data());
        }
      // Either pool may be null: a gradient nobody wants (backend.h).
      for (int64_t j = 0; j < keys; ++j) {
        const int64_t slot = (int64_t(s.key_slots[j]) * a.kv_heads + kvh) * hd;
        for (int64_t d = 0; d < hd; ++d) {
          if (dk_pool != nullptr) dk_pool[slot + d] += dk[size_t(j * hd + d)];
          if (dv_pool != nullptr) dv_pool[slot + d] += dv[size_t(j * hd + d)];
        }
      }
    }
  });
}

}  // namespace st::cpu
