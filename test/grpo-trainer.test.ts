import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deepMerge, validateConfig, type TrainConfig } from '../lib/rl/config.js';
import { GrpoTrainer } from '../lib/rl/grpo-trainer.js';
import { SftTrainer } from '../lib/rl/sft-trainer.js';
import { groupStats } from '../lib/rl/advantages.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { RewardRegistry } from '../lib/rewards/registry.js';
import { parseGroundTruth } from '../lib/rewards/ground-truth.js';
import { writeToyDataset, writeToyModel } from './helpers-rl.js';

const root = mkdtempSync(join(tmpdir(), 'st-grpo-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const data = join(root, 'data');
const train = await writeToyDataset(data, 'train', 8, 1);
const val = await writeToyDataset(data, 'val', 3, 2);
const modelDir = join(root, 'model');
await writeToyModel(modelDir, [...train, ...val]);

function config(runDir: string, overrides: Record<string, unknown> = {}): TrainConfig {
  const base = {
    data: { train_files: join(data, 'train.jsonl'), val_files: join(data, 'val.jsonl'), max_prompt_length: 2048, max_response_length: 20, rollout_batch_size: 4, min_pixels: 56 * 56, max_pixels: 56 * 56 },
    worker: {
      actor: { global_batch_size: 2, micro_batch_size_per_device_for_update: 3, micro_batch_size_per_device_for_experience: 5, model: { model_path: modelDir }, optim: { lr: 1e-3 } },
      rollout: { n: 4 },
      reward: { similarity: 'exact' },
    },
    trainer: { max_steps: 2, val_freq: 1, save_freq: 1, save_dtype: 'fp32', save_checkpoint_path: runDir, logger: ['file', 'tensorboard'], threads: 2 },
  };
  return validateConfig(deepMerge(base, overrides));
}

const readJsonl = (path: string) =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

async function weights(dir: string): Promise<Record<string, Float32Array>> {
  const { tensors } = await readSafetensors(join(dir, 'model.safetensors'));
  return Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.data as Float32Array]));
}

t.test('GRPO steps: rewards flow, advantages are group-normalised, weights change, metrics and samples are logged', async (t) => {
  const runDir = join(root, 'run-a');
  // A reward that varies within every group, so each group has a non-zero advantage.
  const registry = new RewardRegistry().register('by-length', (input) => ({ overall: (input.completion.length % 5) / 4, length: input.completion.length }));
  const seen: { step: number; split: string }[] = [];
  const trainer = new GrpoTrainer(config(runDir, { worker: { reward: { reward_function: 'by-length' } }, trainer: { train_generations_to_log: 8 } }), { rewards: registry });
  trainer.on('metrics', (e) => seen.push({ step: e.step, split: e.split }));
  const result = await trainer.train();
  await trainer.dispose();
  t.equal(result.steps, 2);
  t.same(seen, [
    { step: 0, split: 'val' },
    { step: 1, split: 'train' },
    { step: 1, split: 'val' },
    { step: 2, split: 'train' },
    { step: 2, split: 'val' },
  ]);
  const metrics = readJsonl(join(runDir, 'metrics.jsonl'));
  const trainLines = metrics.filter((m) => m['split'] === 'train');
  for (const key of ['reward/overall', 'reward/length', 'accuracy', 'response_length/mean', 'response_length/clip_ratio', 'actor/pg_loss', 'actor/kl_loss', 'actor/ppo_kl', 'actor/pg_clipfrac_higher', 'actor/pg_clipfrac_lower', 'actor/entropy_loss', 'actor/grad_norm', 'actor/lr', 'timing/generation', 'timing/reward', 'timing/old_logprobs', 'timing/ref_logprobs', 'timing/update'])
    t.ok(trainLines.every((m) => typeof m[key] === 'number' && Number.isFinite(m[key])), `train metric ${key}`);
  t.equal(trainLines[0]?.['actor/optimizer_steps'], 2, 'rollout batch 4 / global batch 2 = 2 optimiser steps');
  t.ok((trainLines[0]?.['actor/grad_norm'] as number) > 0);
  const valLines = metrics.filter((m) => m['split'] === 'val');
  for (const key of ['val/accuracy', 'val/format_rate', 'val/ciou', 'val/reward/overall', 'val/accuracy/relation']) t.ok(valLines.every((m) => typeof m[key] === 'number'), `val metric ${key}`);

  // Samples of a step are its first two groups (8 of 16 completions), with rewards and advantages.
  const samples = readJsonl(join(runDir, 'samples.jsonl')).filter((s) => s['split'] === 'train' && s['step'] === 1);
  t.equal(samples.length, 8);
  for (let g = 0; g < 2; g++) {
    const group = samples.slice(4 * g, 4 * g + 4);
    const rewards = group.map((s) => (s['reward'] as Record<string, number>)['overall'] as number);
    const { mean, std } = groupStats(rewards);
    group.forEach((s, i) => {
      const expected = rewards.every((r) => r === rewards[0]) ? 0 : ((rewards[i] as number) - mean) / (std + 1e-6);
      t.ok(Math.abs((s['advantage'] as number) - expected) < 1e-9, `group ${g} sample ${i}: advantage ${s['advantage']} = ${expected}`);
    });
    t.ok(existsSync(join(runDir, group[0]?.['image'] as string)), 'the sample image is in the run directory');
  }
  t.ok(existsSync(join(runDir, 'config.yaml')));
  t.ok(readFileSync(join(runDir, 'config.yaml'), 'utf8').includes('reward_function: by-length'), 'the effective configuration is written');

  const before = await weights(modelDir);
  const after = await weights(join(runDir, 'checkpoints', 'step-000002'));
  const changed = Object.keys(before).filter((k) => before[k]!.some((v, i) => v !== after[k]![i]));
  t.ok(changed.length > Object.keys(before).length / 2, `${changed.length} of ${Object.keys(before).length} tensors changed`);
  t.ok(changed.some((k) => k.startsWith('visual.')), 'the vision tower trains too');
});

