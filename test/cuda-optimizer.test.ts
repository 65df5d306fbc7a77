/**
 * The optimiser strategies' CUDA kernels against the CPU backend
 * (native/backend/cuda/optimizer.cu, native/train/optimizer_strategy.h):
 *  - adamw_bf16, compensated and plain, over several steps: bit-identical
 *    (both run the same element step, in double one correctly rounded
 *    operation at a time, and round to bf16 the same way; the GPU build
 *    avoids fused multiply-adds through the _rn intrinsics);
 *  - the offloaded step (state in pinned host memory, streamed through the
 *    device in chunks on two streams) for adamw and adamw_bf16, over more
 *    chunks than slots and with a short last chunk: bit-identical to the CPU
 *    and to the same step with the state on the device.
 * Without a usable CUDA device the comparisons skip, saying why. Under
 * `npm run test:cuda-emulated -- test/cuda-optimizer.test.ts` the kernels run
 * on the CPU emulation of the CUDA execution model: a check of their logic
 * (and of host pointers never reaching a kernel), not of a GPU's timing.
 */
import t from 'tap';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Model } from '../lib/engine/model.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { native } from '../lib/native/binding.js';
import { runOp } from '../lib/native/testing.js';
import { rng, toBf16 } from './helpers.js';

// Chunks of 1,000 entries: 4,500 entries stream through 5 of them, reusing both slots.
process.env['SPATIALTHINKER_OFFLOAD_CHUNK'] = '1000';

const info = native().runtimeInfo();
const skip = !info.cuda.available
  ? `no usable CUDA device: ${info.cuda.reason ?? 'unknown'}`
  : !info.cuda.cublas.found
    ? `cuBLAS not found: ${info.cuda.cublas.error ?? 'unknown'}`
    : false;
if (skip) t.comment(`CUDA optimiser tests skipped: ${skip}`);
// Under the emulation the model-level test runs every kernel as threads on the CPU: minutes, not seconds.
if (info.cuda.devices.some((d) => /emulation/i.test(d.name))) t.setTimeout(60 * 60 * 1000);

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bf16(x: number): number {
  f32[0] = x;
  u32[0] = (((u32[0] as number) + 0x7fff + (((u32[0] as number) >>> 16) & 1)) >>> 0) & 0xffff0000;
  return f32[0] as number;
}

function state(n: number, seed: number, asBf16: boolean) {
  const r = rng(seed);
  const round = (a: Float32Array) => (asBf16 ? a.map(bf16) : a);
  return {
    param: round(Float32Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (0.05 + 1.5 * r()))),
    m: round(Float32Array.from({ length: n }, () => 0.01 * (r() - 0.5))),
    v: round(Float32Array.from({ length: n }, () => 1e-4 * r())),
    compensation: round(Float32Array.from({ length: n }, () => 1e-4 * (r() - 0.5))),
    grad: Float32Array.from({ length: n }, () => r() - 0.5),
  };
}
const HYPER = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
const same = (a: Float32Array | undefined, b: Float32Array | undefined) => a !== undefined && b !== undefined && Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

t.test('adamw_bf16 on CUDA is the CPU step, bit for bit, over several steps, in fp32 and bf16 storage', { skip }, async (t) => {
  const n = 3000;
  for (const [compensated, dtype] of [[true, 'fp32'], [false, 'fp32'], [true, 'bf16'], [false, 'bf16']] as const) {
    const s = state(n, 5, true);
    let cpu: Record<string, Float32Array> = { param: s.param, m: s.m, v: s.v, ...(compensated ? { compensation: s.compensation } : {}) };
    let gpu = cpu;
    for (let step = 1; step <= 4; ++step) {
      const grad = state(n, 100 + step, false).grad;
      const scalars = { step, gradScale: 0.5, ...HYPER };
      const a = await runOp({ op: 'adamw_bf16', device: 'cpu', tensors: { ...cpu, grad }, scalars });
      // bf16 storage: weights, moments and compensation are bf16 arrays on the device, the CPU's fp32 arrays hold the same values.
      const b = await runOp({ op: 'adamw_bf16', device: 'cuda', dtype, tensors: { ...gpu, grad }, scalars });
      t.equal(b.backend, 'cuda');
      cpu = a.outputs;
      gpu = b.outputs;
    }
    for (const name of Object.keys(cpu)) t.ok(same(gpu[name], cpu[name]), `${compensated ? 'compensated' : 'plain'}, ${dtype} storage: ${name} bit-identical after 4 steps`);
    t.same(Object.keys(gpu).sort(), Object.keys(cpu).sort(), 'the same outputs');
  }
});

