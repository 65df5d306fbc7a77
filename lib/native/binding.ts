/**
 * The compiled engine (native/), loaded once through node-gyp-build from
 * build/Release or a prebuild, or from the file SPATIALTHINKER_ADDON names
 * (an absolute path, or relative to the working directory: e.g. the CUDA
 * emulation build's build-emu/Release/spatialthinker_native.node, which
 * `npm run test:cuda-emulated` uses). Weights and activations never cross
 * into JavaScript: only typed arrays of inputs and results do.
 *
 * This file is the one typed definition of everything the addon exports
 * (native/addon/*.cpp); no other module declares native functions.
 *
 * Defaults live in TypeScript, once: the library API (lib/engine/model.ts,
 * lib/match, lib/rewards, lib/native/testing.ts, ...) fills in every value it
 * documents as defaulted and passes each field explicitly; the addon requires
 * every field and rejects a missing one with a TypeError naming the function
 * and the field ("generate: `topP` is required"). The optional fields below
 * are inputs whose absence means "none" (no images, no reference log-probs,
 * no bias, no optional output), never a value the addon fills in.
 *
 * Test-only entry points (single backend ops, the host-array policy loss and
 * AdamW step, one timed matrix product) are typed in TestingEntryPoints and
 * reached only through lib/native/testing.ts.
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------- runtime

export interface CudaDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
  freeMemory: number;
  multiprocessors: number;
}

export interface RuntimeInfo {
  /** Worker threads of the engine's CPU pool (SPATIALTHINKER_THREADS overrides). */
  threads: number;
  /** The widest CPU kernels the matrix products use on this machine, chosen at run time (SPATIALTHINKER_CPU_ISA caps it). */
  cpuIsa: 'avx512' | 'avx2' | 'portable';
  cuda: {
    /** Whether this build contains the CUDA backend. */
    compiled: boolean;
    architectures: string;
    runtimeVersion: number;
    driverVersion: number;
    /** Whether a usable GPU was found; `reason` says why not. */
    available: boolean;
    reason?: string;
    devices: CudaDeviceInfo[];
    /** cuBLAS, which the CUDA backend's matrix products load at run time. */
    cublas: { found: boolean; library?: string; version?: string; error?: string };
  };
  /** The process groups this build can make (lib/distributed). */
  distributed: {
    /** Gloo (CPU groups of more than one process) was linked at build time; `glooReason` says why not. */
    gloo: boolean;
    glooReason?: string;
    /**
     * NCCL (CUDA groups): compiled into CUDA builds, opened at run time from `library` (SPATIALTHINKER_NCCL
     * overrides); in a CUDA build, `found` says whether it opened and `error` why not.
     */
    nccl: { compiled: boolean; library: string; found?: boolean; error?: string };
  };
}

export type Device = 'cpu' | 'cuda';

// ---------------------------------------------------------------- matching

export interface NativeBoxPairs {
  predBoxes: Float64Array;
  predCounts: Int32Array;
  gtBoxes: Float64Array;
  gtCounts: Int32Array;
  device: Device;
}

export interface NativeSpatialScoresArgs extends NativeBoxPairs {
  /** Label similarity of every (prediction, ground truth) pair, problem by problem. */
  similarity: Float64Array;
  /** Matching cost = semanticWeight (1 - similarity) + iouWeight (1 - mCIoU). */
  semanticWeight: number;
  iouWeight: number;
}

// ---------------------------------------------------------------- safetensors

/** The dtypes the engine reads; F16 and BF16 arrive widened to Float32Array. */
export type NativeDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface NativeTensorHeader {
  dtype: NativeDType;
  shape: number[];
}

export interface NativeTensor extends NativeTensorHeader {
  data: Float64Array | Float32Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;
}

// ---------------------------------------------------------------- the model

/** What loadModel reads of lib/engine/config.ts's ModelConfig (which has more). */
export interface NativeModelConfig {
  text: {
    hidden: number;
    intermediate: number;
    layers: number;
    heads: number;
    kvHeads: number;
    vocab: number;
    rmsEps: number;
    ropeTheta: number;
    mropeSection: Int32Array;
    tieEmbeddings: boolean;
  };
  vision: {
    depth: number;
    hidden: number;
    heads: number;
    intermediate: number;
    outHidden: number;
    patch: number;
    temporalPatch: number;
    merge: number;
    inChannels: number;
    windowSize: number;
    rmsEps: number;
    fullAttentionBlocks: Int32Array;
  };
  imageTokenId: number;
  visionStartTokenId: number;
}

