/**
 * The main job, end to end on a CPU with nothing downloaded (DESIGN.md §6):
 * synthesise a shapes-world train and held-out split, build a tiny
 * Qwen2.5-VL with a tokenizer trained on the corpus, warm-start it by SFT on
 * gold reasoning traces, then run GRPO from that checkpoint twice with the
 * same budget and seeds — dense spatial reward and sparse baseline — and
 * evaluate the SFT start and both policies on the held-out split.
 */
import { EventEmitter } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { VisionLanguageModel } from '../engine/pipeline.js';
import { SpatialReward } from '../rewards/spatial-reward.js';
import { deepMerge, validateConfig, type TrainConfigInput } from '../rl/config.js';
import { evaluatePolicy, summarise as summariseEvaluation, type Evaluation } from '../rl/evaluate.js';
import { goldTrace } from '../rl/gold-trace.js';
import { GrpoTrainer } from '../rl/grpo-trainer.js';
import { loadRows } from '../rl/loader.js';
import { PromptBuilder } from '../rl/prompts.js';
import type { TrainingRun } from '../rl/run.js';
import { SftTrainer } from '../rl/sft-trainer.js';
import { writeShapesSplits } from '../shapes/dataset.js';
import { writeTinyModelDirectory } from '../engine/tiny-model.js';
import { DEMO_DEFAULTS, QUICK_DEMO, type DemoOptions } from './options.js';

export interface PolicyResult {
  policy: 'sft' | 'grpo-dense' | 'grpo-sparse';
  seed: number | null;
  checkpoint: string;
  metrics: Record<string, number>;
}

export interface DemoSummary {
  out: string;
  options: DemoOptions;
  results: PolicyResult[];
  /** Rows of the summary table (what the report renders at the top). */
  table: Record<string, string | number | null>[];
  /** Per seed: dense minus SFT, sparse minus SFT, dense minus sparse, on held-out accuracy and CIoU. */
  gains: { seed: number; denseAccuracy: number; sparseAccuracy: number; denseCiou: number; sparseCiou: number }[];
  seconds: Record<string, number>;
}

export interface DemoEvents {
  log: [message: string];
  stage: [name: string];
  /** A trainer starts: attach a console to it. */
  run: [run: TrainingRun, name: string];
}

export class Demo extends EventEmitter<DemoEvents> {
  readonly options: DemoOptions;

  constructor(options: Partial<DemoOptions> & { quick?: boolean } = {}) {
    super();
    const base = options.quick ? { ...DEMO_DEFAULTS, ...QUICK_DEMO } : DEMO_DEFAULTS;
    const { quick: _quick, ...rest } = options;
    this.options = { ...base, ...rest };
  }

  private say(message: string): void {
    this.emit('log', message);
  }

  async run(signal?: AbortSignal): Promise<DemoSummary> {
    const o = this.options;
    const out = resolve(o.out);
    const seconds: Record<string, number> = {};
    const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
      this.emit('stage', name);
      const t0 = performance.now();
      try {
        return await work();
      } finally {
        seconds[name] = (performance.now() - t0) / 1000;
      }
    };
    await mkdir(out, { recursive: true });

    const dataDir = join(out, 'data');
    const splits = await timed('data', async () => {
      const result = await writeShapesSplits({ outDir: dataDir, trainRows: o.trainRows, valRows: o.valRows, seed: o.worldSeed, width: o.imageSize, height: o.imageSize });
      this.say(`shapes world: ${result.train.length} training and ${result.val.length} held-out questions in ${dataDir}`);
      return result;
    });

