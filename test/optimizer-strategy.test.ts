/**
 * The optimiser strategies on the CPU backend (native/train/optimizer_strategy.h):
 * adamw_bf16 holds weights, moments and a Kahan compensation buffer in bf16
 * (emulated here as floats rounded to bf16, round to nearest even).
 *
 *  - one step equals the documented formulas, recomputed here in double
 *    with an independent bf16 rounding, bit for bit;
 *  - over many small steps the compensated bf16 weights follow the fp32
 *    AdamW trajectory far more closely than bf16 weights rounded at each
 *    step (which, at an update well below half a bf16 ulp, never move);
 *  - every stored value is a bf16 value;
 *  - the offloaded step (state in the backend's host memory) is the same
 *    step, bit for bit: on the CPU offloading moves nothing.
 */
import t from 'tap';
import { runOp } from '../lib/native/testing.js';
import { rng } from './helpers.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** The nearest bfloat16 (ties to even) of a float, as a number. */
function bf16(x: number): number {
  f32[0] = x;
  const b = u32[0] as number;
  if ((b & 0x7fffffff) > 0x7f800000) return Number.NaN;
  u32[0] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 0) & 0xffff0000;
  return f32[0] as number;
}
const bf16Array = (a: Float32Array) => a.map(bf16);
const isBf16 = (a: Float32Array) => a.every((x) => Object.is(bf16(x), x));

interface Hyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}
const HYPER: Hyper = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

/** One adamw_bf16 element step, as optimizer_strategy.h writes it down. */
function referenceStep(p: number, g0: number, m: number, v: number, c: number | null, step: number, scale: number, h: Hyper) {
  const g = g0 * scale;
  const m1 = bf16(Math.fround(h.beta1 * m + (1 - h.beta1) * g));
  const v1 = bf16(Math.fround(h.beta2 * v + (1 - h.beta2) * g * g));
  const stepSize = h.lr / (1 - Math.pow(h.beta1, step));
  const bias2Sqrt = Math.sqrt(1 - Math.pow(h.beta2, step));
  const update = -(h.lr * h.weightDecay * p + (stepSize * m1) / (Math.sqrt(v1) / bias2Sqrt + h.eps));
  const y = c === null ? update : update + c;
  const p1 = bf16(Math.fround(p + y));
  return { p: p1, m: m1, v: v1, c: c === null ? null : bf16(Math.fround(y - (p1 - p))) };
}

function randomState(n: number, seed: number) {
  const r = rng(seed);
  const param = bf16Array(Float32Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (0.05 + 1.5 * r())));
  const grad = Float32Array.from({ length: n }, () => r() - 0.5);
  const m = bf16Array(Float32Array.from({ length: n }, () => 0.01 * (r() - 0.5)));
  const v = bf16Array(Float32Array.from({ length: n }, () => 1e-4 * r()));
  const compensation = bf16Array(Float32Array.from({ length: n }, () => 1e-4 * (r() - 0.5)));
  return { param, grad, m, v, compensation };
}

t.test('one adamw_bf16 step is the documented formulas, bit for bit', async (t) => {
  const n = 257;
  const s = randomState(n, 7);
  const scalars = { step: 5, gradScale: 0.75, ...HYPER };
  for (const compensated of [true, false]) {
    const tensors: Record<string, Float32Array> = { param: s.param, grad: s.grad, m: s.m, v: s.v };
    if (compensated) tensors['compensation'] = s.compensation;
    const r = await runOp({ op: 'adamw_bf16', tensors, scalars });
    let mismatches = 0;
    for (let i = 0; i < n; ++i) {
      const e = referenceStep(s.param[i] as number, s.grad[i] as number, s.m[i] as number, s.v[i] as number, compensated ? (s.compensation[i] as number) : null, 5, 0.75, HYPER);
      const got = [r.outputs['param']?.[i], r.outputs['m']?.[i], r.outputs['v']?.[i], compensated ? r.outputs['compensation']?.[i] : null];
      if (!Object.is(got[0], e.p) || !Object.is(got[1], e.m) || !Object.is(got[2], e.v) || !Object.is(got[3], e.c)) mismatches++;
    }
    t.equal(mismatches, 0, `${compensated ? 'compensated' : 'plain bf16'}: every element as the formulas give`);
    for (const name of Object.keys(r.outputs)) t.ok(isBf16(r.outputs[name] as Float32Array), `${name} holds bf16 values only`);
    if (!compensated) t.notOk('compensation' in r.outputs, 'no compensation buffer is made when none is given');
  }
});

