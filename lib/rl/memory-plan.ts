/**
 * The memory a run needs on the device it runs on, item by item and phase by
 * phase, printed before step 1 so a run that cannot fit is refused at once
 * instead of failing hours in.
 *
 * Items are sized in the dtypes the backend stores (both backends keep fp32
 * weights, gradients and moments today; see backendPrecision), at the longest
 * prompt the data holds (when the caller measured it) and the configured
 * response length. Two phases peak differently:
 *  - rollout: everything resident + the KV cache of the sequences decoded at
 *    once + the prefill/decode workspace. The KV cache is sized to what is
 *    left: the rollout then decodes fewer sequences at once rather than fail;
 *  - update: everything resident + the activations one micro-batch keeps for
 *    its backward (all layers, or one layer's inputs each with gradient
 *    checkpointing) + the backward's workspace.
 * "Resident" is the weights, the optimiser's state, gradients, the reference
 * model, the dataset and the runtime (on the CPU the process's own memory
 * beyond these; on CUDA the context and libraries, measured from the
 * device's free memory). The optimiser's state follows
 * worker.actor.optim.strategy (native/train/optimizer_strategy.h):
 *  - adamw: fp32 moments, and an fp32 master copy when the weights are bf16;
 *  - adamw_bf16: moments and a Kahan compensation buffer in the weights'
 *    dtype (bf16 on a bf16 backend), no master copy;
 * and worker.actor.offload.offload_optimizer moves it (master copy included)
 * to pinned host memory on CUDA, leaving the device two chunks of staging.
 * Gradients are fp32 whatever the weights' dtype.
 */
import { freemem, totalmem } from 'node:os';
import type { ModelConfig } from '../engine/config.js';
import { native } from '../native/binding.js';
import type { TrainConfig } from './config.js';

export type Precision = 'fp32' | 'bf16';

/** What the backend keeps each kind of array in. */
export interface BackendPrecision {
  weights: Precision;
  /** Activations, KV cache and workspace. */
  activations: Precision;
}

/**
 * The precision a backend stores in. Both compute in fp32 for now (bf16
 * checkpoints are converted on load, Model.load refuses dtype 'bf16'); this
 * is the one place that changes when the CUDA backend stores bf16.
 */
export function backendPrecision(backend: 'cpu' | 'cuda'): BackendPrecision {
  switch (backend) {
    case 'cpu':
      return { weights: 'fp32', activations: 'fp32' };
    case 'cuda':
      // The CUDA backend's storage default (native: SPATIALTHINKER_CUDA_DTYPE, else bf16).
      return process.env['SPATIALTHINKER_CUDA_DTYPE'] === 'fp32'
        ? { weights: 'fp32', activations: 'fp32' }
        : { weights: 'bf16', activations: 'bf16' };
  }
}

export interface DeviceMemory {
  device: 'cpu' | 'cuda';
  name: string;
  totalBytes: number;
  /** Free now (on CUDA after the policy weights were loaded, when planned at the start of a run). */
  freeBytes: number;
}

/** The memory of the device a run uses: host RAM, or the first CUDA device as the runtime reports it. */
export function deviceMemory(device: 'cpu' | 'cuda'): DeviceMemory {
  if (device === 'cpu') return { device, name: 'host memory', totalBytes: totalmem(), freeBytes: freemem() };
  const cuda = native().runtimeInfo().cuda;
  const first = cuda.devices[0];
  if (!cuda.available || !first) throw new Error(`trainer.device is cuda but no CUDA device is usable: ${cuda.reason ?? 'none found'}`);
  return { device, name: `GPU ${first.index} (${first.name})`, totalBytes: first.totalMemory, freeBytes: first.freeMemory };
}

export interface MemoryItem {
  name: string;
  /** On the device (host memory, for the offloaded optimiser state, is in hostBytes). */
  bytes: number;
  note: string;
  /** 'resident' for the whole run, or the phase that holds it. */
  phase: 'resident' | 'rollout' | 'update';
}

export interface MemoryPlan {
  device: DeviceMemory;
  precision: BackendPrecision;
  items: MemoryItem[];
  /** Peak of each phase: resident items + that phase's own. */
  rolloutPeakBytes: number;
  updatePeakBytes: number;
  peakBytes: number;
  /** The rollout phase without its KV cache (the KV cache takes what is left). */
  fixedBytes: number;
  availableBytes: number;
  /** KV cache bytes per token of one sequence. */
  kvBytesPerToken: number;
  /** Sequences the rollout may decode at once within the memory left (capped by max_num_seqs). */
  rolloutSequences: number;
  fits: boolean;
  /** Why it does not fit and what would fix it, or what was reduced. */
  messages: string[];
  optimizer: OptimizerLayout;
  /** Pinned host memory the offloaded optimiser state takes (0 when not offloaded). */
  hostBytes: number;
}