    const modelDir = join(out, 'model');
    await timed('model', async () => {
      const corpus = splits.train.flatMap((r) => [r[o.promptKey], goldTrace(r.answer_option_text)]);
      const built = await writeTinyModelDirectory(modelDir, {
        corpus,
        vocabSize: o.vocabSize,
        seed: o.modelSeed,
        text: { hidden: o.hidden, intermediate: o.hidden * 2, layers: o.layers, heads: o.heads, kvHeads: Math.max(1, o.heads / 2), mropeSection: mropeSection(o.hidden / o.heads) },
        vision: { hidden: o.visionHidden, intermediate: o.visionHidden * 2, depth: o.visionDepth, heads: 2 },
      });
      this.say(`tiny model: ${built.modelVocabSize}-token vocabulary, text ${o.hidden} wide x ${o.layers} layers, vision ${o.visionHidden} wide x ${o.visionDepth} blocks, in ${modelDir}`);
    });

    const sftDir = join(out, 'sft');
    const sftCheckpoint = await timed('sft', async () => {
      return this.train(new SftTrainer(this.sftConfig(sftDir, modelDir), signal ? { signal } : {}), 'sft');
    });

    const results: PolicyResult[] = [];
    const evaluate = async (policy: PolicyResult['policy'], seed: number | null, checkpoint: string) => {
      const evaluation = await timed(`eval-${policy}${seed === null ? '' : `-${seed}`}`, () => this.evaluate(checkpoint, join(dataDir, 'val.jsonl'), signal ? { signal } : {}));
      results.push({ policy, seed, checkpoint, metrics: evaluation.metrics });
      const m = evaluation.metrics;
      const greedy = this.options.evalGreedy ? `; greedy: accuracy ${fmt(m['greedy/accuracy'])}, format ${fmt(m['greedy/format_rate'])}, box CIoU ${fmt(m['greedy/ciou'])}` : '';
      this.say(
        `${policy}${seed === null ? '' : ` (seed ${seed})`}: held-out accuracy ${fmt(m['val/accuracy'])}, format ${fmt(m['val/format_rate'])}, box CIoU ${fmt(m['val/ciou'])} ` +
          `(${this.options.evalSamples} samples per row at temperature ${this.options.evalTemperature})${greedy}`,
      );
    };
    await evaluate('sft', null, sftCheckpoint);

    for (const seed of o.seeds) {
      for (const reward of ['spatial', 'sparse_scene'] as const) {
        const name = reward === 'spatial' ? 'grpo-dense' : 'grpo-sparse';
        const runDir = join(out, o.seeds.length > 1 ? `${name}-seed${seed}` : name);
        const checkpoint = await timed(`${name}-${seed}`, async () => {
          return this.train(new GrpoTrainer(this.grpoConfig(runDir, sftCheckpoint, seed, reward), signal ? { signal } : {}), `${name} (seed ${seed})`);
        });
        await evaluate(name, seed, checkpoint);
      }
    }

    const summary = summarise(out, o, results, seconds);
    await writeFile(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
    return summary;
  }

  /** What SFT and GRPO share: data, batch and model settings, logging. */
  private commonConfig(runDir: string, modelPath: string, seed: number): TrainConfigInput {
    const o = this.options;
    const dataDir = join(resolve(o.out), 'data');
    return {
      data: {
        train_files: join(dataDir, 'train.jsonl'),
        val_files: join(dataDir, 'val.jsonl'),
        prompt_key: o.promptKey,
        val_max_samples: o.valDuringTraining,
        max_prompt_length: 4096,
        max_response_length: o.maxResponseTokens,
        rollout_batch_size: o.promptsPerStep,
        min_pixels: 28 * 28,
        max_pixels: o.imageSize * o.imageSize,
        seed,
      },
      worker: {
        actor: {
          global_batch_size: o.promptsPerStep,
          micro_batch_size_per_device_for_update: o.microBatch,
          micro_batch_size_per_device_for_experience: o.microBatch * 2,
          model: { model_path: modelPath, enable_gradient_checkpointing: false },
          optim: { lr: o.grpoLr, weight_decay: 0 },
        },
        rollout: { n: o.samplesPerPrompt, temperature: 1, max_num_seqs: 128 },
        reward: { similarity: 'exact' },
      },
      trainer: {
        save_checkpoint_path: runDir,
        save_freq: -1,
        save_limit: 1,
        save_dtype: 'fp32',
        val_freq: o.valEvery,
        val_before_train: false,
        seed,
        logger: ['file', 'tensorboard'],
        find_last_checkpoint: false,
        ...(o.threads ? { threads: o.threads } : {}),
      },
    };
  }

