/**
 * Every op of the backend interface, forward and backward, on the CUDA
 * backend against the CPU backend on the same random inputs (runOp copies
 * them in and the results out). Shapes hit the kernels' tails, GQA groups,
 * causal ranges with fewer keys than queries, decode rows, every head-size
 * specialisation (<= 64, <= 128, <= 256, the last past 48 KiB of shared
 * memory) and several vocabulary and row tiles of the log-prob gather.
 *
 * Error: max |cuda - cpu| / max |cpu| over each output (NaN only where both
 * are NaN, i.e. entries neither backend writes). Both backends compute in
 * fp32. Tolerances:
 *   - matrix products (linear, token_logprobs): 1e-4 in fp32 (the default),
 *     1e-2 with TF32 products (SPATIALTHINKER_CUDA_TF32=1); every assertion
 *     prints the error it measured;
 *   - attention (reductions over keys and head dims in another order): 1e-4;
 *   - elementwise ops, norms, copies, AdamW: 1e-5;
 *   - sum of squares (double on both): 1e-10.
 * It also checks that two CUDA runs give identical bits (every kernel is
 * deterministic: no atomics race, column sums run in a fixed order).
 *
 * The same cases run again with the CUDA backend's bf16 storage (its
 * default): every float input is first rounded to bf16 (to nearest even) in
 * JavaScript, and the CPU backend computes in fp32 on those same values, so
 * the difference is only what bf16 storage adds inside the op. bf16 keeps 8
 * significant bits (7 stored), so one rounding to nearest moves a value by
 * at most half a unit in the last place: 2^-8 of itself just above a power
 * of two, 2^-9 just below the next (the unit roundoff is 2^-8, not 2^-9).
 * The error measure below is relative to the largest reference value, so
 * one rounding of every output is at most BF16_STORE = 2^-8 ~ 3.9e-3. Per output:
 *   - fp32 outputs computed from the same bf16 values (parameter gradients
 *     dw, db, dtable; the log-probs and entropies; AdamW's m and v): the fp32
 *     tolerance above, since the products accumulate in fp32 like the CPU's;
 *     embedding_backward and AdamW's m, v are checked bit for bit;
 *   - copies (embedding, gather_rows, scatter_rows and their _at forms with
 *     backend index arrays, copy_columns, fill):
 *     exact, a bf16 value survives a copy;
 *   - outputs stored in bf16 once (linear's y with its bias, since the bias
 *     is written first and the product added to it in fp32 before the one
 *     rounding; rmsnorm, rotary, swiglu, gelu, add, attention, dx of
 *     linear/rmsnorm, AdamW's param): BF16_STORE plus the fp32 tolerance;
 *   - attention_backward's dk/dv pools: pool + fp32 sum rounded once, so
 *     BF16_STORE plus the fp32 tolerance too;
 *   - token_logprobs_backward: the d loss / d logit tile is rounded to bf16
 *     to feed the products (cuBLAS takes one input type), each term of the
 *     vocabulary sum for dhidden and of the row sum for dhead carries a
 *     2^-8 rounding, so the error is at most 2^-8 times the sum of the
 *     terms' magnitudes. dlogit = dlogp (onehot - p) sums to zero over the
 *     vocabulary, so those sums cancel: on these inputs the sum of
 *     magnitudes is within 8x the largest output (dhidden then adds its own
 *     final rounding), hence 8 * BF16_STORE + BF16_STORE for dhidden and
 *     8 * BF16_STORE for dhead. The printed errors show the margin.
 *
 * Without a usable GPU and cuBLAS the CUDA comparisons skip, saying why;
 * the runOp harness itself is tested on the CPU backend. `npm test` and
 * `npm run test:cuda-emulated` also run this file against the CUDA kernels
 * under a CPU emulation of the CUDA execution model
 * (native/tests/cuda_emulation): a check of the kernels' logic, not of a GPU.
 */
import t from 'tap';
import { native } from '../lib/native/binding.js';
import { runOp } from '../lib/native/testing.js';
import type { RunOpArgs } from '../lib/native/binding.js';
import { rng, toBf16 } from './helpers.js';

