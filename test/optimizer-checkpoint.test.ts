/**
 * The optimiser strategies through the model and its checkpoints (CPU):
 *  - adamw_bf16 leaves every trained weight a bf16 value (bf16 storage,
 *    emulated in fp32 by rounding to nearest even);
 *  - its checkpoint keeps the layout trainer/optimizer*.safetensors and
 *    records the strategy: BF16 moments and Kahan compensation (kahan_c.*),
 *    no fp32 master copy, metadata optimizer_strategy, and
 *    trainer_state.json's optimizerStrategy; resuming it continues bit for
 *    bit as if never stopped;
 *  - resuming with the other strategy is refused naming both, by the
 *    trainer state and, below it, by the engine reading the files; so is
 *    changing strategy once state exists;
 *  - offloading the optimiser on the CPU backend changes nothing.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, type OptimizerPlacement, type TrainSequence } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { inspectSafetensors } from '../lib/io/safetensors.js';
import { readTrainerState, restoreCheckpoint, saveCheckpoint } from '../lib/rl/checkpoint.js';

const root = mkdtempSync(join(tmpdir(), 'st-optim-ckpt-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const base = join(root, 'base');
await writeRandomCheckpoint(base, { seed: 5 });
const tok = randomCheckpointTokens(1024);

function batch(step: number): TrainSequence[] {
  return [0, 1].map((i) => {
    const completion = Array.from({ length: 3 + i }, (_, j) => (step * 29 + i * 5 + j * 3) % 900);
    return {
      ids: [tok.imStart, 5, 6, 7, ...completion],
      promptLength: 4,
      advantage: i === 0 ? 1 : -0.5,
      oldLogprobs: new Float32Array(completion.length).fill(-7),
      refLogprobs: new Float32Array(completion.length).fill(-7),
    };
  });
}

async function trainSteps(model: Model, from: number, to: number, placement: OptimizerPlacement): Promise<number[]> {
  const losses: number[] = [];
  for (let s = from; s < to; s++) {
    await model.zeroGradients();
    losses.push((await model.trainGradients(batch(s))).loss);
    await model.optimizerStep({ lr: 1e-3, maxGradNorm: 0.5, ...placement });
  }
  return losses;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const isBf16 = (x: number) => {
  f32[0] = x;
  return ((u32[0] as number) & 0xffff) === 0;
};
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
const sameBits = (a: Float32Array, b: Float32Array) => a.length === b.length && bitsOf(a).every((x, i) => x === bitsOf(b)[i]);
const BF16: OptimizerPlacement = { strategy: 'adamw_bf16' };

t.test('adamw_bf16: bf16 weights, a checkpoint that records the strategy, and an exact resume', async (t) => {
  const straight = await Model.load(base);
  const lossesStraight = await trainSteps(straight, 0, 4, BF16);
  const final = await straight.parameters();
  const notBf16 = Object.entries(final).filter(([, a]) => !a.every(isBf16)).map(([n]) => n);
  t.same(notBf16, [], 'every weight is a bf16 value after adamw_bf16 steps');
  await straight.dispose();

  const runDir = join(root, 'run-bf16');
  const first = await Model.load(base);
  const lossesA = await trainSteps(first, 0, 2, BF16);
  const ckpt = await saveCheckpoint(first, base, runDir, 2, {}, { dtype: 'bf16', optimizerStrategy: 'adamw_bf16' });
  await first.dispose();
  const trainer = join(ckpt, 'trainer');
  const files = readdirSync(trainer).filter((f) => f.startsWith('optimizer') && f.endsWith('.safetensors'));
  t.ok(files.length > 0, `trainer/${files.join(', ')}`);
  const header = await inspectSafetensors(join(trainer, files[0] as string));
  t.equal(header.metadata['optimizer_strategy'], 'adamw_bf16', 'the file names its strategy');
  t.equal(header.metadata['optimizer_state_dtype'], 'BF16');
  const names = Object.keys(header.tensors);
  t.ok(names.some((n) => n.startsWith('kahan_c.')), 'the Kahan compensation is saved');
  t.notOk(names.some((n) => n.startsWith('master.')), 'no fp32 master copy: the bf16 weights are exact');
  t.same([...new Set(Object.values(header.tensors).map((h) => h.dtype))], ['BF16'], 'moments and compensation in BF16');
  t.equal((await readTrainerState(ckpt)).optimizerStrategy, 'adamw_bf16');

  const resumed = await Model.load(ckpt);
  await restoreCheckpoint(resumed, ckpt, BF16);
  const lossesB = await trainSteps(resumed, 2, 4, BF16);
  t.same([...lossesA, ...lossesB], lossesStraight, 'the same losses, bit for bit');
  const after = await resumed.parameters();
  t.same(Object.keys(after).filter((n) => !sameBits(after[n] as Float32Array, final[n] as Float32Array)), [], 'the same weights, bit for bit');
  await resumed.dispose();

  const wrong = await Model.load(ckpt);
  await t.rejects(restoreCheckpoint(wrong, ckpt, { strategy: 'adamw' }), /optimizer state was made by worker\.actor\.optim\.strategy=adamw_bf16, the run asks for adamw/);
  await t.rejects(wrong.restoreOptimizerState(trainer, 2, { strategy: 'adamw' }), /written by adamw_bf16 \(its Kahan compensation, e\.g\. 'kahan_c\..*'\) but the run's strategy is adamw/);
  await wrong.dispose();
});

t.test('adamw state is not continued as adamw_bf16', async (t) => {
  const runDir = join(root, 'run-fp32');
  const model = await Model.load(base);
  await trainSteps(model, 0, 1, {});
  await t.rejects(trainSteps(model, 1, 2, BF16), /the optimizer state is adamw; it cannot be continued as adamw_bf16/);
  const ckpt = await saveCheckpoint(model, base, runDir, 1, {}, { dtype: 'bf16' });
  await model.dispose();
  t.equal((await readTrainerState(ckpt)).optimizerStrategy, 'adamw');
  const header = await inspectSafetensors(join(ckpt, 'trainer', readdirSync(join(ckpt, 'trainer')).find((f) => f.endsWith('.safetensors')) as string));
  t.equal(header.metadata['optimizer_strategy'], 'adamw');
  t.ok(Object.keys(header.tensors).some((n) => n.startsWith('master.')), 'adamw keeps its fp32 master copy beside bf16 weights');
  const wrong = await Model.load(ckpt);
  await t.rejects(restoreCheckpoint(wrong, ckpt, BF16), /made by worker\.actor\.optim\.strategy=adamw, the run asks for adamw_bf16/);
  await t.rejects(wrong.restoreOptimizerState(join(ckpt, 'trainer'), 1, BF16), /written by adamw \(moments without a Kahan compensation\) but the run's strategy is adamw_bf16/);
  await wrong.dispose();
});

t.test('offloading the optimiser on the CPU backend changes nothing', async (t) => {
  for (const strategy of ['adamw', 'adamw_bf16'] as const) {
    const resident = await Model.load(base);
    const offloaded = await Model.load(base);
    const a = await trainSteps(resident, 0, 2, { strategy });
    const b = await trainSteps(offloaded, 0, 2, { strategy, offloadOptimizer: true });
    t.same(b, a, `${strategy}: the same losses`);
    const pa = await resident.parameters();
    const pb = await offloaded.parameters();
    t.same(Object.keys(pa).filter((n) => !sameBits(pa[n] as Float32Array, pb[n] as Float32Array)), [], `${strategy}: the same weights, bit for bit`);
    const ma = await resident.exportOptimizerState();
    const mb = await offloaded.exportOptimizerState();
    t.same(Object.keys(ma.m).filter((n) => !sameBits(ma.m[n] as Float32Array, mb.m[n] as Float32Array)), [], `${strategy}: the same moments`);
    await resident.dispose();
    await offloaded.dispose();
  }
});

t.test('the configuration says what the optimizer keys do on the device the run uses', async (t) => {
  const { configurationNotes, validateConfig } = await import('../lib/rl/config.js');
  const config = (device: 'cpu' | 'cuda', strategy: 'adamw' | 'adamw_bf16', offload: boolean) =>
    validateConfig({
      data: { train_files: 'x' },
      worker: { actor: { model: { model_path: 'm' }, optim: { strategy }, offload: { offload_optimizer: offload, offload_params: true } } },
      trainer: { device },
    });
  const cpu = configurationNotes(config('cpu', 'adamw_bf16', true));
  t.ok(cpu.some((n) => /offload_optimizer=true: no effect on the CPU backend/.test(n)), 'offload on the CPU is a no-op that says so');
  t.ok(cpu.some((n) => /strategy=adamw_bf16: the weights, AdamW moments and a Kahan compensation buffer are bf16/.test(n)));
  t.ok(cpu.some((n) => /worker\.actor\.offload\.offload_params=true: accepted, not applicable here/.test(n)), 'parameter offload stays accepted without effect');
  t.notOk(configurationNotes(config('cuda', 'adamw', true)).some((n) => /offload_optimizer=true/.test(n)), 'on CUDA offload applies: no note');
  const parsed = config('cuda', 'adamw', true);
  t.equal(parsed.worker.actor.offload.offload_optimizer, true);
  t.equal(config('cpu', 'adamw', false).worker.actor.offload.offload_optimizer, false);
});
