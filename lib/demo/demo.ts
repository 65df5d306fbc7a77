/**
 * The main job, end to end on a CPU with nothing downloaded (DESIGN.md §6),
 * as the paper's protocol: one base policy (the shipped pre-trained base, or
 * with `fromScratch` a random tiny Qwen2.5-VL warm-started here by SFT), and
 * from it, per seed, four arms with the same data order: SFT on the training
 * split, GRPO with the sparse reward, GRPO with the dense spatial reward, and
 * GRPO with the dense reward without its gates (the paper's Table 5
 * ablation). Every policy is evaluated on the held-out split and on rows of a
 * second world seed; results.ts turns that into means ± standard errors over
 * seeds and paired differences.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
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
import { DEMO_DEFAULTS, QUICK_DEMO, mropeSection, type DemoOptions } from './options.js';
import { readPretrainManifest, sha256File, shippedBasePath, sftRunConfig } from './pretrain.js';
import { buildResults, resultsMarkdown, type DemoResults } from './results.js';
import type { RowValues } from './statistics.js';
export { mropeSection } from './options.js';

export type Arm = 'sft' | 'grpo-dense' | 'grpo-sparse' | 'grpo-dense-ungated';
export const ARMS: readonly Arm[] = ['sft', 'grpo-sparse', 'grpo-dense', 'grpo-dense-ungated'];
/** The reward each GRPO arm trains with (lib/rewards/registry.ts names). */
export const ARM_REWARD: Readonly<Record<Exclude<Arm, 'sft'>, 'spatial' | 'sparse_scene' | 'spatial_ungated'>> = {
  'grpo-dense': 'spatial',
  'grpo-sparse': 'sparse_scene',
  'grpo-dense-ungated': 'spatial_ungated',
};

/** The question sets every policy is evaluated on. */
export type EvalSet = 'held-out' | 'second-world';
export const EVAL_SETS: readonly EvalSet[] = ['held-out', 'second-world'];

export interface SetEvaluation {
  /** `val/` metrics (lib/rl/evaluate.ts): accuracy, format_rate, ciou, answer_is_option, per category. */
  metrics: Record<string, number>;
  /** Per-row means over the row's completions, in row order: what the paired differences are taken over. */
  rows: RowValues;
}

export interface PolicyResult {
  policy: Arm | 'base';
  /** The arm's seed; null for the base. */
  seed: number | null;
  checkpoint: string;
  evaluations: Record<EvalSet, SetEvaluation>;
}

export interface DemoSummary {
  out: string;
  options: DemoOptions;
  /** The base every arm starts from: its directory, weights hash, and how it was made. */
  base: { path: string; sha256: string; source: 'shipped' | 'given' | 'from-scratch' };
  /** Per question set: rows, and the chance rate (the mean over rows of 1 / number of options). */
  sets: Record<EvalSet, { rows: number; worldSeed: number; chance: number; file: string }>;
  results: PolicyResult[];
  /** Means ± SE over seeds, paired differences, and the tables results.md and the report show. */
  statistics: DemoResults;
  /** One row per evaluated policy and seed (what the report's run table shows). */
  table: Record<string, string | number | null>[];
  /** The commit the demo ran at (with `+dirty` for uncommitted changes), or null outside a git checkout. */
  commit: string | null;
  command: string;
  /** Wall-clock seconds per stage. */
  seconds: Record<string, number>;
  /**
   * CPU seconds (user + system, all threads) per stage: on a shared machine
   * the wall clock measures the other processes too; CPU time over the
   * engine's thread count estimates the wall time of an unloaded one.
   */
  cpuSeconds: Record<string, number>;
}

export interface DemoEvents {
  log: [message: string];
  stage: [name: string];
  /** A trainer starts: attach a console to it. */
  run: [run: TrainingRun, name: string];
}

export class Demo extends EventEmitter<DemoEvents> {
  readonly options: DemoOptions;
  /** The command line recorded in summary.json and results.md. */
  command = 'new Demo(...).run() (the API)';