const info = native().runtimeInfo();
const skip = !info.cuda.available
  ? `no usable CUDA device: ${info.cuda.reason ?? 'unknown'}`
  : !info.cuda.cublas.found
    ? `cuBLAS not found: ${info.cuda.cublas.error ?? 'unknown'}`
    : false;
if (skip) t.comment(`CUDA op tests skipped: ${skip}`);
// Under the CPU emulation every kernel thread is a host thread and the fake
// cuBLAS loops naively: both storages' passes take longer than the default
// per-file limit on a shared 2-core machine.
const emulated = info.cuda.devices.some((d) => /emulation/i.test(d.name));
if (emulated) t.setTimeout(45 * 60 * 1000);

// fp32 products differ from the CPU's only in summation order; TF32 rounds
// the inputs to 10-bit mantissas.
const PRODUCT = process.env['SPATIALTHINKER_CUDA_TF32'] && process.env['SPATIALTHINKER_CUDA_TF32'] !== '0' ? 1e-2 : 1e-4;
const ATTENTION = 1e-4;
const ELEMENTWISE = 1e-5;

type OpArgs = Omit<RunOpArgs, 'device'>;
interface Case {
  name: string;
  tol: number;
  args: OpArgs;
}

const random = rng(20251124);
const uniform = (n: number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * random());
const ints = (n: number, below: number) => Int32Array.from({ length: n }, () => Math.floor(random() * below));
const permutation = (n: number) => {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [p[i], p[j]] = [p[j] as number, p[i] as number];
  }
  return p;
};
const angles = (rows: number, hd: number) => {
  const theta = uniform(rows * hd, -20, 20);
  return { cos: theta.map(Math.cos), sin: theta.map(Math.sin) };
};

/** Relative error of `a` against the reference `b`; Infinity on a length mismatch or a NaN only one side has. */
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

function attentionCase(
  name: string,
  heads: number,
  kvHeads: number,
  headDim: number,
  layout: { qLen: number; kLen: number; causal: boolean }[],
): Case[] {
  let rows = 0;
  let keys = 0;
  for (const s of layout) {
    rows += s.qLen;
    keys += s.kLen;
  }
  const slots = keys + 7; // pool entries no sequence uses must stay untouched
  const order = permutation(slots);
  let q = 0;
  let k = 0;
  const sequences = layout.map((s) => {
    const seq = { qOffset: q, qLen: s.qLen, keySlots: order.slice(k, k + s.kLen), causal: s.causal };
    q += s.qLen;
    k += s.kLen;
    return seq;
  });
  const scalars = { rows, slots, heads, kvHeads, headDim };
  const q_ = uniform(rows * heads * headDim, -2, 2);
  const kPool = uniform(slots * kvHeads * headDim, -2, 2);
  const vPool = uniform(slots * kvHeads * headDim);
  return [
    { name: `attention ${name}`, tol: ATTENTION, args: { op: 'attention', tensors: { q: q_, k_pool: kPool, v_pool: vPool }, scalars, sequences } },
    {
      name: `attention_backward ${name}`,
      tol: ATTENTION,
      args: {
        op: 'attention_backward',
        tensors: {
          q: q_,
          k_pool: kPool,
          v_pool: vPool,
          dout: uniform(rows * heads * headDim),
          dk_pool: uniform(slots * kvHeads * headDim),
          dv_pool: uniform(slots * kvHeads * headDim),
        },
        scalars,
        sequences,
      },
    },
  ];
}

/**
 * The decode attention over a slot table (paged_decode_attention): `lengths`
 * keys per row, a table of `stride` slots per row (entries past a row's
 * length are slots the row must not read: they hold huge keys).
 */
