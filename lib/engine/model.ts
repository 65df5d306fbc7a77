/**
 * A Qwen2.5-VL checkpoint loaded into the native engine. Everything is
 * asynchronous and runs off the event loop; weights and activations stay
 * native. Token-level API: ids in, ids and log-probs out (the Tokenizer and
 * ImageProcessor build the inputs).
 */
import { threadsProblem } from './generate-options.js';
import { assertRegularModelFiles } from './weight-files.js';
import {
  DEFAULT_ADAMW_SETTINGS,
  DEFAULT_LOSS_SETTINGS,
  withDefaults,
  type AdamWSettings,
  native,
  type FinishReason,
  type KlEstimator,
  type LossAggregation,
  type NativeCompletion,
  type NativeDataParallelInfo,
  type NativeProcessGroup,
  type NativeForwardResult,
  type NativeModel,
  type NativeOptimizerState,
  type OptimizerStrategy,
  type NativeOptimizerStepResult,
  type NativeWrittenFiles,
  type NativePrompt,
  type NativeTrainGradientsResult,
  type NativeVisionResult,
} from '../native/binding.js';
import { readModelConfig, type ModelConfig } from './config.js';
import { inspectModelWeights, type SafetensorsDType } from '../io/safetensors.js';

const DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** Pixel patches of a prompt's images, as the image processor makes them. */
export interface ImageInput {
  pixels: Float32Array; // [rows, 3 * T * p * p]
  gridThw: readonly (readonly [number, number, number])[];
}

export interface PromptInput {
  ids: Int32Array | readonly number[];
  images?: ImageInput;
}

export interface SamplingOptions {
  /** 0 or `greedy: true` picks the most likely token. Default 1. */
  temperature?: number;
  /** Default 0: off. */
  topK?: number;
  /** Default 1: off. */
  topP?: number;
  /** Default false. */
  greedy?: boolean;
  /** Reproducible results: each completion draws from its own generator seeded from this. Default 0. */
  seed?: number;
  /**
   * The prompts' places in a larger batch, for the random streams: prompt p
   * samples as prompt `first + p * stride` of that batch would (a
   * data-parallel rank taking prompts r, r + W, ... passes {first: r, stride: W}).
   * Default {first: 0, stride: 1}.
   */
  promptIndex?: { first: number; stride: number };
}

/**
 * Aborting a call (its `signal`) never rejects it and never touches the
 * model's other calls: the call stops at its next stopping point and resolves
 * with the work finished before the abort, marked as aborted (see generate
 * and logprobs for what each returns). The trainers follow the same rule:
 * an aborted run resolves with `TrainResult.aborted: true`.
 */
export interface AbortOptions {
  signal?: AbortSignal;
}

export interface GenerateOptions extends SamplingOptions, AbortOptions {
  /** Completions per prompt; they share the prompt's prefill. Default 1. */
  samples?: number;
  /** Default 256. */
  maxNewTokens?: number;
  /** Generation stops after any of these (defaults to the model's EOS ids). */
  stopTokenIds?: readonly number[];
  /** Sequences decoded together; finished ones make room for the next prompt. Default 64. */
  maxBatch?: number;
  /**
   * Called for every sampled token, in order per completion; `stop()` ends
   * that completion (finish reason "stop") after at most a few more tokens,
   * e.g. when a stop string shows in its text.
   */
  onToken?: (prompt: number, sample: number, token: number, stop: () => void) => void;
  /** Keep the logits behind every token ([tokens, vocab]); for checks. Default false. */
  keepStepLogits?: boolean;
}

export interface LogprobsOptions extends AbortOptions {
  /** Default 1. */
  temperature?: number;
}

export interface Completion extends NativeCompletion {
  /** log p of each token under the sampling distribution (temperature applied, before top-k/top-p). */
  logprobs: Float32Array;
  /** Position (all three M-RoPE streams) of each token fed back. */
  positions: Float64Array;
  /** 'cancelled': the call was aborted before this completion finished; `tokens` holds what was sampled. */
  finishReason: FinishReason;
}

