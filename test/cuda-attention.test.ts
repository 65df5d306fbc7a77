/**
 * The CUDA backend's bf16 tensor-core attention (flash-attention forward and
 * backward, the paged split-K decode) against the CPU backend's fp32
 * attention and attention_backward on the same random inputs, through
 * runOp's test-only *_bf16 ops (native/backend/cuda/attention_bf16_check.h:
 * fp32 arrays in, rounded to bf16 on the device, fp32 out).
 *
 * The inputs (q, k, v, dout) are rounded to bf16 here first, so both
 * backends see the same numbers and the comparison measures only what the
 * kernels round on the way. bf16 keeps 8 significant bits: round to nearest
 * even errs by at most u = 2^-8 relative (1 + 2^-8 is the tie between 1 and
 * 1 + 2^-7). The products run on the tensor cores in fp32 (exact products of
 * bf16, fp32 sums: ~2^-23 relative, negligible beside u). Tolerances:
 *   - forward and decode, error relative to max |v|: out = sum_j bf16(p_j) v_j
 *     / l with l the fp32 sum of the unrounded p_j, so rounding P before the
 *     PV product moves out by at most u sum_j p_j |v_j| / l <= u max|v|, and
 *     rounding out to bf16 by at most u |out| <= u max|v|: 2u = 2^-7. The
 *     split-K merge of the decode is fp32 and adds nothing at this scale.
 *   - backward, error relative to max |reference| of each gradient: dV rounds
 *     P, dQ and dK round dS = P (dP - D) to bf16 before their products, and D
 *     = dO . O uses the forward's bf16 O. Each term errs by <= 2u relative,
 *     but the gradients are sums of terms of both signs that cancel (dS sums
 *     to ~0 over a row), so the error relative to the largest entry is a few u
 *     larger than per term: 2^-5 = 8u. Every assertion prints the error it
 *     measured.
 * Outputs no sequence covers stay NaN on both sides (checked to agree).
 * The last test runs the Backend's own attention ops with bf16 storage
 * (runOp dtype "bf16"), which reach the same kernels; there dq and the pools
 * are bf16 arrays, rounded once more (u, inside the backward's 8u).
 *
 * Without a usable CUDA device the tests skip, saying why. `npm run
 * test:cuda-emulated -- test/cuda-attention.test.ts` runs them against the
 * kernels under the CPU emulation of the CUDA execution model, whose mma sums
 * in fp32 round to nearest where the tensor cores truncate
 * (native/tests/cuda_emulation/cuda_emulation.h): the kernels' logic, not a
 * GPU's rounding or speed.
 */
import t from 'tap';
import { native } from '../lib/native/binding.js';
import { runOp } from '../lib/native/testing.js';
import type { RunOpArgs } from '../lib/native/binding.js';
import { rng } from './helpers.js';

const info = native().runtimeInfo();
const skip = !info.cuda.available
  ? `no usable CUDA device: ${info.cuda.reason ?? 'unknown'}`
  : !info.cuda.cublas.found
    ? `cuBLAS not found: ${info.cuda.cublas.error ?? 'unknown'}`
    : false;
if (skip) t.comment(`CUDA attention tests skipped: ${skip}`);

const U = 2 ** -8; // bf16's unit roundoff
const FORWARD = 2 * U;
const BACKWARD = 8 * U;

const random = rng(20261206);
const word = new Float32Array(1);
const bits = new Uint32Array(word.buffer);
/** x rounded to the nearest bf16 (ties to even), as __float2bfloat16 does. */
function bf16(x: number): number {
  word[0] = x;
  const u = bits[0] as number;
  if (Number.isNaN(word[0])) return x;
  bits[0] = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
  return word[0] as number;
}
const uniform = (n: number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => bf16(lo + (hi - lo) * random()));
const permutation = (n: number) => {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [p[i], p[j]] = [p[j] as number, p[i] as number];
  }
  return p;
};

/** max |a - b| / scale; Infinity on a length mismatch or a NaN only one side has. */
function error(a: Float32Array | undefined, b: Float32Array, scale: number): number {
  if (a === undefined || a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(x - y));
  }
  return worst / scale;
}
const maxAbs = (x: Float32Array) => x.reduce((m, v) => (Number.isNaN(v) ? m : Math.max(m, Math.abs(v))), 0);

interface Layout {
  qLen: number;
  kLen: number;
  causal: boolean;
}