function pagedDecodeCase(name: string, heads: number, kvHeads: number, headDim: number, lengths: number[], stride: number): Case {
  const rows = lengths.length;
  const slots = lengths.reduce((a, b) => a + b, 0) + 9;
  const order = permutation(slots);
  const table = new Int32Array(rows * stride);
  let at = 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < stride; j++) table[r * stride + j] = j < (lengths[r] as number) ? (order[at + j] as number) : (order[slots - 1 - (j % 9)] as number);
    at += lengths[r] as number;
  }
  const kPool = uniform(slots * kvHeads * headDim, -2, 2);
  for (let j = 0; j < 9; j++) kPool.fill(50, (order[slots - 1 - j] as number) * kvHeads * headDim, ((order[slots - 1 - j] as number) + 1) * kvHeads * headDim);
  return {
    name: `paged_decode_attention ${name}`,
    tol: ATTENTION,
    args: {
      op: 'paged_decode_attention',
      tensors: { q: uniform(rows * heads * headDim, -2, 2), k_pool: kPool, v_pool: uniform(slots * kvHeads * headDim) },
      ints: { table, lengths: Int32Array.from(lengths) },
      scalars: { rows, stride, slots, heads, kvHeads, headDim },
    },
  };
}

function cases(): Case[] {
  const out: Case[] = [];
  const add = (name: string, tol: number, args: OpArgs) => out.push({ name, tol, args });

  for (const [m, k, n] of [[37, 70, 45], [1, 896, 300], [3, 0, 4], [0, 5, 6], [130, 129, 257]] as const) {
    add(`linear ${m}x${k}x${n}`, PRODUCT, { op: 'linear', tensors: { x: uniform(m * k), w: uniform(n * k), bias: uniform(n) }, scalars: { m, k, n } });
    add(`linear_backward ${m}x${k}x${n}`, PRODUCT, {
      op: 'linear_backward',
      tensors: { x: uniform(m * k), w: uniform(n * k), dy: uniform(m * n), dw: uniform(n * k), db: uniform(n) },
      scalars: { m, k, n },
      outputs: ['dx'],
    });
  }
  add('linear without bias', PRODUCT, { op: 'linear', tensors: { x: uniform(8 * 16), w: uniform(24 * 16) }, scalars: { m: 8, k: 16, n: 24 } });
  add('linear_backward dw only', PRODUCT, { op: 'linear_backward', tensors: { x: uniform(9 * 7), w: uniform(5 * 7), dy: uniform(9 * 5), dw: uniform(5 * 7) }, scalars: { m: 9, k: 7, n: 5 } });

  for (const [rows, dim] of [[33, 896], [1, 7], [300, 64]] as const) {
    add(`rmsnorm ${rows}x${dim}`, ELEMENTWISE, { op: 'rmsnorm', tensors: { x: uniform(rows * dim, -3, 3), w: uniform(dim) }, scalars: { rows, dim, eps: 1e-6 } });
    add(`rmsnorm_backward ${rows}x${dim}`, ELEMENTWISE, {
      op: 'rmsnorm_backward',
      tensors: { x: uniform(rows * dim, -3, 3), w: uniform(dim), dy: uniform(rows * dim), dw: uniform(dim) },
      scalars: { rows, dim, eps: 1e-6 },
      outputs: ['dx'],
    });
  }

  for (const [rows, heads, hd] of [[19, 3, 64], [5, 16, 128], [7, 2, 80]] as const) {
    const { cos, sin } = angles(rows, hd);
    add(`rotary ${rows}x${heads}x${hd}`, ELEMENTWISE, { op: 'rotary', tensors: { x: uniform(rows * heads * hd), cos, sin }, scalars: { rows, heads, headDim: hd } });
    add(`rotary_backward ${rows}x${heads}x${hd}`, ELEMENTWISE, { op: 'rotary_backward', tensors: { dx: uniform(rows * heads * hd), cos, sin }, scalars: { rows, heads, headDim: hd } });
  }

  const n = 10007;
  add('swiglu', ELEMENTWISE, { op: 'swiglu', tensors: { gate: uniform(n, -30, 30), up: uniform(n) } });
  add('swiglu_backward', ELEMENTWISE, { op: 'swiglu_backward', tensors: { gate: uniform(n, -30, 30), up: uniform(n), dout: uniform(n) } });
  add('gelu', ELEMENTWISE, { op: 'gelu', tensors: { x: uniform(n, -6, 6) } });
  add('gelu_backward', ELEMENTWISE, { op: 'gelu_backward', tensors: { x_in: uniform(n, -6, 6), dout: uniform(n) } });
  add('add', ELEMENTWISE, { op: 'add', tensors: { x: uniform(n), y: uniform(n) } });
  add('fill 0.5', ELEMENTWISE, { op: 'fill', scalars: { n: 1001, value: 0.5 } });
  add('fill 0 (memset)', ELEMENTWISE, { op: 'fill', scalars: { n: 1001, value: 0 } });

  const vocab = 50;
  const dim = 33;
  add('embedding (repeated ids)', ELEMENTWISE, { op: 'embedding', tensors: { table: uniform(vocab * dim) }, ints: { ids: ints(40, vocab) }, scalars: { dim } });
  add('embedding_backward (repeated ids)', ELEMENTWISE, {
    op: 'embedding_backward',
    tensors: { dout: uniform(40 * dim), dtable: uniform(vocab * dim) },
    ints: { ids: ints(40, 10) },
    scalars: { dim },
  });
  add('gather_rows (repeats)', ELEMENTWISE, { op: 'gather_rows', tensors: { src: uniform(vocab * dim) }, ints: { rows: ints(40, vocab) }, scalars: { dim } });
  add('scatter_rows (distinct rows)', ELEMENTWISE, {
    op: 'scatter_rows',
    tensors: { src: uniform(30 * dim), dst: uniform(vocab * dim) },
    ints: { rows: permutation(vocab).slice(0, 30) },
    scalars: { dim },
  });
  add('gather_rows_at (repeats)', ELEMENTWISE, { op: 'gather_rows_at', tensors: { src: uniform(vocab * dim) }, ints: { rows: ints(40, vocab) }, scalars: { dim } });
  add('scatter_rows_at (distinct rows)', ELEMENTWISE, {
    op: 'scatter_rows_at',
    tensors: { src: uniform(30 * dim), dst: uniform(vocab * dim) },
    ints: { rows: permutation(vocab).slice(0, 30) },
    scalars: { dim },
  });
  // A decode batch padded to 8 rows; one row past the 256 keys of a split.
  out.push(pagedDecodeCase('8 rows, 16 heads / 2 kv, hd 128', 16, 2, 128, [1, 5, 33, 300, 2, 64, 17, 1], 512));
  out.push(pagedDecodeCase('3 rows, 4 heads / 4 kv, hd 80', 4, 4, 80, [7, 40, 1], 64));
  add('copy_columns', ELEMENTWISE, { op: 'copy_columns', tensors: { src: uniform(17 * 72) }, scalars: { rows: 17, srcCols: 72, colOffset: 24, cols: 24 } });

  out.push(
    ...attentionCase('decoder mix, 4 heads / 2 kv, hd 64', 4, 2, 64, [
      { qLen: 37, kLen: 37, causal: true }, // prefill
      { qLen: 1, kLen: 70, causal: true }, // decode
      { qLen: 5, kLen: 21, causal: true }, // the last 5 of 21 positions
      { qLen: 3, kLen: 2, causal: true }, // fewer keys than queries: the first row sees none
      { qLen: 20, kLen: 20, causal: false },
    ]),
    ...attentionCase('decode batch, 16 heads / 2 kv (GQA 8), hd 128', 16, 2, 128, [
      { qLen: 1, kLen: 1, causal: true },
      { qLen: 1, kLen: 33, causal: true },
      { qLen: 1, kLen: 100, causal: true },
      { qLen: 40, kLen: 40, causal: true },
    ]),
    ...attentionCase('vision windows, 2 heads, hd 80', 2, 2, 80, [
      { qLen: 64, kLen: 64, causal: false },
      { qLen: 16, kLen: 16, causal: false },
      { qLen: 100, kLen: 100, causal: false },
    ]),
    ...attentionCase('hd 200 (shared memory past 48 KiB), 2 heads / 1 kv', 2, 1, 200, [
      { qLen: 45, kLen: 45, causal: true },
      { qLen: 2, kLen: 50, causal: true },
    ]),
  );

  // Optional outputs left out: the branches that skip them.
  add('linear_backward dx only', PRODUCT, { op: 'linear_backward', tensors: { x: uniform(6 * 10), w: uniform(4 * 10), dy: uniform(6 * 4) }, scalars: { m: 6, k: 10, n: 4 }, outputs: ['dx'] });
  add('rmsnorm_backward dx only', ELEMENTWISE, {
    op: 'rmsnorm_backward',
    tensors: { x: uniform(5 * 40, -3, 3), w: uniform(40), dy: uniform(5 * 40) },
    scalars: { rows: 5, dim: 40, eps: 1e-6 },
    outputs: ['dx'],
  });
  add('rmsnorm_backward dw only', ELEMENTWISE, {
    op: 'rmsnorm_backward',
    tensors: { x: uniform(70 * 24, -3, 3), w: uniform(24), dy: uniform(70 * 24), dw: uniform(24) },
    scalars: { rows: 70, dim: 24, eps: 1e-6 },
  });
  {
    const layout = { rows: 9, slots: 20, heads: 2, kvHeads: 1, headDim: 16 };
    const sequences = [
      { qOffset: 0, qLen: 6, keySlots: Int32Array.of(3, 7, 1, 12, 0, 9), causal: true },
      { qOffset: 6, qLen: 3, keySlots: Int32Array.of(3, 7, 1, 12, 15, 2, 19, 4), causal: true },
    ];
    const tensors = { q: uniform(9 * 2 * 16, -2, 2), k_pool: uniform(20 * 16, -2, 2), v_pool: uniform(20 * 16) };
    // Two sequences reading the same first four slots (a shared prompt prefix).
    add('attention, sequences sharing key slots', ATTENTION, { op: 'attention', tensors, scalars: layout, sequences });
    // An empty sequence in the list, and a full-mask sequence after a causal one.
    const withEmpty = [
      { qOffset: 0, qLen: 6, keySlots: Int32Array.of(3, 7, 1, 12, 0, 9), causal: true },
      { qOffset: 6, qLen: 0, keySlots: new Int32Array(0), causal: true },
      { qOffset: 6, qLen: 3, keySlots: Int32Array.of(5, 15, 2, 19, 4), causal: false },
    ];
    add('attention_backward with an empty sequence', ATTENTION, {
      op: 'attention_backward',
      tensors: { ...tensors, dout: uniform(9 * 2 * 16), dk_pool: uniform(20 * 16), dv_pool: uniform(20 * 16) },
      scalars: layout,
      sequences: withEmpty,
    });
    // Gradients nobody wants may be absent (backend.h): dk only, then neither.
    add('attention_backward without dv_pool', ATTENTION, {
      op: 'attention_backward',
      tensors: { ...tensors, dout: uniform(9 * 2 * 16), dk_pool: uniform(20 * 16) },
      scalars: layout,
      sequences: withEmpty,
    });
    add('attention_backward with dq only', ATTENTION, {
      op: 'attention_backward',
      tensors: { ...tensors, dout: uniform(9 * 2 * 16) },
      scalars: layout,
      sequences: withEmpty,
    });
  }

  for (const [rows, hdim, vocabSize, temperature] of [[37, 64, 40000, 0.7], [600, 32, 1000, 1], [1, 16, 5, 1.3]] as const) {
    const hidden = uniform(rows * hdim, -2, 2);
    const head = uniform(vocabSize * hdim);
    const targets = ints(rows, vocabSize);
    add(`token_logprobs ${rows}x${hdim}, vocab ${vocabSize}`, PRODUCT, {
      op: 'token_logprobs',
      tensors: { hidden, head },
      ints: { targets },
      scalars: { rows, dim: hdim, vocab: vocabSize, temperature },
      outputs: ['entropy'],
    });
    add(`token_logprobs_backward ${rows}x${hdim}, vocab ${vocabSize}`, PRODUCT, {
      op: 'token_logprobs_backward',
      tensors: { hidden, head, dlogp: uniform(rows), dhead: uniform(vocabSize * hdim) },
      ints: { targets },
      scalars: { rows, dim: hdim, vocab: vocabSize, temperature },
    });
  }

  {
    const targets = ints(7, 300);
    add('token_logprobs_backward without dhead', PRODUCT, {
      op: 'token_logprobs_backward',
      tensors: { hidden: uniform(7 * 24, -2, 2), head: uniform(300 * 24), dlogp: uniform(7) },
      ints: { targets },
      scalars: { rows: 7, dim: 24, vocab: 300, temperature: 1 },
    });
  }

  add('adamw', ELEMENTWISE, {
    op: 'adamw',
    tensors: { param: uniform(n), grad: uniform(n, -0.1, 0.1), m: uniform(n, -0.01, 0.01), v: uniform(n, 0, 1e-4) },
    scalars: { step: 3, gradScale: 0.5, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
  });
  return out;
}

t.test('runOp runs single ops on the CPU backend, NaN-filling outputs it does not write', async (t) => {
  const r = await runOp({ op: 'linear', tensors: { x: Float32Array.of(1, 2), w: Float32Array.of(3, 4, 5, 6), bias: Float32Array.of(1, -1) }, scalars: { m: 1, k: 2, n: 2 } });
  t.equal(r.backend, 'cpu');
  t.same(Array.from(r.outputs['y'] as Float32Array), [12, 16]);
  const b = await runOp({
    op: 'linear_backward',
    tensors: { x: Float32Array.of(1, 2), w: Float32Array.of(3, 4, 5, 6), dy: Float32Array.of(1, 1), db: Float32Array.of(10, 20) },
    scalars: { m: 1, k: 2, n: 2 },
    outputs: ['dx'],
  });
  t.same(Array.from(b.outputs['dx'] as Float32Array), [8, 10], 'dx = dy w');
  t.same(Array.from(b.outputs['db'] as Float32Array), [11, 21], 'db accumulates');
  t.notOk('dw' in b.outputs, 'an optional output neither passed nor wanted is not made');
  const a = await runOp({
    op: 'attention',
    tensors: { q: Float32Array.of(1, 0, 5, 5), k_pool: Float32Array.of(1, 0), v_pool: Float32Array.of(2, 3) },
    scalars: { rows: 2, slots: 1, heads: 1, kvHeads: 1, headDim: 2 },
    sequences: [{ qOffset: 0, qLen: 1, keySlots: Int32Array.of(0) }],
  });
  t.same(Array.from(a.outputs['out'] as Float32Array).slice(0, 2), [2, 3], 'one key: its value');
  t.ok(Number.isNaN((a.outputs['out'] as Float32Array)[2] as number), 'a row no sequence covers stays NaN');
  const s = await runOp({ op: 'sum_squares', tensors: { x: Float32Array.of(1, 2, 3) } });
  t.equal(s.scalar, 14);
  await t.rejects(async () => runOp({ op: 'nope' }), /unknown op "nope" \(ops: adamw, adamw_bf16, add, attention/);
  await t.rejects(runOp({ op: 'linear', tensors: { x: new Float32Array(3), w: new Float32Array(4) }, scalars: { m: 1, k: 2, n: 2 } }), /runOp linear: `x` has 3 entries, not 2/);
  await t.rejects(async () => runOp({ op: 'add', tensors: { x: new Float32Array(1), y: new Float32Array(1) }, device: 'tpu' as 'cuda' }), /unknown device "tpu"/);
});

t.test('every comparison case runs on the CPU backend and writes all its outputs', async (t) => {
  const all = cases();
  t.ok(all.length > 40, `${all.length} CPU/CUDA comparison cases`);
  for (const c of all) {
    const r = await runOp({ ...c.args, device: 'cpu' });
    for (const [name, values] of Object.entries(r.outputs)) t.notOk(values.some(Number.isNaN), `${c.name}: ${name} is written`);
  }
});

t.test('without a usable GPU, the CUDA backend says why', { skip: skip ? false : 'a GPU is usable here' }, async (t) => {
  await t.rejects(runOp({ op: 'add', device: 'cuda', tensors: { x: new Float32Array(1), y: new Float32Array(1) } }), /the CUDA backend is unavailable: |cuBLAS could not be loaded/);
});

t.test('every op on CUDA in fp32 matches the CPU backend', { skip }, async (t) => {
  for (const c of cases()) {
    const cpu = await runOp({ ...c.args, device: 'cpu' });
    const gpu = await runOp({ ...c.args, device: 'cuda', dtype: 'fp32' });
    t.equal(gpu.backend, 'cuda');
    t.equal(gpu.dtype, 'fp32');
    t.same(Object.keys(gpu.outputs).sort(), Object.keys(cpu.outputs).sort(), `${c.name}: the same outputs`);
    for (const [name, expected] of Object.entries(cpu.outputs)) {
      const error = relError(gpu.outputs[name] as Float32Array, expected);
      t.ok(error <= c.tol, `${c.name}: ${name} error ${error.toExponential(2)} (tolerance ${c.tol})`);
    }
    const again = await runOp({ ...c.args, device: 'cuda', dtype: 'fp32' });
    for (const [name, first] of Object.entries(gpu.outputs))
      t.ok(Buffer.from((again.outputs[name] as Float32Array).buffer).equals(Buffer.from(first.buffer)), `${c.name}: ${name} is the same bits on a second CUDA run`);
  }
});

function withBf16Inputs(args: OpArgs): OpArgs {
  const tensors = args.tensors ? Object.fromEntries(Object.entries(args.tensors).map(([k, v]) => [k, toBf16(v)])) : undefined;
  return { ...args, ...(tensors ? { tensors } : {}) };
}

const BF16_STORE = 2 ** -8;
const FP32_OUTPUTS = new Set(['dw', 'db', 'dtable', 'dhead', 'logp', 'entropy', 'm', 'v']);
const COPIES = new Set(['embedding', 'gather_rows', 'scatter_rows', 'gather_rows_at', 'scatter_rows_at', 'copy_columns', 'fill']);

/** The bf16 tolerance of output `name` of case `c` (see the header). */
function bf16Tolerance(c: Case, name: string): number {
  if (COPIES.has(c.args.op)) return 0;
  if (c.args.op === 'token_logprobs_backward') return name === 'dhidden' ? 9 * BF16_STORE : 8 * BF16_STORE;
  // bf16 attention runs on the tensor cores and rounds P (and dS) to bf16
  // for their products: the bounds of test/cuda-attention.test.ts, in units
  // of bf16's unit roundoff 2^-8 (2u forward, 8u backward).
  if (c.args.op === 'attention' || c.args.op === 'paged_decode_attention') return c.tol + 2 * BF16_STORE;
  if (c.args.op === 'attention_backward') return 8 * BF16_STORE;
  if (FP32_OUTPUTS.has(name)) return c.tol;
  return c.tol + BF16_STORE;
}

t.test('bf16 rounding in these tests is round-to-nearest-even', async (t) => {
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to the even one, 1; 1 + 3 * 2^-8 goes up to 1 + 2^-6.
  t.same(Array.from(toBf16(Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -9), 3.14159))), [1, 1 + 2 ** -6, -1, 3.140625]);
});

