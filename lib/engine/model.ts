/**
 * A Qwen2.5-VL checkpoint loaded into the native engine. Everything is
 * asynchronous and runs off the event loop; weights and activations stay
 * native. Token-level API: ids in, ids and log-probs out (the Tokenizer and
 * ImageProcessor build the inputs).
 */
import { threadsProblem } from './generate-options.js';
import { assertRegularModelFiles } from './weight-files.js';
import { native } from '../native/binding.js';
import { readModelConfig, type ModelConfig } from './config.js';
import type { PolicyLossResult } from '../train/native-train.js';

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
  topK?: number;
  topP?: number;
  greedy?: boolean;
  /** Reproducible results: each completion draws from its own generator seeded from this. */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** Completions per prompt; they share the prompt's prefill. Default 1. */
  samples?: number;
  maxNewTokens?: number;
  /** Generation stops after any of these (defaults to the model's EOS ids). */
  stopTokenIds?: readonly number[];
  /** Sequences decoded together; finished ones make room for the next prompt. Default 64. */
  maxBatch?: number;
  /** Called for every sampled token, in order per completion. */
  onToken?: (prompt: number, sample: number, token: number) => void;
  signal?: AbortSignal;
  /** Keep the logits behind every token ([tokens, vocab]); for checks. */
  keepStepLogits?: boolean;
}

export interface Completion {
  prompt: number;
  sample: number;
  tokens: Int32Array;
  /** log p of each token under the sampling distribution (temperature applied, before top-k/top-p). */
  logprobs: Float32Array;
  /** Position (all three M-RoPE streams) of each token fed back. */
  positions: Float64Array;
  finishReason: 'stop' | 'length' | 'cancelled';
  stepLogits?: Float32Array;
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

export interface TrainLossOptions extends FreezeOptions {
  /** 'grpo' (default) or 'sft' (token cross-entropy on the completion, e.g. a warm start). */
  objective?: 'grpo' | 'sft';
  /** Longer sequences are an error naming them. 0: no limit. */
  maxSequenceLength?: number;
  /** Recompute each block in the backward pass instead of keeping its activations. */
  checkpointLayers?: boolean;
  clipLow?: number;
  clipHigh?: number;
  /** <= 1 disables the dual clip. Default 3. */
  dualClip?: number;
  klCoef?: number;
  klEstimator?: 'k1' | 'abs' | 'mse' | 'k2' | 'k3' | 'low_var_kl';
  aggregation?: 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum';
  temperature?: number;
  /** The whole mini-batch's token and completion counts, when this call is one micro-batch of it. */
  batchTokens?: number;
  batchSequences?: number;
}

export interface TrainGradientsResult extends Omit<PolicyLossResult, 'dlogp'> {
  /** The current policy's log-prob of each completion token, sequences in order. */
  logp: Float32Array;
  /** Mean entropy of the policy's next-token distribution over the completion tokens. */
  entropy: number;
}

export interface OptimizerOptions extends FreezeOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global gradient-norm clip; 0 disables it. Default 1. */
  maxGradNorm?: number;
}

/** AdamW moments by parameter name and the number of steps taken. */
export interface OptimizerState {
  step: number;
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

export interface ForwardResult {
  logits: Float32Array; // [rows, seqLen, vocab], 0 on padding
  positions: Float64Array; // [3, rows, seqLen]
  deltas: Float64Array; // [rows]
}

export interface VisionResult {
  embeds: Float32Array;
  windowIndex: Int32Array;
  cuWindowSeqlens: Int32Array;
  cuSeqlens: Int32Array;
  rotPosIds: Int32Array;
}

interface NativePrompt {
  ids: Int32Array;
  pixels?: Float32Array;
  grids?: Int32Array;
}

interface NativeModel {
  info(): { parameters: number; backend: string } | null;
  vision(args: { pixels: Float32Array; grids: Int32Array }): Promise<VisionResult>;
  forward(args: { ids: Int32Array; mask: Int32Array; rows: number; seqLen: number; pixels?: Float32Array; grids?: Int32Array }): Promise<ForwardResult>;
  logprobs(args: { prompts: NativePrompt[]; completions: Int32Array[]; temperature: number }): Promise<Float32Array[]>;
  generate(args: Record<string, unknown>, onToken?: (prompt: number, sample: number, token: number) => void): Promise<Completion[]>;
  cancel(): void;
  stopSequence(prompt: number, sample: number): void;
  trainGradients(args: Record<string, unknown>): Promise<TrainGradientsResult>;
  zeroGradients(): Promise<void>;
  optimizerStep(args: Record<string, unknown>): Promise<{ gradNorm: number; skipped: boolean; step: number }>;
  parameters(): Promise<Record<string, Float32Array>>;
  gradients(): Promise<Record<string, Float32Array>>;
  setParameters(values: Record<string, Float32Array>): Promise<void>;
  optimizerState(): Promise<OptimizerState>;
  setOptimizerState(state: OptimizerState): Promise<void>;
  dispose(): Promise<void>;
}

declare module '../native/binding.js' {
  interface NativeBinding {
    loadModel(args: { dir: string; config: ModelConfig; device: string }): Promise<NativeModel>;
  }
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
  /** Compute precision: 'fp32' (the default, and for now the only one either backend computes in). */
  dtype?: 'fp32' | 'bf16';
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

  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    private readonly handle: NativeModel,
  ) {}