  constructor(options: Partial<DemoOptions> & { quick?: boolean } = {}) {
    super();
    const base = options.quick ? { ...DEMO_DEFAULTS, ...QUICK_DEMO } : DEMO_DEFAULTS;
    const { quick: _quick, ...rest } = options;
    this.options = { ...base, ...rest };
    if (this.options.worldSeed === this.options.secondWorldSeed)
      throw new RangeError(`the second world's seed (${this.options.secondWorldSeed}) must differ from the demo world's (${this.options.worldSeed})`);
  }

  private say(message: string): void {
    this.emit('log', message);
  }

  async run(signal?: AbortSignal): Promise<DemoSummary> {
    const o = this.options;
    const out = resolve(o.out);
    const seconds: Record<string, number> = {};
    const cpuSeconds: Record<string, number> = {};
    const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
      this.emit('stage', name);
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      try {
        return await work();
      } finally {
        seconds[name] = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        cpuSeconds[name] = (cpu.user + cpu.system) / 1e6;
      }
    };
    const runOptions = signal ? { signal } : {};
    const runDirs = ['base-warm-start', ...o.seeds.flatMap((seed) => ARMS.map((arm) => (o.seeds.length > 1 ? `${arm}-seed${seed}` : arm)))];
    const taken = runDirs.filter((d) => existsSync(join(out, d)));
    if (taken.length > 0) throw new Error(`${out} already holds a demo run (${taken.slice(0, 3).join(', ')}${taken.length > 3 ? ', ...' : ''}): choose another --out or remove it`);
    await mkdir(out, { recursive: true });

    const dataDir = join(out, 'data');
    const secondDir = join(out, 'data-second-world');
    const base = await this.resolveBase(dataDir);
    const splits = await timed('data', async () => {
      const size = { width: o.imageSize, height: o.imageSize };
      const result = await writeShapesSplits({ outDir: dataDir, trainRows: o.trainRows, valRows: o.valRows, seed: o.worldSeed, ...size });
      // The second world: only its held-out split is used (one training row is the minimum the writer takes).
      const second = await writeShapesSplits({ outDir: secondDir, trainRows: 1, valRows: o.secondWorldRows, seed: o.secondWorldSeed, ...size });
      this.say(`shapes world ${o.worldSeed}: ${result.train.length} training and ${result.val.length} held-out questions in ${dataDir}; world ${o.secondWorldSeed}: ${second.val.length} questions in ${secondDir}`);
      return { train: result.train, val: result.val, second: second.val };
    });
    const chance = (rows: readonly { options: string[] }[]) => rows.reduce((a, r) => a + 1 / Math.max(1, r.options.length), 0) / Math.max(1, rows.length);
    const sets: DemoSummary['sets'] = {
      'held-out': { rows: splits.val.length, worldSeed: o.worldSeed, chance: chance(splits.val), file: join(dataDir, 'val.jsonl') },
      'second-world': { rows: splits.second.length, worldSeed: o.secondWorldSeed, chance: chance(splits.second), file: join(secondDir, 'val.jsonl') },
    };

    const basePath =
      base.source === 'from-scratch'
        ? await timed('base', async () => {
            const modelDir = join(out, 'model');
            const corpus = splits.train.flatMap((r) => [r[o.promptKey], goldTrace(r.answer_option_text)]);
            const built = await writeTinyModelDirectory(modelDir, {
              corpus,
              vocabSize: o.vocabSize,
              seed: o.modelSeed,
              text: { hidden: o.hidden, intermediate: o.hidden * 2, layers: o.layers, heads: o.heads, kvHeads: Math.max(1, o.heads / 2), mropeSection: mropeSection(o.hidden / o.heads) },
              vision: { hidden: o.visionHidden, intermediate: o.visionHidden * 2, depth: o.visionDepth, heads: 2 },
            });
            this.say(`from scratch: ${built.modelVocabSize}-token vocabulary, text ${o.hidden} wide x ${o.layers} layers, vision ${o.visionHidden} wide x ${o.visionDepth} blocks; warm start by SFT for ${o.scratchSteps} steps`);
            const config = sftRunConfig({
              runDir: join(out, 'base-warm-start'),
              modelPath: modelDir,
              dataDir,
              seed: o.worldSeed,
              steps: o.scratchSteps,
              batch: o.sftBatch,
              lr: o.scratchLr,
              valEvery: o.sftValEvery,
              threads: o.threads,
              schedule: 'cosine',
              name: 'the demo from-scratch warm start configuration',
              promptKey: o.promptKey,
              imageSize: o.imageSize,
              maxResponseTokens: o.maxResponseTokens,
              microBatch: o.microBatch,
              valDuringTraining: o.valDuringTraining,
            });
            return this.train(new SftTrainer(config, runOptions), 'base warm start');
          })
        : base.path;
    const baseHash = await sha256File(join(basePath, 'model.safetensors'));
    this.say(`base policy: ${basePath} (${base.source}, model.safetensors sha256 ${baseHash.slice(0, 16)}...)`);

