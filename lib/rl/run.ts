/**
 * What the GRPO and SFT trainers share: the run directory (effective
 * configuration, logs, checkpoints), loading the policy (or resuming it from
 * the newest checkpoint), the data splits, the memory plan, and the events a
 * Node tool embedding the trainer listens to.
 */
import { EventEmitter } from 'node:events';
import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { VisionLanguageModel } from '../engine/pipeline.js';
import { fromFunction, rewards as builtinRewards } from '../rewards/registry.js';
import type { BatchReward, RewardFunction, RewardScores } from '../rewards/types.js';
import { hash32 } from '../random.js';
import {
  checkpointStep,
  listCheckpoints,
  readTrainerState,
  removeStaleTemporaries,
  restoreCheckpoint,
  saveCheckpoint,
  verifyCheckpoint,
} from './checkpoint.js';
import { learningRate } from './schedule.js';
import { StepGuard } from './step-guard.js';
import { configToYaml, configurationNotes, imageSizeNote, runDirectory, type TrainConfig } from './config.js';
import { evaluatePolicy } from './evaluate.js';
import type { ProcessGroup } from '../distributed/process-group.js';
import { DataParallelRank } from './data-parallel.js';
import { DataLoader, loadRows, type LoaderState, type TrainingRow } from './loader.js';
import { formatMemoryPlan, planMemory, type MemoryPlan } from './memory-plan.js';
import { PromptBuilder, saveRowImage, type PreparedRow } from './prompts.js';
import type { Rollout, Sampling } from './rollout.js';
import { RunLog, type Metrics, type SampleRecord, type Split } from './run-log.js';

export type Phase = 'load' | 'rollout' | 'reward' | 'old_logprobs' | 'ref_logprobs' | 'update' | 'validation' | 'checkpoint';

export interface TrainerEvents {
  /** Human-readable lines (the CLI prints them). */
  log: [message: string];
  /** Work done in the current phase of a step. */
  progress: [event: { step: number; phase: Phase; done: number; total: number }];
  metrics: [event: { step: number; split: Split; metrics: Metrics }];
  checkpoint: [event: { step: number; dir: string }];
}

/** Saved with every checkpoint; what a resume needs beyond weights and moments. */
export interface RunState {
  step: number;
  loader: LoaderState;
  kind: 'grpo' | 'sft';
  [key: string]: unknown;
}

export interface TrainResult {
  dir: string;
  /** Training steps completed (and applied), resumed ones included. */
  steps: number;
  /**
   * True when the run's AbortSignal stopped it: the step in progress was
   * abandoned before it changed anything, and the state after the last
   * completed step is in `lastCheckpoint`. An abort never rejects train().
   */
  aborted: boolean;
  lastCheckpoint: string | undefined;
  /** The last validation metrics, when validation ran. */
  validation: Metrics | undefined;
}

export class AbortedRun extends Error {
  constructor(readonly step: number) {
    super(`training stopped at step ${step}`);
    this.name = 'AbortedRun';
  }
}

export interface RunOptions {
  signal?: AbortSignal;
  /** Rewards by name for `worker.reward.reward_function` (default: the built-in registry). */
  rewards?: { create(name: string, options?: Record<string, unknown>): BatchReward; has(name: string): boolean };
  /**
   * Train data-parallel over this process group (a ProcessGroup of the
   * addon, made by every rank): each rank trains on its share of every
   * global batch, gradients are summed over the ranks, rank 0 writes the
   * logs and the model files, every rank its optimiser shard (ZeRO-1, see
   * trainer.zero1).
   */
  processGroup?: ProcessGroup;
}

/** Skipped optimiser steps in a row (non-finite loss or gradient norm) after which a run stops. */
const MAX_SKIPPED_IN_A_ROW = 5;

