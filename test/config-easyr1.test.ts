import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError, configurationNotes, loadConfig, validateConfig } from '../lib/rl/config.js';
import { NOT_APPLICABLE } from '../lib/rl/config-compat.js';
import { AGGREGATIONS } from '../lib/rl/grpo-trainer.js';

/** The reference repository's scripts/config.yaml, key for key. */
const REFERENCE = 'test/fixtures/spatialthinker-config.yaml';
/** The 3B recipe's command-line overrides (scripts/qwen_2_5_3b_stvqa_vanilla_grpo.sh and spatialthinker_3b_grpo.sh). */
const RECIPE_3B = [
  'worker.actor.optim.strategy=adamw_bf16',
  'worker.actor.fsdp.torch_dtype=bf16',
  'trainer.n_gpus_per_node=4',
  'worker.reward.score_function=r1v',
  'data.image_key=images',
  'data.answer_key=answer_option_text_only',
  'trainer.total_episodes=75',
  'trainer.max_steps=75',
  'worker.rollout.n=8',
  'data.val_batch_size=8',
  'data.max_prompt_length=6144',
  'worker.rollout.max_num_batched_tokens=8192',
];

function cli(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { encoding: 'utf8' });
}

t.test('the reference config.yaml with the 3B recipe overrides: --print-config shows them applied', async (t) => {
  const r = cli('train', '--print-config', '--config', REFERENCE, ...RECIPE_3B);
  t.equal(r.status, 0, r.stderr);
  const printed = parseYaml(r.stdout) as Record<string, any>;
  t.equal(printed.worker.actor.optim.strategy, 'adamw_bf16');
  t.equal(printed.worker.actor.fsdp.torch_dtype, 'bf16');
  t.equal(printed.worker.actor.fsdp.enable_full_shard, true, 'the file\'s fsdp keys are kept beside the override');
  t.equal(printed.trainer.n_gpus_per_node, 4);
  t.equal(printed.worker.reward.reward_function, 'sparse', 'r1v is the sparse reward');
  t.equal(printed.data.image_key, 'images');
  t.equal(printed.data.answer_key, 'answer_option_text_only');
  t.equal(printed.trainer.total_epochs, 75, 'total_episodes is total_epochs');
  t.equal(printed.trainer.max_steps, 75);
  t.equal(printed.worker.rollout.n, 8);
  t.equal(printed.data.max_prompt_length, 6144);
  t.equal(printed.trainer.save_limit, 1, 'the file\'s values stay where no override replaces them');
  const notes = r.stdout.split('\n').filter((l) => l.startsWith('#   '));
  for (const key of ['trainer.n_gpus_per_node', 'worker.actor.fsdp.torch_dtype', 'worker.ref', 'worker.rollout.tensor_parallel_size', 'data.val_batch_size'])
    t.equal(notes.filter((n) => n.startsWith(`#   ${key}=`) && n.includes('accepted, not applicable here: ')).length, 1, `${key} listed once`);
  t.equal(notes.filter((n) => n.includes('trainer.logger "wandb": accepted, not applicable here')).length, 1);
  t.ok(notes.some((n) => n.includes('worker.actor.optim.strategy=adamw_bf16: the weights, AdamW moments and a Kahan compensation buffer are bf16')));
  t.ok(notes.some((n) => n.includes('worker.actor.fsdp.enable_full_shard=true: applied as trainer.zero1=true')), 'FSDP full sharding is ZeRO-1 here');
  t.ok(notes.some((n) => n.includes('worker.reward.score_function=r1v: applied as worker.reward.reward_function=sparse')));
  t.equal(new Set(notes).size, notes.length, 'no note twice');
});

t.test('every key of the reference config is accepted, applied or listed', async (t) => {
  const c = await loadConfig({ file: REFERENCE, overrides: RECIPE_3B });
  const notes = configurationNotes(c);
  const reference = parseYaml(readFileSync(REFERENCE, 'utf8')) as Record<string, unknown>;
  const leaves: string[] = [];
  const walk = (node: unknown, path: string[]) => {
    if (typeof node === 'object' && node !== null && !Array.isArray(node)) for (const [k, v] of Object.entries(node)) walk(v, [...path, k]);
    else leaves.push(path.join('.'));
  };
  walk(reference, []);
  for (const key of leaves) {
    const listed = Object.keys(NOT_APPLICABLE).find((k) => key === k || key.startsWith(k + '.'));
    if (listed) t.ok(notes.some((n) => n.startsWith(`${listed}=`)), `${key}: listed as not applicable`);
  }
  t.ok(leaves.length > 60, `the fixture has the reference's keys (${leaves.length})`);
});

t.test('a mistyped key still gets "did you mean"', async (t) => {
  const r = cli('train', '--print-config', '--config', REFERENCE, 'trainer.save_limt=2');
  t.equal(r.status, 2);
  t.match(r.stderr, /trainer\.save_limt: unknown key; did you mean trainer\.save_limit\?/);
  t.throws(() => validateConfig({ data: { train_files: 'x', image_kye: 'images' }, worker: { actor: { model: { model_path: 'm' } } } }), /data\.image_kye: unknown key; did you mean data\.image_key\?/);
});