t.test('a checkpoint resumes exactly: 1 step + resume + 1 step = 2 steps', async (t) => {
  const straight = join(root, 'run-straight');
  const resumed = join(root, 'run-resumed');
  const a = new GrpoTrainer(config(straight, { trainer: { val_freq: 0 } }));
  await a.train();
  await a.dispose();
  const b1 = new GrpoTrainer(config(resumed, { trainer: { max_steps: 1, val_freq: 0 } }));
  await b1.train();
  await b1.dispose();
  const b2 = new GrpoTrainer(config(resumed, { trainer: { val_freq: 0 } }));
  const messages: string[] = [];
  b2.on('log', (m) => messages.push(m));
  const r = await b2.train();
  await b2.dispose();
  t.ok(messages.some((m) => m.startsWith('resumed from') && m.endsWith('at step 1')), 'it resumed from step 1');
  t.equal(r.steps, 2);
  const x = await weights(join(straight, 'checkpoints', 'step-000002'));
  const y = await weights(join(resumed, 'checkpoints', 'step-000002'));
  const differing = Object.keys(x).filter((k) => x[k]!.some((v, i) => v !== y[k]![i]));
  t.same(differing, [], 'bit-identical weights');
  const mx = readJsonl(join(straight, 'metrics.jsonl')).at(-1)!;
  const my = readJsonl(join(resumed, 'metrics.jsonl')).at(-1)!;
  t.equal(my['reward/overall'], mx['reward/overall'], 'the same rollouts at step 2 (data order and seeds intact)');
});

t.test('an occupied run folder is refused; a damaged newest checkpoint falls back to the previous one; metrics are not repeated', async (t) => {
  const runDir = join(root, 'run-occupied');
  const a = new GrpoTrainer(config(runDir, { trainer: { val_freq: 0 } }));
  await a.train();
  await a.dispose();
  const trainLines = () => readJsonl(join(runDir, 'metrics.jsonl')).filter((m) => m['split'] === 'train').map((m) => m['step']);
  t.same(trainLines(), [1, 2]);

  // Defect: a fresh run into this folder used to rotate away its own checkpoints and append to the other run's metrics.
  const fresh = new GrpoTrainer(config(runDir, { trainer: { val_freq: 0, find_last_checkpoint: false } }));
  await t.rejects(fresh.train(), { message: /already holds a run \(checkpoints\/step-000002, metrics\.jsonl\): resume it/ });
  await fresh.dispose();
  t.ok(existsSync(join(runDir, 'checkpoints', 'step-000002')), 'nothing of the old run removed');

  // A save killed by kill -9 leaves a temporary folder of a dead process.
  mkdirSync(join(runDir, 'checkpoints', '.tmp-step-000003-999999999'), { recursive: true });
  writeFileSync(join(runDir, 'checkpoints', 'step-000002', 'trainer', 'trainer_state.json'), '{"step": ');
  const b = new GrpoTrainer(config(runDir, { trainer: { val_freq: 0 } }));
  const messages: string[] = [];
  b.on('log', (m) => messages.push(m));
  const r = await b.train();
  await b.dispose();
  t.ok(messages.some((m) => m.startsWith('removed ') && m.includes('.tmp-step-000003-999999999')), 'the stale temporary folder is removed');
  t.ok(messages.some((m) => /^warning: checkpoint .*step-000002 is damaged .*trying the previous one, .*step-000001$/.test(m)), messages.join('\n'));
  t.ok(messages.some((m) => /resumed from .*step-000001 at step 1 \(dropped \d+ log lines of later steps\)$/.test(m)), 'resumed from step 1');
  t.equal(r.steps, 2);
  t.ok(existsSync(join(runDir, 'checkpoints', 'damaged-step-000002')), 'the damaged checkpoint is kept aside');
  t.ok(existsSync(join(runDir, 'checkpoints', 'step-000002', 'trainer', 'trainer_state.json')), 'step 2 saved again');
  t.same(trainLines(), [1, 2], 'step 2 logged once');

  // --resume-from names a checkpoint; an earlier one than the folder's newest would mix two runs.
  const c = new GrpoTrainer(config(runDir, { trainer: { val_freq: 0, load_checkpoint_path: join(runDir, 'checkpoints', 'step-000001') } }));
  await t.rejects(c.train(), { message: /already holds checkpoints after step 1 \(step-000002\)/ });
  await c.dispose();
});

