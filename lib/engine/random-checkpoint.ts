/**
 * Writes a Qwen2.5-VL checkpoint with random weights as an ordinary Hugging
 * Face model directory (config.json, preprocessor_config.json, safetensors,
 * optionally sharded with model.safetensors.index.json): the tiny models of
 * the tests and the demo, and the real-size configs of the benchmarks, made
 * locally since nothing can be downloaded.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeSafetensors, type EncodableTensor } from '../io/safetensors.js';
import type { SpecialTokenIds } from '../tokenizer/tiny.js';


export interface RandomCheckpointOptions {
  text?: Partial<{
    hidden: number;
    intermediate: number;
    layers: number;
    heads: number;
    kvHeads: number;
    vocab: number;
    ropeTheta: number;
    mropeSection: [number, number, number];
  }>;
  vision?: Partial<{
    depth: number;
    hidden: number;
    heads: number;
    intermediate: number;
    windowSize: number;
    fullAttentionBlocks: number[];
  }>;
  tieEmbeddings?: boolean;
  dtype?: 'F32' | 'BF16';
  /** Split the weights into this many files with an index (default 1: model.safetensors). */
  shards?: number;
  /** 'hub' (visual.*, model.*) or 'transformers5' (model.visual.*, model.language_model.*). */
  naming?: 'hub' | 'transformers5';
  seed?: number;
  /** Standard deviation of the weights (norm weights are 1 + noise). */
  std?: number;
  /** Special token ids (default: the top 8 ids of the vocabulary, see randomCheckpointTokens). */
  tokenIds?: Partial<SpecialTokenIds>;
}

/** The ids of Qwen2.5-VL's tokenizer, for a random checkpoint paired with a real tokenizer. */
export const QWEN_TOKEN_IDS: SpecialTokenIds = {
  endoftext: 151643,
  imStart: 151644,
  imEnd: 151645,
  visionStart: 151652,
  visionEnd: 151653,
  visionPad: 151654,
  imagePad: 151655,
  videoPad: 151656,
};

/** The small default: text 64 wide, 2 layers; vision 32 wide, 4 blocks (like the golden fixtures). */
export const TINY = {
  text: { hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 1024, ropeTheta: 100, mropeSection: [2, 3, 3] as [number, number, number] },
  vision: { depth: 4, hidden: 32, heads: 2, intermediate: 64, windowSize: 112, fullAttentionBlocks: [1, 3] },
};

