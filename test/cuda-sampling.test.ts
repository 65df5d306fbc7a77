/**
 * Token sampling as a backend op (Backend::sample_tokens), the rule of
 * native/backend/sampling_rule.h: a counter-based draw per (sequence seed,
 * step), fixed-point weights exp((logit - max) / T) (so every sum is an
 * exact integer sum, whatever its order), top-k and top-p over a total
 * ranking (logit, then the lower token id), and an inverse-CDF walk in token
 * order over the kept tokens.
 *
 * On the CPU backend: the draws follow the distribution the options define
 * (chi-square against probabilities computed here in double, and no token
 * outside the top-k / top-p set ever drawn), greedy is the first argmax, the
 * log-probs are log softmax(logits / T), and a (seed, step) pair always gives
 * the same token.
 *
 * CUDA against CPU (on a GPU, or under the CPU emulation of the CUDA
 * execution model): the tokens are IDENTICAL, draw for draw, and the
 * log-probs agree within 1e-6. Identical because both backends compute the
 * same integers: the fixed-point weights round exp() in double to 2^-44,
 * the sums are integer sums, the top-p cut compares the same integers, and
 * the draw is the same 53-bit function of (seed, step). The one way they can
 * differ on a GPU: CUDA's double exp() is within 1 ulp where glibc's is
 * correctly rounded, so a weight can round to a neighbouring fixed-point
 * value, and a draw or the top-p cut landing exactly there (probability of
 * order 2^-40 a draw) picks the neighbouring token. Under the emulation both
 * use glibc's exp(), so there the equality is exact by construction and any
 * mismatch is a kernel bug.
 */
import t from 'tap';
import { native } from '../lib/native/binding.js';
import { runOp } from '../lib/native/testing.js';
import { rng } from './helpers.js';

const info = native().runtimeInfo();
const cudaSkip = !info.cuda.available ? `no usable CUDA device: ${info.cuda.reason ?? 'unknown'}` : false;
if (cudaSkip) t.comment(`CUDA sampling comparisons skipped: ${cudaSkip}`);

interface Sampling {
  temperature?: number;
  topK?: number;
  topP?: number;
  greedy?: number;
}

/** Draws one token per row; row r uses seed seeds[r] (a number below 2^53) at step counters[r]. */
async function draw(device: 'cpu' | 'cuda', logits: Float32Array, vocab: number, seeds: number[], counters: number[], s: Sampling, op: 'sample_tokens' | 'sample_tokens_at' = 'sample_tokens') {
  const rows = seeds.length;
  const r = await runOp({
    op,
    device,
    tensors: { logits },
    ints: {
      seedsLo: Int32Array.from(seeds, (x) => x % 2 ** 32 | 0),
      seedsHi: Int32Array.from(seeds, (x) => Math.floor(x / 2 ** 32) | 0),
      counters: Int32Array.from(counters),
    },
    scalars: { rows, vocab, temperature: s.temperature ?? 1, topK: s.topK ?? 0, topP: s.topP ?? 1, greedy: s.greedy ?? 0 },
  });
  return { tokens: Array.from(r.outputs['tokens'] as Float32Array), logprobs: r.outputs['logprobs'] as Float32Array };
}

/** The distribution the options define, in double: softmax(logits / T) restricted to top-k, then top-p, renormalised. */
function expected(row: Float32Array, s: Sampling): number[] {
  const T = s.temperature ?? 1;
  const max = Math.max(...row);
  const w = Array.from(row, (x) => Math.exp((x - max) / T));
  const total = w.reduce((a, b) => a + b, 0);
  const order = w.map((_, i) => i).sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
  let keep = s.topK && s.topK > 0 ? Math.min(s.topK, row.length) : row.length;
  if ((s.topP ?? 1) < 1) {
    let mass = 0;
    for (let r = 0; r < keep; r++) {
      mass += (w[order[r] as number] as number) / total;
      if (mass >= (s.topP as number)) {
        keep = r + 1;
        break;
      }
    }
  }
  const kept = new Set(order.slice(0, keep));
  const keptTotal = [...kept].reduce((a, i) => a + (w[i] as number), 0);
  return w.map((x, i) => (kept.has(i) ? x / keptTotal : 0));
}

function logSoftmax(row: Float32Array, T: number, token: number): number {
  const max = Math.max(...row);
  const total = Array.from(row).reduce((a, x) => a + Math.exp((x - max) / T), 0);
  return ((row[token] as number) - max) / T - Math.log(total);
}