export abstract class TrainingRun extends EventEmitter<TrainerEvents> {
  readonly dir: string;
  protected vlm!: VisionLanguageModel;
  protected prompts!: PromptBuilder;
  protected log!: RunLog;
  protected loader!: DataLoader;
  protected valRows: TrainingRow[] = [];
  protected step = 0;
  protected totalSteps = 0;
  /** This process's rank (a world of one without a process group). */
  protected dataParallel = DataParallelRank.alone();
  /** The model directory the run started from (its tokenizer and config travel with every checkpoint). */
  protected sourceDir: string;
  protected resumedFrom: string | undefined;
  protected reward!: BatchReward;
  /** Sequences decoded at once (the GRPO trainer lowers it to what its KV cache fits). */
  protected decodeBatch: number;
  private lastValidation: Metrics | undefined;
  /** Stops the run after MAX_SKIPPED_IN_A_ROW optimiser steps in a row are skipped for a non-finite loss or norm. */
  private readonly guard = new StepGuard(MAX_SKIPPED_IN_A_ROW, (s) =>
    this.say(`step ${s.step}: non-finite loss (${s.loss}) or gradient norm (${s.gradNorm}); optimiser step skipped (${s.consecutive} in a row)`),
  );

  constructor(
    readonly config: TrainConfig,
    protected readonly options: RunOptions = {},
  ) {
    super();
    this.dir = resolve(runDirectory(config));
    this.sourceDir = resolve(config.worker.actor.model.model_path);
    this.decodeBatch = config.worker.rollout.max_num_seqs;
  }

  protected abstract readonly kind: 'grpo' | 'sft';

  /** Rows needed per step (for the epoch arithmetic). */
  protected abstract rowsPerStep(): number;

  /** One training step; throws AbortedRun when the signal aborts it before anything was applied. */
  protected abstract trainStep(): Promise<void>;

  /** Optimiser steps per training step (for the learning-rate schedule's length). */
  protected abstract optimizerStepsPerStep(): number;

  protected say(message: string): void {
    // Every rank says the same things; rank 0 speaks for them.
    if (this.dataParallel.main) this.emit('log', message);
  }

  /**
   * The signal the work inside a step watches. Data-parallel ranks leave
   * their steps whole (a rank stopping mid-step would leave the others in a
   * collective) and stop together at a step boundary (stopRequested).
   */
  protected get signal(): AbortSignal | undefined {
    return this.dataParallel.distributed ? undefined : this.options.signal;
  }

  /** Whether the run was asked to stop; on every rank alike, when any rank was asked. */
  private async stopRequested(): Promise<boolean> {
    const asked = this.options.signal?.aborted === true;
    if (!this.dataParallel.distributed) return asked;
    return ((await this.dataParallel.max([asked ? 1 : 0]))[0] ?? 0) > 0;
  }

