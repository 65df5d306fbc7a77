/**
 * Training on the CPU engine: micro-batches add up to the mini-batch,
 * tied embeddings collect both uses' gradients, checkpoints load as model
 * directories and resume bit-identically, interrupted saves keep the last
 * good checkpoint.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, type ImageInput, type TrainSequence } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { latestCheckpoint, listCheckpoints, restoreCheckpoint, saveCheckpoint } from '../lib/rl/checkpoint.js';

const root = mkdtempSync(join(tmpdir(), 'st-training-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const tok = randomCheckpointTokens(1024);

function image(seed: number): ImageInput {
  let s = seed;
  return { pixels: Float32Array.from({ length: 24 * 1176 }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1), gridThw: [[1, 4, 6]] };
}
const prompt = [tok.imStart, 5, 6, tok.visionStart, ...new Array<number>(6).fill(tok.imagePad), tok.visionEnd, 7, 8];

/** Two completions of the prompt for a step, different per step. */
function batch(step: number): TrainSequence[] {
  return [0, 1].map((i) => {
    const completion = Array.from({ length: 4 + i * 2 }, (_, j) => (step * 37 + i * 11 + j * 5) % 900);
    return {
      ids: [...prompt, ...completion],
      promptLength: prompt.length,
      images: image(1),
      advantage: i === 0 ? 0.8 : -0.8,
      oldLogprobs: Float32Array.from(completion, (_, j) => -6.5 - 0.01 * j),
      refLogprobs: Float32Array.from(completion, (_, j) => -6.9 + 0.02 * j),
    };
  });
}

const OPT = { lr: 1e-3, weightDecay: 0.01, maxGradNorm: 1 };
async function trainSteps(model: Model, from: number, to: number): Promise<number[]> {
  const losses: number[] = [];
  for (let step = from; step < to; step++) {
    await model.zeroGradients();
    const r = await model.trainGradients(batch(step), { clipLow: 0.2, clipHigh: 0.28, klCoef: 0.01 });
    losses.push(r.loss);
    const s = await model.optimizerStep(OPT);
    if (s.skipped) throw new Error('step skipped');
  }
  return losses;
}

const base = join(root, 'base');
await writeRandomCheckpoint(base, { seed: 21 });

t.test('micro-batches with the mini-batch counts add up to one big batch', async (t) => {
  const whole = await Model.load(base);
  const split = await Model.load(base);
  const seqs = [...batch(0), ...batch(1)];
  const tokens = seqs.reduce((n, s) => n + s.oldLogprobs!.length, 0);
  const all = await whole.trainGradients(seqs, { aggregation: 'token-mean' });
  const a = await split.trainGradients(seqs.slice(0, 2), { aggregation: 'token-mean', batchTokens: tokens, batchSequences: 4 });
  const b = await split.trainGradients(seqs.slice(2), { aggregation: 'token-mean', batchTokens: tokens, batchSequences: 4 });
  t.ok(Math.abs(a.loss + b.loss - all.loss) < 1e-6, `loss ${a.loss + b.loss} = ${all.loss}`);
  const g1 = await whole.gradients();
  const g2 = await split.gradients();
  let worst = 0;
  let scale = 0;
  for (const [name, v] of Object.entries(g1))
    for (let i = 0; i < v.length; i++) {
      worst = Math.max(worst, Math.abs((v[i] as number) - ((g2[name] as Float32Array)[i] as number)));
      scale = Math.max(scale, Math.abs(v[i] as number));
    }
  t.ok(worst <= 1e-5 * scale + 1e-9, `gradients agree (max diff ${worst.toExponential(2)} of ${scale.toExponential(2)})`);
  await whole.dispose();
  await split.dispose();
});