/** A prompt's ids and, when it has images, their pixel patches and [t, h, w] grids (flat triples). */
export interface NativePrompt {
  ids: Int32Array;
  pixels?: Float32Array;
  grids?: Int32Array;
}

export interface NativeVisionResult {
  embeds: Float32Array;
  windowIndex: Int32Array;
  cuWindowSeqlens: Int32Array;
  cuSeqlens: Int32Array;
  rotPosIds: Int32Array;
}

export interface NativeForwardResult {
  logits: Float32Array; // [rows, seqLen, vocab], 0 on padding
  positions: Float64Array; // [3, rows, seqLen]
  deltas: Float64Array; // [rows]
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface NativeCompletion {
  prompt: number;
  sample: number;
  tokens: Int32Array;
  logprobs: Float32Array;
  positions: Float64Array;
  finishReason: FinishReason;
  stepLogits?: Float32Array;
  /** Decode steps of this completion run as a replayed graph (CUDA graphs; SPATIALTHINKER_DECODE_GRAPHS). */
  graphSteps: number;
}

export interface NativeGenerateArgs {
  /** The caller's id for this call, for cancel(call) and stopSequence(call, ...); unique among its calls in flight. */
  call: number;
  prompts: NativePrompt[];
  samples: number;
  maxNewTokens: number;
  maxBatch: number;
  seed: number;
  /** Prompt p draws the random streams of prompt firstPromptIndex + p * promptIndexStride of a larger batch. */
  firstPromptIndex: number;
  promptIndexStride: number;
  greedy: boolean;
  temperature: number;
  /** 0: off. */
  topK: number;
  topP: number;
  stopTokenIds: Int32Array;
  keepStepLogits: boolean;
}

export interface NativeLogprobsArgs {
  call: number;
  prompts: NativePrompt[];
  completions: Int32Array[];
  temperature: number;
}

export type KlEstimator = 'k1' | 'abs' | 'mse' | 'k2' | 'k3' | 'low_var_kl';
export type LossAggregation = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum';

/** The GRPO policy-loss settings, as the engine takes them. */
export interface NativeLossSettings {
  clipLow: number;
  clipHigh: number;
  /** <= 1 disables the dual clip. */
  dualClip: number;
  klCoef: number;
  klEstimator: KlEstimator;
  aggregation: LossAggregation;
  /** The whole mini-batch's token and completion counts (0: this call's own). */
  batchTokens: number;
  batchSequences: number;
}

/** The loss settings a call leaves out: the library's defaults, used by Model.trainGradients and the host-array policyLoss. */
export const DEFAULT_LOSS_SETTINGS: Readonly<NativeLossSettings> = {
  clipLow: 0.2,
  clipHigh: 0.3,
  dualClip: 3,
  klCoef: 0.01,
  klEstimator: 'k3',
  aggregation: 'token-mean',
  batchTokens: 0,
  batchSequences: 0,
};

/** One AdamW step's settings as the library takes them; what is left out comes from DEFAULT_ADAMW_SETTINGS. */
export interface AdamWSettings {
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Default 0.01. */
  weightDecay?: number;
  /** Global gradient-norm clip; 0 disables it. Default 1. */
  maxGradNorm?: number;
}

/** `defaults` with each field `options` gives (not undefined) in its place: how a library call fills in the settings it leaves out. */
export function withDefaults<T extends object>(options: { readonly [K in keyof T]?: T[K] | undefined }, defaults: Readonly<T>): T {
  const out = { ...defaults } as T;
  for (const key of Object.keys(defaults) as (keyof T)[]) {
    const value = options[key];
    if (value !== undefined) out[key] = value as T[keyof T];
  }
  return out;
}

export interface NativeTrainSequence {
  ids: Int32Array;
  promptLen: number;
  advantage: number;
  pixels?: Float32Array;
  grids?: Int32Array;
  oldLogp?: Float32Array;
  refLogp?: Float32Array;
}

export interface NativeTrainGradientsArgs extends NativeLossSettings {
  sequences: NativeTrainSequence[];
  objective: 'grpo' | 'sft';
  temperature: number;
  /** 0: no limit. */
  maxSequenceLength: number;
  checkpointLayers: boolean;
  freezeVision: boolean;
  freezeMerger: boolean;
}

/** The loss and its per-token terms and metrics. */
export interface PolicyLossMetrics {
  loss: number;
  pgLoss: number;
  klLoss: number;
  ratio: Float32Array;
  kl: Float32Array;
  clipfracHigh: number;
  clipfracLow: number;
  clipfracDual: number;
  ppoKl: number;
  klMean: number;
}

export interface NativeTrainGradientsResult extends PolicyLossMetrics {
  logp: Float32Array;
  entropy: number;
}

export interface NativeOptimizerStepArgs {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 0 disables the clip. */
  maxGradNorm: number;
  freezeVision: boolean;
  freezeMerger: boolean;
  freezeLanguage: boolean;
  /** worker.actor.optim.strategy (default adamw). Fixed once the optimiser state exists. */
  strategy?: OptimizerStrategy;
  /** worker.actor.offload.offload_optimizer (default false). */
  offloadOptimizer?: boolean;
}

/** EasyR1's worker.actor.optim.strategy: fp32 master weights and moments, or bf16 weights and moments with Kahan compensation. */
export type OptimizerStrategy = 'adamw' | 'adamw_bf16';

/** The AdamW settings a call leaves out (lr has none): used by Model.optimizerStep and the host-array adamwStep. */
export const DEFAULT_ADAMW_SETTINGS: Readonly<Omit<NativeOptimizerStepArgs, 'lr' | 'freezeVision' | 'freezeMerger' | 'freezeLanguage'>> = {
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  maxGradNorm: 1,
};

export interface NativeOptimizerStepResult {
  gradNorm: number;
  /** The factor the gradients were scaled by (1 when not clipped). */
  clipCoef: number;
  /** True when the gradient norm was not finite: nothing changed. */
  skipped: boolean;
  /** Optimiser steps taken so far. */
  step: number;
}

/** Files a native save wrote (names inside its directory; the index last when sharded) and their tensor bytes. */
export interface NativeWrittenFiles {
  files: string[];
  totalSize: number;
}

export interface NativeOptimizerState {
  step: number;
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

/** Where a rank stands in its process group, and its ZeRO-1 range of the flattened parameters. */
export interface NativeDataParallelInfo {
  rank: number;
  worldSize: number;
  backend: string;
  zero1: boolean;
  flatTotal: number;
  shardBegin: number;
  shardEnd: number;
}

/**
 * A loaded model. Its calls run one at a time in the order they were made;
 * a call that finds the model busy waits on the JavaScript thread (no libuv
 * thread is held while it waits).
 */
export interface NativeModel {
  /** null once disposed. */
  info(): { parameters: number; backend: string } | null;
  vision(args: { pixels: Float32Array; grids: Int32Array }): Promise<NativeVisionResult>;
  forward(args: { ids: Int32Array; mask: Int32Array; rows: number; seqLen: number; pixels?: Float32Array; grids?: Int32Array }): Promise<NativeForwardResult>;
  /** Rows in prompt order; [] when the call was cancelled before its forward pass started. */
  logprobs(args: NativeLogprobsArgs): Promise<Float32Array[]>;
  /** Completion i is sample i % samples of prompt i / samples. */
  generate(args: NativeGenerateArgs, onToken?: (prompt: number, sample: number, token: number) => void): Promise<NativeCompletion[]>;
  /** Aborts the generate or logprobs call with this id (a no-op once it settled). */
  cancel(call: number): void;
  /** Ends one completion of the generate call with this id. */
  stopSequence(call: number, prompt: number, sample: number): void;
  trainGradients(args: NativeTrainGradientsArgs): Promise<NativeTrainGradientsResult>;
  zeroGradients(): Promise<void>;
  optimizerStep(args: NativeOptimizerStepArgs): Promise<NativeOptimizerStepResult>;
  parameters(): Promise<Record<string, Float32Array>>;
  gradients(): Promise<Record<string, Float32Array>>;
  setParameters(values: Record<string, Float32Array>): Promise<void>;
  /** A full host copy of the master weights' moments (tests and tools; a training step never needs it). */
  exportOptimizerState(): Promise<NativeOptimizerState>;
  setOptimizerState(state: NativeOptimizerState): Promise<void>;
  /** Streams the weights (hub names and shapes) as safetensors shards into dir, fsynced. */
  saveWeights(args: { dir: string; dtype: 'bf16' | 'fp32'; maxShardBytes: number; bufferBytes: number }): Promise<NativeWrittenFiles>;
  /** Streams the optimiser state (fp32 master when `master`, AdamW m and v) into dir/optimizer*.safetensors. */
  saveOptimizerState(args: { dir: string; master: boolean; maxShardBytes: number; bufferBytes: number }): Promise<NativeWrittenFiles & { step: number }>;
  /** Reads what saveOptimizerState wrote, memory-mapped, straight into the engine, and sets the step count. */
  restoreOptimizerState(args: { dir: string; step: number; strategy?: OptimizerStrategy; offloadOptimizer?: boolean }): Promise<void>;
  /** Data-parallel training over a process group (none: a world of one); every rank, before the first optimiser step. */
  attachProcessGroup(args: { processGroup?: NativeProcessGroup; zero1: boolean; bucketBytes: number }): Promise<NativeDataParallelInfo>;
  /** Values combined over the attached group, the same bits on every rank (collective). */
  reduceScalars(args: { values: Float64Array; op: 'sum' | 'max' | 'min' }): Promise<Float64Array>;
  barrier(): Promise<void>;
  /** ZeRO-1: this rank's range of the optimiser state as dir/optimizer-rank<r>-of-<W>.safetensors. */
  saveOptimizerShard(args: { dir: string; master: boolean; maxShardBytes: number; bufferBytes: number }): Promise<NativeWrittenFiles & { step: number }>;
  /** Cancels the calls made before it, then frees the weights once they settle. */
  dispose(): Promise<void>;
}

// ---------------------------------------------------------------- process groups

export type NativeReduceOp = 'sum' | 'max' | 'min';

export interface NativeProcessGroupArgs {
  rank: number;
  worldSize: number;
  /** Rank 0 hosts the rendezvous store here; the others connect to it. */
  masterAddr: string;
  masterPort: number;
  /** cpu: Gloo; cuda: NCCL. A world of one needs neither. */
  device: Device;
  /** How long the rendezvous and each collective wait for the other ranks. */
  timeoutMs: number;
}

/**
 * A joined process group (lib/distributed/process-group.ts wraps it). Calls
 * run one at a time in the order made; every rank makes the same calls in the
 * same order. A model's native methods take this object to reach the same
 * communicator from C++.
 */
export interface NativeProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  /** "gloo", "nccl" or "single". */
  readonly backend: string;
  allReduce(data: Float32Array, op: NativeReduceOp): Promise<Float32Array>;
  /** data holds worldSize blocks; the result is the reduction of every rank's block `rank`. */
  reduceScatter(data: Float32Array, op: NativeReduceOp): Promise<Float32Array>;
  /** Every rank's data, rank r's at r * data.length. */
  allGather(data: Float32Array): Promise<Float32Array>;
  /** root's data on every rank (each passes an array of the same length). */
  broadcast(data: Float32Array, root: number): Promise<Float32Array>;
  barrier(): Promise<void>;
  setTimeout(ms: number): Promise<void>;
  /** After the calls already made; a model holding the group keeps it alive until it lets go. */
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------- the module

/** The library's native functions. */
export interface NativeBinding {
  runtimeInfo(): RuntimeInfo;
  /**
   * Since the last reset, process-wide: time spent in CPU matrix products (benchmarks), images the
   * vision tower encoded, and image features a model found in its cache instead of encoding them.
   */
  engineCounters(reset?: boolean): { matmulSeconds: number; visionTowerImages: number; imageCacheHits: number };

