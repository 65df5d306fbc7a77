// Issue 19 defect 13: a run that cannot learn says so and stops; KL settings
// that would be silently dropped are refused.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deepMerge, validateConfig, type TrainConfig } from '../lib/rl/config.js';
import { GrpoTrainer, StalledRunError } from '../lib/rl/grpo-trainer.js';
import { RewardRegistry } from '../lib/rewards/registry.js';
import { writeToyDataset, writeToyModel } from './helpers-rl.js';

const root = mkdtempSync(join(tmpdir(), 'st-stall-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const data = join(root, 'data');
const train = await writeToyDataset(data, 'train', 8, 1);
const modelDir = join(root, 'model');
await writeToyModel(modelDir, train);

function config(runDir: string, overrides: Record<string, unknown> = {}): TrainConfig {
  const base = {
    data: { train_files: join(data, 'train.jsonl'), max_prompt_length: 2048, max_response_length: 12, rollout_batch_size: 2, min_pixels: 56 * 56, max_pixels: 56 * 56 },
    worker: {
      actor: { global_batch_size: 2, micro_batch_size_per_device_for_update: 4, micro_batch_size_per_device_for_experience: 4, model: { model_path: modelDir }, optim: { lr: 1e-3 } },
      rollout: { n: 2 },
      reward: { reward_function: 'constant' },
    },
    trainer: { max_steps: 4, val_freq: -1, val_before_train: false, save_freq: -1, save_checkpoint_path: runDir, logger: ['file'], threads: 2 },
  };
  return validateConfig(deepMerge(base, overrides));
}

const constant = () => new RewardRegistry().register('constant', () => ({ overall: 0.25 }));

t.test('every group with zero reward variance: warn each step, stop after trainer.stall_steps', async (t) => {
  const trainer = new GrpoTrainer(config(join(root, 'run-stall'), { trainer: { stall_steps: 2 } }), { rewards: constant() });
  const logs: string[] = [];
  trainer.on('log', (message: string) => logs.push(message));
  await t.rejects(trainer.train(), StalledRunError);
  await trainer.dispose();
  const warnings = logs.filter((l) => l.startsWith('warning: step'));
  t.equal(warnings.length, 2, warnings.join('\n'));
  t.match(warnings[0], /step 1 learned nothing: every group's 2 rewards were equal \(mean reward 0\.250\), so every advantage was 0 \(1 such step in a row; stopping at 2\)/);
});

t.test('stall_steps 0 only warns', async (t) => {
  const trainer = new GrpoTrainer(config(join(root, 'run-warn'), { trainer: { stall_steps: 0, max_steps: 3 } }), { rewards: constant() });
  const logs: string[] = [];
  trainer.on('log', (message: string) => logs.push(message));
  const result = await trainer.train();
  await trainer.dispose();
  t.equal(result.steps, 3);
  t.equal(logs.filter((l) => l.startsWith('warning: step')).length, 3);
});

t.test('use_kl_loss: false with KL on is refused instead of silently training without KL', async (t) => {
  t.throws(
    () => config(join(root, 'x'), { algorithm: { use_kl_loss: false, kl_coef: 0.01 } }),
    /algorithm\.use_kl_loss: false asks for EasyR1's KL penalty in the reward, which spatialthinker does not implement/,
  );
  t.doesNotThrow(() => config(join(root, 'x'), { algorithm: { use_kl_loss: false, disable_kl: true } }), 'no KL at all is fine');
  t.doesNotThrow(() => config(join(root, 'x'), { algorithm: { use_kl_loss: false, kl_coef: 0 } }), 'kl_coef 0 is no KL');
  t.doesNotThrow(() => config(join(root, 'x'), { algorithm: { use_kl_loss: true, kl_coef: 0.01 } }));
});

t.test("image sizes come from the model's preprocessor_config.json unless the config sets them, and the log says which", async (t) => {
  const { imageSizeNote } = await import('../lib/rl/config.js');
  const base = { data: { train_files: join(data, 'train.jsonl') }, worker: { actor: { model: { model_path: modelDir } } } };
  const fromModel = validateConfig(base);
  t.equal(fromModel.data.min_pixels, 3136, "the checkpoint's min_pixels, not the 3B default 262144");
  t.equal(fromModel.data.max_pixels, 12845056);
  t.match(imageSizeNote(fromModel), `image sizes: min_pixels 3136, max_pixels 12845056 (min_pixels and max_pixels from ${join(modelDir, 'preprocessor_config.json')})`);
  const mixed = validateConfig(deepMerge(base, { data: { max_pixels: 4096 } }));
  t.same([mixed.data.min_pixels, mixed.data.max_pixels], [3136, 4096]);
  t.match(imageSizeNote(mixed), /min_pixels from .*preprocessor_config\.json; max_pixels from the configuration/);
  const noModel = validateConfig({ data: { train_files: 'x' }, worker: { actor: { model: { model_path: join(root, 'missing') } } } });
  t.same([noModel.data.min_pixels, noModel.data.max_pixels], [262144, 4194304]);
  t.match(imageSizeNote(noModel), /defaults: no readable .*preprocessor_config\.json/);
  t.throws(() => validateConfig(deepMerge(base, { data: { min_pixels: 1e12 } }), 'train.yaml'), /train\.yaml is invalid:\n\s+data\.min_pixels: .*268435456/);
});
