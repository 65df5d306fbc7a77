/**
 * Native checkpoint I/O: the streaming safetensors writer (hub names and
 * shapes, fp32 bit-exact, bf16 rounded to nearest even, shards and index as
 * transformers writes them, chunks smaller than a tensor), the step folder's
 * layout (a clean model directory, the trainer's state in trainer/), resume
 * from the new and the older layout, rotation that never deletes what was
 * just written, stale temporary folders, and trainer_state.json checks.
 */
import t from 'tap';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, type TrainSequence } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { f32ToBf16Bits, inspectModelWeights, readSafetensors } from '../lib/io/safetensors.js';
import {
  listCheckpoints,
  readTrainerState,
  removeStaleTemporaries,
  restoreCheckpoint,
  saveCheckpoint,
  verifyCheckpoint,
} from '../lib/rl/checkpoint.js';
import { readRunState } from '../lib/rl/run.js';

const root = mkdtempSync(join(tmpdir(), 'st-ckpt-io-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const base = join(root, 'base');
await writeRandomCheckpoint(base, { seed: 11 });
const tok = randomCheckpointTokens(1024);

function batch(step: number): TrainSequence[] {
  return [0, 1].map((i) => {
    const completion = Array.from({ length: 3 + i }, (_, j) => (step * 31 + i * 7 + j * 3) % 900);
    return {
      ids: [tok.imStart, 5, 6, 7, ...completion],
      promptLength: 4,
      advantage: i === 0 ? 1 : -0.5,
      oldLogprobs: new Float32Array(completion.length).fill(-7),
      refLogprobs: new Float32Array(completion.length).fill(-7),
    };
  });
}

async function trainSteps(model: Model, from: number, to: number): Promise<number[]> {
  const losses: number[] = [];
  for (let s = from; s < to; s++) {
    await model.zeroGradients();
    losses.push((await model.trainGradients(batch(s))).loss);
    await model.optimizerStep({ lr: 1e-3, maxGradNorm: 0.5 });
  }
  return losses;
}

const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
const sameBits = (a: Float32Array, b: Float32Array) => a.length === b.length && bitsOf(a).every((x, i) => x === bitsOf(b)[i]);

t.test('fp32 weights are written bit for bit with the hub shapes, through a buffer smaller than a tensor', async (t) => {
  const model = await Model.load(base);
  await trainSteps(model, 0, 1);
  const out = join(root, 'fp32');
  mkdirSync(out);
  const written = await model.saveWeights(out, 'fp32', { bufferBytes: 1000 });
  t.same(written.files, ['model.safetensors']);
  const params = await model.parameters();
  const { tensors, metadata } = await readSafetensors(join(out, 'model.safetensors'));
  t.same(metadata, { format: 'pt' });
  const source = await inspectModelWeights(base);
  t.same(Object.keys(tensors).sort(), Object.keys(params).sort(), 'every parameter, by hub name');
  for (const [name, tensor] of Object.entries(tensors)) {
    t.same(tensor.shape, source[name]?.shape, `${name}: the source's shape`);
    if (!sameBits(tensor.data as Float32Array, params[name] as Float32Array)) t.fail(`${name} differs`);
  }
  t.equal((source['visual.patch_embed.proj.weight']?.shape ?? []).length, 5, 'patch_embed is 5-D');
  t.equal(written.totalSize, Object.values(params).reduce((a, p) => a + p.length * 4, 0));
  await model.dispose();
});

t.test('bf16 weights round to nearest even; shards and index follow transformers', async (t) => {
  const model = await Model.load(base);
  await trainSteps(model, 0, 1);
  const params = await model.parameters();
  const out = join(root, 'bf16');
  mkdirSync(out);
  const maxShardBytes = 150_000;
  const written = await model.saveWeights(out, 'bf16', { maxShardBytes, bufferBytes: 4096 });
  const shards = written.files.filter((f) => f.endsWith('.safetensors'));
  t.ok(shards.length > 2, `${shards.length} shards`);
  shards.forEach((f, i) => t.equal(f, `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`));
  t.equal(written.files.at(-1), 'model.safetensors.index.json');
  const indexText = readFileSync(join(out, 'model.safetensors.index.json'), 'utf8');
  const index = JSON.parse(indexText) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  t.same(Object.keys(index), ['metadata', 'weight_map']);
  const names = Object.keys(params).sort();
  t.same(Object.keys(index.weight_map), names, 'weight_map sorted by name, every tensor');
  t.equal(index.metadata.total_size, names.reduce((a, n) => a + (params[n] as Float32Array).length * 2, 0), 'total_size = data bytes');
  t.equal(indexText, JSON.stringify(index, null, 2) + '\n', 'laid out as json.dumps(indent=2) with a trailing newline');
  // Each shard holds at most maxShardBytes, unless one tensor alone is larger.
  for (const shard of shards) {
    const { tensors } = await readSafetensors(join(out, shard));
    const bytes = Object.values(tensors).reduce((a, x) => a + x.data.length * 2, 0);
    t.ok(bytes <= maxShardBytes || Object.keys(tensors).length === 1, `${shard}: ${bytes} bytes`);
    for (const [name, tensor] of Object.entries(tensors)) {
      t.equal(index.weight_map[name], shard);
      t.equal(tensor.dtype, 'BF16');
      const expected = Float32Array.from(params[name] as Float32Array, (v) => new Float32Array(new Uint32Array([f32ToBf16Bits(v) << 16]).buffer)[0] as number);
      if (!sameBits(tensor.data as Float32Array, expected)) t.fail(`${name}: not rounded to nearest even`);
    }
  }
  // Our loader reads it back as a model.
  cpSync(join(base, 'config.json'), join(out, 'config.json'));
  const reloaded = await Model.load(out);
  t.equal(reloaded.parameterCount, model.parameterCount);
  await reloaded.dispose();
  await model.dispose();
});

t.test('a step folder is a clean model directory; resume from it (and from the older layout) is bit-exact', async (t) => {
  const straight = await Model.load(base);
  const lossesStraight = await trainSteps(straight, 0, 4);
  const final = await straight.parameters();
  const finalState = await straight.exportOptimizerState();
  await straight.dispose();

  const runDir = join(root, 'run');
  const first = await Model.load(base);
  const lossesA = await trainSteps(first, 0, 2);
  const ckpt = await saveCheckpoint(first, base, runDir, 2, { cursor: 2 }, { dtype: 'bf16', maxShardBytes: 100_000 });
  await first.dispose();
  const top = readdirSync(ckpt).sort();
  t.ok(top.includes('trainer') && top.includes('config.json') && top.includes('model.safetensors.index.json'), top.join(' '));
  t.notOk(top.some((f) => f.startsWith('optimizer') || f === 'trainer_state.json'), 'nothing but the model at the top level');
  const trainerFiles = readdirSync(join(ckpt, 'trainer'));
  t.ok(trainerFiles.includes('trainer_state.json') && trainerFiles.some((f) => f.startsWith('optimizer')), trainerFiles.join(' '));

  for (const layout of ['trainer/', 'older top-level']) {
    let dir = ckpt;
    if (layout !== 'trainer/') {
      dir = join(root, 'old-layout');
      cpSync(ckpt, dir, { recursive: true });
      for (const f of readdirSync(join(dir, 'trainer'))) renameSync(join(dir, 'trainer', f), join(dir, f));
      rmSync(join(dir, 'trainer'), { recursive: true });
    }
    const resumed = await Model.load(dir);
    const state = await restoreCheckpoint(resumed, dir);
    t.equal(state['cursor'], 2, `${layout}: trainer state comes back`);
    t.equal(resumed.optimizerSteps, 2);
    const lossesB = await trainSteps(resumed, 2, 4);
    t.same([...lossesA, ...lossesB], lossesStraight, `${layout}: the same losses, bit for bit`);
    const after = await resumed.parameters();
    t.same(Object.keys(after).filter((n) => !sameBits(after[n] as Float32Array, final[n] as Float32Array)), [], `${layout}: the same weights, bit for bit`);
    const moments = await resumed.exportOptimizerState();
    t.equal(moments.step, finalState.step);
    const differing = Object.keys(finalState.m).filter(
      (n) => !sameBits(moments.m[n] as Float32Array, finalState.m[n] as Float32Array) || !sameBits(moments.v[n] as Float32Array, finalState.v[n] as Float32Array),
    );
    t.same(differing, [], `${layout}: the same moments, bit for bit`);
    await resumed.dispose();
  }
});

t.test('rotation never deletes the checkpoint just written, even beside higher steps of another run', async (t) => {
  const runDir = join(root, 'rotate');
  const model = await Model.load(base);
  for (const step of [5, 6, 7]) await saveCheckpoint(model, base, runDir, step, {}, { dtype: 'fp32', keepLast: 2 });
  const name = (d: string) => d.split('/').pop();
  t.same((await listCheckpoints(runDir)).map(name), ['step-000006', 'step-000007']);
  const fresh = await saveCheckpoint(model, base, runDir, 1, {}, { dtype: 'fp32', keepLast: 2 });
  t.ok(existsSync(join(fresh, 'trainer', 'trainer_state.json')), 'step 1 survives its own save');
  t.same((await listCheckpoints(runDir)).map(name), ['step-000001', 'step-000006', 'step-000007'], 'later steps are not this save\'s to remove');
  await model.dispose();
});

t.test('stale temporary folders of killed saves are removed; a live process keeps its own', async (t) => {
  const runDir = join(root, 'stale');
  const checkpoints = join(runDir, 'checkpoints');
  // A PID that is not running: a short-lived child's, after it exited.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout.trim();
  const names = [`.tmp-step-000003-${dead}`, `.tmp-step-000004-${process.pid}`, `.tmp-step-000005-${process.ppid}`];
  for (const n of names) {
    mkdirSync(join(checkpoints, n), { recursive: true });
    writeFileSync(join(checkpoints, n, 'model.safetensors'), 'partial');
  }
  const removed = await removeStaleTemporaries(runDir);
  t.same(removed.map((d) => d.split('/').pop()).sort(), names.slice(0, 2).sort(), 'the dead process\'s and our own');
  t.ok(existsSync(join(checkpoints, names[2] as string)), 'a running process\'s save is left alone');
});

t.test('trainer_state.json is checked field by field; damaged files are found before loading', async (t) => {
  const model = await Model.load(base);
  await trainSteps(model, 0, 1);
  const ckpt = await saveCheckpoint(model, base, join(root, 'states'), 1, { kind: 'grpo', loader: { seed: 1, cursor: 4 } }, { dtype: 'bf16' });
  await model.dispose();
  const statePath = join(ckpt, 'trainer', 'trainer_state.json');
  const good = readFileSync(statePath, 'utf8');
  t.equal((await readRunState(ckpt)).loader.cursor, 4);
  const edit = (change: (s: Record<string, unknown>) => void) => {
    const s = JSON.parse(good) as Record<string, unknown>;
    change(s);
    writeFileSync(statePath, JSON.stringify(s));
  };
  edit((s) => (s['step'] = 'x'));
  await t.rejects(readTrainerState(ckpt), { message: `${statePath}: "step" must be a non-negative integer (got "x")` });
  edit((s) => (s['optimizerStep'] = -1));
  await t.rejects(readTrainerState(ckpt), { message: /trainer_state\.json: "optimizerStep" must be a non-negative integer/ });
  edit((s) => (s['loader'] = { seed: 1, cursor: -5 }));
  await t.rejects(readRunState(ckpt), { message: /trainer_state\.json: "loader\.cursor" must be a non-negative integer \(got -5\)/ });
  writeFileSync(statePath, '{"step": 1');
  await t.rejects(readTrainerState(ckpt), { message: /^cannot read the trainer state .*trainer_state\.json: / });
  writeFileSync(statePath, good);
  await verifyCheckpoint(ckpt);
  truncateSync(join(ckpt, 'trainer', 'optimizer.safetensors'), 1000);
  await t.rejects(verifyCheckpoint(ckpt), { message: /optimizer\.safetensors/ }, 'a truncated optimiser file');
});