t.test('Kahan-compensated bf16 AdamW follows the fp32 trajectory over many small steps; plain bf16 does not', async (t) => {
  const n = 2048;
  const steps = 600;
  const r = rng(11);
  // Weights of magnitude 0.05 .. 1.55 (a bf16 ulp of 2^-12 .. 2^-8) and
  // gradients with a persistent direction plus noise: AdamW moves each weight
  // by about lr = 1e-4 a step, below half an ulp for most of them.
  const init = bf16Array(Float32Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (0.05 + 1.5 * r())));
  const drift = Float32Array.from({ length: n }, () => r() - 0.5);
  const zeros = (): Float32Array => new Float32Array(n);
  type State = Record<string, Float32Array>;
  let fp32: State = { param: init.slice(), m: zeros(), v: zeros() };
  let kahan: State = { param: init.slice(), m: zeros(), v: zeros(), compensation: zeros() };
  let plain: State = { param: init.slice(), m: zeros(), v: zeros() };
  for (let step = 1; step <= steps; ++step) {
    const grad = Float32Array.from(drift, (d) => d + 0.5 * (r() - 0.5));
    const scalars = { step, gradScale: 1, ...HYPER };
    const a = await runOp({ op: 'adamw', tensors: { ...fp32, grad }, scalars });
    fp32 = a.outputs;
    const k = await runOp({ op: 'adamw_bf16', tensors: { ...kahan, grad }, scalars });
    kahan = k.outputs;
    const p = await runOp({ op: 'adamw_bf16', tensors: { ...plain, grad }, scalars });
    plain = p.outputs;
  }
  const rms = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, x, i) => s + (x - (b[i] as number)) ** 2, 0) / n);
  const param = (s: State) => s['param'] as Float32Array;
  const moved = rms(param(fp32), init);
  const kahanError = rms(param(kahan), param(fp32));
  const plainError = rms(param(plain), param(fp32));
  t.comment(`after ${steps} steps at lr ${HYPER.lr}: fp32 moved ${moved.toExponential(3)} (rms); distance to fp32: Kahan bf16 ${kahanError.toExponential(3)}, plain bf16 ${plainError.toExponential(3)}`);
  t.ok(moved > 0.02, `the fp32 weights moved (${moved.toExponential(3)})`);
  t.ok(kahanError < plainError / 10, `Kahan bf16 is over 10x closer to fp32 than plain bf16 (${kahanError.toExponential(3)} vs ${plainError.toExponential(3)})`);
  t.ok(kahanError < moved / 10, `Kahan bf16 keeps more than 90% of the fp32 motion (error ${kahanError.toExponential(3)} of ${moved.toExponential(3)})`);
  // Each weight owes at most half an ulp of itself (the residual of a rounding), give or take the rounding of c.
  let owed = 0;
  (kahan['compensation'] as Float32Array).forEach((c, i) => {
    if (Math.abs(c) > Math.abs(param(kahan)[i] as number) * 2 ** -8 * 1.01 + 1e-30) owed++;
  });
  t.equal(owed, 0, 'the compensation stays within half an ulp of its weight');
  for (const [name, values] of Object.entries(kahan)) t.ok(isBf16(values), `Kahan ${name} holds bf16 values only`);
});

t.test('the offloaded step on the CPU is the same step, bit for bit', async (t) => {
  const n = 1000;
  const s = randomState(n, 3);
  const scalars = { step: 2, gradScale: 0.5, ...HYPER };
  const cases: [string, Record<string, Float32Array>, number][] = [
    ['adamw', { param: s.param, grad: s.grad, m: s.m, v: s.v }, 0],
    ['adamw_bf16', { param: s.param, grad: s.grad, m: s.m, v: s.v, compensation: s.compensation }, 1],
  ];
  for (const [op, tensors, bf16Flag] of cases) {
    const resident = await runOp({ op, tensors, scalars });
    const offloaded = await runOp({ op: 'optimizer_step_host_state', tensors, scalars: { ...scalars, bf16: bf16Flag } });
    t.same(Object.keys(offloaded.outputs).sort(), Object.keys(resident.outputs).sort(), `${op}: the same state comes back`);
    for (const [name, values] of Object.entries(resident.outputs))
      t.ok(Buffer.from((offloaded.outputs[name] as Float32Array).buffer).equals(Buffer.from(values.buffer)), `${op}: ${name} identical offloaded`);
  }
});