  /** The SFT warm start's configuration (validated). */
  sftConfig(runDir: string, modelPath: string) {
    const o = this.options;
    return validateConfig(
      deepMerge(this.commonConfig(runDir, modelPath, o.worldSeed), {
        worker: { actor: { global_batch_size: o.sftBatch, optim: { lr: o.sftLr, lr_scheduler: 'cosine', lr_warmup_ratio: 0.05, min_lr_ratio: 0.1 } }, rollout: { n: 2 } },
        data: { rollout_batch_size: o.sftBatch },
        trainer: { max_steps: o.sftSteps, val_freq: o.sftValEvery },
      }),
      'the demo SFT configuration',
    );
  }

  /**
   * A GRPO run's configuration from a checkpoint, with the dense (`spatial`)
   * or the outcome-only reward (validated). The outcome-only baseline is
   * `sparse_scene`, the paper's sparse reward for the four-block format the
   * SFT start writes: the think/answer `sparse` would score every one of its
   * completions 0.
   */
  grpoConfig(runDir: string, checkpoint: string, seed: number, reward: 'spatial' | 'sparse_scene') {
    const o = this.options;
    return validateConfig(
      deepMerge(this.commonConfig(runDir, checkpoint, seed), { worker: { reward: { reward_function: reward } }, trainer: { max_steps: o.grpoSteps } }),
      `the demo ${reward === 'spatial' ? 'grpo-dense' : 'grpo-sparse'} configuration`,
    );
  }

  private async train(trainer: SftTrainer | GrpoTrainer, name: string): Promise<string> {
    this.emit('run', trainer, name);
    try {
      const result = await trainer.train();
      if (!result.lastCheckpoint) throw new Error(`${name}: the run ended without a checkpoint`);
      if (result.steps < trainer.plannedSteps) throw new Error(`${name}: stopped at step ${result.steps} of ${trainer.plannedSteps}`);
      return result.lastCheckpoint;
    } finally {
      await trainer.dispose();
    }
  }

  /**
   * Every held-out row: `evalSamples` completions at `evalTemperature` (the
   * paper's validation decoding), whose means are the `val/` metrics, and with
   * `evalGreedy` a greedy one (`greedy/`). A model this small falls into
   * repetition loops under greedy decoding far more often than when it
   * samples, so greedy numbers measure the loops as much as the policy.
   * `seed` seeds the sampling (the demo's own evaluations use 0).
   */
  async evaluate(checkpoint: string, valFile: string, options: { signal?: AbortSignal; seed?: number } = {}): Promise<Evaluation> {
    const { signal, seed = 0 } = options;
    const o = this.options;
    const vlm = await VisionLanguageModel.load(checkpoint, o.threads ? { threads: o.threads } : {});
    try {
      const { rows } = await loadRows(valFile);
      const builder = new PromptBuilder(vlm, { promptKey: o.promptKey, answerKey: 'answer_option_text', minPixels: 28 * 28, maxPixels: o.imageSize * o.imageSize });
      const prepared = await Promise.all(rows.map((r) => builder.prepare(r)));
      const reward = new SpatialReward({ similarity: 'exact' });
      const decode = { topP: 1, topK: 0, maxNewTokens: o.maxResponseTokens, maxBatch: 128 };
      const evaluateWith = (sampling: { n: number; temperature: number; seed: number }) =>
        evaluatePolicy(vlm, prepared, { ...decode, ...sampling }, reward, { batchSize: Math.max(1, Math.floor(128 / sampling.n)), ...(signal ? { signal } : {}) });
      const sampled = await evaluateWith({ n: o.evalSamples, temperature: o.evalTemperature, seed });
      if (!o.evalGreedy) return sampled;
      const greedy = await evaluateWith({ n: 1, temperature: 0, seed });
      return { metrics: { ...sampled.metrics, ...summariseEvaluation(greedy.samples, 'greedy/') }, samples: sampled.samples };
    } finally {
      await vlm.dispose();
    }
  }
}