t.test('save_limit -1 and loss_avg_mode seq are accepted and applied', async (t) => {
  const c = await loadConfig({ file: REFERENCE, overrides: ['trainer.save_limit=-1', 'worker.actor.loss_avg_mode=seq'] });
  t.equal(c.trainer.save_limit, -1);
  t.equal(AGGREGATIONS[c.worker.actor.loss_avg_mode], 'seq-mean-token-mean', 'EasyR1 seq: the mean of each sequence\'s token mean');
  t.throws(() => validateConfig({ data: { train_files: 'x' }, worker: { actor: { model: { model_path: 'm' } } }, trainer: { save_limit: -2 } }), /trainer\.save_limit/);
});

t.test('aliases: a later layer wins whichever name it uses', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-easyr1-'));
  const file = join(dir, 'run.yaml');
  writeFileSync(file, 'data:\n  train_files: x\nworker:\n  actor:\n    model:\n      model_path: m\n    optim:\n      warmup_style: cosine\n      min_lr_ratio: null\ntrainer:\n  total_episodes: 15\n');
  let c = await loadConfig({ file, overrides: ['trainer.total_epochs=3'] });
  t.equal(c.trainer.total_epochs, 3);
  t.equal(c.trainer.total_episodes, undefined, 'no stale alias in the effective configuration');
  t.equal(c.worker.actor.optim.lr_scheduler, 'cosine');
  t.equal(c.worker.actor.optim.min_lr_ratio, 0, 'null is the default');
  c = await loadConfig({ file, overrides: ['trainer.total_episodes=7', 'worker.reward.score_function=spatial_sgg'] });
  t.equal(c.trainer.total_epochs, 7);
  t.equal(c.worker.reward.reward_function, 'spatial');
  const error = await loadConfig({ file, overrides: ['worker.reward.score_function=math'] }).catch((e: unknown) => e);
  t.type(error, ConfigError);
  t.match((error as Error).message, /score_function "math" has no reward here \(known: r1v = sparse/);
});

t.test('values that ask for what is not built are refused by name', async (t) => {
  const base = { data: { train_files: 'x' }, worker: { actor: { model: { model_path: 'm' } } } };
  t.throws(() => validateConfig({ ...base, data: { train_files: 'x', text_only: true } }), /data\.text_only=true: training without the rows' images is not built/);
  t.throws(() => validateConfig({ ...base, worker: { actor: { model: { model_path: 'm', lora: { rank: 8 } } } } }), /lora\.rank=8: LoRA is not built/);
  t.throws(() => validateConfig({ ...base, data: { train_files: 'x', format_prompt: './examples/format_prompt/math.jinja' } }), /Jinja prompt template file/);
  const c = validateConfig({ ...base, data: { train_files: 'x', format_prompt: 'Answer in <answer> tags.' } });
  t.equal(c.data.format_prompt, 'Answer in <answer> tags.', 'a text format prompt is accepted (put before each prompt)');
});

t.test('data.image_key names the column the images are read from', async (t) => {
  const { default: sharp } = await import('sharp');
  const { loadRows } = await import('../lib/rl/loader.js');
  const { writeToyDataset } = await import('./helpers-rl.js');
  const dir = mkdtempSync(join(tmpdir(), 'st-image-key-'));
  await writeToyDataset(dir, 'rows', 1, 5);
  const file = join(dir, 'rows.jsonl');
  const toy = JSON.parse(readFileSync(file, 'utf8').trim()) as Record<string, unknown>;
  writeFileSync(join(dir, 'red.png'), await sharp({ create: { width: 56, height: 56, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer());
  const row = { ...toy, picture: { path: 'red.png' } };
  writeFileSync(file, JSON.stringify(row) + '\n');
  const imagesFile = join(dir, (toy['images'] as { path: string }).path);
  const bytesOf = async (imageKey?: string) => {
    const { rows } = await loadRows(file, imageKey === undefined ? {} : { imageKey });
    const images = rows[0]!.row.images;
    return Buffer.from((Array.isArray(images) ? images[0]! : images).bytes);
  };
  t.equal(Buffer.compare(await bytesOf('picture'), readFileSync(join(dir, 'red.png'))), 0, 'image_key=picture reads "picture"');
  t.equal(Buffer.compare(await bytesOf(), readFileSync(imagesFile)), 0, 'the default reads "images"');
  t.equal(Buffer.compare(await bytesOf('image'), readFileSync(imagesFile)), 0, 'image_key=image on a file with only "images" reads "images"');
  writeFileSync(file, JSON.stringify({ ...row, picture: undefined }) + '\n');
  await t.rejects(loadRows(file, { imageKey: 'picture' }), /images/, 'a missing image column is an error naming the row');
});