  /** Loads data and the policy (resuming when the run directory has a checkpoint), writes the effective configuration. */
  protected async setUp(): Promise<void> {
    const { config } = this;
    const main = (this.options.processGroup?.rank ?? 0) === 0;
    await mkdir(this.dir, { recursive: true });
    if (main) for (const dir of await removeStaleTemporaries(this.dir)) this.say(`removed ${dir}, left by a save that was killed`);
    const resumeDir = await this.findResumePoint(main);
    if (resumeDir === undefined && main) await this.refuseOccupiedDirectory();
    if (main) await writeFile(join(this.dir, 'config.yaml'), configToYaml(config));
    // Only rank 0 logs: the others' metrics are combined into its lines.
    this.log = await RunLog.open(this.dir, main ? { tensorboard: config.trainer.logger.includes('tensorboard'), file: config.trainer.logger.includes('file') } : { tensorboard: false, file: false });
    const modelDir = resumeDir ?? this.sourceDir;
    this.vlm = await VisionLanguageModel.load(modelDir, {
      device: config.trainer.device,
      ...(config.trainer.threads !== null ? { threads: config.trainer.threads } : {}),
    });
    if (this.options.processGroup !== undefined) {
      // Before the optimiser state is restored: with ZeRO-1 each rank reads its own range of it.
      await this.vlm.model.attachProcessGroup({ processGroup: this.options.processGroup, zero1: config.trainer.zero1, bucketBytes: config.trainer.bucket_mb * 1024 * 1024 });
      this.dataParallel = DataParallelRank.of(this.vlm.model);
      this.checkDivisible();
    }
    for (const note of configurationNotes(config)) this.say(note);
    this.say(`loaded ${modelDir}${this.dataParallel.distributed ? `; rank ${this.dataParallel.rank} of ${this.dataParallel.worldSize}${config.trainer.zero1 ? ', ZeRO-1' : ''}` : ''}`);
    this.say(imageSizeNote(config));
    this.prompts = new PromptBuilder(this.vlm, {
      promptKey: config.data.prompt_key,
      answerKey: config.data.answer_key,
      minPixels: config.data.min_pixels,
      maxPixels: config.data.max_pixels,
      ...(config.data.format_prompt != null ? { formatPrompt: config.data.format_prompt } : {}),
    });

    const train = await this.readSplit(config.data.train_files, 'train', -1);
    let state: RunState | undefined;
    if (resumeDir) {
      state = checkRunState(await restoreCheckpoint(this.vlm.model, resumeDir, this.optimizerPlacement()), resumeDir, this.kind);
      this.step = state.step;
      this.resumedFrom = resumeDir;
      // Steps logged after this checkpoint are repeated from here on.
      const dropped = this.dataParallel.main ? await this.log.dropAfter(state.step) : 0;
      this.say(`resumed from ${resumeDir} at step ${state.step}${dropped > 0 ? ` (dropped ${dropped} log lines of later steps)` : ''}`);
    }
    this.loader = state ? DataLoader.restore(train, state.loader, config.data.shuffle) : new DataLoader(train, config.data.seed, config.data.shuffle);
    if (config.data.val_files !== null) this.valRows = await this.readSplit(config.data.val_files, 'val', config.data.val_max_samples);
    const perEpoch = Math.max(1, Math.floor(train.length / this.rowsPerStep()));
    this.totalSteps = config.trainer.max_steps ?? config.trainer.total_epochs * perEpoch;
    this.say(`${train.length} training rows${this.valRows.length > 0 ? `, ${this.valRows.length} validation rows` : ''}; ${this.totalSteps} steps (${perEpoch} per epoch)`);
    this.reward = await createReward(config.worker.reward, this.options.rewards);
  }

  /**
   * Validates before training, then steps to the last one, validating and
   * checkpointing on schedule. An abort (the run's signal) ends the run the
   * way an abort ends any call: it resolves with what was done and
   * `aborted: true`. A step in progress stops before its first optimiser
   * step (once one is taken the step runs to its end), so it changed
   * nothing; the state before it is checkpointed.
   */
  protected async runSteps(): Promise<TrainResult> {
    const { trainer } = this.config;
    const result = (lastCheckpoint: string | undefined, aborted = false): TrainResult => ({
      dir: this.dir,
      steps: this.step,
      aborted,
      lastCheckpoint,
      validation: this.lastValidation,
    });
    let lastCheckpoint = this.resumedFrom;
    let savedStep = this.resumedFrom === undefined ? -1 : this.step;
    const stop = async (reason: string, loader?: LoaderState): Promise<TrainResult> => {
      if (savedStep !== this.step) {
        lastCheckpoint = await this.saveCheckpoint({}, loader);
        savedStep = this.step;
      }
      this.say(`stopped: ${reason}${lastCheckpoint ? `; checkpoint ${lastCheckpoint}` : ''}`);
      return result(lastCheckpoint, true);
    };
    const validate = this.valRows.length > 0 && trainer.val_freq !== 0;
    if (validate && trainer.val_before_train && this.step === 0) await this.validate();
    if (await this.stopRequested()) {
      this.say(`stopped before step ${this.step + 1}`);
      return result(lastCheckpoint, true);
    }
    if (trainer.val_only) return result(lastCheckpoint);
    while (this.step < this.totalSteps) {
      const loaderAtStart = this.loader.state();
      try {
        await this.trainStep();
      } catch (error) {
        if (!(error instanceof AbortedRun)) throw error;
        return stop(error.message, loaderAtStart);
      }
      const last = this.step === this.totalSteps;
      const stopping = await this.stopRequested();
      if (validate && trainer.val_freq > 0 && (this.step % trainer.val_freq === 0 || last) && !stopping) await this.validate();
      if ((trainer.save_freq > 0 && this.step % trainer.save_freq === 0) || last) {
        lastCheckpoint = await this.saveCheckpoint();
        savedStep = this.step;
      }
      if (stopping) return stop(`aborted after step ${this.step}`);
    }
    return result(lastCheckpoint);
  }