/** A prompt and one completion of it, with what the GRPO loss needs per completion token. */
export interface TrainSequence {
  /** Prompt ids followed by completion ids (no padding). */
  ids: Int32Array | readonly number[];
  promptLength: number;
  images?: ImageInput;
  advantage: number;
  /** Rollout log-probs per completion token (GRPO). */
  oldLogprobs?: Float32Array;
  refLogprobs?: Float32Array;
}

/** Parts of the model left untouched by training (the whole model trains by default). */
export interface FreezeOptions {
  freezeVision?: boolean;
  freezeMerger?: boolean;
  freezeLanguage?: boolean;
}

export interface TrainLossOptions extends Omit<FreezeOptions, 'freezeLanguage'> {
  /** 'grpo' (default) or 'sft' (token cross-entropy on the completion, e.g. a warm start). */
  objective?: 'grpo' | 'sft';
  /** Longer sequences are an error naming them. Default 0: no limit. */
  maxSequenceLength?: number;
  /** Recompute each block in the backward pass instead of keeping its activations. Default false. */
  checkpointLayers?: boolean;
  /** Default 0.2. */
  clipLow?: number;
  /** Default 0.3. */
  clipHigh?: number;
  /** <= 1 disables the dual clip. Default 3. */
  dualClip?: number;
  /** Default 0.01. */
  klCoef?: number;
  /** Default 'k3'. */
  klEstimator?: KlEstimator;
  /** Default 'token-mean'. */
  aggregation?: LossAggregation;
  /** Default 1. */
  temperature?: number;
  /** The whole mini-batch's token and completion counts, when this call is one micro-batch of it (default 0: this call's own). */
  batchTokens?: number;
  batchSequences?: number;
}

export interface TrainGradientsResult extends NativeTrainGradientsResult {
  /** The current policy's log-prob of each completion token, sequences in order. */
  logp: Float32Array;
  /** Mean entropy of the policy's next-token distribution over the completion tokens. */
  entropy: number;
}

export interface OptimizerOptions extends FreezeOptions, AdamWSettings, OptimizerPlacement {}

/** The optimiser strategy and where its state lives; fixed once a step was taken or state restored. */
export interface OptimizerPlacement {
  /** Default adamw. */
  strategy?: OptimizerStrategy;
  /** State in pinned host memory, streamed through the device (CUDA); default false. */
  offloadOptimizer?: boolean;
}

/** AdamW moments by parameter name and the number of steps taken (a full host copy: tests and tools only). */
export type OptimizerState = NativeOptimizerState;
/** What one optimiser step reports; the weights and moments stay in the engine. */
export type OptimizerStepResult = NativeOptimizerStepResult;
/** Files a native save wrote (names inside its directory; the index last when sharded) and their tensor bytes. */
export type WrittenFiles = NativeWrittenFiles;
export type ForwardResult = NativeForwardResult;
export type VisionResult = NativeVisionResult;

/** Where and how a native save writes. */
export interface NativeSaveOptions {
  /** Shard above this many bytes per file (default 5e9, as transformers). */
  maxShardBytes?: number;
  /** The write buffer (default 256 MiB); tests use a small one to cross chunk edges. */
  bufferBytes?: number;
}

const DEFAULT_MAX_SHARD_BYTES = 5e9;
const DEFAULT_WRITE_BUFFER_BYTES = 256 * 2 ** 20;

function writeOptions(options: NativeSaveOptions): { maxShardBytes: number; bufferBytes: number } {
  return { maxShardBytes: options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES, bufferBytes: options.bufferBytes ?? DEFAULT_WRITE_BUFFER_BYTES };
}