t.test('tied embeddings: the embedding gets the input and the output gradient', async (t) => {
  const tiedDir = join(root, 'tied');
  await writeRandomCheckpoint(tiedDir, { seed: 21, tieEmbeddings: true });
  const tied = await Model.load(tiedDir);
  // An untied copy whose lm_head equals the embedding computes the same function.
  const untiedDir = join(root, 'untied');
  await writeRandomCheckpoint(untiedDir, { seed: 99 });
  const untied = await Model.load(untiedDir);
  const params = await tied.parameters();
  await untied.setParameters({ ...params, 'lm_head.weight': params['model.embed_tokens.weight'] as Float32Array });
  const r1 = await tied.trainGradients(batch(0));
  const r2 = await untied.trainGradients(batch(0));
  t.ok(Math.abs(r1.loss - r2.loss) < 1e-6, 'same loss');
  const gt = await tied.gradients();
  const gu = await untied.gradients();
  t.notOk('lm_head.weight' in gt, 'a tied model has no separate head gradient');
  const e = gt['model.embed_tokens.weight'] as Float32Array;
  const sum = (gu['model.embed_tokens.weight'] as Float32Array).map((v, i) => v + ((gu['lm_head.weight'] as Float32Array)[i] as number));
  let worst = 0;
  for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs((e[i] as number) - (sum[i] as number)));
  t.ok(worst < 1e-6, `embedding gradient = input + output gradients (max diff ${worst.toExponential(2)})`);
  await tied.dispose();
  await untied.dispose();
});