t.test('an AbortSignal stops the run cleanly with a checkpoint of the last completed step', async (t) => {
  const runDir = join(root, 'run-abort');
  const controller = new AbortController();
  const trainer = new GrpoTrainer(config(runDir, { trainer: { max_steps: 5, save_freq: 0, val_freq: 0 } }), { signal: controller.signal });
  trainer.on('progress', (e) => {
    if (e.step === 2 && e.phase === 'update') controller.abort();
  });
  const result = await trainer.train();
  await trainer.dispose();
  t.equal(result.aborted, true, 'the result says the run was aborted');
  t.equal(result.steps, 1, 'step 2 was interrupted and not applied');
  t.match(result.lastCheckpoint, /step-000001$/);
  const state = JSON.parse(readFileSync(join(result.lastCheckpoint!, 'trainer', 'trainer_state.json'), 'utf8'));
  t.equal(state.loader.cursor, 4, 'the cursor is where step 2 started');
});

t.test('an abort during a rollout cancels only that run and resolves with aborted: true', async (t) => {
  const controller = new AbortController();
  const trainer = new GrpoTrainer(config(join(root, 'run-abort-rollout'), { trainer: { max_steps: 3, save_freq: 0, val_freq: 0 } }), { signal: controller.signal });
  trainer.on('progress', (e) => {
    if (e.step === 1 && e.phase === 'rollout') controller.abort();
  });
  const result = await trainer.train();
  await trainer.dispose();
  t.equal(result.aborted, true);
  t.equal(result.steps, 0, 'no step was applied');
});

t.test('SFT on gold traces lowers the loss and validates through the same path', async (t) => {
  const runDir = join(root, 'run-sft');
  const trainer = new SftTrainer(config(runDir, { data: { max_response_length: 200 }, worker: { actor: { global_batch_size: 4, optim: { lr: 3e-3 } } }, trainer: { max_steps: 6, val_freq: 6, val_before_train: false } }));
  const result = await trainer.train();
  await trainer.dispose();
  const lines = readJsonl(join(runDir, 'metrics.jsonl')).filter((m) => m['split'] === 'train');
  t.equal(result.aborted, false, 'a run that reached its last step was not aborted');
  const losses = lines.map((m) => m['sft/loss'] as number);
  t.equal(losses.length, 6);
  t.ok((losses.at(-1) as number) < (losses[0] as number) * 0.8, `loss falls: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  t.ok(result.validation && typeof result.validation['val/format_rate'] === 'number');
  t.ok(parseGroundTruth(train[0]!.answer_option_text).objects.length === 2);
});

t.test('a run whose optimiser steps keep being skipped (non-finite loss) stops with NonFiniteStepError', async (t) => {
  const runDir = join(root, 'run-nonfinite');
  // lr 1e30 sends the weights to ~1e30 after the first step: every later loss is non-finite and its step skipped.
  const trainer = new SftTrainer(config(runDir, { data: { max_response_length: 200 }, worker: { actor: { global_batch_size: 4, optim: { lr: 1e30 } } }, trainer: { max_steps: 20, val_freq: 0, save_freq: 0, val_before_train: false } }));
  const logs: string[] = [];
  trainer.on('log', (m) => logs.push(m));
  await t.rejects(trainer.train(), { name: 'NonFiniteStepError', message: /5 optimiser steps in a row had a non-finite loss or gradient norm/ });
  await trainer.dispose();
  const skips = logs.filter((m) => /optimiser step skipped/.test(m));
  t.equal(skips.length, 5, `one line per skipped step:\n${skips.join('\n')}`);
  const steps = readJsonl(join(runDir, 'metrics.jsonl')).filter((m) => m['split'] === 'train').length;
  t.ok(steps <= 6, `the run stopped at once (${steps} steps logged), not after max_steps`);
});
