/**
 * The fused log-prob + policy loss (Backend::policy_loss): the tiled
 * log-softmax, the per-token GRPO terms (native/train/policy_terms.h) and
 * d loss / d logp stay on the backend, then the tiled backward; the host gets
 * the totals (and, here, the per-token values the op test asks for).
 *
 * On the CPU backend the op must equal the unfused path it replaces: the
 * token_logprobs op, the host policy loss (policyLoss, shared/spec/grpo.md),
 * and token_logprobs_backward fed its gradient: log-probs and the loss to
 * 1e-6 relative, the gradients to 1e-6 relative (the same float arithmetic,
 * the per-token weight in double in both).
 *
 * CUDA against CPU (a GPU, or the CPU emulation of the CUDA execution model):
 * both compute in fp32 with double reductions; the logits come from products
 * summed in another order, so log-probs, ratios and KL agree within 1e-5
 * relative, the loss totals within 1e-5 relative (a sum of 1e-7-accurate
 * terms), clip counts exactly (no token sits within 1e-5 of a clip boundary
 * in these cases: the test checks that margin), and dhidden / dhead within
 * 1e-4 relative, as the matrix-product ops of cuda-ops.test.ts. With bf16
 * storage (the CUDA default) on bf16-exact inputs: log-probs and totals as in
 * fp32, gradients within 1e-2 (the test below says why).
 */
import t from 'tap';
import { native } from '../lib/native/binding.js';
import { policyLoss, runOp, type PolicyLossOptions } from '../lib/native/testing.js';
import { rng } from './helpers.js';

const info = native().runtimeInfo();
const cudaSkip = !info.cuda.available
  ? `no usable CUDA device: ${info.cuda.reason ?? 'unknown'}`
  : !info.cuda.cublas.found
    ? `cuBLAS not found: ${info.cuda.cublas.error ?? 'unknown'}`
    : false;
if (cudaSkip) t.comment(`CUDA loss comparisons skipped: ${cudaSkip}`);

const random = rng(20261207);
const uniform = (n: number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * random());
const ints = (n: number, below: number) => Int32Array.from({ length: n }, () => Math.floor(random() * below));

const ESTIMATORS = { k1: 0, abs: 1, mse: 2, k3: 3 } as const;

interface LossCase {
  name: string;
  rows: number;
  dim: number;
  vocab: number;
  temperature: number;
  options: Required<Pick<PolicyLossOptions, 'clipLow' | 'clipHigh' | 'dualClip' | 'klCoef'>> & { klEstimator: keyof typeof ESTIMATORS };
  sft?: boolean;
  withRef: boolean;
}

function inputs(c: LossCase) {
  const hidden = uniform(c.rows * c.dim, -2, 2);
  const head = uniform(c.vocab * c.dim, -1, 1);
  const targets = ints(c.rows, c.vocab);
  // Old log-probs a little off the current ones (set below from the CPU
  // log-probs) so ratios fall on both sides of the clip range.
  const shift = uniform(c.rows, -0.6, 0.6);
  const advantages = Float32Array.from({ length: c.rows }, (_, i) => (i % 5 === 0 ? -2 : 1) * (0.2 + random()));
  const refShift = uniform(c.rows, -0.5, 0.5);
  // Two completions of unequal length: seq-mean-token-mean weights.
  const sequence = Int32Array.from({ length: c.rows }, (_, i) => (i < c.rows / 3 ? 0 : 1));
  const len0 = sequence.filter((s) => s === 0).length;
  const weights = Float32Array.from(sequence, (s) => 1 / (2 * (s === 0 ? len0 : c.rows - len0)));
  return { hidden, head, targets, shift, advantages, refShift, sequence, weights };
}