  /** imageCacheBytes: the image-feature cache's budget (0: off). */
  /** dtype: the CUDA backend's storage type (unset: SPATIALTHINKER_CUDA_DTYPE, else bf16); the CPU backend is fp32 only. */
  loadModel(args: { dir: string; config: NativeModelConfig; device: Device; dtype?: 'bf16' | 'fp32'; imageCacheBytes: number }): Promise<NativeModel>;

  readSafetensors(path: string, names?: string[]): Promise<{ metadata: Record<string, string>; tensors: Record<string, NativeTensor> }>;
  inspectSafetensors(path: string): Promise<{ metadata: Record<string, string>; tensors: Record<string, NativeTensorHeader> }>;
  inspectModelWeights(dir: string): Promise<Record<string, NativeTensorHeader & { file: string }>>;

  /** Pillow-exact bicubic resize of interleaved 8-bit pixels. */
  resizeBicubicU8(args: { pixels: Uint8Array; height: number; width: number; channels: number; outHeight: number; outWidth: number }): Promise<Uint8Array>;

  ciouMatrices(args: NativeBoxPairs): Promise<Float64Array>;
  linearSumAssignment(args: { costs: Float64Array; rows: Int32Array; cols: Int32Array; device: Device }): Promise<{ rowToCol: Int32Array; totals: Float64Array }>;
  spatialScores(args: NativeSpatialScoresArgs): Promise<{ scores: Float64Array; gtToPred: Int32Array; gtMciou: Float64Array }>;