    const results: PolicyResult[] = [];
    const evaluate = async (policy: PolicyResult['policy'], seed: number | null, checkpoint: string) => {
      const evaluations = {} as Record<EvalSet, SetEvaluation>;
      await timed(`eval-${policy}${seed === null ? '' : `-${seed}`}`, async () => {
        for (const set of EVAL_SETS) {
          const evaluation = await this.evaluate(checkpoint, sets[set].file, runOptions);
          evaluations[set] = { metrics: evaluation.metrics, rows: perRow(evaluation, sets[set].rows) };
        }
      });
      results.push({ policy, seed, checkpoint, evaluations });
      const line = (set: EvalSet) => {
        const m = evaluations[set].metrics;
        return `${set} accuracy ${fmt(m['val/accuracy'])} (chance ${fmt(sets[set].chance)}), format ${fmt(m['val/format_rate'])}, box CIoU ${fmt(m['val/ciou'])}`;
      };
      this.say(`${policy}${seed === null ? '' : ` (seed ${seed})`}: ${line('held-out')}; ${line('second-world')} (${o.evalSamples} samples per row at temperature ${o.evalTemperature})`);
    };
    await evaluate('base', null, basePath);

    for (const seed of o.seeds) {
      for (const arm of ARMS) {
        const runDir = join(out, o.seeds.length > 1 ? `${arm}-seed${seed}` : arm);
        const checkpoint = await timed(`${arm}-${seed}`, async () => {
          const trainer = arm === 'sft' ? new SftTrainer(this.sftConfig(runDir, basePath, seed), runOptions) : new GrpoTrainer(this.grpoConfig(runDir, basePath, seed, ARM_REWARD[arm]), runOptions);
          return this.train(trainer, `${arm} (seed ${seed})`);
        });
        await evaluate(arm, seed, checkpoint);
      }
    }