/** M-RoPE's split of half the head dimension into temporal, height and width (Qwen: 16/24/24 of 64). */
export function mropeSection(headDim: number): [number, number, number] {
  const half = headDim / 2;
  if (!Number.isInteger(half) || half < 3) throw new RangeError(`head dimension ${headDim} is too small for M-RoPE`);
  const temporal = Math.floor(half / 4);
  const height = Math.floor((half - temporal) / 2);
  return [temporal, height, half - temporal - height];
}

const fmt = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(3));

function summarise(out: string, options: DemoOptions, results: PolicyResult[], seconds: Record<string, number>): DemoSummary {
  const categories = [...new Set(results.flatMap((r) => Object.keys(r.metrics).filter((k) => k.startsWith('val/accuracy/')).map((k) => k.slice(13))))].sort();
  const table = results.map((r) => {
    const row: Record<string, string | number | null> = {
      policy: r.policy,
      seed: r.seed,
      accuracy: round(r.metrics['val/accuracy']),
      format_rate: round(r.metrics['val/format_rate']),
      box_ciou: round(r.metrics['val/ciou']),
      answer_is_option: round(r.metrics['val/answer_is_option']),
      reward: round(r.metrics['val/reward/overall']),
    };
    if (options.evalGreedy) {
      row['greedy_accuracy'] = round(r.metrics['greedy/accuracy']);
      row['greedy_format'] = round(r.metrics['greedy/format_rate']);
      row['greedy_ciou'] = round(r.metrics['greedy/ciou']);
    }
    for (const c of categories) row[`acc/${c}`] = round(r.metrics[`val/accuracy/${c}`]);
    return row;
  });
  const sft = results.find((r) => r.policy === 'sft');
  const gains = options.seeds.map((seed) => {
    const dense = results.find((r) => r.policy === 'grpo-dense' && r.seed === seed);
    const sparse = results.find((r) => r.policy === 'grpo-sparse' && r.seed === seed);
    const d = (x: PolicyResult | undefined, key: string) => (x?.metrics[key] ?? NaN) - (sft?.metrics[key] ?? NaN);
    return { seed, denseAccuracy: d(dense, 'val/accuracy'), sparseAccuracy: d(sparse, 'val/accuracy'), denseCiou: d(dense, 'val/ciou'), sparseCiou: d(sparse, 'val/ciou') };
  });
  return { out, options, results, table, gains, seconds };
}

function round(v: number | undefined): number | null {
  return v === undefined ? null : Math.round(v * 1000) / 1000;
}

/** The summary as a fixed-width table for the console. */
export function formatSummary(summary: DemoSummary): string {
  const columns = Object.keys(summary.table[0] ?? {});
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...summary.table.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i] as number)).join('  ');
  const lines = [line(columns), line(widths.map((w) => '-'.repeat(w))), ...summary.table.map((r) => line(columns.map((c) => cell(r[c]))))];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const g = summary.gains;
  lines.push(
    '',
    `held-out gain over SFT (mean over ${g.length} seed${g.length === 1 ? '' : 's'}): dense accuracy ${signed(mean(g.map((x) => x.denseAccuracy)))}, ` +
      `sparse accuracy ${signed(mean(g.map((x) => x.sparseAccuracy)))}, dense CIoU ${signed(mean(g.map((x) => x.denseCiou)))}, sparse CIoU ${signed(mean(g.map((x) => x.sparseCiou)))}`,
  );
  return lines.join('\n');
}

function signed(v: number): string {
  return Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(3)}` : '-';
}

export async function readSummary(dir: string): Promise<DemoSummary> {
  return JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as DemoSummary;
}
