// Finite-difference checks of every backward op of the CPU backend on tiny,
// awkward shapes (tails of the vector loops, GQA groups, causal and windowed
// attention). Each op's output y is reduced to L = sum(y * r) for a fixed
// random r, so dL/dy = r; central differences of L are compared with the
// analytic gradients. Prints one line per check and "N passed, N failed".
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace {

std::mt19937 rng(1234);
std::vector<float> randn(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

int passed = 0, failed = 0;

// Perturbs up to 24 entries of `x`, compares (L(x+h) - L(x-h)) / 2h with `analytic`.
void check(const std::string& name, std::vector<float>& x, const std::vector<float>& analytic,
           const std::function<double()>& loss, double h = 1e-2, double tol = 2e-2) {
  double worst = 0, scale = 1e-3;
  for (float g : analytic) scale = std::max(scale, double(std::fabs(g)));
  const size_t step = std::max<size_t>(1, x.size() / 24);
  for (size_t i = 0; i < x.size(); i += step) {
    const float saved = x[i];
    x[i] = saved + float(h);
    const double plus = loss();
    x[i] = saved - float(h);
    const double minus = loss();
    x[i] = saved;
    const double fd = (plus - minus) / (2 * h);
    worst = std::max(worst, std::fabs(fd - analytic[i]) / scale);
  }
  const bool ok = worst < tol;
  (ok ? passed : failed)++;
  std::printf("%s %s: max |fd - analytic| / max|grad| = %.2e\n", ok ? "ok  " : "FAIL", name.c_str(), worst);
}

}  // namespace

int main() {
  auto backend = st::make_cpu_backend();
  st::Backend& b = *backend;

  {  // linear: m, k, n with tails
    const int64_t m = 5, k = 13, n = 7;
    auto x = randn(m * k), w = randn(n * k, 0.3f), bias = randn(n), r = randn(m * n);
    std::vector<float> y(m * n), dx(m * k), dw(n * k, 0), db(n, 0);
    auto loss = [&] { b.linear(x.data(), w.data(), bias.data(), y.data(), m, k, n); return dot(y, r); };
    b.linear_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), m, k, n);
    check("linear dx", x, dx, loss);
    check("linear dw", w, dw, loss);
    check("linear db", bias, db, loss);
  }
  {  // linear with many rows (the packed kernel path)
    const int64_t m = 70, k = 33, n = 50;
    auto x = randn(m * k), w = randn(n * k, 0.3f), r = randn(m * n);
    std::vector<float> y(m * n), dx(m * k), dw(n * k, 0);
    auto loss = [&] { b.linear(x.data(), w.data(), nullptr, y.data(), m, k, n); return dot(y, r); };
    b.linear_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), nullptr, m, k, n);
    check("linear (packed) dx", x, dx, loss);
    check("linear (packed) dw", w, dw, loss);
  }
  {  // rmsnorm
    const int64_t rows = 3, dim = 11;
    auto x = randn(rows * dim), w = randn(dim), r = randn(rows * dim);
    for (auto& v : w) v += 1.0f;
    std::vector<float> y(rows * dim), dx(rows * dim), dw(dim, 0);
    auto loss = [&] { b.rmsnorm(x.data(), w.data(), y.data(), rows, dim, 1e-6f); return dot(y, r); };
    b.rmsnorm_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), rows, dim, 1e-6f);
    check("rmsnorm dx", x, dx, loss);
    check("rmsnorm dw", w, dw, loss);
  }
  {  // rotary
    const int64_t rows = 4, heads = 3, hd = 10;
    auto x = randn(rows * heads * hd), r = randn(rows * heads * hd);
    std::vector<float> cos(rows * hd), sin(rows * hd);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < hd / 2; ++j) {
        const double theta = (i + 1) * 0.7 * (j + 1);
        cos[i * hd + j] = cos[i * hd + j + hd / 2] = float(std::cos(theta));
        sin[i * hd + j] = sin[i * hd + j + hd / 2] = float(std::sin(theta));
      }
    std::vector<float> y;
    auto loss = [&] { y = x; b.rotary(y.data(), cos.data(), sin.data(), rows, heads, hd); return dot(y, r); };
    std::vector<float> dx = r;
    b.rotary_backward(dx.data(), cos.data(), sin.data(), rows, heads, hd);
    check("rotary dx", x, dx, loss);
  }
  {  // swiglu and gelu
    const int64_t n = 37;
    auto g = randn(n, 2.0f), u = randn(n), r = randn(n);
    std::vector<float> y(n), dg(n), du(n);
    auto loss = [&] { b.swiglu(g.data(), u.data(), y.data(), n); return dot(y, r); };
    b.swiglu_backward(g.data(), u.data(), r.data(), dg.data(), du.data(), n);
    check("swiglu dgate", g, dg, loss);
    check("swiglu dup", u, du, loss);
    auto x = randn(n, 2.0f);
    auto gl = [&] { y = x; b.gelu(y.data(), n); return dot(y, r); };
    std::vector<float> dx = r;
    b.gelu_backward(x.data(), dx.data(), n);
    check("gelu dx", x, dx, gl);
  }
  {  // embedding with a repeated id
    const int64_t vocab = 6, dim = 5;
    auto table = randn(vocab * dim);
    const std::vector<int32_t> ids = {3, 1, 3, 0};
    auto r = randn(ids.size() * dim);
    std::vector<float> y(ids.size() * dim), dt(vocab * dim, 0);
    auto loss = [&] { b.embedding(ids.data(), int64_t(ids.size()), table.data(), y.data(), dim); return dot(y, r); };
    b.embedding_backward(ids.data(), int64_t(ids.size()), r.data(), dt.data(), dim);
    check("embedding dtable", table, dt, loss);
  }
  for (bool causal : {true, false}) {  // attention: GQA, two sequences, odd head dim
    const int64_t heads = 4, kv_heads = 2, hd = 5, rows = 7;
    auto q = randn(rows * heads * hd), k = randn(rows * kv_heads * hd), v = randn(rows * kv_heads * hd);
    auto r = randn(rows * heads * hd);
    std::vector<int32_t> slots(rows);
    std::iota(slots.begin(), slots.end(), 0);
    st::AttentionArgs args;
    args.heads = heads;
    args.kv_heads = kv_heads;
    args.head_dim = hd;
    args.scale = 0.45f;
    args.sequences = {{0, 3, slots.data(), 3, causal}, {3, 4, slots.data() + 3, 4, causal}};
    std::vector<float> out(rows * heads * hd);
    auto loss = [&] {
      args.q = q.data();
      args.k_pool = k.data();
      args.v_pool = v.data();
      args.out = out.data();
      b.attention(args);
      return dot(out, r);
    };
    loss();
    std::vector<float> dq(q.size()), dk(k.size(), 0), dv(v.size(), 0);
    b.attention_backward(args, r.data(), dq.data(), dk.data(), dv.data());
    const std::string kind = causal ? "causal" : "bidirectional";
    check("attention (" + kind + ") dq", q, dq, loss);
    check("attention (" + kind + ") dk", k, dk, loss);
    check("attention (" + kind + ") dv", v, dv, loss);
  }
  {  // tiled log-prob gather, vocabulary larger than one tile, temperature 0.7
    const int64_t rows = 3, dim = 6, vocab = 5000;
    auto hidden = randn(rows * dim), head = randn(vocab * dim, 0.5f), r = randn(rows);
    const std::vector<int32_t> targets = {4, 4097, 1234};
    std::vector<float> lp(rows), dh(rows * dim), dhead(vocab * dim, 0);
    auto loss = [&] {
      b.token_logprobs(hidden.data(), head.data(), rows, dim, vocab, targets.data(), 0.7f, lp.data());
      return dot(lp, r);
    };
    b.token_logprobs_backward(hidden.data(), head.data(), rows, dim, vocab, targets.data(), 0.7f, r.data(), dh.data(),
                              dhead.data());
    check("token log-probs dhidden", hidden, dh, loss, 1e-2);
    // The head gradient is concentrated on the target rows: check those.
    std::vector<float> target_rows, target_grads;
    for (int32_t t : targets)
      for (int64_t d = 0; d < dim; ++d) {
        target_rows.push_back(head[t * dim + d]);
        target_grads.push_back(dhead[t * dim + d]);
      }
    auto loss_rows = [&] {
      size_t i = 0;
      for (int32_t t : targets)
        for (int64_t d = 0; d < dim; ++d) head[t * dim + d] = target_rows[i++];
      return loss();
    };
    check("token log-probs dhead (target rows)", target_rows, target_grads, loss_rows, 1e-2);
  }
  {  // the tiled entropy against a direct computation
    const int64_t dim = 4, vocab = 9000;
    auto hidden = randn(dim), head = randn(vocab * dim);
    const int32_t target = 17;
    float lp, entropy;
    b.token_logprobs(hidden.data(), head.data(), 1, dim, vocab, &target, 0.8f, &lp, &entropy);
    std::vector<double> z(vocab);
    double m = -INFINITY, sum = 0, h = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      double s = 0;
      for (int64_t d = 0; d < dim; ++d) s += double(hidden[d]) * head[v * dim + d];
      z[v] = s / 0.8;
      m = std::max(m, z[v]);
    }
    for (double v : z) sum += std::exp(v - m);
    for (double v : z) {
      const double p = std::exp(v - m) / sum;
      h -= p * std::log(p);
    }
    const bool ok = std::fabs(entropy - h) < 1e-4 * std::max(1.0, h);
    (ok ? passed : failed)++;
    std::printf("%s token entropy: tiled %.6f direct %.6f\n", ok ? "ok  " : "FAIL", entropy, h);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