async function fused(device: 'cpu' | 'cuda', c: LossCase, x: ReturnType<typeof inputs>, oldLogp: Float32Array, refLogp: Float32Array, dhead0: Float32Array, dtype?: 'fp32' | 'bf16') {
  const r = await runOp({
    op: 'policy_loss',
    device,
    ...(dtype ? { dtype } : {}),
    tensors: {
      hidden: x.hidden,
      head: x.head,
      oldLogp,
      advantages: x.advantages,
      weights: x.weights,
      dhead: dhead0,
      ...(c.withRef ? { refLogp } : {}),
    },
    ints: { targets: x.targets },
    scalars: {
      rows: c.rows,
      dim: c.dim,
      vocab: c.vocab,
      temperature: c.temperature,
      clipLow: c.options.clipLow,
      clipHigh: c.options.clipHigh,
      dualClip: c.options.dualClip,
      klCoef: c.options.klCoef,
      klEstimator: ESTIMATORS[c.options.klEstimator],
      sft: c.sft ? 1 : 0,
    },
  });
  return { ...r.outputs, loss: r.scalar as number } as Record<string, Float32Array> & { loss: number };
}

function relError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(x - y));
    scale = Math.max(scale, Math.abs(y));
  }
  return scale > 0 ? worst / scale : worst;
}

const base = { clipLow: 0.2, clipHigh: 0.3, dualClip: 3, klCoef: 0.04, klEstimator: 'k3' as const };
const cases: LossCase[] = [
  { name: 'GRPO, k3 KL, dual clip, T 1', rows: 37, dim: 24, vocab: 300, temperature: 1, options: base, withRef: true },
  { name: 'GRPO, no KL, T 0.7, two row tiles', rows: 515, dim: 4, vocab: 24, temperature: 0.7, options: { ...base, klCoef: 0 }, withRef: false },
  { name: 'GRPO, k1 KL, two vocabulary tiles', rows: 2, dim: 4, vocab: 16500, temperature: 1, options: { ...base, klEstimator: 'k1' }, withRef: true },
  { name: 'GRPO, abs KL, no dual clip', rows: 20, dim: 16, vocab: 64, temperature: 1.2, options: { ...base, klEstimator: 'abs', dualClip: 1 }, withRef: true },
  { name: 'SFT (token cross-entropy)', rows: 19, dim: 16, vocab: 80, temperature: 1, options: { ...base, klCoef: 0 }, sft: true, withRef: false },
];

/** The old and reference log-probs from the CPU backend's log-probs, shifted. */
async function references(c: LossCase, x: ReturnType<typeof inputs>) {
  const lp = await runOp({
    op: 'token_logprobs',
    tensors: { hidden: x.hidden, head: x.head },
    ints: { targets: x.targets },
    scalars: { rows: c.rows, dim: c.dim, vocab: c.vocab, temperature: c.temperature },
    outputs: ['entropy'],
  });
  const logp = lp.outputs['logp'] as Float32Array;
  return {
    logp,
    entropy: lp.outputs['entropy'] as Float32Array,
    oldLogp: logp.map((v, i) => v + (x.shift[i] as number)),
    refLogp: logp.map((v, i) => v + (x.refShift[i] as number)),
  };
}