/**
 * Pearson's chi-square of the counts against the probabilities (cells with
 * p = 0 must be empty), and its critical value at significance 1e-6 by the
 * Wilson-Hilferty approximation: a correct sampler fails this about once in
 * a million seeds, a wrong distribution of the kind tested here every time.
 */
function chiSquare(counts: number[], p: number[], n: number): { stat: number; critical: number; stray: number } {
  let stat = 0;
  let cells = 0;
  let stray = 0;
  p.forEach((pi, i) => {
    const c = counts[i] ?? 0;
    if (pi === 0) {
      stray += c;
      return;
    }
    cells++;
    stat += (c - n * pi) ** 2 / (n * pi);
  });
  const k = cells - 1;
  const z = 4.753; // one-sided normal quantile of 1 - 1e-6
  const critical = k * (1 - 2 / (9 * k) + z * Math.sqrt(2 / (9 * k))) ** 3;
  return { stat, critical, stray };
}

const random = rng(20261206);
const normal = () => Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());
const logitsRow = (vocab: number, scale: number) => Float32Array.from({ length: vocab }, () => scale * normal());
const repeatRow = (row: Float32Array, n: number) => {
  const out = new Float32Array(row.length * n);
  for (let i = 0; i < n; i++) out.set(row, i * row.length);
  return out;
};

const settings: [string, Sampling][] = [
  ['T=1, full vocabulary', {}],
  ['T=0.7, top-k 5', { temperature: 0.7, topK: 5 }],
  ['T=1.3, top-p 0.8', { temperature: 1.3, topP: 0.8 }],
  ['T=0.9, top-k 8 and top-p 0.9', { temperature: 0.9, topK: 8, topP: 0.9 }],
];

t.test('CPU: the draws follow the distribution the options define (chi-square, nothing outside the kept set)', async (t) => {
  const vocab = 12;
  const n = 20000;
  const row = logitsRow(vocab, 1.5);
  for (const [name, s] of settings) {
    const { tokens } = await draw('cpu', repeatRow(row, n), vocab, Array(n).fill(77), Array.from({ length: n }, (_, i) => i), s);
    const counts = Array(vocab).fill(0);
    for (const tok of tokens) counts[tok]++;
    const { stat, critical, stray } = chiSquare(counts, expected(row, s), n);
    t.equal(stray, 0, `${name}: no token outside top-k / top-p is drawn`);
    t.ok(stat < critical, `${name}: chi-square ${stat.toFixed(1)} < ${critical.toFixed(1)} (significance 1e-6)`);
  }
  // The test can fail: the same draws judged against the untruncated
  // distribution (a sampler that ignored top-k) are rejected.
  const s = { temperature: 0.7, topK: 5 };
  const { tokens } = await draw('cpu', repeatRow(row, n), vocab, Array(n).fill(77), Array.from({ length: n }, (_, i) => i), s);
  const counts = Array(vocab).fill(0);
  for (const tok of tokens) counts[tok]++;
  const wrong = chiSquare(counts, expected(row, { temperature: 0.7 }), n);
  t.ok(wrong.stat > wrong.critical, `top-k draws against the full distribution: chi-square ${wrong.stat.toFixed(0)} > ${wrong.critical.toFixed(1)}`);
});

t.test('CPU: greedy is the first argmax, log-probs are log softmax(logits / T), a (seed, step) always draws the same', async (t) => {
  const vocab = 40;
  const row = logitsRow(vocab, 2);
  row[7] = 9;
  row[23] = 9; // a tie: the lower id wins
  const greedy = await draw('cpu', row, vocab, [1], [0], { greedy: 1 });
  t.equal(greedy.tokens[0], 7);
  t.ok(Math.abs((greedy.logprobs[0] as number) - logSoftmax(row, 1, 7)) < 1e-6, 'greedy log-prob is at T = 1');
  const rows = 64;
  const seeds = Array.from({ length: rows }, (_, i) => 1000 + (i % 4));
  const counters = Array.from({ length: rows }, (_, i) => Math.floor(i / 4));
  const spread = logitsRow(vocab, 0.5);
  const a = await draw('cpu', repeatRow(spread, rows), vocab, seeds, counters, { temperature: 0.8 });
  const b = await draw('cpu', repeatRow(spread, rows), vocab, seeds, counters, { temperature: 0.8 });
  t.same(a.tokens, b.tokens, 'reproducible');
  t.ok(new Set(a.tokens).size > 3, 'different (seed, step) pairs draw different tokens');
  let worst = 0;
  a.tokens.forEach((tok, i) => (worst = Math.max(worst, Math.abs((a.logprobs[i] as number) - logSoftmax(spread, 0.8, tok)))));
  t.ok(worst < 1e-5, `log-probs within 1e-5 of log softmax(logits / T) (worst ${worst.toExponential(2)})`);
});