export interface LoadOptions {
  /**
   * 'cpu' (default) or 'cuda': the CUDA backend on the first usable GPU, with
   * cuBLAS loaded at run time. Loading fails with the reason when there is no
   * GPU, driver or cuBLAS (`spatialthinker doctor` shows what was found).
   */
  device?: 'cpu' | 'cuda';
  /**
   * Threads of the engine's CPU pool. The pool is per process and starts
   * with the first native call, so this must come before any (it sets
   * SPATIALTHINKER_THREADS); a different value later is an error.
   */
  threads?: number;
  /**
   * Storage precision of weights, activations and the KV cache. The CPU backend is fp32 only. On
   * CUDA the default is 'bf16' (or SPATIALTHINKER_CUDA_DTYPE): bf16 storage with fp32 accumulation,
   * fp32 log-probs, losses, reductions and parameter gradients; 'fp32' stores everything in fp32
   * (for parity checks against the CPU backend).
   */
  dtype?: 'fp32' | 'bf16';
  /**
   * Budget in bytes of the engine's image-feature cache, which lets generation and log-probs at the
   * same weights encode each image once (1 GiB by default; 0 turns it off).
   */
  imageCacheBytes?: number;
  /**
   * Told as loading goes: reading config.json, the tokenizer (VisionLanguageModel
   * only), then the weights. The engine reads every weight file natively in one
   * call, so weights report their start (done 0, total = the tensors' bytes from
   * the safetensors headers) and their end, not per tensor.
   */
  onProgress?: (progress: LoadProgress) => void;
}

export type LoadPhase = 'config' | 'tokenizer' | 'weights';

export interface LoadProgress {
  phase: LoadPhase;
  /** Steps of this phase done: 0 when it starts, `total` when it ends. */
  done: number;
  total: number;
  /** Weights: the bytes read when done (the tensors' data bytes of every weight file). */
  bytes?: number;
}

/** The image-feature cache's default budget: a GRPO step's images at 7B scale (about 20 MB per 1024 x 1024 image). */
const DEFAULT_IMAGE_CACHE_BYTES = 2 ** 30;

/** The data bytes of a model directory's weights, from the safetensors headers (no tensor data is read). */
async function weightBytes(dir: string): Promise<number> {
  const weights = await inspectModelWeights(dir);
  return Object.values(weights).reduce((sum, w) => sum + DTYPE_BYTES[w.dtype] * w.shape.reduce((a, d) => a * d, 1), 0);
}

/** Applies LoadOptions.threads before the engine starts its pool, or checks it afterwards. */
function applyThreads(threads: number | undefined): void {
  if (threads === undefined) return;
  const problem = threadsProblem(threads);
  if (problem) throw new RangeError(problem);
  const current = process.env['SPATIALTHINKER_THREADS'];
  if (current === undefined || Number(current) === threads) {
    process.env['SPATIALTHINKER_THREADS'] = String(threads);
  }
  const running = native().runtimeInfo().threads;
  if (running !== threads)
    throw new Error(`the engine already runs ${running} threads in this process; set threads (or SPATIALTHINKER_THREADS) before the first native call`);
}

function flatGrids(grids: readonly (readonly [number, number, number])[]): Int32Array {
  return Int32Array.from(grids.flat());
}

function nativePrompt(p: PromptInput): NativePrompt {
  return {
    ids: Int32Array.from(p.ids),
    ...(p.images ? { pixels: p.images.pixels, grids: flatGrids(p.images.gridThw) } : {}),
  };
}