t.test('CPU: the fused op equals token_logprobs + the host policy loss + token_logprobs_backward', async (t) => {
  for (const c of cases) {
    const x = inputs(c);
    const ref = await references(c, x);
    const dhead0 = uniform(c.vocab * c.dim);
    const got = await fused('cpu', c, x, ref.oldLogp, ref.refLogp, dhead0);
    const aggregation = 'seq-mean-token-mean';
    const host = c.sft
      ? null
      : await policyLoss(
          { logp: ref.logp, oldLogp: ref.oldLogp, advantages: x.advantages, sequence: x.sequence, ...(c.withRef ? { refLogp: ref.refLogp } : {}) },
          { ...c.options, aggregation },
        );
    const dlogp = host ? host.dlogp : x.weights.map((w) => -w);
    const loss = host ? host.loss : -ref.logp.reduce((a, v, i) => a + v * (x.weights[i] as number), 0);
    t.ok(relError(got['logp'] as Float32Array, ref.logp) <= 1e-6, `${c.name}: log-probs`);
    t.ok(Math.abs(got.loss - loss) <= 1e-6 * Math.max(1, Math.abs(loss)), `${c.name}: loss ${got.loss} vs host ${loss}`);
    if (host) {
      t.ok(relError(got['ratio'] as Float32Array, host.ratio) <= 1e-6, `${c.name}: ratios`);
      t.ok(relError(got['kl'] as Float32Array, host.kl) <= 1e-6, `${c.name}: KL`);
      const totals = got['totals'] as Float32Array;
      t.ok(Math.abs((totals[3] as number) / c.rows - host.clipfracHigh) < 1e-7, `${c.name}: upper clip fraction ${host.clipfracHigh}`);
      t.ok(Math.abs((totals[4] as number) / c.rows - host.clipfracLow) < 1e-7, `${c.name}: lower clip fraction ${host.clipfracLow}`);
      t.ok(Math.abs((totals[5] as number) / c.rows - host.clipfracDual) < 1e-7, `${c.name}: dual clip fraction ${host.clipfracDual}`);
    }
    const back = await runOp({
      op: 'token_logprobs_backward',
      tensors: { hidden: x.hidden, head: x.head, dlogp, dhead: dhead0 },
      ints: { targets: x.targets },
      scalars: { rows: c.rows, dim: c.dim, vocab: c.vocab, temperature: c.temperature },
    });
    t.ok(relError(got['dhidden'] as Float32Array, back.outputs['dhidden'] as Float32Array) <= 1e-6, `${c.name}: dhidden`);
    t.ok(relError(got['dhead'] as Float32Array, back.outputs['dhead'] as Float32Array) <= 1e-6, `${c.name}: dhead`);
  }
});

t.test('CUDA: the fused loss matches the CPU backend', { skip: cudaSkip }, async (t) => {
  for (const c of cases) {
    const x = inputs(c);
    const ref = await references(c, x);
    // Keep every ratio at least 1e-3 away from a clip boundary, so that the
    // two backends' log-probs (1e-5 apart) take the same branch.
    const bounds = [Math.log(1 - c.options.clipLow), Math.log(1 + c.options.clipHigh)];
    const oldLogp = ref.oldLogp.map((o, i) => {
      const d = (ref.logp[i] as number) - o;
      return bounds.some((b) => Math.abs(d - b) < 1e-3) ? o + 3e-3 : o;
    });
    const dhead0 = uniform(c.vocab * c.dim);
    const cpu = await fused('cpu', c, x, oldLogp, ref.refLogp, dhead0);
    const cuda = await fused('cuda', c, x, oldLogp, ref.refLogp, dhead0, 'fp32');
    for (const name of ['logp', 'ratio', 'kl'])
      t.ok(relError(cuda[name] as Float32Array, cpu[name] as Float32Array) <= 1e-5, `${c.name}: ${name} (error ${relError(cuda[name] as Float32Array, cpu[name] as Float32Array).toExponential(2)})`);
    const ct = cuda['totals'] as Float32Array;
    const pt = cpu['totals'] as Float32Array;
    for (const [i, name] of [[0, 'loss'], [1, 'pg loss'], [2, 'kl loss'], [6, 'ppo kl'], [7, 'kl sum'], [8, 'entropy sum']] as const)
      t.ok(Math.abs((ct[i] as number) - (pt[i] as number)) <= 1e-5 * Math.max(1, Math.abs(pt[i] as number)), `${c.name}: ${name} ${ct[i]} vs ${pt[i]}`);
    for (const [i, name] of [[3, 'upper clips'], [4, 'lower clips'], [5, 'dual clips'], [9, 'non-finite']] as const)
      t.equal(ct[i], pt[i], `${c.name}: ${name}`);
    for (const name of ['dhidden', 'dhead']) {
      const e = relError(cuda[name] as Float32Array, cpu[name] as Float32Array);
      t.ok(e <= 1e-4, `${c.name}: ${name} (error ${e.toExponential(2)})`);
    }
  }
});