/** worker.actor.optim.strategy and worker.actor.offload.offload_optimizer, as planned. */
export interface OptimizerLayout {
  strategy: 'adamw' | 'adamw_bf16';
  offload: boolean;
}

/** Entries of one offload chunk and the slots in flight (native/backend/cuda/cuda_backend.cu): 2 x 3 arrays x 4 Mi fp32. */
const OFFLOAD_STAGING_BYTES = 2 * 3 * 2 ** 22 * 4;

/** Parameters of a Qwen2.5-VL configuration, counted the way the engine stores them. */
export function parameterCount(config: ModelConfig): number {
  const t = config.text;
  const v = config.vision;
  const headDim = t.hidden / t.heads;
  const kv = t.kvHeads * headDim;
  const layer = 2 * t.hidden + t.hidden * t.hidden + t.hidden + 2 * (t.hidden * kv + kv) + t.hidden * t.hidden + 3 * t.hidden * t.intermediate;
  const text = t.vocab * t.hidden * (t.tieEmbeddings ? 1 : 2) + t.layers * layer + t.hidden;
  const patchIn = v.inChannels * v.temporalPatch * v.patch * v.patch;
  const block = 2 * v.hidden + 4 * v.hidden * v.hidden + 4 * v.hidden + 3 * (v.hidden * v.intermediate) + 2 * v.intermediate + v.hidden;
  const merged = v.hidden * v.merge * v.merge;
  const merger = v.hidden + merged * merged + merged + merged * v.outHidden + v.outHidden;
  return text + patchIn * v.hidden + v.depth * block + merger;
}

export interface PlanInput {
  config: TrainConfig;
  model: ModelConfig;
  /** The device's memory; read from the runtime (CUDA) or the OS when absent. */
  device?: DeviceMemory;
  /** What the backend stores in; backendPrecision(trainer.device) when absent. */
  precision?: BackendPrecision;
  /** Tokens of the longest prompt the data holds (text and image tokens); data.max_prompt_length when absent. */
  promptTokens?: number;
  /** Image tokens (merged) per prompt at most; from data.max_pixels when not given. */
  imageTokens?: number;
  /** Encoded dataset bytes held in memory. */
  datasetBytes?: number;
  /**
   * CPU: the process's resident set now, with the policy weights and the
   * dataset loaded: what it holds beyond them (the JavaScript heap, the
   * addon, tokenizer, buffers) is counted as the runtime item.
   */
  processRssBytes?: number;
  /** Overrides the memory the plan may use (tests); else trainer.memory_limit_gb, else the device's. */
  availableBytes?: number;
  /** The optimiser's strategy and placement; the configuration's when absent. */
  optimizer?: OptimizerLayout;
  /** ZeRO-1 over this many data-parallel ranks: each keeps 1/W of the AdamW moments. Default 1. */
  zeroRanks?: number;
}

const GiB = 1024 ** 3;
const bytesOf = (p: Precision) => (p === 'bf16' ? 2 : 4);
/** Keys per KV cache block and the pool's growth (native/model/kv_cache.cpp). */
const KV_BLOCK = 16;
const KV_MIN_GROWTH_BLOCKS = 64;
/** Vocabulary columns of one logits tile (token_logprobs computes the [rows x vocab] logits a tile at a time). */
const VOCAB_TILE = 4096;
/** The part of the memory a plan may fill: the rest is the allocator's slack and fragmentation. */
const USABLE = 0.9;