    const statistics = buildResults(results, sets, o.seeds);
    const summary: DemoSummary = {
      out,
      options: o,
      base: { path: basePath, sha256: baseHash, source: base.source },
      sets,
      results,
      statistics,
      table: runTable(results),
      commit: await gitCommit(),
      command: this.command,
      seconds,
      cpuSeconds,
    };
    await writeFile(join(out, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
    await writeFile(join(out, 'results.md'), resultsMarkdown(summary));
    return summary;
  }

  /** Which base the arms start from; a given or shipped one must not have seen the demo's worlds. */
  private async resolveBase(dataDir: string): Promise<{ path: string; source: DemoSummary['base']['source'] }> {
    const o = this.options;
    if (o.fromScratch) return { path: join(dataDir, '..', 'model'), source: 'from-scratch' };
    const path = resolve(o.base ?? shippedBasePath());
    const manifest = await readPretrainManifest(path);
    for (const [name, seed] of [['--world-seed', o.worldSeed], ['--second-world-seed', o.secondWorldSeed]] as const)
      if (manifest.options.worldSeed === seed) throw new RangeError(`${name} ${seed} is the world the base in ${path} was pre-trained on: evaluate on another`);
    if (manifest.promptKey !== o.promptKey) throw new RangeError(`the base in ${path} was pre-trained on prompt key ${manifest.promptKey}, the demo prompts with ${o.promptKey}`);
    return { path, source: o.base === undefined ? 'shipped' : 'given' };
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

  /**
   * The SFT arm from the base (validated): gold traces of the training split
   * in the seed's data order, `sftSteps` steps of `sftBatch` rows at a
   * constant `sftLr`.
   */
  sftConfig(runDir: string, basePath: string, seed: number) {
    const o = this.options;
    return validateConfig(
      deepMerge(this.commonConfig(runDir, basePath, seed), {
        worker: { actor: { global_batch_size: o.sftBatch, optim: { lr: o.sftLr } }, rollout: { n: 2 } },
        data: { rollout_batch_size: o.sftBatch },
        trainer: { max_steps: o.sftSteps, val_freq: o.sftValEvery },
      }),
      'the demo SFT configuration',
    );
  }

  /**
   * A GRPO arm's configuration from the base (validated). The sparse arm is
   * `sparse_scene`, the paper's outcome-only reward for the four-block format
   * the base writes (the think/answer `sparse` would score every one of its
   * completions 0); the ungated arm is `spatial_ungated`, the dense terms
   * without gates.
   */
  grpoConfig(runDir: string, checkpoint: string, seed: number, reward: 'spatial' | 'sparse_scene' | 'spatial_ungated') {
    const o = this.options;
    return validateConfig(
      deepMerge(this.commonConfig(runDir, checkpoint, seed), {
        worker: { reward: { reward_function: reward, ...(reward === 'spatial_ungated' ? { reward_function_kwargs: { similarity: 'exact' } } : {}) } },
        trainer: { max_steps: o.grpoSteps },
      }),
      `the demo ${reward} GRPO configuration`,
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
   * Every row of `valFile`: `evalSamples` completions at `evalTemperature` (the
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

/** Per-row means of an evaluation's sampled completions (`rows` rows, in order). */
function perRow(evaluation: Evaluation, rows: number): RowValues {
  const sums = { accuracy: new Float64Array(rows), format: new Float64Array(rows), ciou: new Float64Array(rows) };
  const counts = new Float64Array(rows);
  for (const s of evaluation.samples) {
    const i = s.rollout.prompt;
    counts[i]!++;
    sums.accuracy[i]! += s.correct ? 1 : 0;
    sums.format[i]! += s.wellFormed ? 1 : 0;
    sums.ciou[i]! += s.ciou;
  }
  const mean = (a: Float64Array) => Array.from(a, (v, i) => round4(v / Math.max(1, counts[i] as number)));
  return { accuracy: mean(sums.accuracy), format: mean(sums.format), ciou: mean(sums.ciou) };
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4;
const fmt = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(3));

function runTable(results: readonly PolicyResult[]): Record<string, string | number | null>[] {
  const rows: Record<string, string | number | null>[] = [];
  for (const r of results)
    for (const set of EVAL_SETS) {
      const m = r.evaluations[set].metrics;
      rows.push({
        policy: r.policy,
        seed: r.seed,
        set,
        accuracy: round(m['val/accuracy']),
        format_rate: round(m['val/format_rate']),
        box_ciou: round(m['val/ciou']),
        answer_is_option: round(m['val/answer_is_option']),
        reward: round(m['val/reward/overall']),
      });
    }
  return rows;
}

function round(v: number | undefined): number | null {
  return v === undefined ? null : Math.round(v * 1000) / 1000;
}

/** HEAD of the checkout this module runs from, `+dirty` when it has uncommitted changes; null when it is not one (an installed package). */
async function gitCommit(): Promise<string | null> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { fileURLToPath } = await import('node:url');
  const cwd = fileURLToPath(new URL('.', import.meta.url));
  const run = promisify(execFile);
  try {
    const head = (await run('git', ['rev-parse', 'HEAD'], { cwd })).stdout.trim();
    const status = (await run('git', ['status', '--porcelain', '--untracked-files=no'], { cwd })).stdout.trim();
    return status ? `${head}+dirty` : head;
  } catch {
    return null;
  }
}

/** The console summary: the tables of results.md. */
export function formatSummary(summary: DemoSummary): string {
  return summary.statistics.consoleText;
}

export async function readSummary(dir: string): Promise<DemoSummary> {
  return JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as DemoSummary;
}