  protected throwIfAborted(): void {
    if (this.signal?.aborted) throw new AbortedRun(this.step);
  }

  /** Rollout sampling; for validation with `worker.rollout.val_override_config` over it. */
  protected sampling(val: boolean): Sampling {
    const r = this.config.worker.rollout;
    const o = val ? r.val_override_config : {};
    return {
      n: o.n ?? r.n,
      temperature: o.temperature ?? r.temperature,
      topP: o.top_p ?? r.top_p,
      topK: o.top_k ?? r.top_k,
      maxNewTokens: this.config.data.max_response_length,
      seed: hash32('rollout', this.config.trainer.seed, this.step, val ? 'val' : 'train'),
      maxBatch: this.decodeBatch,
    };
  }

  /**
   * Clips the accumulated gradients and takes one AdamW step at the schedule's
   * learning rate; `loss` is the mini-batch's, for the non-finite step guard
   * (which throws NonFiniteStepError after too many skipped steps in a row).
   */
  protected async optimizerStep(loss: number): Promise<{ lr: number; gradNorm: number; skipped: boolean }> {
    const { actor } = this.config.worker;
    const o = actor.optim;
    const total = this.totalSteps * this.optimizerStepsPerStep();
    const lr = learningRate(
      { name: o.lr_scheduler, lr: o.lr, warmupSteps: o.lr_warmup_steps ?? Math.round(o.lr_warmup_ratio * total), totalSteps: total, minLrRatio: o.min_lr_ratio },
      this.vlm.model.optimizerSteps + 1,
    );
    const r = await this.vlm.model.optimizerStep({
      lr,
      beta1: o.betas[0],
      beta2: o.betas[1],
      eps: o.eps,
      weightDecay: o.weight_decay,
      maxGradNorm: actor.max_grad_norm,
      freezeVision: actor.model.freeze_vision_tower,
      ...this.optimizerPlacement(),
    });
    this.guard.record(this.step + 1, loss, r.gradNorm, r.skipped);
    return { lr, gradNorm: r.gradNorm, skipped: r.skipped };
  }

  /** worker.actor.optim.strategy and worker.actor.offload.offload_optimizer, as the engine takes them. */
  protected optimizerPlacement(): { strategy: 'adamw' | 'adamw_bf16'; offloadOptimizer: boolean } {
    const { actor } = this.config.worker;
    return { strategy: actor.optim.strategy, offloadOptimizer: actor.offload.offload_optimizer };
  }

  /** Validation on the held-out rows with the validation sampling settings. */
  async validate(): Promise<Metrics> {
    const step = this.step;
    const rows = await Promise.all(this.valRows.map((r) => this.prompts.prepare(r)));
    const evaluation = await evaluatePolicy(this.vlm, rows, this.sampling(true), this.reward, {
      batchSize: Math.max(1, this.decodeBatch),
      ...(this.signal ? { signal: this.signal } : {}),
      onProgress: (done, total) => this.emit('progress', { step, phase: 'validation', done, total }),
    });
    // An aborted validation scored only some rows: its numbers are not the split's.
    if (this.signal?.aborted) return evaluation.metrics;
    this.lastValidation = evaluation.metrics;
    await this.logMetrics('val', evaluation.metrics);
    if (this.dataParallel.main)
      await this.log.samples(
        await Promise.all(
          evaluation.samples.slice(0, this.config.trainer.val_generations_to_log).map((s, index) => this.sampleRecord(s.row, s.rollout, s.reward, 'val', index)),
        ),
      );
    return evaluation.metrics;
  }

  /** A completion for samples.jsonl, its image copied into the run directory for the report. */
  protected async sampleRecord(row: PreparedRow, rollout: Rollout, reward: RewardScores, split: Split, index: number, advantage?: number): Promise<SampleRecord> {
    const image = await saveRowImage(row.source.row, join(this.dir, 'images'));
    const r = row.source.row;
    return {
      step: this.step,
      split,
      index,
      image_id: r.image_id ?? null,
      image: image === null ? null : join('images', image),
      image_size: [row.image.width, row.image.height],
      category: r.category ?? null,
      question: r.question_only ?? null,
      completion: rollout.text,
      ground_truth: row.groundTruth,
      reward: { ...reward },
      ...(advantage !== undefined ? { advantage } : {}),
    };
  }