  /** Joins a process group: resolves once every rank has arrived, rejects naming the ranks that did not within timeoutMs. */
  createProcessGroup(args: NativeProcessGroupArgs): Promise<NativeProcessGroup>;
}

/** One backend op's arguments for runOp; see native/addon/ops_workers.cpp for each op's fields. */
export interface RunOpArgs {
  op: string;
  device: Device;
  tensors?: Record<string, Float32Array>;
  ints?: Record<string, Int32Array>;
  scalars?: Record<string, number>;
  /** The optional outputs to make. */
  outputs?: string[];
  sequences?: { qOffset: number; qLen: number; keySlots: Int32Array; causal?: boolean }[];
  /** The CUDA backend's storage type for weights and activations (default: SPATIALTHINKER_CUDA_DTYPE, else bf16); the CPU backend is fp32 only. */
  dtype?: 'bf16' | 'fp32';
}

export interface NativeAdamWArgs {
  params: Float32Array[];
  grads: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
  /** The step being taken (1 for the first). */
  step: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
  device: Device;
}

export interface NativePolicyLossArgs extends NativeLossSettings {
  logp: Float32Array;
  oldLogp: Float32Array;
  refLogp?: Float32Array;
  advantages: Float32Array;
  sequence: Int32Array;
}

/** Entry points for kernel tests, fixture checks and benchmarks: use them through lib/native/testing.ts. */
export interface TestingEntryPoints {
  /** The backend's attention op on packed sequences of seqLen queries over their own keys, timed over `repeat` waited calls. */
  timeAttention(args: {
    device: Device;
    sequences: number;
    seqLen: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    causal: boolean;
    repeat: number;
  }): Promise<{ seconds: number; bestSeconds: number; backend: string }>;
  /** y = x w^T + bias on the CPU backend, `repeat` times on the same operands: their mean and fastest time. */
  linear(args: { x: Float32Array; w: Float32Array; bias?: Float32Array; m: number; k: number; n: number; repeat: number }): Promise<{
    y: Float32Array;
    seconds: number;
    bestSeconds: number;
  }>;
  /**
   * One op of the backend interface: float tensors are copied in, outputs
   * copied out (outputs not passed in start as NaN).
   */
  runOp(args: RunOpArgs): Promise<{ outputs: Record<string, Float32Array>; scalar?: number; backend: string; dtype: 'bf16' | 'fp32' }>;
  adamwStep(args: NativeAdamWArgs): Promise<{ params: Float32Array[]; m: Float32Array[]; v: Float32Array[]; gradNorm: number; clipCoef: number; skipped: boolean }>;
  policyLoss(args: NativePolicyLossArgs): Promise<PolicyLossMetrics & { dlogp: Float32Array }>;
}

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: (NativeBinding & TestingEntryPoints) | undefined;

function load(): NativeBinding & TestingEntryPoints {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const chosen = process.env['SPATIALTHINKER_ADDON'];
  if (chosen) {
    const path = resolve(chosen);
    try {
      cached = require(path) as NativeBinding & TestingEntryPoints;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`spatialthinker: could not load the native engine SPATIALTHINKER_ADDON names (${path}): ${reason}`);
    }
    return cached;
  }
  const gypBuild = require('node-gyp-build') as (dir: string) => NativeBinding & TestingEntryPoints;
  try {
    cached = gypBuild(packageRoot);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `spatialthinker: the native engine is not built (${reason}). ` +
        `Run \`npm run build:native\` in ${packageRoot} (needs cmake >= 3.25 and a C++17 compiler).`,
    );
  }
  return cached;
}

/** The native module; throws a message that says how to build it when it is missing. */
export function native(): NativeBinding {
  return load();
}

/** The test-only entry points; lib/native/testing.ts is their one user. */
export function testingEntryPoints(): TestingEntryPoints {
  return load();
}
