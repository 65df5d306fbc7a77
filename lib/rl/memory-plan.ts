/**
 * The memory a run needs, item by item, printed before step 1 so a run that
 * cannot fit is refused at once instead of failing hours in. Sizes are upper
 * bounds from the configuration (longest prompt and response), except the KV
 * cache, which is sized to what is left: the rollout then decodes fewer
 * sequences at once rather than failing.
 */
import { totalmem } from 'node:os';
import type { ModelConfig } from '../engine/config.js';
import type { TrainConfig } from './config.js';

export interface MemoryItem {
  name: string;
  bytes: number;
  note: string;
}

export interface MemoryPlan {
  items: MemoryItem[];
  /** Everything but the KV cache. */
  fixedBytes: number;
  availableBytes: number;
  /** KV cache bytes per token of one sequence. */
  kvBytesPerToken: number;
  /** Sequences the rollout may decode at once within the memory left (capped by max_num_seqs). */
  rolloutSequences: number;
  fits: boolean;
  /** Why it does not fit, or what was reduced. */
  messages: string[];
}

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
  /** Image tokens (merged) per prompt at most; from max_pixels when not given. */
  imageTokens?: number;
  /** Encoded dataset bytes held in memory. */
  datasetBytes?: number;
  availableBytes?: number;
}

const GiB = 1024 ** 3;

export function planMemory(input: PlanInput): MemoryPlan {
  const { config, model } = input;
  const cuda = config.trainer.device === 'cuda';
  const P = parameterCount(model);
  const t = model.text;
  const v = model.vision;
  const computeBytes = cuda ? 2 : 4; // bf16 on the GPU, fp32 on the CPU
  const klActive = !config.algorithm.disable_kl && config.algorithm.use_kl_loss && config.algorithm.kl_coef > 0;
  const promptTokens = config.data.max_prompt_length;
  const responseTokens = config.data.max_response_length;
  const sequenceTokens = promptTokens + responseTokens;
  const patchesPerMerged = v.merge * v.merge;
  const imageTokens = input.imageTokens ?? Math.ceil(config.data.max_pixels / (v.patch * v.merge) ** 2);
  const micro = config.worker.actor.micro_batch_size_per_device_for_update;
  const checkpointing = config.worker.actor.model.enable_gradient_checkpointing;

  const items: MemoryItem[] = [];
  items.push({ name: 'weights', bytes: P * computeBytes + (cuda ? P * 4 : 0), note: `${fmtCount(P)} parameters${cuda ? ' in bf16 + fp32 master copy' : ' in fp32'}` });
  items.push({ name: 'gradients', bytes: P * 4, note: 'fp32' });
  items.push({ name: 'optimizer state', bytes: 2 * P * 4, note: 'AdamW m and v, fp32' });
  items.push({ name: 'reference model', bytes: klActive ? P * computeBytes : 0, note: klActive ? `frozen copy for the KL term (kl_coef ${config.algorithm.kl_coef})` : 'not loaded: no KL term' });

  // Activations kept for the backward pass of one micro-batch: per token and layer
  // the block input, the normed inputs, q/k/v, attention output, the MLP's gate/up/product.
  const headDim = t.hidden / t.heads;
  const perLayerToken = 6 * t.hidden + 2 * t.kvHeads * headDim + 3 * t.intermediate;
  const tokens = micro * sequenceTokens;
  const layersKept = checkpointing ? 1 : t.layers;
  const textActivations = tokens * (layersKept * perLayerToken + (checkpointing ? t.layers * t.hidden : 0)) * 4;
  const attentionScores = micro * t.heads * sequenceTokens * 4 * 2 * 64; // one query tile of scores per head, fwd and bwd
  const visionPatches = micro * imageTokens * patchesPerMerged;
  const visionActivations = visionPatches * v.depth * (8 * v.hidden + 3 * v.intermediate) * 4;
  const logitTiles = tokens * Math.min(t.vocab, 4096) * 4 * 2;
  items.push({
    name: 'activations',
    bytes: textActivations + attentionScores + visionActivations + logitTiles,
    note: `micro-batch of ${micro} x ${sequenceTokens} tokens${checkpointing ? ', layers recomputed in backward' : ''}`,
  });
  if (input.datasetBytes !== undefined) items.push({ name: 'dataset', bytes: input.datasetBytes, note: 'rows with encoded images' });

  const fixedBytes = items.reduce((a, b) => a + b.bytes, 0);
  const availableBytes = input.availableBytes ?? (config.trainer.memory_limit_gb !== null ? config.trainer.memory_limit_gb * GiB : totalmem());
  const kvBytesPerToken = t.layers * 2 * t.kvHeads * headDim * computeBytes;
  const wanted = Math.min(config.worker.rollout.max_num_seqs, config.data.rollout_batch_size * config.worker.rollout.n);
  const messages: string[] = [];
  // Samples of a prompt share its prefill, so a sequence costs its response plus its share of the prompt.
  const perSequence = kvBytesPerToken * (responseTokens + promptTokens / config.worker.rollout.n);
  // Leave 10% for the allocator, the runtime and the JavaScript heap.
  const left = availableBytes * 0.9 - fixedBytes;
  let rolloutSequences = Math.min(wanted, Math.floor(left / perSequence));
  let fits = true;
  if (left <= 0 || rolloutSequences < 1) {
    fits = false;
    rolloutSequences = 0;
    messages.push(
      `the run needs ${fmtBytes(fixedBytes)} before any KV cache but ${fmtBytes(availableBytes)} is available (90% usable): ` +
        `lower worker.actor.micro_batch_size_per_device_for_update, data.max_prompt_length/max_response_length, ` +
        `set algorithm.kl_coef=0 (no reference model), or enable worker.actor.model.enable_gradient_checkpointing`,
    );
  } else if (rolloutSequences < wanted) {
    messages.push(`the KV cache fits ${rolloutSequences} sequences at once at the longest lengths (asked: ${wanted}); the rollout decodes ${rolloutSequences} at a time`);
  }
  items.push({ name: 'KV cache', bytes: Math.max(0, rolloutSequences) * perSequence, note: `${rolloutSequences} sequences x ${sequenceTokens} tokens at most, shared prefill` });
  return { items, fixedBytes, availableBytes, kvBytesPerToken, rolloutSequences, fits, messages };
}

export function formatMemoryPlan(plan: MemoryPlan): string {
  const total = plan.items.reduce((a, b) => a + b.bytes, 0);
  const lines = plan.items.map((i) => `  ${i.name.padEnd(16)} ${fmtBytes(i.bytes).padStart(10)}  ${i.note}`);
  lines.push(`  ${'total'.padEnd(16)} ${fmtBytes(total).padStart(10)}  of ${fmtBytes(plan.availableBytes)} available`);
  return ['memory plan:', ...lines, ...plan.messages.map((m) => `  ${plan.fits ? 'note' : 'error'}: ${m}`)].join('\n');
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