t.test('every op on CUDA in bf16 matches the CPU backend on the same bf16 values', { skip }, async (t) => {
  for (const c of cases()) {
    const args = withBf16Inputs(c.args);
    const cpu = await runOp({ ...args, device: 'cpu' });
    const gpu = await runOp({ ...args, device: 'cuda', dtype: 'bf16' });
    t.equal(gpu.dtype, 'bf16');
    t.same(Object.keys(gpu.outputs).sort(), Object.keys(cpu.outputs).sort(), `${c.name}: the same outputs`);
    for (const [name, expected] of Object.entries(cpu.outputs)) {
      const tol = bf16Tolerance(c, name);
      const error = relError(gpu.outputs[name] as Float32Array, expected);
      t.ok(error <= tol, `${c.name} (bf16): ${name} error ${error.toExponential(2)} (tolerance ${tol.toExponential(2)})`);
    }
    // Determinism: the bf16 kernels are the fp32 ones' templates (checked
    // above); what bf16 adds with atomics is attention's fp32 dk/dv sums.
    if (c.args.op !== 'attention_backward') continue;
    const again = await runOp({ ...args, device: 'cuda', dtype: 'bf16' });
    for (const [name, first] of Object.entries(gpu.outputs))
      t.ok(Buffer.from((again.outputs[name] as Float32Array).buffer).equals(Buffer.from(first.buffer)), `${c.name} (bf16): ${name} is the same bits on a second CUDA run`);
  }
});