t.test('a checkpoint resumes bit-identically and loads as a model directory', async (t) => {
  const straight = await Model.load(base);
  const lossesStraight = await trainSteps(straight, 0, 4);
  const final = await straight.parameters();

  const runDir = join(root, 'run');
  const first = await Model.load(base);
  const lossesA = await trainSteps(first, 0, 2);
  const ckpt = await saveCheckpoint(first, base, runDir, 2, { cursor: 2 }, { dtype: 'bf16', maxShardBytes: 200_000 });
  await first.dispose();
  t.ok(existsSync(join(ckpt, 'model.safetensors.index.json')), 'sharded above the size limit');
  t.equal(JSON.parse(readFileSync(join(ckpt, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
  t.ok(existsSync(join(ckpt, 'trainer', 'trainer_state.json')), 'the trainer state sits in trainer/');

  const resumed = await Model.load(ckpt); // an ordinary model directory
  const state = await restoreCheckpoint(resumed, ckpt);
  t.equal(state['cursor'], 2, 'trainer state comes back');
  const lossesB = await trainSteps(resumed, 2, 4);
  t.same([...lossesA, ...lossesB], lossesStraight, 'the same losses, bit for bit');
  const after = await resumed.parameters();
  const identical = Object.entries(final).every(([name, v]) => v.every((x, i) => x === (after[name] as Float32Array)[i]));
  t.ok(identical, 'the same weights, bit for bit');
  await straight.dispose();
  await resumed.dispose();
});

t.test('keep-last and interrupted saves', async (t) => {
  const runDir = join(root, 'keep');
  const model = await Model.load(base);
  await trainSteps(model, 0, 1);
  for (const step of [1, 2, 3, 4]) await saveCheckpoint(model, base, runDir, step, {}, { dtype: 'fp32', keepLast: 2 });
  t.same((await listCheckpoints(runDir)).map((d) => d.split('/').pop()), ['step-000003', 'step-000004']);
  // A save that died half way: a temporary directory, or a step directory without its state file.
  mkdirSync(join(runDir, 'checkpoints', '.tmp-step-000005-1'), { recursive: true });
  mkdirSync(join(runDir, 'checkpoints', 'step-000006'), { recursive: true });
  writeFileSync(join(runDir, 'checkpoints', 'step-000006', 'model.safetensors'), 'partial');
  t.match(await latestCheckpoint(runDir), /step-000004$/, 'the last good checkpoint');
  await model.dispose();
});

t.test('gradient checkpointing gives the same gradients; freezing leaves parts untouched', async (t) => {
  const plain = await Model.load(base);
  const ckpt = await Model.load(base);
  const a = await plain.trainGradients(batch(3));
  const b = await ckpt.trainGradients(batch(3), { checkpointLayers: true });
  t.equal(a.loss, b.loss, 'same loss');
  const ga = await plain.gradients();
  const gb = await ckpt.gradients();
  t.ok(Object.entries(ga).every(([n, v]) => v.every((x, i) => x === (gb[n] as Float32Array)[i])), 'identical gradients with recomputation');

  const before = await plain.parameters();
  await plain.optimizerStep({ lr: 1e-2, freezeVision: true, freezeMerger: true });
  const after = await plain.parameters();
  const changed = (prefix: string) => Object.keys(before).filter((n) => n.startsWith(prefix)).some((n) => (before[n] as Float32Array).some((x, i) => x !== (after[n] as Float32Array)[i]));
  t.notOk(changed('visual.'), 'the frozen vision tower and merger did not move');
  t.ok(changed('model.layers.'), 'the language model did');
  await plain.dispose();
  await ckpt.dispose();
});

t.test('SFT through the same path; bad sequences are errors naming them', async (t) => {
  const model = await Model.load(base);
  const seqs = batch(0).map(({ ids, promptLength, images }) => ({ ids, promptLength, ...(images ? { images } : {}), advantage: 0 }));
  const sft = await model.trainGradients(seqs, { objective: 'sft' });
  const mean = -Array.from(sft.logp).reduce((a, b) => a + b, 0) / sft.logp.length;
  t.ok(Math.abs(sft.loss - mean) < 1e-6, `SFT loss = mean token cross-entropy (${sft.loss})`);
  await t.rejects(model.trainGradients(seqs, { objective: 'sft', maxSequenceLength: 10 }), /training sequence 0 has \d+ tokens, more than the maximum of 10/);
  await t.rejects(model.trainGradients([{ ...seqs[0]!, ids: prompt, promptLength: prompt.length }], { objective: 'sft' }), /training sequence 0: the completion is empty/);
  await t.rejects(model.trainGradients([{ ...seqs[0]! }]), /one old \(and reference\) log-prob per completion token is needed/);
  await t.rejects(async () => model.trainGradients(seqs, { objective: 'ppo' as 'sft' }), /objective` must be "grpo" or "sft"/);
  // A NaN appearing in the loss: the optimiser step is skipped, nothing moves.
  await model.zeroGradients();
  const bad = batch(0).map((s) => ({ ...s, oldLogprobs: s.oldLogprobs!.map(() => Number.NaN) }));
  await model.trainGradients(bad);
  const before = await model.parameters();
  const step = await model.optimizerStep(OPT);
  t.ok(step.skipped, 'a non-finite gradient norm skips the step');
  const after = await model.parameters();
  t.ok(Object.entries(before).every(([n, v]) => v.every((x, i) => x === (after[n] as Float32Array)[i])), 'and leaves the weights');
  await model.dispose();
});

t.test('the reference model shares no memory with the policy', async (t) => {
  const policy = await Model.load(base);
  const reference = await Model.load(base);
  const seq = batch(1)[0]!;
  const completion = Array.from(seq.ids).slice(seq.promptLength);
  const promptInput = { ids: Array.from(seq.ids).slice(0, seq.promptLength), ...(seq.images ? { images: seq.images } : {}) };
  const [before] = await reference.logprobs([promptInput], [completion]);
  await trainSteps(policy, 0, 2);
  const [after] = await reference.logprobs([promptInput], [completion]);
  const [moved] = await policy.logprobs([promptInput], [completion]);
  t.same(Array.from(after!), Array.from(before!), 'training the policy leaves the reference untouched');
  t.not(JSON.stringify(Array.from(moved!)), JSON.stringify(Array.from(before!)), 'while the policy moved');
  await policy.dispose();
  await reference.dispose();
});