  /**
   * The checkpoint to resume from: trainer.load_checkpoint_path (--resume-from)
   * as given, or with find_last_checkpoint the run's newest checkpoint that
   * is intact; a damaged newer one is renamed damaged-step-N (kept, not
   * deleted) with a warning, and the previous one is used.
   */
  private async findResumePoint(main: boolean): Promise<string | undefined> {
    const { trainer } = this.config;
    if (trainer.load_checkpoint_path !== null) {
      const dir = resolve(trainer.load_checkpoint_path);
      const state = await verifyCheckpoint(dir);
      const newer = (await listCheckpoints(this.dir)).filter((d) => checkpointStep(d) > state.step && resolve(d) !== dir);
      if (newer.length > 0)
        throw new Error(
          `${this.dir} already holds checkpoints after step ${state.step} (${newer.map((d) => d.split(/[\\/]/).pop()).join(', ')}); ` +
            'resuming from an earlier checkpoint there would mix two runs: choose another trainer.save_checkpoint_path',
        );
      return dir;
    }
    if (!trainer.find_last_checkpoint) return undefined;
    const candidates = (await listCheckpoints(this.dir)).reverse();
    for (const [i, dir] of candidates.entries()) {
      try {
        await verifyCheckpoint(dir);
        return dir;
      } catch (error) {
        // Rank 0 moves a damaged checkpoint aside; the others pass over it (or find it gone).
        if (!main) continue;
        const aside = join(dir, '..', `damaged-${dir.split(/[\\/]/).pop() ?? ''}`);
        await rename(dir, aside);
        const next = candidates[i + 1];
        this.say(
          `warning: checkpoint ${dir} is damaged (${(error as Error).message}); moved it to ${aside}` +
            (next ? `; trying the previous one, ${next}` : ''),
        );
      }
    }
    if (candidates.length > 0)
      throw new Error(`no intact checkpoint in ${join(this.dir, 'checkpoints')}; resume from another one with --resume-from DIR, or choose another trainer.save_checkpoint_path`);
    return undefined;
  }

  /** A fresh run refuses a directory that already holds another run's checkpoints or metrics. */
  private async refuseOccupiedDirectory(): Promise<void> {
    const found: string[] = [];
    const checkpoints = join(this.dir, 'checkpoints');
    try {
      const steps = (await readdir(checkpoints)).filter((n) => /^step-\d+$/.test(n)).sort();
      if (steps.length > 0) found.push(`checkpoints/${steps.at(-1) ?? ''}`);
    } catch {
      // no checkpoints folder
    }
    try {
      if ((await stat(join(this.dir, 'metrics.jsonl'))).size > 0) found.push('metrics.jsonl');
    } catch {
      // no metrics yet
    }
    if (found.length === 0) return;
    throw new Error(
      `${this.dir} already holds a run (${found.join(', ')}): resume it (trainer.find_last_checkpoint=true, or --resume-from DIR), ` +
        'or choose another trainer.save_checkpoint_path / trainer.experiment_name',
    );
  }

  private async readSplit(path: string, name: string, limit: number): Promise<TrainingRow[]> {
    const maxPrompt = this.config.data.max_prompt_length;
    const promptKey = this.config.data.prompt_key;
    const filter = this.config.data.filter_overlong_prompts;
    const loaded = await loadRows(path, {
      skipInvalid: this.config.data.skip_invalid,
      imageKey: this.config.data.image_key,
      ...(limit >= 0 ? { limit } : {}),
      // Exact token counts need the image; text tokens are a lower bound that catches the grossly long.
      keep: (row) => {
        const text = (row as unknown as Record<string, unknown>)[promptKey];
        if (typeof text !== 'string') return `no "${promptKey}" text`;
        return filter && this.vlm.tokenizer.encode(text).length > maxPrompt ? 'prompt longer than data.max_prompt_length' : undefined;
      },
    });
    if (loaded.stats.invalid > 0) this.say(`${name}: skipped ${loaded.stats.invalid} invalid rows (first: ${loaded.stats.problems[0] ?? ''})`);
    for (const [reason, count] of Object.entries(loaded.dropped)) this.say(`${name}: dropped ${count} rows: ${reason}`);
    if (loaded.rows.length === 0) throw new Error(`${path}: no usable ${name} rows`);
    return loaded.rows;
  }