t.test('bf16 storage really rounds: outputs are bf16 values, and differ from fp32 storage', { skip }, async (t) => {
  // A check that the bf16 runs above did not quietly run in fp32.
  const x = uniform(64 * 32);
  const w = uniform(16 * 32);
  const args = { op: 'linear', tensors: { x: toBf16(x), w: toBf16(w) }, scalars: { m: 64, k: 32, n: 16 } };
  const bf = await runOp({ ...args, device: 'cuda', dtype: 'bf16' });
  const fp = await runOp({ ...args, device: 'cuda', dtype: 'fp32' });
  const y = bf.outputs['y'] as Float32Array;
  t.same(Array.from(toBf16(y)), Array.from(y), 'every output is a bf16 value');
  t.notSame(Array.from(y), Array.from(fp.outputs['y'] as Float32Array), 'and not the fp32 result');
  t.same(Array.from(y), Array.from(toBf16(fp.outputs['y'] as Float32Array)), 'but that result rounded once');
});

t.test('sum of squares on CUDA matches the CPU backend', { skip }, async (t) => {
  const x = uniform(100003, -3, 3);
  const cpu = await runOp({ op: 'sum_squares', tensors: { x }, device: 'cpu' });
  const gpu = await runOp({ op: 'sum_squares', tensors: { x }, device: 'cuda', dtype: 'fp32' });
  const error = Math.abs((gpu.scalar as number) - (cpu.scalar as number)) / (cpu.scalar as number);
  t.ok(error <= 1e-10, `relative error ${error.toExponential(2)}`);
  const empty = await runOp({ op: 'sum_squares', tensors: { x: new Float32Array(0) }, device: 'cuda' });
  t.equal(empty.scalar, 0);
  // bf16 storage: the CPU sums the same bf16 values in double.
  const xb = toBf16(x);
  const cpuB = await runOp({ op: 'sum_squares', tensors: { x: xb }, device: 'cpu' });
  const gpuB = await runOp({ op: 'sum_squares', tensors: { x: xb }, device: 'cuda', dtype: 'bf16' });
  const errorB = Math.abs((gpuB.scalar as number) - (cpuB.scalar as number)) / (cpuB.scalar as number);
  t.ok(errorB <= 1e-10, `bf16 storage: relative error ${errorB.toExponential(2)}`);
});