/** Rounds to the nearest bf16 (ties to even), as the CUDA backend stores it. */
const bits = new Float32Array(1);
const word = new Uint32Array(bits.buffer);
function toBf16(v: Float32Array): Float32Array<ArrayBuffer> {
  return Float32Array.from(v, (x) => {
    bits[0] = x;
    const u = word[0] as number;
    word[0] = ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
    return bits[0] as number;
  });
}

// bf16 storage: hidden and head rounded to bf16 here first, so both backends
// start from the same values. The logits are fp32 sums of exact bf16
// products, so log-probs, ratios, KL and the totals keep the fp32
// tolerances; dhidden is stored in bf16 (one rounding, 2^-9 relative) from a
// bf16-rounded d loss / d logit tile, and dhead sums that rounded tile in
// fp32: both within 1e-2 relative of the CPU's fp32 gradients.
t.test('CUDA with bf16 storage: the fused loss matches the CPU backend on bf16 inputs', { skip: cudaSkip }, async (t) => {
  for (const c of [cases[0], cases[3]] as LossCase[]) {
    const x = inputs(c);
    x.hidden = toBf16(x.hidden);
    x.head = toBf16(x.head);
    const ref = await references(c, x);
    const bounds = [Math.log(1 - c.options.clipLow), Math.log(1 + c.options.clipHigh)];
    const oldLogp = ref.oldLogp.map((o, i) => {
      const d = (ref.logp[i] as number) - o;
      return bounds.some((b) => Math.abs(d - b) < 1e-3) ? o + 3e-3 : o;
    });
    const dhead0 = uniform(c.vocab * c.dim);
    const cpu = await fused('cpu', c, x, oldLogp, ref.refLogp, dhead0);
    const cuda = await fused('cuda', c, x, oldLogp, ref.refLogp, dhead0, 'bf16');
    for (const name of ['logp', 'ratio', 'kl']) {
      const e = relError(cuda[name] as Float32Array, cpu[name] as Float32Array);
      t.ok(e <= 1e-5, `${c.name}: ${name} (error ${e.toExponential(2)})`);
    }
    const ct = cuda['totals'] as Float32Array;
    const pt = cpu['totals'] as Float32Array;
    t.ok(Math.abs((ct[0] as number) - (pt[0] as number)) <= 1e-5 * Math.max(1, Math.abs(pt[0] as number)), `${c.name}: loss ${ct[0]} vs ${pt[0]}`);
    for (const name of ['dhidden', 'dhead']) {
      const e = relError(cuda[name] as Float32Array, cpu[name] as Float32Array);
      t.ok(e <= 1e-2, `${c.name}: ${name} in bf16 storage (error ${e.toExponential(2)})`);
    }
  }
});

t.test('a non-finite loss poisons the gradient on both backends', async (t) => {
  const c: LossCase = { name: 'overflowing ratio', rows: 4, dim: 4, vocab: 16, temperature: 1, options: { ...base, klCoef: 0, dualClip: 1 }, withRef: false };
  const x = inputs(c);
  x.advantages.fill(-1); // -A * ratio = +inf, and no dual clip to cap it
  const ref = await references(c, x);
  const oldLogp = ref.logp.map((v, i) => (i === 2 ? v - 1000 : v)); // exp(1000) overflows
  for (const device of cudaSkip ? (['cpu'] as const) : (['cpu', 'cuda'] as const)) {
    const got = await fused(device, c, x, oldLogp, ref.refLogp, new Float32Array(c.vocab * c.dim), device === 'cuda' ? 'fp32' : undefined);
    t.equal((got['totals'] as Float32Array)[9], 1, `${device}: one non-finite token counted`);
    t.ok((got['dhidden'] as Float32Array).some(Number.isNaN), `${device}: the gradient is NaN`);
  }
});