  /** Prints the memory plan for the run's device; refuses a run that cannot fit unless told to ignore it. */
  protected async checkMemory(referenceModel: boolean): Promise<MemoryPlan> {
    const datasetBytes = this.loader.rows.reduce((a, r) => a + imageBytes(r), 0) + this.valRows.reduce((a, r) => a + imageBytes(r), 0);
    const config = referenceModel ? this.config : { ...this.config, algorithm: { ...this.config.algorithm, kl_coef: 0 } };
    // A resumed run already holds its AdamW moments (fp32 m and v), which the plan counts as an item of their own.
    const info = this.vlm.model.processGroupInfo;
    const zeroRanks = info?.zero1 ? info.worldSize : 1;
    const restoredMoments = this.vlm.model.optimizerSteps > 0 ? 2 * 4 * Math.ceil(this.vlm.model.parameterCount / zeroRanks) : 0;
    const plan = planMemory({
      config,
      model: this.vlm.model.config,
      datasetBytes,
      promptTokens: await this.longestPromptTokens(),
      processRssBytes: process.memoryUsage().rss - restoredMoments,
      zeroRanks,
    });
    this.say(formatMemoryPlan(plan));
    if (!plan.fits && !this.config.trainer.ignore_memory_plan)
      throw new Error(`the run does not fit in memory (set trainer.ignore_memory_plan=true to start anyway):\n${plan.messages.join('\n')}`);
    return plan;
  }

  /**
   * The longest prompt of the data in tokens, for the memory plan: the
   * longest prompt text (of the first 4096 rows) plus what the first row's
   * chat template and image add beyond its text, with its image tokens
   * replaced by the most data.max_pixels allows.
   */
  private async longestPromptTokens(): Promise<number | undefined> {
    const rows = [...this.loader.rows, ...this.valRows].slice(0, 4096);
    const key = this.config.data.prompt_key;
    const textTokens = (row: TrainingRow) => {
      const text = (row as unknown as Record<string, unknown>)[key] ?? (row.row as unknown as Record<string, unknown>)[key];
      return typeof text === 'string' ? this.vlm.tokenizer.encode(text).length : 0;
    };
    const first = rows[0];
    if (!first) return undefined;
    const prepared = await this.prompts.prepare(first);
    const v = this.vlm.model.config.vision;
    const firstImage = (prepared.input.images?.gridThw ?? []).reduce((a, [t, h, w]) => a + (t * h * w) / (v.merge * v.merge), 0);
    const mostImage = Math.ceil(this.config.data.max_pixels / (v.patch * v.merge) ** 2) * Math.max(1, prepared.input.images?.gridThw.length ?? 0);
    const overhead = prepared.tokens - textTokens(first) - firstImage + (firstImage > 0 ? mostImage : 0);
    return Math.max(...rows.map(textTokens)) + Math.max(0, overhead);
  }

  protected async saveCheckpoint(extra: Record<string, unknown> = {}, loader: LoaderState = this.loader.state()): Promise<string> {
    this.emit('progress', { step: this.step, phase: 'checkpoint', done: 0, total: 1 });
    const state: RunState = { step: this.step, loader, kind: this.kind, ...extra };
    const dir = await saveCheckpoint(this.vlm.model, this.sourceDir, this.dir, this.step, state, {
      dtype: this.config.trainer.save_dtype,
      keepLast: this.config.trainer.save_limit,
      optimizerStrategy: this.config.worker.actor.optim.strategy,
      dataParallel: this.dataParallel,
    });
    this.emit('checkpoint', { step: this.step, dir });
    this.say(`saved ${dir}`);
    return dir;
  }

  protected async logMetrics(split: Split, metrics: Metrics): Promise<void> {
    if (this.dataParallel.main) await this.log.metrics(this.step, split, metrics);
    this.emit('metrics', { step: this.step, split, metrics });
  }