t.test('AdamW and the embedding gradient on CUDA repeat the CPU arithmetic exactly', { skip }, async (t) => {
  // Both follow the CPU's operations in the same order without fused
  // multiply-adds, so the bits should agree; a difference here means the
  // CPU build or the GPU contracted something.
  for (const c of cases().filter((c) => c.args.op === 'adamw' || c.args.op === 'embedding_backward')) {
    const cpu = await runOp({ ...c.args, device: 'cpu' });
    const gpu = await runOp({ ...c.args, device: 'cuda', dtype: 'fp32' });
    for (const [name, expected] of Object.entries(cpu.outputs))
      t.ok(Buffer.from((gpu.outputs[name] as Float32Array).buffer).equals(Buffer.from(expected.buffer)), `${c.name}: ${name} bit-identical`);
    // bf16 storage: the fp32 arrays (dtable, m, v) still bit for bit from the same bf16 inputs.
    const args = withBf16Inputs(c.args);
    const cpuB = await runOp({ ...args, device: 'cpu' });
    const gpuB = await runOp({ ...args, device: 'cuda', dtype: 'bf16' });
    for (const [name, expected] of Object.entries(cpuB.outputs))
      if (FP32_OUTPUTS.has(name))
        t.ok(Buffer.from((gpuB.outputs[name] as Float32Array).buffer).equals(Buffer.from(expected.buffer)), `${c.name} (bf16): ${name} bit-identical`);
  }
});