export function planMemory(input: PlanInput): MemoryPlan {
  const { config, model } = input;
  const deviceKind = config.trainer.device;
  const device = input.device ?? deviceMemory(deviceKind);
  const precision = input.precision ?? backendPrecision(deviceKind);
  const P = parameterCount(model);
  const t = model.text;
  const v = model.vision;
  const wBytes = bytesOf(precision.weights);
  const aBytes = bytesOf(precision.activations);
  const klActive = !config.algorithm.disable_kl && config.algorithm.use_kl_loss && config.algorithm.kl_coef > 0;
  const n = config.worker.rollout.n;
  const promptTokens = Math.min(config.data.max_prompt_length, input.promptTokens ?? config.data.max_prompt_length);
  // A prompt's image tokens are part of its length: longer prompts are dropped when read.
  const imageTokens = Math.min(promptTokens, input.imageTokens ?? Math.ceil(config.data.max_pixels / (v.patch * v.merge) ** 2));
  const responseTokens = config.data.max_response_length;
  const sequenceTokens = promptTokens + responseTokens;
  const micro = config.worker.actor.micro_batch_size_per_device_for_update;
  const checkpointing = config.worker.actor.model.enable_gradient_checkpointing;
  const headDim = t.hidden / t.heads;
  const kvWidth = t.kvHeads * headDim;
  const items: MemoryItem[] = [];
  const add = (phase: MemoryItem['phase'], name: string, bytes: number, note: string) => items.push({ name, bytes: Math.max(0, Math.round(bytes)), note, phase });

  // ---- resident for the whole run
  const weightsBytes = P * wBytes;
  const optimizer = input.optimizer ?? { strategy: config.worker.actor.optim.strategy, offload: config.worker.actor.offload.offload_optimizer };
  // On the CPU the host memory is the device's: offloading moves nothing.
  const offloaded = optimizer.offload && device.device === 'cuda';
  let hostBytes = 0;
  const optimizerItem = (name: string, bytes: number, note: string) => {
    if (offloaded && bytes > 0) {
      hostBytes += bytes;
      add('resident', name, 0, `${note}; offloaded: ${fmtBytes(bytes)} in pinned host memory`);
    } else add('resident', name, bytes, note);
  };
  add('resident', 'weights', weightsBytes, `${fmtCount(P)} parameters in ${precision.weights}`);
  if (optimizer.strategy === 'adamw_bf16') {
    const state = precision.weights === 'bf16' ? 'bf16' : 'bf16 values in fp32 storage';
    add('resident', 'master weights', 0, 'none: adamw_bf16 updates the bf16 weights, Kahan-compensated');
    add('resident', 'gradients', P * 4, 'fp32, kept between steps');
    optimizerItem('AdamW moments', 2 * P * wBytes, `m and v, ${state} (adamw_bf16)`);
    optimizerItem('Kahan compensation', P * wBytes, `${state}, what each weight update lost to rounding`);
  } else {
    // The master copy stays on the device even with offload: each step writes the weights from it.
    add('resident', 'master weights', precision.weights === 'fp32' ? 0 : P * 4, precision.weights === 'fp32' ? 'none: the fp32 weights are the master copy' : 'fp32 copy the optimizer updates (adamw), on the device');
    add('resident', 'gradients', P * 4, 'fp32, kept between steps');
    const zeroRanks = Math.max(1, input.zeroRanks ?? 1);
    optimizerItem('AdamW moments', 2 * Math.ceil(P / zeroRanks) * 4, zeroRanks > 1 ? `m and v, fp32, this rank's 1/${zeroRanks} (ZeRO-1)` : 'm and v, fp32 (adamw)');
  }
  if (offloaded) add('resident', 'offload staging', OFFLOAD_STAGING_BYTES, 'two chunks of the optimizer state in flight (worker.actor.offload.offload_optimizer)');
  add('resident', 'reference model', klActive ? weightsBytes : 0, klActive ? `frozen copy for the KL term (kl_coef ${config.algorithm.kl_coef})` : 'not loaded: no KL term');
  if (input.datasetBytes !== undefined) add('resident', 'dataset', input.datasetBytes, 'rows with encoded images');
  let runtimeBytes = 0;
  let runtimeNote = 'not measured';
  if (device.device === 'cuda') {
    // Planned once the policy is on the device: what else is used there is the
    // CUDA context, cuBLAS and whatever other processes hold.
    runtimeBytes = device.totalBytes - device.freeBytes - weightsBytes;
    runtimeNote = 'CUDA context, libraries and other processes (used on the device beside the weights)';
  } else if (input.processRssBytes !== undefined) {
    runtimeBytes = input.processRssBytes - weightsBytes - (input.datasetBytes ?? 0);
    runtimeNote = 'this process beside the weights and data: JavaScript heap, addon, tokenizer (measured)';
  }
  add('resident', 'runtime', runtimeBytes, runtimeNote);

  // ---- update: activations one micro-batch keeps for its backward
  // (training.cpp's block forward keeps, per token: block input, both normed
  // inputs, the attention output and the mid-block residual (4 x D), q and
  // the attention result (2 x heads*hd), k and v, and the MLP's gate, up and
  // product (3 x F); with checkpointing only the block input, and one block's
  // set while it is recomputed).
  const tokens = micro * sequenceTokens;
  const textPerLayer = 4 * t.hidden + 2 * t.heads * headDim + 2 * kvWidth + 3 * t.intermediate;
  const textKept = tokens * (checkpointing ? t.layers * t.hidden + textPerLayer : t.layers * textPerLayer);
  const patches = micro * imageTokens * v.merge * v.merge;
  const visionPerBlock = 8 * v.hidden + 3 * v.intermediate;
  const visionKept = patches * (checkpointing ? v.depth * v.hidden + visionPerBlock : v.depth * visionPerBlock);
  // Embeddings, patch rows, merger, final norm and the loss's hidden states.
  const around = tokens * 4 * t.hidden + patches * (v.inChannels * v.temporalPatch * v.patch * v.patch + 6 * v.hidden);
  const activations = (textKept + visionKept + around) * aBytes;
  const activationsOther = (() => {
    const kept = checkpointing ? tokens * t.layers * textPerLayer + patches * v.depth * visionPerBlock : tokens * (t.layers * t.hidden + textPerLayer) + patches * (v.depth * v.hidden + visionPerBlock);
    return (kept + around) * aBytes;
  })();
  add('update', 'activations', activations, `micro-batch of ${micro} x ${sequenceTokens} tokens${patches > 0 ? ` and ${patches} patches` : ''}, ${checkpointing ? 'layers recomputed in the backward' : 'every layer kept'}`);
  // One block's gradient temporaries at a time, and the logits tiles of the loss.
  const backward = (Math.max(tokens * (3 * t.intermediate + 3 * t.hidden + 2 * t.heads * headDim + 2 * kvWidth), patches * (3 * v.intermediate + 6 * v.hidden)) + 2 * tokens * Math.min(t.vocab, VOCAB_TILE)) * aBytes;
  add('update', 'backward workspace', backward, 'one block\'s gradients in flight, logits tiles');

  // ---- rollout: prefill/decode workspace and the KV cache
  const wanted = Math.min(config.worker.rollout.max_num_seqs, config.data.rollout_batch_size * n);
  const prompts = Math.max(1, Math.ceil(wanted / n));
  const prefillTokens = prompts * promptTokens;
  // Each image is encoded alone (Qwen25VL::image_features); the features of every prompt's images are kept for the prefill.
  const imagePatches = imageTokens * v.merge * v.merge;
  const decodeWorkspace =
    (Math.max(prefillTokens * (5 * t.hidden + 2 * kvWidth + 3 * t.intermediate), imagePatches * (8 * v.hidden + 3 * v.intermediate)) + prompts * imageTokens * v.outHidden + wanted * t.vocab) * aBytes;
  add('rollout', 'decode workspace', decodeWorkspace, `prefill of ${prompts} prompts (one layer at a time; one image at a time through the vision tower), logits of ${wanted} sequences`);

  const kvBytesPerToken = t.layers * 2 * kvWidth * aBytes;
  const resident = items.filter((i) => i.phase === 'resident').reduce((a, b) => a + b.bytes, 0);
  const fixedBytes = resident + decodeWorkspace;
  const availableBytes = input.availableBytes ?? (config.trainer.memory_limit_gb !== null ? config.trainer.memory_limit_gb * GiB : device.totalBytes);
  const usable = availableBytes * USABLE;
  // Samples of a prompt share its prefill, so a sequence costs its response plus its share of the prompt.
  const blocksPerSequence = Math.ceil(responseTokens / KV_BLOCK) + Math.ceil(promptTokens / KV_BLOCK) / n;
  // The pool grows by doubling (at least 64 blocks), the old pool alive while it is copied.
  const kvPoolBytes = (sequences: number) => {
    const needed = Math.ceil(sequences * blocksPerSequence);
    let capacity = 0;
    let transient = 0;
    while (capacity < needed) {
      const grown = capacity + Math.max(KV_MIN_GROWTH_BLOCKS, capacity);
      transient = capacity + grown;
      capacity = grown;
    }
    return Math.max(capacity, transient) * KV_BLOCK * kvBytesPerToken;
  };
  let rolloutSequences = wanted;
  while (rolloutSequences > 0 && fixedBytes + kvPoolBytes(rolloutSequences) > usable) rolloutSequences = Math.floor(rolloutSequences * 0.9);
  const kvBytes = kvPoolBytes(Math.max(rolloutSequences, 0));
  add('rollout', 'KV cache', rolloutSequences > 0 ? kvBytes : 0, `${rolloutSequences} sequences x ${sequenceTokens} tokens at most, prefill shared by the ${n} samples of a prompt`);

  const phaseSum = (phase: 'rollout' | 'update') => resident + items.filter((i) => i.phase === phase).reduce((a, b) => a + b.bytes, 0);
  const rolloutPeakBytes = phaseSum('rollout');
  const updatePeakBytes = phaseSum('update');
  const peakBytes = Math.max(rolloutPeakBytes, updatePeakBytes);

  const messages: string[] = [];
  let fits = true;
  const largest = (phase: 'rollout' | 'update') =>
    items
      .filter((i) => i.bytes > 0 && (i.phase === 'resident' || i.phase === phase))
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, 3)
      .map((i) => `${i.name} ${fmtBytes(i.bytes)}`)
      .join(', ');
  const where = `${device.name}: ${fmtBytes(availableBytes)}, ${Math.round(USABLE * 100)}% usable`;
  if (updatePeakBytes > usable) {
    fits = false;
    const fixes: string[] = [];
    if (!checkpointing) fixes.push(`set worker.actor.model.enable_gradient_checkpointing=true (activations ${fmtBytes(activations)} -> ${fmtBytes(activationsOther)})`);
    if (micro > 1) fixes.push(`lower worker.actor.micro_batch_size_per_device_for_update (${micro}; 1 keeps ${fmtBytes(activations / micro)} of activations)`);
    if (klActive) fixes.push(`set algorithm.kl_coef=0 or algorithm.disable_kl=true (no reference model: -${fmtBytes(weightsBytes)})`);
    fixes.push('lower data.max_prompt_length / data.max_response_length');
    if (resident > usable) {
      const onDevice = (name: string) => items.find((i) => i.name === name)?.bytes ?? 0;
      const state = onDevice('master weights') + onDevice('AdamW moments') + onDevice('Kahan compensation');
      if (device.device === 'cuda' && !offloaded && state > 0) fixes.push(`set worker.actor.offload.offload_optimizer=true (the optimizer state, ${fmtBytes(state)}, to pinned host memory)`);
      if (optimizer.strategy === 'adamw' && precision.weights === 'bf16') fixes.push('set worker.actor.optim.strategy=adamw_bf16 (bf16 moments and compensation, no fp32 master copy)');
      fixes.push(`use a device with more memory: the resident state alone (weights, gradients, optimizer state${klActive ? ', reference model' : ''}) is ${fmtBytes(resident)}`);
    }
    messages.push(`the update needs ${fmtBytes(updatePeakBytes)} but ${where}; largest: ${largest('update')}. To fit: ${fixes.join('; or ')}`);
  }
  if (rolloutSequences < 1) {
    fits = false;
    rolloutSequences = 0;
    messages.push(
      `the rollout needs ${fmtBytes(fixedBytes + kvPoolBytes(1))} for a single sequence but ${where}; largest: ${largest('rollout')}. ` +
        `To fit: lower worker.rollout.max_num_seqs or data.rollout_batch_size (fewer prompts prefilled at once), data.max_prompt_length / data.max_response_length${klActive ? ', set algorithm.kl_coef=0 (no reference model)' : ''}, or use a device with more memory`,
    );
  } else if (rolloutSequences < wanted) {
    messages.push(`the KV cache fits ${rolloutSequences} sequences at once at the longest lengths (asked: ${wanted}); the rollout decodes ${rolloutSequences} at a time (worker.rollout.max_num_seqs)`);
  }
  return { device, precision, items, rolloutPeakBytes, updatePeakBytes, peakBytes, fixedBytes, availableBytes, kvBytesPerToken, rolloutSequences, fits, messages, optimizer, hostBytes };
}