export class Model {
  private disposed = false;
  /** Ids for the engine's per-call controls (cancel, stop a completion). */
  private nextCall = 1;
  private stepsTaken = 0;
  private dataParallel: NativeDataParallelInfo | undefined;

  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    private readonly handle: NativeModel,
  ) {}

  /** Loads config.json and the safetensors weights of a Hugging Face model directory. */
  static async load(dir: string, options: LoadOptions = {}): Promise<Model> {
    if (options.dtype === 'bf16' && (options.device ?? 'cpu') === 'cpu')
      throw new Error('dtype "bf16" needs the CUDA backend; the CPU backend computes in fp32 (bf16 checkpoints are converted on load)');
    applyThreads(options.threads);
    await assertRegularModelFiles(dir);
    const report = options.onProgress ?? (() => {});
    report({ phase: 'config', done: 0, total: 1 });
    const config = await readModelConfig(dir);
    report({ phase: 'config', done: 1, total: 1 });
    const bytes = options.onProgress ? await weightBytes(dir) : 0;
    report({ phase: 'weights', done: 0, total: 1, bytes: 0 });
    const handle = await native().loadModel({
      dir,
      config,
      device: options.device ?? 'cpu',
      ...(options.dtype ? { dtype: options.dtype } : {}),
      imageCacheBytes: options.imageCacheBytes ?? DEFAULT_IMAGE_CACHE_BYTES,
    });
    report({ phase: 'weights', done: 1, total: 1, bytes });
    return new Model(dir, config, handle);
  }

  get parameterCount(): number {
    return this.live().info()?.parameters ?? 0;
  }

  /** The vision tower alone (with its window layout), for checks. */
  vision(images: ImageInput): Promise<VisionResult> {
    return this.live().vision({ pixels: images.pixels, grids: flatGrids(images.gridThw) });
  }

  /** Logits of padded rows [rows, seqLen] (mask 1 = real token), with their M-RoPE positions. */
  forward(args: { ids: Int32Array; mask: Int32Array; rows: number; seqLen: number; images?: ImageInput }): Promise<ForwardResult> {
    return this.live().forward({
      ids: args.ids,
      mask: args.mask,
      rows: args.rows,
      seqLen: args.seqLen,
      ...(args.images ? { pixels: args.images.pixels, grids: flatGrids(args.images.gridThw) } : {}),
    });
  }

  /**
   * log p(completion_j | prompt, completion_<j) per prompt, computed a
   * vocabulary tile at a time. The rows come from one forward pass, so an
   * aborted call resolves with all of them if that pass had started, and
   * with none (`[]`) if the call was still waiting for the model.
   */
  async logprobs(
    prompts: readonly PromptInput[],
    completions: readonly (Int32Array | readonly number[])[],
    options: LogprobsOptions = {},
  ): Promise<Float32Array[]> {
    if (prompts.length !== completions.length) throw new RangeError('logprobs: one completion per prompt');
    const handle = this.live();
    const { signal } = options;
    if (signal?.aborted) return [];
    const call = this.nextCall++;
    const promise = handle.logprobs({
      call,
      prompts: prompts.map(nativePrompt),
      completions: completions.map((c) => Int32Array.from(c)),
      temperature: options.temperature ?? 1,
    });
    return this.abortable(promise, call, signal);
  }

  /**
   * Samples completions of every prompt, `samples` per prompt, ordered
   * prompt by prompt. An aborted call resolves at once with the tokens
   * sampled so far: completions that had not finished (or not started) end
   * with finishReason 'cancelled'.
   */
  async generate(prompts: readonly PromptInput[], options: GenerateOptions = {}): Promise<Completion[]> {
    const handle = this.live();
    const { signal, onToken } = options;
    const samples = options.samples ?? 1;
    if (signal?.aborted)
      return prompts.flatMap((_, prompt) =>
        Array.from({ length: samples }, (_, sample): Completion => ({
          prompt,
          sample,
          tokens: new Int32Array(0),
          logprobs: new Float32Array(0),
          positions: new Float64Array(0),
          finishReason: 'cancelled',
          graphSteps: 0,
        })),
      );
    const call = this.nextCall++;
    const promise = handle.generate(
      {
        call,
        prompts: prompts.map(nativePrompt),
        samples,
        maxNewTokens: options.maxNewTokens ?? 256,
        maxBatch: options.maxBatch ?? 64,
        seed: options.seed ?? 0,
        firstPromptIndex: options.promptIndex?.first ?? 0,
        promptIndexStride: options.promptIndex?.stride ?? 1,
        greedy: options.greedy ?? false,
        temperature: options.temperature ?? 1,
        topK: options.topK ?? 0,
        topP: options.topP ?? 1,
        stopTokenIds: Int32Array.from(options.stopTokenIds ?? this.config.eosTokenIds),
        keepStepLogits: options.keepStepLogits ?? false,
      },
      onToken ? (prompt, sample, token) => onToken(prompt, sample, token, () => handle.stopSequence(call, prompt, sample)) : undefined,
    );
    return this.abortable(promise, call, signal);
  }

  /** Cancels call `call` (and only it) when `signal` fires while it waits or runs. */
  private async abortable<T>(promise: Promise<T>, call: number, signal: AbortSignal | undefined): Promise<T> {
    if (!signal) return promise;
    const abort = () => this.handle.cancel(call);
    signal.addEventListener('abort', abort, { once: true });
    try {
      return await promise;
    } finally {
      signal.removeEventListener('abort', abort);
    }
  }

  /**
   * Forward and backward of a batch: adds its GRPO-loss gradients to the
   * model's gradient buffers and returns the loss, log-probs and metrics.
   */
  trainGradients(sequences: readonly TrainSequence[], options: TrainLossOptions = {}): Promise<TrainGradientsResult> {
    return this.live().trainGradients({
      sequences: sequences.map((s) => ({
        ids: Int32Array.from(s.ids),
        promptLen: s.promptLength,
        advantage: s.advantage,
        ...(s.oldLogprobs ? { oldLogp: s.oldLogprobs } : {}),
        ...(s.refLogprobs ? { refLogp: s.refLogprobs } : {}),
        ...(s.images ? { pixels: s.images.pixels, grids: flatGrids(s.images.gridThw) } : {}),
      })),
      objective: options.objective ?? 'grpo',
      maxSequenceLength: options.maxSequenceLength ?? 0,
      checkpointLayers: options.checkpointLayers ?? false,
      freezeVision: options.freezeVision ?? false,
      freezeMerger: options.freezeMerger ?? false,
      ...withDefaults(options, DEFAULT_LOSS_SETTINGS),
      temperature: options.temperature ?? 1,
    });
  }

  zeroGradients(): Promise<void> {
    return this.live().zeroGradients();
  }

  /**
   * Clips the accumulated gradients by their global norm and takes one AdamW
   * step of the strategy asked (adamw: fp32 master weights and moments;
   * adamw_bf16: bf16 weights and moments, Kahan-compensated); returns metrics only.
   */
  async optimizerStep(options: OptimizerOptions): Promise<OptimizerStepResult> {
    const result = await this.live().optimizerStep({
      lr: options.lr,
      ...withDefaults(options, DEFAULT_ADAMW_SETTINGS),
      freezeVision: options.freezeVision ?? false,
      freezeMerger: options.freezeMerger ?? false,
      freezeLanguage: options.freezeLanguage ?? false,
      strategy: options.strategy ?? 'adamw',
      offloadOptimizer: options.offloadOptimizer ?? false,
    });
    this.stepsTaken = result.step;
    return result;
  }

  /** Optimiser steps taken (or restored) so far, without asking the engine for its state. */
  get optimizerSteps(): number {
    return this.stepsTaken;
  }

  /** Host copies of every parameter by hub name. */
  parameters(): Promise<Record<string, Float32Array>> {
    return this.live().parameters();
  }

  /** Replaces parameters by hub name (e.g. fp32 master weights on resume). */
  setParameters(values: Record<string, Float32Array>): Promise<void> {
    return this.live().setParameters(values);
  }

  /**
   * Copies every AdamW moment into JavaScript (8 bytes per parameter): for
   * tests and tools. Training and checkpoints never need it.
   */
  exportOptimizerState(): Promise<OptimizerState> {
    return this.live().exportOptimizerState();
  }

  async setOptimizerState(state: OptimizerState): Promise<void> {
    await this.live().setOptimizerState(state);
    this.stepsTaken = state.step;
  }

  /**
   * Writes the weights natively into `dir` (which must exist) as a Hugging
   * Face set of files: model.safetensors, or model-0000i-of-0000N.safetensors
   * with model.safetensors.index.json; hub names and shapes, in `dtype`.
   */
  saveWeights(dir: string, dtype: 'bf16' | 'fp32', options: NativeSaveOptions = {}): Promise<WrittenFiles> {
    return this.live().saveWeights({ dir, dtype, ...writeOptions(options) });
  }

  /**
   * Writes the optimiser state natively into `dir` as optimizer.safetensors
   * (or shards): the fp32 master weights when `master`, and the AdamW moments
   * once a step has made them. Returns the step count with the files.
   */
  saveOptimizerState(dir: string, master: boolean, options: NativeSaveOptions = {}): Promise<WrittenFiles & { step: number }> {
    return this.live().saveOptimizerState({ dir, master, ...writeOptions(options) });
  }

  /**
   * Reads what saveOptimizerState wrote (memory-mapped, straight into the
   * engine) and sets the step count. State written by the other strategy is
   * refused, naming both.
   */
  async restoreOptimizerState(dir: string, step: number, placement: OptimizerPlacement = {}): Promise<void> {
    await this.live().restoreOptimizerState({ dir, step, strategy: placement.strategy ?? 'adamw', offloadOptimizer: placement.offloadOptimizer ?? false });
    this.stepsTaken = step;
  }

  /**
   * Trains data-parallel over `processGroup` (omitted: a world of one):
   * optimizerStep() then sums the gradients over the ranks, in buckets of
   * `bucketBytes` (default 25 MB), before it clips and steps; with `zero1`
   * (default true) each rank keeps and updates the AdamW moments of its own
   * range of the parameters only. Every rank calls it, before the first
   * optimiser step; rank 0's weights are broadcast to the others.
   */
  async attachProcessGroup(options: { processGroup?: NativeProcessGroup | { nativeGroup: NativeProcessGroup }; zero1?: boolean; bucketBytes?: number } = {}): Promise<NativeDataParallelInfo> {
    const group = options.processGroup && 'nativeGroup' in options.processGroup ? options.processGroup.nativeGroup : options.processGroup;
    this.dataParallel = await this.live().attachProcessGroup({
      ...(group !== undefined ? { processGroup: group } : {}),
      zero1: options.zero1 ?? true,
      bucketBytes: options.bucketBytes ?? 25 * 1024 * 1024,
    });
    return this.dataParallel;
  }

  /** The attached group's rank, world size and ZeRO-1 range (undefined before attachProcessGroup). */
  get processGroupInfo(): NativeDataParallelInfo | undefined {
    return this.dataParallel;
  }

  /** Values combined over the attached group (collective: every rank calls it, same length); the values themselves without one. */
  async reduceScalars(values: readonly number[], op: 'sum' | 'max' | 'min'): Promise<number[]> {
    if (!this.dataParallel || this.dataParallel.worldSize === 1) return [...values];
    return [...(await this.live().reduceScalars({ values: Float64Array.from(values), op }))];
  }

  /** Waits for every rank of the attached group (nothing without one). */
  async barrier(): Promise<void> {
    if (this.dataParallel && this.dataParallel.worldSize > 1) await this.live().barrier();
  }

  /** ZeRO-1: writes this rank's range of the optimiser state as dir/optimizer-rank<r>-of-<W>.safetensors. */
  saveOptimizerShard(dir: string, master: boolean, options: NativeSaveOptions = {}): Promise<WrittenFiles & { step: number }> {
    return this.live().saveOptimizerShard({ dir, master, ...writeOptions(options) });
  }

  /** Host copies of the accumulated gradients by hub name. */
  gradients(): Promise<Record<string, Float32Array>> {
    return this.live().gradients();
  }

  /** Aborts the calls made before it (as their signals would), then frees the weights once they settle. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.handle.dispose();
  }

  private live(): NativeModel {
    if (this.disposed) throw new Error(`the model from ${this.dir} was disposed`);
    return this.handle;
  }
}
