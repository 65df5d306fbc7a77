/**
 * What the GRPO and SFT trainers share: the run directory (effective
 * configuration, logs, checkpoints), loading the policy (or resuming it from
 * the newest checkpoint), the data splits, the memory plan, and the events a
 * Node tool embedding the trainer listens to.
 */
import { EventEmitter } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { VisionLanguageModel } from '../engine/pipeline.js';
import { fromFunction, rewards as builtinRewards } from '../rewards/registry.js';
import type { BatchReward, RewardFunction, RewardScores } from '../rewards/types.js';
import { hash32 } from '../synth/random.js';
import { latestCheckpoint, restoreCheckpoint, saveCheckpoint } from '../train/checkpoint.js';
import { learningRate } from '../train/schedule.js';
import { configToYaml, imageSizeNote, runDirectory, type TrainConfig } from './config.js';
import { evaluatePolicy } from './evaluate.js';
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
  steps: number;
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
}

export abstract class TrainingRun extends EventEmitter<TrainerEvents> {
  readonly dir: string;
  protected vlm!: VisionLanguageModel;
  protected prompts!: PromptBuilder;
  protected log!: RunLog;
  protected loader!: DataLoader;
  protected valRows: TrainingRow[] = [];
  protected step = 0;
  protected totalSteps = 0;
  /** The model directory the run started from (its tokenizer and config travel with every checkpoint). */
  protected sourceDir: string;
  protected resumedFrom: string | undefined;
  protected reward!: BatchReward;
  /** Sequences decoded at once (the GRPO trainer lowers it to what its KV cache fits). */
  protected decodeBatch: number;
  private lastValidation: Metrics | undefined;

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
    this.emit('log', message);
  }

  protected get signal(): AbortSignal | undefined {
    return this.options.signal;
  }

  /** Loads data and the policy (resuming when the run directory has a checkpoint), writes the effective configuration. */
  protected async setUp(): Promise<void> {
    const { config } = this;
    await mkdir(this.dir, { recursive: true });
    await writeFile(join(this.dir, 'config.yaml'), configToYaml(config));
    this.log = await RunLog.open(this.dir, { tensorboard: config.trainer.logger.includes('tensorboard'), file: config.trainer.logger.includes('file') });

    const resumeDir = await this.findResumePoint();
    const modelDir = resumeDir ?? this.sourceDir;
    this.say(`loading ${modelDir}`);
    this.vlm = await VisionLanguageModel.load(modelDir, {
      device: config.trainer.device,
      ...(config.trainer.threads !== null ? { threads: config.trainer.threads } : {}),
    });
    this.say(imageSizeNote(config));
    this.prompts = new PromptBuilder(this.vlm, {
      promptKey: config.data.prompt_key,
      answerKey: config.data.answer_key,
      minPixels: config.data.min_pixels,
      maxPixels: config.data.max_pixels,
    });

    const train = await this.readSplit(config.data.train_files, 'train', -1);
    let state: RunState | undefined;
    if (resumeDir) {
      state = (await restoreCheckpoint(this.vlm.model, resumeDir)) as unknown as RunState;
      if (state.kind !== this.kind) throw new Error(`${resumeDir} is a ${String(state.kind)} checkpoint; this is a ${this.kind} run`);
      this.step = state.step;
      this.resumedFrom = resumeDir;
      this.say(`resumed from ${resumeDir} at step ${state.step}`);
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
   * checkpointing on schedule. An aborted step changed nothing, so the state
   * before it is checkpointed and the run returns.
   */
  protected async runSteps(): Promise<TrainResult> {
    const { trainer } = this.config;
    const result = (lastCheckpoint: string | undefined): TrainResult => ({ dir: this.dir, steps: this.step, lastCheckpoint, validation: this.lastValidation });
    let lastCheckpoint = this.resumedFrom;
    const validate = this.valRows.length > 0 && trainer.val_freq !== 0;
    if (validate && trainer.val_before_train && this.step === 0) await this.validate();
    if (trainer.val_only) return result(lastCheckpoint);
    while (this.step < this.totalSteps) {
      const loaderAtStart = this.loader.state();
      try {
        await this.trainStep();
      } catch (error) {
        if (!(error instanceof AbortedRun)) throw error;
        lastCheckpoint = await this.saveCheckpoint({}, loaderAtStart);
        this.say(`stopped: ${error.message}; checkpoint ${lastCheckpoint}`);
        return result(lastCheckpoint);
      }
      const last = this.step === this.totalSteps;
      if (validate && trainer.val_freq > 0 && (this.step % trainer.val_freq === 0 || last)) await this.validate();
      if ((trainer.save_freq > 0 && this.step % trainer.save_freq === 0) || last) lastCheckpoint = await this.saveCheckpoint();
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

  /** Clips the accumulated gradients and takes one AdamW step at the schedule's learning rate. */
  protected async optimizerStep(): Promise<{ lr: number; gradNorm: number; skipped: boolean }> {
    const { actor } = this.config.worker;
    const o = actor.optim;
    const total = this.totalSteps * this.optimizerStepsPerStep();
    const lr = learningRate(
      { name: o.lr_scheduler, lr: o.lr, warmupSteps: Math.round(o.lr_warmup_ratio * total), totalSteps: total, minLrRatio: o.min_lr_ratio },
      (await this.vlm.model.optimizerState()).step + 1,
    );
    const r = await this.vlm.model.optimizerStep({
      lr,
      beta1: o.betas[0],
      beta2: o.betas[1],
      eps: o.eps,
      weightDecay: o.weight_decay,
      maxGradNorm: actor.max_grad_norm,
      freezeVision: actor.model.freeze_vision_tower,
    });
    if (r.skipped) this.say(`step ${this.step + 1}: non-finite gradient norm; optimiser step skipped`);
    return { lr, gradNorm: r.gradNorm, skipped: r.skipped };
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
    this.lastValidation = evaluation.metrics;
    await this.logMetrics('val', evaluation.metrics);
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

  private async findResumePoint(): Promise<string | undefined> {
    const { trainer } = this.config;
    if (trainer.load_checkpoint_path !== null) return resolve(trainer.load_checkpoint_path);
    if (trainer.find_last_checkpoint) return latestCheckpoint(this.dir);
    return undefined;
  }

  private async readSplit(path: string, name: string, limit: number): Promise<TrainingRow[]> {
    const maxPrompt = this.config.data.max_prompt_length;
    const promptKey = this.config.data.prompt_key;
    const filter = this.config.data.filter_overlong_prompts;
    const loaded = await loadRows(path, {
      skipInvalid: this.config.data.skip_invalid,
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

  /** Prints the memory plan; refuses a run that cannot fit unless told to ignore it. */
  protected checkMemory(referenceModel: boolean): MemoryPlan {
    const datasetBytes = this.loader.rows.reduce((a, r) => a + imageBytes(r), 0) + this.valRows.reduce((a, r) => a + imageBytes(r), 0);
    const config = referenceModel ? this.config : { ...this.config, algorithm: { ...this.config.algorithm, kl_coef: 0 } };
    const plan = planMemory({ config, model: this.vlm.model.config, datasetBytes });
    this.say(formatMemoryPlan(plan));
    if (!plan.fits && !this.config.trainer.ignore_memory_plan)
      throw new Error(`the run does not fit in memory (set trainer.ignore_memory_plan=true to start anyway):\n${plan.messages.join('\n')}`);
    return plan;
  }

  protected async saveCheckpoint(extra: Record<string, unknown> = {}, loader: LoaderState = this.loader.state()): Promise<string> {
    this.emit('progress', { step: this.step, phase: 'checkpoint', done: 0, total: 1 });
    const state: RunState = { step: this.step, loader, kind: this.kind, ...extra };
    const dir = await saveCheckpoint(this.vlm.model, this.sourceDir, this.dir, this.step, state, {
      dtype: this.config.trainer.save_dtype,
      keepLast: this.config.trainer.save_limit,
    });
    this.emit('checkpoint', { step: this.step, dir });
    this.say(`saved ${dir}`);
    return dir;
  }

  protected async logMetrics(split: Split, metrics: Metrics): Promise<void> {
    await this.log.metrics(this.step, split, metrics);
    this.emit('metrics', { step: this.step, split, metrics });
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
  if (registry.has(spec)) return registry.create(spec, spec === 'spatial' ? options : {});
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

/** Reads a run's saved trainer state (for tools). */
export async function readRunState(checkpointDir: string): Promise<RunState> {
  return JSON.parse(await readFile(join(checkpointDir, 'trainer_state.json'), 'utf8')) as RunState;
}