  /** Loads config.json and the safetensors weights of a Hugging Face model directory. */
  static async load(dir: string, options: LoadOptions = {}): Promise<Model> {
    if (options.dtype === 'bf16' && (options.device ?? 'cpu') === 'cpu')
      throw new Error('dtype "bf16" needs the CUDA backend; the CPU backend computes in fp32 (bf16 checkpoints are converted on load)');
    if (options.dtype === 'bf16')
      throw new Error('dtype "bf16" is not implemented yet: the CUDA backend computes in fp32 (bf16 checkpoints are converted on load)');
    applyThreads(options.threads);
    await assertRegularModelFiles(dir);
    const config = await readModelConfig(dir);
    const handle = await native().loadModel({ dir, config, device: options.device ?? 'cpu' });
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

  /** log p(completion_j | prompt, completion_<j) per prompt, computed a vocabulary tile at a time. */
  logprobs(prompts: readonly PromptInput[], completions: readonly (Int32Array | readonly number[])[], temperature = 1): Promise<Float32Array[]> {
    if (prompts.length !== completions.length) throw new RangeError('logprobs: one completion per prompt');
    return this.live().logprobs({
      prompts: prompts.map(nativePrompt),
      completions: completions.map((c) => Int32Array.from(c)),
      temperature,
    });
  }

  async generate(prompts: readonly PromptInput[], options: GenerateOptions = {}): Promise<Completion[]> {
    const handle = this.live();
    const signal = options.signal;
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
    const abort = () => handle.cancel();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      return await handle.generate(
        {
          prompts: prompts.map(nativePrompt),
          samples: options.samples ?? 1,
          maxNewTokens: options.maxNewTokens ?? 256,
          maxBatch: options.maxBatch ?? 64,
          seed: options.seed ?? 0,
          greedy: options.greedy ?? false,
          temperature: options.temperature ?? 1,
          topK: options.topK ?? 0,
          topP: options.topP ?? 1,
          stopTokenIds: Int32Array.from(options.stopTokenIds ?? this.config.eosTokenIds),
          keepStepLogits: options.keepStepLogits ?? false,
        },
        options.onToken,
      );
    } finally {
      signal?.removeEventListener('abort', abort);
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
      ...options,
    });
  }

  zeroGradients(): Promise<void> {
    return this.live().zeroGradients();
  }

  /** Clips the accumulated gradients by their global norm and takes one AdamW step (fp32 master weights and moments). */
  optimizerStep(options: OptimizerOptions): Promise<{ gradNorm: number; skipped: boolean; step: number }> {
    return this.live().optimizerStep({ ...options });
  }

  /** Host copies of every parameter by hub name. */
  parameters(): Promise<Record<string, Float32Array>> {
    return this.live().parameters();
  }

  /** Replaces parameters by hub name (e.g. fp32 master weights on resume). */
  setParameters(values: Record<string, Float32Array>): Promise<void> {
    return this.live().setParameters(values);
  }

  optimizerState(): Promise<OptimizerState> {
    return this.live().optimizerState();
  }

  setOptimizerState(state: OptimizerState): Promise<void> {
    return this.live().setOptimizerState(state);
  }

  /** Host copies of the accumulated gradients by hub name. */
  gradients(): Promise<Record<string, Float32Array>> {
    return this.live().gradients();
  }

  /**
   * Ends one completion of the generate call in flight (it finishes with
   * reason "stop" after at most a few more tokens); for stop strings.
   */
  stopSequence(prompt: number, sample: number): void {
    this.live().stopSequence(prompt, sample);
  }

  /** Frees the weights (after a call in flight finishes). */
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
