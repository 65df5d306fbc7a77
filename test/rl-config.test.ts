import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseOverrides, validateConfig } from '../lib/rl/config.js';
import { groupAdvantages, informativeGroups } from '../lib/rl/advantages.js';
import { DataLoader, type TrainingRow } from '../lib/rl/loader.js';
import { planMemory, parameterCount, formatMemoryPlan } from '../lib/rl/memory-plan.js';
import { parseModelConfig } from '../lib/engine/config.js';
import { writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { Model } from '../lib/engine/model.js';
import { readFile } from 'node:fs/promises';

const minimal = { data: { train_files: 'train.jsonl' }, worker: { actor: { model: { model_path: 'm' } } } };

t.test('defaults are the SpatialThinker recipe', async (t) => {
  const c = validateConfig(minimal);
  t.equal(c.worker.rollout.n, 8);
  t.equal(c.worker.rollout.temperature, 1);
  t.same(c.worker.rollout.val_override_config, { n: 1, temperature: 0.5 });
  t.equal(c.worker.actor.clip_ratio_low, 0.2);
  t.equal(c.worker.actor.clip_ratio_high, 0.3);
  t.equal(c.worker.actor.clip_ratio_dual, 3);
  t.equal(c.worker.actor.optim.lr, 1e-6);
  t.equal(c.algorithm.kl_coef, 0.01);
  t.equal(c.algorithm.kl_penalty, 'low_var_kl');
  t.equal(c.data.answer_key, 'answer_option_text');
  t.equal(c.worker.reward.reward_function, 'spatial');
});

t.test('a YAML file, a preset and dotted overrides, in that order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-config-'));
  const file = join(dir, 'run.yaml');
  writeFileSync(file, 'data:\n  train_files: mine.parquet\n  rollout_batch_size: 64\nworker:\n  actor:\n    global_batch_size: 16\n');
  const c = await loadConfig({ preset: 'spatialthinker-3b', file, overrides: ['trainer.max_steps=10', 'worker.rollout.n=4', 'worker.actor.optim.betas=[0.9, 0.95]', 'trainer.load_checkpoint_path=null'] });
  t.equal(c.data.train_files, 'mine.parquet', 'the file overrides the preset');
  t.equal(c.data.max_prompt_length, 6144, 'the preset fills what the file leaves');
  t.equal(c.trainer.max_steps, 10, 'overrides come last');
  t.equal(c.worker.rollout.n, 4);
  t.same(c.worker.actor.optim.betas, [0.9, 0.95]);
  t.equal(c.trainer.load_checkpoint_path, null);
});

t.test('validation errors name every bad key', async (t) => {
  const bad = {
    data: { train_files: 'x', rollout_batch_size: -3, surprise: 1 },
    worker: { actor: { model: {}, clip_ratio_low: 2 }, rollout: { temperature: 'hot' } },
    trainer: { logger: ['console', 'tensorbord'] },
  };
  const error = t.throws(() => validateConfig(bad, 'run.yaml')) as Error;
  t.type(error, ConfigError);
  t.match(error.message, /^run\.yaml is invalid/);
  t.match(error.message, /data\.rollout_batch_size: /);
  t.match(error.message, /data\.surprise: unknown key/);
  t.match(error.message, /worker\.actor\.model\.model_path: /);
  t.match(error.message, /worker\.actor\.clip_ratio_low: /);
  t.match(error.message, /worker\.rollout\.temperature: /);
  t.match(error.message, /trainer\.logger\.1: /);
  t.throws(() => validateConfig({ ...minimal, data: { train_files: 'x', rollout_batch_size: 10 }, worker: { actor: { model: { model_path: 'm' }, global_batch_size: 4 } } }), /must divide data\.rollout_batch_size/);
  t.throws(() => validateConfig({ ...minimal, worker: { ...minimal.worker, rollout: { n: 1 } } }), /n must be at least 2/);
  t.throws(() => parseOverrides(['trainer.max_steps']), /section\.key=value/);
  t.throws(() => parseOverrides(['trainer..x=1']), /not a dotted key/);
  await t.rejects(loadConfig({ preset: 'nope' }), /unknown preset "nope"/);
  await t.rejects(loadConfig({ file: '/nonexistent/run.yaml' }), /cannot read the configuration file \/nonexistent\/run\.yaml/);
  const dir = mkdtempSync(join(tmpdir(), 'st-config-'));
  writeFileSync(join(dir, 'bad.yaml'), 'data: [unclosed');
  await t.rejects(loadConfig({ file: join(dir, 'bad.yaml') }), /bad\.yaml is not valid YAML/);
});

