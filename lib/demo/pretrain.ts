/**
 * The demo's base policy: a tiny Qwen2.5-VL trained from scratch by SFT on
 * gold reasoning traces of shapes-world rows, long enough to read the options
 * and write the four blocks before any RL (the role Qwen2.5-VL-Instruct plays
 * in the paper). `spatialthinker demo pretrain` makes it; the package ships
 * one in assets/demo-base and the demo starts from it.
 *
 * Nothing leaks into the demo's evaluation: the base's rows come from its own
 * world seed (PRETRAIN_WORLD_SEED), whose scene stream is hashed from that
 * seed, and `demo` refuses a world seed equal to the base's (pretrain.json
 * records it).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTinyModelDirectory } from '../engine/tiny-model.js';
import { validateConfig, type TrainConfig } from '../rl/config.js';
import { goldTrace } from '../rl/gold-trace.js';
import type { TrainingRun } from '../rl/run.js';
import { SftTrainer } from '../rl/sft-trainer.js';
import { writeShapesSplits } from '../shapes/dataset.js';
import { DEMO_DEFAULTS, mropeSection } from './options.js';

/** The world seed the shipped base was trained on; the demo's worlds must differ from it. */
export const PRETRAIN_WORLD_SEED = 1000;

export interface PretrainOptions {
  /** Where the base model directory is written (its scratch run goes in `<out>.work`). */
  out: string;
  /** Seed of the random initial weights and of the data order. */
  seed: number;
  steps: number;
  worldSeed: number;
  trainRows: number;
  batch: number;
  lr: number;
  threads: number | undefined;
  /**
   * A base directory (made by this command) to continue from instead of
   * random weights: its weights and tokenizer; the rows come from
   * `worldSeed` as always.
   */
  init?: string | undefined;
}

export const PRETRAIN_DEFAULTS: Readonly<Omit<PretrainOptions, 'out'>> = Object.freeze({
  seed: 1,
  steps: 3000,
  worldSeed: PRETRAIN_WORLD_SEED,
  trainRows: 8000,
  batch: 8,
  lr: 4e-3,
  threads: undefined,
  init: undefined,
});

/** What pretrain.json beside the weights records: how to make them again. */
export interface PretrainManifest {
  command: string;
  options: Omit<PretrainOptions, 'out' | 'threads' | 'init'>;
  /** The base this one continued from (`--init`): its own manifest and its weights' sha256, so the chain of commands is on record. */
  init?: { sha256: string; manifest: PretrainManifest };
  promptKey: 'question_with_options';
  finalLoss: number | undefined;
  seconds: number;
}

/** The files a base directory holds (pretrain.json is the manifest; model.safetensors the weights). */
export const BASE_FILES = ['config.json', 'generation_config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', 'pretrain.json'] as const;