/** Packed sequences over a shuffled pool with spare slots (pages no sequence uses stay untouched). */
function problem(heads: number, kvHeads: number, headDim: number, layout: Layout[]): Omit<RunOpArgs, 'device' | 'op'> {
  let rows = 0;
  let keys = 0;
  for (const s of layout) {
    rows += s.qLen;
    keys += s.kLen;
  }
  const slots = keys + 5;
  const order = permutation(slots);
  let q = 0;
  let k = 0;
  const sequences = layout.map((s) => {
    const seq = { qOffset: q, qLen: s.qLen, keySlots: order.slice(k, k + s.kLen), causal: s.causal };
    q += s.qLen;
    k += s.kLen;
    return seq;
  });
  return {
    scalars: { rows, slots, heads, kvHeads, headDim },
    tensors: {
      q: uniform(rows * heads * headDim, -2, 2),
      k_pool: uniform(slots * kvHeads * headDim, -2, 2),
      v_pool: uniform(slots * kvHeads * headDim),
      dout: uniform(rows * heads * headDim),
      dk_pool: uniform(slots * kvHeads * headDim),
      dv_pool: uniform(slots * kvHeads * headDim),
    },
    sequences,
  };
}

const forwardArgs = (p: Omit<RunOpArgs, 'device' | 'op'>) => {
  const { dout: _d, dk_pool: _k, dv_pool: _v, ...tensors } = p.tensors ?? {};
  return { ...p, tensors };
};

const prefillCases: { name: string; heads: number; kvHeads: number; headDim: number; layout: Layout[] }[] = [
  {
    name: 'decoder: causal, GQA 4 heads / 2 kv, hd 128, lengths 1, 37, 70 and a 5-query chunk over 40 keys',
    heads: 4,
    kvHeads: 2,
    headDim: 128,
    layout: [
      { qLen: 1, kLen: 1, causal: true },
      { qLen: 37, kLen: 37, causal: true },
      { qLen: 70, kLen: 70, causal: true },
      { qLen: 5, kLen: 40, causal: true },
    ],
  },
  {
    name: 'vision: block-diagonal (non-causal) windows and an image, 2 heads, hd 80, lengths 16, 50, 1',
    heads: 2,
    kvHeads: 2,
    headDim: 80,
    layout: [
      { qLen: 16, kLen: 16, causal: false },
      { qLen: 50, kLen: 50, causal: false },
      { qLen: 1, kLen: 1, causal: false },
    ],
  },
  {
    name: 'tiny heads: hd 16, GQA 3 heads / 1 kv, causal with fewer keys than queries (rows that see nothing)',
    heads: 3,
    kvHeads: 1,
    headDim: 16,
    layout: [
      { qLen: 9, kLen: 9, causal: true },
      { qLen: 6, kLen: 3, causal: true },
    ],
  },
  {
    name: 'hd 40 (not a multiple of 16: zero-padded to 64), mixed masks',
    heads: 2,
    kvHeads: 1,
    headDim: 40,
    layout: [
      { qLen: 20, kLen: 20, causal: false },
      { qLen: 33, kLen: 33, causal: true },
    ],
  },
];

t.test('the bf16 attention ops need the CUDA backend', async (t) => {
  const p = problem(1, 1, 16, [{ qLen: 1, kLen: 1, causal: true }]);
  await t.rejects(runOp({ op: 'flash_attention_bf16', ...forwardArgs(p), device: 'cpu' }), /runs on the CUDA backend only/);
});

t.test('flash-attention forward and backward (bf16, tensor cores) match the CPU backend', { skip }, async (t) => {
  for (const c of prefillCases) {
    const p = problem(c.heads, c.kvHeads, c.headDim, c.layout);
    const vScale = maxAbs(p.tensors?.['v_pool'] as Float32Array);
    const cpu = await runOp({ op: 'attention', ...forwardArgs(p), device: 'cpu' });
    const gpu = await runOp({ op: 'flash_attention_bf16', ...forwardArgs(p), device: 'cuda' });
    const e = error(gpu.outputs['out'], cpu.outputs['out'] as Float32Array, vScale);
    t.ok(e <= FORWARD, `${c.name}: out error ${e.toExponential(2)} of max|v| (tolerance 2u = ${FORWARD.toExponential(2)})`);

    const cpuB = await runOp({ op: 'attention_backward', ...p, device: 'cpu' });
    const gpuB = await runOp({ op: 'flash_attention_backward_bf16', ...p, device: 'cuda' });
    for (const name of ['dq', 'dk_pool', 'dv_pool']) {
      const expected = cpuB.outputs[name] as Float32Array;
      // dk/dv accumulate into the given pools: compare what was added.
      const before = name === 'dq' ? undefined : (p.tensors?.[name] as Float32Array);
      const added = (x: Float32Array | undefined) => (x === undefined || before === undefined ? x : x.map((v, i) => v - (before[i] as number)));
      const reference = added(expected) as Float32Array;
      const eb = error(added(gpuB.outputs[name]), reference, maxAbs(reference));
      t.ok(eb <= BACKWARD, `${c.name}: ${name} error ${eb.toExponential(2)} of its max (tolerance 8u = ${BACKWARD.toExponential(2)})`);
    }
    const untouched = (gpuB.outputs['dk_pool'] as Float32Array).every((v, i) => {
      const used = (p.sequences ?? []).some((s) => s.keySlots.includes(Math.floor(i / (c.kvHeads * c.headDim))));
      return used || v === (p.tensors?.['dk_pool'] as Float32Array)[i];
    });
    t.ok(untouched, `${c.name}: pool slots no sequence uses keep their gradients`);
  }
});