export function formatMemoryPlan(plan: MemoryPlan): string {
  const line = (name: string, bytes: number, note: string) => `  ${name.padEnd(20)} ${fmtBytes(bytes).padStart(10)}  ${note}`;
  const section = (phase: MemoryItem['phase']) => plan.items.filter((i) => i.phase === phase).map((i) => line(i.name, i.bytes, i.note));
  const p = plan.precision;
  const o = plan.optimizer;
  return [
    `memory plan (${plan.device.name}, weights ${p.weights}, activations ${p.activations}, gradients fp32, optimizer ${o.strategy}${o.offload ? ' offloaded' : ''}):`,
    ...section('resident'),
    ' rollout:',
    ...section('rollout'),
    line('rollout peak', plan.rolloutPeakBytes, ''),
    ' update:',
    ...section('update'),
    line('update peak', plan.updatePeakBytes, ''),
    line('peak', plan.peakBytes, `of ${fmtBytes(plan.availableBytes)} available`),
    ...(plan.hostBytes > 0 ? [line('pinned host', plan.hostBytes, 'the offloaded optimizer state')] : []),
    ...plan.messages.map((m) => `  ${plan.fits ? 'note' : 'error'}: ${m}`),
  ].join('\n');
}

export function fmtBytes(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function fmtCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  return `${(n / 1e3).toFixed(1)}K`;
}