/** The shipped base, relative to this module (lib/demo or dist/demo): <package>/assets/demo-base. */
export function shippedBasePath(): string {
  return fileURLToPath(new URL('../../assets/demo-base', import.meta.url));
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

export async function readPretrainManifest(baseDir: string): Promise<PretrainManifest> {
  const path = join(baseDir, 'pretrain.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new Error(`${path}: no pretrain.json, so this is not a demo base directory (make one with \`spatialthinker demo pretrain\`)`);
  }
  return JSON.parse(text) as PretrainManifest;
}

/** The SFT configuration of a run over `dataDir` from `modelPath` (shared by pretraining and the demo's SFT arm). */
export function sftRunConfig(p: {
  runDir: string;
  modelPath: string;
  dataDir: string;
  seed: number;
  steps: number;
  batch: number;
  lr: number;
  valEvery: number;
  threads: number | undefined;
  schedule: 'cosine' | 'constant';
  name: string;
  promptKey?: 'problem' | 'question_with_options';
  imageSize?: number;
  maxResponseTokens?: number;
  microBatch?: number;
  valDuringTraining?: number;
}): TrainConfig {
  const o = {
    ...DEMO_DEFAULTS,
    ...(p.imageSize ? { imageSize: p.imageSize } : {}),
    ...(p.maxResponseTokens ? { maxResponseTokens: p.maxResponseTokens } : {}),
    ...(p.microBatch ? { microBatch: p.microBatch } : {}),
    ...(p.valDuringTraining ? { valDuringTraining: p.valDuringTraining } : {}),
  };
  return validateConfig(
    {
      data: {
        train_files: join(p.dataDir, 'train.jsonl'),
        val_files: join(p.dataDir, 'val.jsonl'),
        prompt_key: p.promptKey ?? 'question_with_options',
        val_max_samples: o.valDuringTraining,
        max_prompt_length: 4096,
        max_response_length: o.maxResponseTokens,
        rollout_batch_size: p.batch,
        min_pixels: 28 * 28,
        max_pixels: o.imageSize * o.imageSize,
        seed: p.seed,
      },
      worker: {
        actor: {
          global_batch_size: p.batch,
          micro_batch_size_per_device_for_update: o.microBatch,
          micro_batch_size_per_device_for_experience: o.microBatch * 2,
          model: { model_path: p.modelPath, enable_gradient_checkpointing: false },
          optim:
            p.schedule === 'cosine'
              ? { lr: p.lr, weight_decay: 0, lr_scheduler: 'cosine', lr_warmup_ratio: 0.05, min_lr_ratio: 0.1 }
              : { lr: p.lr, weight_decay: 0 },
        },
        rollout: { n: 2, temperature: 1, max_num_seqs: 128 },
        reward: { similarity: 'exact' },
      },
      trainer: {
        save_checkpoint_path: p.runDir,
        save_freq: -1,
        save_limit: 1,
        save_dtype: 'fp32',
        val_freq: p.valEvery,
        val_before_train: false,
        max_steps: p.steps,
        seed: p.seed,
        logger: ['file'],
        find_last_checkpoint: false,
        ...(p.threads ? { threads: p.threads } : {}),
      },
    },
    p.name,
  );
}

/**
 * Synthesises the base's rows, builds the random model with a tokenizer
 * trained on them, SFT-trains it and copies the final checkpoint to
 * `options.out` with pretrain.json. `onRun` sees the trainer (for a console).
 */
export async function pretrainBase(
  options: PretrainOptions,
  hooks: { onRun?: (run: TrainingRun) => void; log?: (message: string) => void; signal?: AbortSignal; command?: string } = {},
): Promise<{ dir: string; sha256: string }> {
  const o = DEMO_DEFAULTS;
  const t0 = performance.now();
  const out = resolve(options.out);
  const work = `${out}.work`;
  if (existsSync(join(work, 'sft'))) throw new Error(`${work} already holds a pretraining run: remove it or choose another --out`);
  const dataDir = join(work, 'data');
  const splits = await writeShapesSplits({ outDir: dataDir, trainRows: options.trainRows, valRows: 32, seed: options.worldSeed, width: o.imageSize, height: o.imageSize });
  hooks.log?.(`pretraining world (seed ${options.worldSeed}): ${splits.train.length} rows in ${dataDir}`);
  let modelDir: string;
  let init: PretrainManifest['init'];
  if (options.init !== undefined) {
    modelDir = resolve(options.init);
    init = { sha256: await sha256File(join(modelDir, 'model.safetensors')), manifest: await readPretrainManifest(modelDir) };
    if (init.manifest.options.worldSeed !== options.worldSeed) {
      throw new Error(`--init ${options.init} was pretrained on world ${init.manifest.options.worldSeed}, this run asks world ${options.worldSeed}: continue on the same world so the demo's refusal of the base's world stays true`);
    }
    hooks.log?.(`continuing from ${modelDir} (model.safetensors sha256 ${init.sha256})`);
  } else {
    modelDir = join(work, 'random');
    const corpus = splits.train.flatMap((r) => [r.question_with_options, goldTrace(r.answer_option_text)]);
    await writeTinyModelDirectory(modelDir, {
      corpus,
      vocabSize: o.vocabSize,
      seed: options.seed,
      text: { hidden: o.hidden, intermediate: o.hidden * 2, layers: o.layers, heads: o.heads, kvHeads: Math.max(1, o.heads / 2), mropeSection: mropeSection(o.hidden / o.heads) },
      vision: { hidden: o.visionHidden, intermediate: o.visionHidden * 2, depth: o.visionDepth, heads: 2 },
    });
  }
  const config = sftRunConfig({
    runDir: join(work, 'sft'),
    modelPath: modelDir,
    dataDir,
    seed: options.seed,
    steps: options.steps,
    batch: options.batch,
    lr: options.lr,
    valEvery: Math.max(1, Math.floor(options.steps / 4)),
    threads: options.threads,
    schedule: 'cosine',
    name: 'the demo base pretraining configuration',
  });
  const trainer = new SftTrainer(config, hooks.signal ? { signal: hooks.signal } : {});
  hooks.onRun?.(trainer);
  let checkpoint: string | undefined;
  let finalLoss: number | undefined;
  try {
    const result = await trainer.train();
    if (!result.lastCheckpoint || result.steps < trainer.plannedSteps) throw new Error(`pretraining stopped at step ${result.steps} of ${trainer.plannedSteps}`);
    checkpoint = result.lastCheckpoint;
  } finally {
    await trainer.dispose();
  }
  const metrics = (await readFile(join(work, 'sft', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const m of metrics) {
    const loss = m['sft/loss'];
    if (typeof loss === 'number') finalLoss = loss;
  }
  await mkdir(out, { recursive: true });
  const present = new Set(await readdir(checkpoint));
  for (const f of BASE_FILES) if (f !== 'pretrain.json' && present.has(f)) await copyFile(join(checkpoint, f), join(out, f));
  const { out: _out, threads: _threads, init: _init, ...recorded } = options;
  const manifest: PretrainManifest = {
    command: hooks.command ?? `spatialthinker demo pretrain --out ${options.out} --seed ${options.seed} --steps ${options.steps}${options.init !== undefined ? ` --init ${options.init}` : ''}`,
    options: recorded,
    ...(init ? { init } : {}),
    promptKey: 'question_with_options',
    finalLoss,
    seconds: Math.round((performance.now() - t0) / 1000),
  };
  await writeFile(join(out, 'pretrain.json'), JSON.stringify(manifest, null, 2) + '\n');
  return { dir: out, sha256: await sha256File(join(out, 'model.safetensors')) };
}