t.test('paged decode with the keys split across blocks matches the CPU backend', { skip }, async (t) => {
  const decodeCases: { name: string; heads: number; kvHeads: number; headDim: number; layout: Layout[] }[] = [
    {
      name: 'GQA 8 (16 heads / 2 kv), hd 128, one query per sequence over 300, 77 and 1 keys',
      heads: 16,
      kvHeads: 2,
      headDim: 128,
      layout: [
        { qLen: 1, kLen: 300, causal: true },
        { qLen: 1, kLen: 77, causal: true },
        { qLen: 1, kLen: 1, causal: true },
      ],
    },
    {
      name: 'hd 80, 4 heads / 2 kv, two queries per sequence (speculative rows), 130 keys',
      heads: 4,
      kvHeads: 2,
      headDim: 80,
      layout: [
        { qLen: 2, kLen: 130, causal: true },
        { qLen: 3, kLen: 45, causal: true },
      ],
    },
  ];
  for (const c of decodeCases) {
    const p = forwardArgs(problem(c.heads, c.kvHeads, c.headDim, c.layout));
    const vScale = maxAbs(p.tensors['v_pool'] as Float32Array);
    const cpu = await runOp({ op: 'attention', ...p, device: 'cpu' });
    for (const splits of [1, 4, 16]) {
      const gpu = await runOp({ op: 'decode_attention_bf16', ...p, scalars: { ...p.scalars, splits }, device: 'cuda' });
      const e = error(gpu.outputs['out'], cpu.outputs['out'] as Float32Array, vScale);
      t.ok(e <= FORWARD, `${c.name}, ${splits} key range(s): out error ${e.toExponential(2)} of max|v| (tolerance 2u)`);
    }
  }
  const tooMany = forwardArgs(problem(16, 2, 128, [{ qLen: 3, kLen: 10, causal: true }]));
  await t.rejects(runOp({ op: 'decode_attention_bf16', ...tooMany, device: 'cuda' }), /more than 16 query rows per kv head/);
});

t.test('the CUDA backend in bf16 storage runs attention on these kernels and matches the CPU backend', { skip }, async (t) => {
  const bf16Op = (args: Omit<RunOpArgs, 'device'>) => runOp({ ...args, device: 'cuda', dtype: 'bf16' } as Omit<RunOpArgs, 'device'> & { device: 'cuda' });
  const cases = [
    { name: 'prefill (flash forward): causal GQA 4 / 2, hd 128', p: problem(4, 2, 128, [{ qLen: 23, kLen: 23, causal: true }, { qLen: 40, kLen: 40, causal: true }]) },
    { name: 'decode (split keys): GQA 8, hd 128', p: problem(16, 2, 128, [{ qLen: 1, kLen: 90, causal: true }, { qLen: 1, kLen: 3, causal: true }]) },
    { name: 'vision windows: hd 80, non-causal', p: problem(2, 2, 80, [{ qLen: 30, kLen: 30, causal: false }, { qLen: 12, kLen: 12, causal: false }]) },
  ];
  for (const c of cases) {
    const vScale = maxAbs(c.p.tensors?.['v_pool'] as Float32Array);
    const cpu = await runOp({ op: 'attention', ...forwardArgs(c.p), device: 'cpu' });
    const gpu = await bf16Op({ op: 'attention', ...forwardArgs(c.p) });
    const e = error(gpu.outputs['out'], cpu.outputs['out'] as Float32Array, vScale);
    t.ok(e <= FORWARD, `${c.name}: out error ${e.toExponential(2)} of max|v| (tolerance 2u)`);
    const cpuB = await runOp({ op: 'attention_backward', ...c.p, device: 'cpu' });
    const gpuB = await bf16Op({ op: 'attention_backward', ...c.p });
    for (const name of ['dq', 'dk_pool', 'dv_pool']) {
      const expected = cpuB.outputs[name] as Float32Array;
      const eb = error(gpuB.outputs[name], expected, maxAbs(expected));
      t.ok(eb <= BACKWARD, `${c.name}: ${name} (bf16, pools accumulated) error ${eb.toExponential(2)} of its max (tolerance 8u)`);
    }
  }
});