t.test('group advantages: normalised within each group, unbiased std, equal rewards give 0', async (t) => {
  const a = groupAdvantages([1, 0, 0, 0, 0.5, 0.5, 0.5, 0.5], 4);
  const mean = 0.25;
  const std = Math.sqrt(((0.75 ** 2) + 3 * (0.25 ** 2)) / 3);
  t.ok(Math.abs((a[0] as number) - 0.75 / (std + 1e-6)) < 1e-12);
  t.ok(Math.abs((a[1] as number) - (0 - mean) / (std + 1e-6)) < 1e-12);
  t.same(Array.from(a.slice(4)), [0, 0, 0, 0]);
  const dr = groupAdvantages([1, 0, 0, 0], 4, { normaliseByStd: false });
  t.same(Array.from(dr), [0.75, -0.25, -0.25, -0.25]);
  t.throws(() => groupAdvantages([1, 2, 3], 2), /do not split/);
  t.same(informativeGroups([1, 1, 0, 1, 0, 0], 2, 0.01, 0.99), [false, true, false]);
});

t.test('the loader: seeded order, epochs, and a cursor that resumes the same order', async (t) => {
  const rows: TrainingRow[] = Array.from({ length: 10 }, (_, i) => ({ row: { problem: `p${i}` } as never, where: `row ${i}` }));
  const a = new DataLoader(rows, 7);
  const first = a.take(6).map((r) => r.where);
  const second = a.take(6).map((r) => r.where);
  t.equal(new Set(first).size, 6);
  t.equal(a.epoch, 1);
  t.notSame(first, rows.slice(0, 6).map((r) => r.where), 'shuffled');
  const b = new DataLoader(rows, 7);
  b.take(6);
  const resumed = DataLoader.restore(rows, b.state());
  t.same(resumed.take(6).map((r) => r.where), second, 'a restored cursor continues the same order');
  const epoch0 = new Set([...first, ...second.slice(0, 4)]);
  t.equal(epoch0.size, 10, 'every row once per epoch');
  t.notSame(new DataLoader(rows, 8).take(6).map((r) => r.where), first, 'another seed, another order');
});

t.test('memory plan: parameter count matches the engine, and a run that cannot fit is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-plan-'));
  await writeRandomCheckpoint(dir, { seed: 3 });
  const model = await Model.load(dir);
  t.teardown(() => model.dispose());
  const modelConfig = parseModelConfig(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')));
  t.equal(parameterCount(modelConfig), model.parameterCount, 'counted like the engine stores them');
  const config = validateConfig({ ...minimal, data: { train_files: 'x', max_prompt_length: 512, max_response_length: 256, rollout_batch_size: 8 }, worker: { actor: { model: { model_path: 'm' }, global_batch_size: 8 } } });
  const roomy = planMemory({ config, model: modelConfig, availableBytes: 8 * 1024 ** 3 });
  t.ok(roomy.fits);
  t.equal(roomy.rolloutSequences, 64, 'all 8 x 8 sequences at once');
  t.match(formatMemoryPlan(roomy), /weights[\s\S]*gradients[\s\S]*AdamW moments[\s\S]*reference model[\s\S]*KV cache[\s\S]*rollout peak[\s\S]*activations[\s\S]*update peak/);
  const tight = planMemory({ config, model: modelConfig, availableBytes: (roomy.fixedBytes + roomy.kvBytesPerToken * 3000) / 0.9 });
  t.equal(tight.fits, tight.updatePeakBytes <= tight.availableBytes * 0.9, 'fits exactly when the update does');
  t.ok(tight.rolloutSequences < 64 && tight.rolloutSequences >= 1, `KV cache limits the rollout to ${tight.rolloutSequences} sequences`);
  const tiny = planMemory({ config, model: modelConfig, availableBytes: 1024 * 1024 });
  t.notOk(tiny.fits);
  t.match(tiny.messages[0], /the update needs .* but host memory/);
});