function gaussian(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const uniform = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

export async function writeRandomCheckpoint(dir: string, options: RandomCheckpointOptions = {}): Promise<void> {
  const text = { ...TINY.text, ...options.text };
  const vision = { ...TINY.vision, ...options.vision };
  const dtype = options.dtype ?? 'F32';
  const std = options.std ?? 0.02;
  const random = gaussian(options.seed ?? 1);
  const ids = { ...randomCheckpointTokens(text.vocab), ...options.tokenIds };
  const hd = text.hidden / text.heads;
  const merged = vision.hidden * 4;
  const shapes: [string, number[], 'weight' | 'norm' | 'bias'][] = [
    ['visual.patch_embed.proj.weight', [vision.hidden, 3, 2, 14, 14], 'weight'],
  ];
  for (let b = 0; b < vision.depth; b++) {
    const p = `visual.blocks.${b}.`;
    shapes.push(
      [`${p}norm1.weight`, [vision.hidden], 'norm'],
      [`${p}norm2.weight`, [vision.hidden], 'norm'],
      [`${p}attn.qkv.weight`, [3 * vision.hidden, vision.hidden], 'weight'],
      [`${p}attn.qkv.bias`, [3 * vision.hidden], 'bias'],
      [`${p}attn.proj.weight`, [vision.hidden, vision.hidden], 'weight'],
      [`${p}attn.proj.bias`, [vision.hidden], 'bias'],
      [`${p}mlp.gate_proj.weight`, [vision.intermediate, vision.hidden], 'weight'],
      [`${p}mlp.gate_proj.bias`, [vision.intermediate], 'bias'],
      [`${p}mlp.up_proj.weight`, [vision.intermediate, vision.hidden], 'weight'],
      [`${p}mlp.up_proj.bias`, [vision.intermediate], 'bias'],
      [`${p}mlp.down_proj.weight`, [vision.hidden, vision.intermediate], 'weight'],
      [`${p}mlp.down_proj.bias`, [vision.hidden], 'bias'],
    );
  }
  shapes.push(
    ['visual.merger.ln_q.weight', [vision.hidden], 'norm'],
    ['visual.merger.mlp.0.weight', [merged, merged], 'weight'],
    ['visual.merger.mlp.0.bias', [merged], 'bias'],
    ['visual.merger.mlp.2.weight', [text.hidden, merged], 'weight'],
    ['visual.merger.mlp.2.bias', [text.hidden], 'bias'],
    ['model.embed_tokens.weight', [text.vocab, text.hidden], 'weight'],
  );
  for (let l = 0; l < text.layers; l++) {
    const p = `model.layers.${l}.`;
    shapes.push(
      [`${p}input_layernorm.weight`, [text.hidden], 'norm'],
      [`${p}post_attention_layernorm.weight`, [text.hidden], 'norm'],
      [`${p}self_attn.q_proj.weight`, [text.heads * hd, text.hidden], 'weight'],
      [`${p}self_attn.q_proj.bias`, [text.heads * hd], 'bias'],
      [`${p}self_attn.k_proj.weight`, [text.kvHeads * hd, text.hidden], 'weight'],
      [`${p}self_attn.k_proj.bias`, [text.kvHeads * hd], 'bias'],
      [`${p}self_attn.v_proj.weight`, [text.kvHeads * hd, text.hidden], 'weight'],
      [`${p}self_attn.v_proj.bias`, [text.kvHeads * hd], 'bias'],
      [`${p}self_attn.o_proj.weight`, [text.hidden, text.heads * hd], 'weight'],
      [`${p}mlp.gate_proj.weight`, [text.intermediate, text.hidden], 'weight'],
      [`${p}mlp.up_proj.weight`, [text.intermediate, text.hidden], 'weight'],
      [`${p}mlp.down_proj.weight`, [text.hidden, text.intermediate], 'weight'],
    );
  }
  shapes.push(['model.norm.weight', [text.hidden], 'norm']);
  if (!options.tieEmbeddings) shapes.push(['lm_head.weight', [text.vocab, text.hidden], 'weight']);

  const rename = (name: string) =>
    options.naming !== 'transformers5'
      ? name
      : name.startsWith('visual.')
        ? `model.${name}`
        : name.startsWith('model.')
          ? `model.language_model.${name.slice(6)}`
          : name;
  const shardCount = Math.max(1, options.shards ?? 1);
  const shards: Record<string, EncodableTensor>[] = Array.from({ length: shardCount }, () => ({}));
  const weightMap: Record<string, string> = {};
  const shardName = (i: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shardCount).padStart(5, '0')}.safetensors`;
  shapes.forEach(([name, shape, kind], i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let k = 0; k < n; k++) data[k] = kind === 'norm' ? 1 + 0.1 * random() : std * random();
    const shard = Math.floor((i * shardCount) / shapes.length);
    (shards[shard] as Record<string, EncodableTensor>)[rename(name)] = { dtype, shape, data } as EncodableTensor;
    weightMap[rename(name)] = shardName(shard);
  });

  await mkdir(dir, { recursive: true });
  if (shardCount === 1) {
    await writeFile(join(dir, 'model.safetensors'), encodeSafetensors(shards[0] as Record<string, EncodableTensor>, { format: 'pt' }));
  } else {
    for (let i = 0; i < shardCount; i++)
      await writeFile(join(dir, shardName(i)), encodeSafetensors(shards[i] as Record<string, EncodableTensor>, { format: 'pt' }));
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
  }
  const config = {
    architectures: ['Qwen2_5_VLForConditionalGeneration'],
    model_type: 'qwen2_5_vl',
    hidden_size: text.hidden,
    intermediate_size: text.intermediate,
    num_hidden_layers: text.layers,
    num_attention_heads: text.heads,
    num_key_value_heads: text.kvHeads,
    vocab_size: text.vocab,
    rms_norm_eps: 1e-6,
    rope_theta: text.ropeTheta,
    rope_scaling: { type: 'mrope', mrope_section: text.mropeSection },
    tie_word_embeddings: options.tieEmbeddings ?? false,
    hidden_act: 'silu',
    max_position_embeddings: 32768,
    bos_token_id: ids.endoftext,
    eos_token_id: ids.imEnd,
    vision_start_token_id: ids.visionStart,
    vision_end_token_id: ids.visionEnd,
    vision_token_id: ids.visionPad,
    image_token_id: ids.imagePad,
    video_token_id: ids.videoPad,
    torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float32',
    vision_config: {
      depth: vision.depth,
      hidden_size: vision.hidden,
      intermediate_size: vision.intermediate,
      num_heads: vision.heads,
      in_chans: 3,
      out_hidden_size: text.hidden,
      patch_size: 14,
      spatial_merge_size: 2,
      spatial_patch_size: 14,
      temporal_patch_size: 2,
      window_size: vision.windowSize,
      fullatt_block_indexes: vision.fullAttentionBlocks,
      hidden_act: 'silu',
      tokens_per_second: 2,
    },
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writePreprocessorConfig(dir);
}

/** Special token ids of a random checkpoint with this vocabulary size: its top 8 ids. */
export function randomCheckpointTokens(vocab: number): SpecialTokenIds {
  const s = vocab - 8;
  return {
    endoftext: s,
    imStart: s + 1,
    imEnd: s + 2,
    visionStart: s + 3,
    visionEnd: s + 4,
    visionPad: s + 5,
    imagePad: s + 6,
    videoPad: s + 7,
  };
}

/** Qwen2.5-VL's preprocessor_config.json (the hub checkpoints' image processor settings). */
export async function writePreprocessorConfig(dir: string): Promise<void> {
  await writeFile(
    join(dir, 'preprocessor_config.json'),
    JSON.stringify(
      {
        min_pixels: 3136,
        max_pixels: 12845056,
        patch_size: 14,
        temporal_patch_size: 2,
        merge_size: 2,
        image_mean: [0.48145466, 0.4578275, 0.40821073],
        image_std: [0.26862954, 0.26130258, 0.27577711],
        image_processor_type: 'Qwen2VLImageProcessor',
      },
      null,
      2,
    ),
  );
}