  /** EasyR1's rule: the global batches split evenly over the ranks. */
  private checkDivisible(): void {
    const world = this.dataParallel.worldSize;
    const a = this.config.worker.actor;
    const sizes: [string, number][] =
      this.kind === 'grpo'
        ? [['data.rollout_batch_size', this.config.data.rollout_batch_size], ['worker.actor.global_batch_size', a.global_batch_size]]
        : [['worker.actor.global_batch_size', a.global_batch_size]];
    for (const [key, value] of sizes)
      if (value % world !== 0) throw new Error(`${key}=${value} does not split evenly over ${world} data-parallel ranks: make it a multiple of ${world}`);
  }

  async dispose(): Promise<void> {
    await this.log?.close();
    await this.vlm?.dispose();
  }

  /** Steps the run makes in all (known once set up). */
  get plannedSteps(): number {
    return this.totalSteps;
  }

  /** The path of the run's effective configuration. */
  get configPath(): string {
    return join(this.dir, 'config.yaml');
  }
}

function imageBytes(row: TrainingRow): number {
  const images = Array.isArray(row.row.images) ? row.row.images : [row.row.images];
  return images.reduce((a, i) => a + (i?.bytes?.byteLength ?? 0), 0);
}

/** `worker.reward.reward_function`: a registered name, or `path/to/module.js:exportName` (a BatchReward or a per-completion function). */
export async function createReward(config: TrainConfig['worker']['reward'], registry: RunOptions['rewards'] = builtinRewards): Promise<BatchReward> {
  const spec = config.reward_function;
  const options = { similarity: config.similarity, ...(config.weights ? { weights: config.weights } : {}) };
  const kwargs = config.reward_function_kwargs ?? {};
  if (registry.has(spec)) return registry.create(spec, spec === 'spatial' ? { ...options, ...kwargs } : kwargs);
  const colon = spec.lastIndexOf(':');
  if (colon <= 0) throw new Error(`worker.reward.reward_function "${spec}" is neither a registered reward nor path/to/module.js:exportName`);
  const path = spec.slice(0, colon);
  const name = spec.slice(colon + 1);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(isAbsolute(path) ? path : resolve(path)).href)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`cannot load the reward module ${path}: ${(error as Error).message}`);
  }
  const value = module[name];
  if (typeof value === 'function') return fromFunction(name, value as RewardFunction);
  if (typeof value === 'object' && value !== null && typeof (value as BatchReward).scoreBatch === 'function') return value as BatchReward;
  throw new Error(`${path} has no export "${name}" that is a reward function or an object with scoreBatch()`);
}

/** Checks the trainer's own fields of a checkpoint's state (readTrainerState checks the common ones). */
function checkRunState(state: Record<string, unknown>, checkpointDir: string, kind: 'grpo' | 'sft'): RunState {
  const where = `${checkpointDir}/trainer/trainer_state.json`;
  if (state['kind'] !== 'grpo' && state['kind'] !== 'sft') throw new Error(`${where}: "kind" must be "grpo" or "sft" (got ${JSON.stringify(state['kind'])})`);
  if (state['kind'] !== kind) throw new Error(`${checkpointDir} is a ${state['kind']} checkpoint; this is a ${kind} run`);
  const loader = state['loader'] as Record<string, unknown> | undefined;
  if (typeof loader !== 'object' || loader === null) throw new Error(`${where}: "loader" must be an object with "seed" and "cursor"`);
  if (!Number.isSafeInteger(loader['seed'])) throw new Error(`${where}: "loader.seed" must be an integer (got ${JSON.stringify(loader['seed'])})`);
  if (!Number.isSafeInteger(loader['cursor']) || (loader['cursor'] as number) < 0)
    throw new Error(`${where}: "loader.cursor" must be a non-negative integer (got ${JSON.stringify(loader['cursor'])})`);
  return state as RunState;
}

/** Reads a run's saved trainer state (for tools), checked. */
export async function readRunState(checkpointDir: string): Promise<RunState> {
  const state = await readTrainerState(checkpointDir);
  return checkRunState(state, checkpointDir, state['kind'] as 'grpo' | 'sft');
}