t.test('the offloaded step streams through chunks and equals the resident step', { skip }, async (t) => {
  const n = 4500;
  for (const [op, flag, dtype] of [['adamw', 0, 'fp32'], ['adamw_bf16', 1, 'fp32'], ['adamw', 0, 'bf16'], ['adamw_bf16', 1, 'bf16']] as const) {
    const s = state(n, 9, flag === 1);
    const tensors: Record<string, Float32Array> = { param: s.param, grad: s.grad, m: s.m, v: s.v, ...(flag ? { compensation: s.compensation } : {}) };
    const scalars = { step: 3, gradScale: 0.5, ...HYPER };
    const cpu = await runOp({ op: 'optimizer_step_host_state', device: 'cpu', tensors, scalars: { ...scalars, bf16: flag } });
    const offloaded = await runOp({ op: 'optimizer_step_host_state', device: 'cuda', dtype, tensors, scalars: { ...scalars, bf16: flag } });
    const resident = await runOp({ op, device: 'cuda', dtype, tensors, scalars });
    t.same(Object.keys(offloaded.outputs).sort(), Object.keys(cpu.outputs).sort(), `${op}: the same state comes back`);
    for (const [name, expected] of Object.entries(cpu.outputs)) {
      // adamw with bf16 weights rounds its fp32 update into them: the CPU's fp32 weights differ there by design.
      if (!(op === 'adamw' && dtype === 'bf16' && name === 'param')) t.ok(same(offloaded.outputs[name], expected), `${op}, ${dtype} storage: ${name} offloaded on CUDA = CPU, bit for bit`);
      t.ok(same(offloaded.outputs[name], resident.outputs[name]), `${op}, ${dtype} storage: ${name} offloaded = resident on CUDA`);
    }
  }
});

// adamw over bf16 storage keeps an fp32 master copy: the update runs on it and
// the bf16 weights are its rounding. Steps of about a quarter of a bf16 ulp
// (lr 3e-5 on weights of |w| ~ 0.02-0.05, whose ulp is 1.2e-4 to 2.4e-4)
// vanish when rounded straight into bf16 weights; on the master copy they
// add up. So after a few steps the master copy (saved in the optimizer file
// as master.<name>, fp32) has moved as the CPU's fp32 weights moved (Adam's
// step is lr times the sign of a steady gradient, whatever the bf16
// forward's noise), and the bf16 weights are exactly the master rounded to
// bf16. Compared: the moves of the entries the CPU moved (the text model's
// matrices; the vision tower gets no gradient from a text-only sequence).
const FIXTURES = resolve('..', 'shared', 'fixtures', 'qwen25vl-tiny');
const CHECKPOINT = join(FIXTURES, 'checkpoint');
const noFixtures = existsSync(CHECKPOINT) ? false : `the golden fixtures are not at ${CHECKPOINT}`;
t.test('adamw on bf16 weights updates an fp32 master copy: sub-ulp steps accumulate as on the CPU', { skip: skip || noFixtures }, async (t) => {
  const steps = 4;
  const lr = 3e-5;
  const saved = mkdtempSync(join(tmpdir(), 'st-master-'));
  const run = async (device: 'cpu' | 'cuda') => {
    const model = await Model.load(CHECKPOINT, device === 'cuda' ? { device, dtype: 'bf16' } : { device });
    try {
      const before = await model.parameters();
      const ids = Array.from({ length: 24 }, (_, i) => 10 + ((i * 7) % 50));
      // One gradient (it stays until zeroGradients), then the steps.
      const [logp] = await model.logprobs([{ ids: ids.slice(0, 8) }], [ids.slice(8)]);
      await model.trainGradients([{ ids, promptLength: 8, advantage: 1, oldLogprobs: logp as Float32Array }], { klCoef: 0, temperature: 1 });
      for (let s = 0; s < steps; s++) await model.optimizerStep({ lr, weightDecay: 0, maxGradNorm: 0 });
      if (device === 'cuda') await model.saveOptimizerState(saved, true);
      return { before, after: await model.parameters() };
    } finally {
      await model.dispose();
    }
  };
  try {
    const cpu = await run('cpu');
    const cuda = await run('cuda');
    const { tensors } = await readSafetensors(join(saved, 'optimizer.safetensors'));
    let n = 0, cpuMove = 0, gap = 0, masterMoved = 0, weightMoved = 0, notRounding = 0;
    for (const [name, w0] of Object.entries(cpu.before)) {
      if (!/proj\.weight$/.test(name) || name.startsWith('visual.')) continue;
      const master = tensors[`master.${name}`]?.data as Float32Array | undefined;
      t.ok(master, `the optimizer file holds master.${name}`);
      if (!master) continue;
      const w1 = cpu.after[name] as Float32Array, c0 = cuda.before[name] as Float32Array, c1 = cuda.after[name] as Float32Array;
      const rounded = toBf16(master);
      for (let i = 0; i < w0.length; i++) {
        if (rounded[i] !== c1[i]) notRounding++;
        const dCpu = (w1[i] as number) - (w0[i] as number);
        if (dCpu === 0) continue;
        const dMaster = (master[i] as number) - (c0[i] as number);  // the master starts from the bf16 weights
        n++;
        cpuMove += Math.abs(dCpu);
        gap += Math.abs(dMaster - dCpu);
        if (dMaster !== 0) masterMoved++;
        if (c1[i] !== c0[i]) weightMoved++;
      }
    }
    t.ok(n > 50000, `${n} text-matrix entries the CPU moved`);
    t.equal(notRounding, 0, 'every bf16 weight is its master entry rounded to nearest even');
    t.ok(gap < 0.05 * cpuMove, `master moves vs the CPU's fp32 moves: mean |diff| ${(gap / n).toExponential(2)} against a mean move of ${(cpuMove / n).toExponential(2)}`);
    t.equal(masterMoved, n, 'every master entry the CPU moved moved too');
    t.comment(`${weightMoved} of ${n} bf16 weights changed value after ${steps} steps of ${lr} (the rest are still within half an ulp of where they started)`);
  } finally {
    rmSync(saved, { recursive: true, force: true });
  }
});
