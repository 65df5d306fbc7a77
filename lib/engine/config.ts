/**
 * config.json of a Qwen2.5-VL checkpoint, in either layout: the original hub
 * one (text fields at the top, `vision_config` nested) or the one re-saved by
 * transformers >= 4.52 (`text_config`, `rope_parameters`). Validated with
 * messages that name the file and the field.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

const positiveInt = z.number().int().positive();

const textSchema = z.object({
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt,
  vocab_size: positiveInt,
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().default(1e6),
  tie_word_embeddings: z.boolean().default(false),
});

const visionSchema = z.object({
  depth: positiveInt,
  hidden_size: positiveInt,
  num_heads: positiveInt,
  intermediate_size: positiveInt,
  out_hidden_size: positiveInt,
  patch_size: positiveInt.default(14),
  temporal_patch_size: positiveInt.default(2),
  spatial_merge_size: positiveInt.default(2),
  in_chans: positiveInt.optional(),
  in_channels: positiveInt.optional(),
  window_size: positiveInt.default(112),
  // Qwen2.5-VL's vision RMSNorm eps is fixed at 1e-6 (transformers hard-codes it); a config may name it.
  rms_norm_eps: z.number().positive().default(1e-6),
  fullatt_block_indexes: z.array(z.number().int().nonnegative()).default([]),
});

/** What the engine needs, with the library's names. */
export interface ModelConfig {
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
  videoTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
  eosTokenIds: number[];
  bosTokenId?: number;
}

export class ModelConfigError extends Error {
  override name = 'ModelConfigError';
}

function parseWith<T>(schema: z.ZodType<T>, value: unknown, file: string, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [where, ...(issue?.path ?? []).map(String)].filter(Boolean).join('.');
  throw new ModelConfigError(`${file}: ${path || 'config'}: ${issue?.message ?? 'invalid'}`);
}

export function parseModelConfig(raw: unknown, file = 'config.json'): ModelConfig {
  if (typeof raw !== 'object' || raw === null) throw new ModelConfigError(`${file}: not a JSON object`);
  const json = raw as Record<string, unknown>;
  const architectures = json['architectures'];
  const modelType = json['model_type'];
  const known =
    modelType === 'qwen2_5_vl' ||
    (Array.isArray(architectures) && architectures.includes('Qwen2_5_VLForConditionalGeneration'));
  if (!known)
    throw new ModelConfigError(
      `${file}: unsupported architecture ${JSON.stringify(architectures ?? modelType)} (spatialthinker runs Qwen2_5_VLForConditionalGeneration)`,
    );
  const textSource = (json['text_config'] as Record<string, unknown> | undefined) ?? json;
  const text = parseWith(textSchema, { ...json, ...textSource }, file, json['text_config'] ? 'text_config' : '');
  const vision = parseWith(visionSchema, json['vision_config'], file, 'vision_config');
  const rope =
    (textSource['rope_scaling'] as Record<string, unknown> | undefined) ??
    (json['rope_scaling'] as Record<string, unknown> | undefined) ??
    (textSource['rope_parameters'] as Record<string, unknown> | undefined) ??
    (json['rope_parameters'] as Record<string, unknown> | undefined);
  const section = rope?.['mrope_section'];
  const headDim = text.hidden_size / text.num_attention_heads;
  if (!Number.isInteger(headDim)) throw new ModelConfigError(`${file}: hidden_size is not a multiple of num_attention_heads`);
  if (!Array.isArray(section) || section.length !== 3 || section.some((v) => !Number.isInteger(v)))
    throw new ModelConfigError(`${file}: rope_scaling.mrope_section must be three integers`);
  if ((section as number[]).reduce((a, b) => a + b, 0) !== headDim / 2)
    throw new ModelConfigError(`${file}: rope_scaling.mrope_section must add up to head_dim / 2 = ${headDim / 2}`);
  if (text.num_attention_heads % text.num_key_value_heads !== 0)
    throw new ModelConfigError(`${file}: num_attention_heads must be a multiple of num_key_value_heads`);
  if (vision.hidden_size % vision.num_heads !== 0)
    throw new ModelConfigError(
      `${file}: vision_config.num_heads (${vision.num_heads}) does not divide vision_config.hidden_size (${vision.hidden_size})`,
    );
  // The vision tower's 2-D rotary embedding splits each head into quarters.
  if ((vision.hidden_size / vision.num_heads) % 4 !== 0)
    throw new ModelConfigError(
      `${file}: vision head size ${vision.hidden_size / vision.num_heads} (vision_config.hidden_size / num_heads) must be a multiple of 4`,
    );
  const mergedPatch = vision.spatial_merge_size * vision.patch_size;
  if (vision.window_size < mergedPatch)
    throw new ModelConfigError(
      `${file}: vision_config.window_size (${vision.window_size}) is smaller than one merged patch (spatial_merge_size x patch_size = ${mergedPatch})`,
    );
  if (vision.out_hidden_size !== text.hidden_size)
    throw new ModelConfigError(`${file}: vision_config.out_hidden_size must equal hidden_size (${text.hidden_size})`);
  const ropeTheta = typeof rope?.['rope_theta'] === 'number' ? (rope['rope_theta'] as number) : text.rope_theta;
  const tokenId = (name: string): number => {
    const value = json[name] ?? textSource[name];
    if (typeof value !== 'number' || !Number.isInteger(value)) throw new ModelConfigError(`${file}: ${name} is missing`);
    if (value < 0 || value >= text.vocab_size)
      throw new ModelConfigError(`${file}: ${name} (${value}) is outside the vocabulary (vocab_size ${text.vocab_size})`);
    return value;
  };
  const eos = json['eos_token_id'] ?? textSource['eos_token_id'];
  const bos = json['bos_token_id'] ?? textSource['bos_token_id'];
  return {
    text: {
      hidden: text.hidden_size,
      intermediate: text.intermediate_size,
      layers: text.num_hidden_layers,
      heads: text.num_attention_heads,
      kvHeads: text.num_key_value_heads,
      vocab: text.vocab_size,
      rmsEps: text.rms_norm_eps,
      ropeTheta,
      mropeSection: Int32Array.from(section as number[]),
      tieEmbeddings: text.tie_word_embeddings,
    },
    vision: {
      depth: vision.depth,
      hidden: vision.hidden_size,
      heads: vision.num_heads,
      intermediate: vision.intermediate_size,
      outHidden: vision.out_hidden_size,
      patch: vision.patch_size,
      temporalPatch: vision.temporal_patch_size,
      merge: vision.spatial_merge_size,
      inChannels: vision.in_channels ?? vision.in_chans ?? 3,
      windowSize: vision.window_size,
      rmsEps: vision.rms_norm_eps,
      fullAttentionBlocks: Int32Array.from(vision.fullatt_block_indexes),
    },
    imageTokenId: tokenId('image_token_id'),
    videoTokenId: tokenId('video_token_id'),
    visionStartTokenId: tokenId('vision_start_token_id'),
    visionEndTokenId: tokenId('vision_end_token_id'),
    eosTokenIds: Array.isArray(eos) ? (eos as number[]) : typeof eos === 'number' ? [eos] : [],
    ...(typeof bos === 'number' ? { bosTokenId: bos } : {}),
  };
}

export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ModelConfigError(`cannot read ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ModelConfigError(`${file}: not valid JSON (${oneLine((error as Error).message)})`);
  }
  return parseModelConfig(raw, file);
}

// JSON.parse quotes the text around the error, newlines included.
function oneLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, ' ');
}