t.test('CUDA draws the same tokens as the CPU backend', { skip: cudaSkip }, async (t) => {
  // Each emulated row is a block of 256 real threads: few rows, one vocabulary
  // past the 256-thread stride and the scan's chunking.
  for (const vocab of [50, 3001]) {
    const rows = 8;
    const logits = new Float32Array(rows * vocab);
    for (let r = 0; r < rows; r++) logits.set(logitsRow(vocab, 1 + (r % 3)), r * vocab);
    // Rows with exact ties across the top-k / top-p boundaries.
    for (let j = 0; j < vocab; j++) logits[j] = Math.round((logits[j] as number) * 2) / 2;
    const seeds = Array.from({ length: rows }, (_, i) => 0x1234_5678_9ab + 7919 * i);
    const counters = Array.from({ length: rows }, (_, i) => 3 * i);
    for (const [name, s] of [...settings, ['greedy', { greedy: 1 }] as [string, Sampling], ['top-k 1', { topK: 1 }] as [string, Sampling]]) {
      const cpu = await draw('cpu', logits, vocab, seeds, counters, s);
      const cuda = await draw('cuda', logits, vocab, seeds, counters, s);
      t.same(cuda.tokens, cpu.tokens, `vocab ${vocab}, ${name}: identical tokens`);
      let worst = 0;
      cpu.logprobs.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - (cuda.logprobs[i] as number)))));
      t.ok(worst <= 1e-6, `vocab ${vocab}, ${name}: log-probs within 1e-6 (worst ${worst.toExponential(2)})`);
    }
  }
});

t.test('CUDA: the draws follow the distribution (chi-square) and equal the CPU draws', { skip: cudaSkip }, async (t) => {
  const vocab = 10;
  const n = 300;
  const row = logitsRow(vocab, 1.2);
  const s = { temperature: 0.9, topK: 7, topP: 0.95 };
  const counters = Array.from({ length: n }, (_, i) => i);
  const cuda = await draw('cuda', repeatRow(row, n), vocab, Array(n).fill(5), counters, s);
  const cpu = await draw('cpu', repeatRow(row, n), vocab, Array(n).fill(5), counters, s);
  const counts = Array(vocab).fill(0);
  for (const tok of cuda.tokens) counts[tok]++;
  const { stat, critical, stray } = chiSquare(counts, expected(row, s), n);
  t.equal(stray, 0, 'no token outside top-k / top-p');
  t.ok(stat < critical, `chi-square ${stat.toFixed(1)} < ${critical.toFixed(1)} (significance 1e-6)`);
  t.same(cuda.tokens, cpu.tokens, 'every draw equals the CPU backend');
});

t.test('sample_tokens_at (seeds, counters, tokens and log-probs in backend arrays) draws what sample_tokens draws', async (t) => {
  const random = rng(77);
  const vocab = 300;
  const rows = 9;
  const logits = Float32Array.from({ length: rows * vocab }, () => 4 * (random() - 0.5));
  const seeds = Array.from({ length: rows }, (_, i) => 1000003 * i + 2 ** 40);
  const counters = Array.from({ length: rows }, (_, i) => 3 * i);
  const devices: ('cpu' | 'cuda')[] = cudaSkip ? ['cpu'] : ['cpu', 'cuda'];
  for (const device of devices)
    for (const s of [{ temperature: 0.7, topK: 20, topP: 0.9 }, { greedy: 1 }] as Sampling[]) {
      const host = await draw(device, logits, vocab, seeds, counters, s);
      const at = await draw(device, logits, vocab, seeds, counters, s, 'sample_tokens_at');
      t.same(at.tokens, host.tokens, `${device} ${JSON.stringify(s)}: the same tokens`);
      t.ok(Buffer.from(at.logprobs.buffer).equals(Buffer.from(host.logprobs.buffer)), `${device} ${JSON.stringify(s)}: the same log-prob bits`);
    }
});
