/**
 * The trainer's configuration: EasyR1's sections and keys (data, algorithm,
 * worker.actor, worker.rollout, worker.reward, trainer), read from YAML,
 * overridden by dotted `key=value` arguments, validated by zod with messages
 * that name the key. Defaults are the SpatialThinker recipe (method.md §3.1).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { didYouMean } from '../util/suggest.js';
import { configNotes, normaliseLayer, normaliseMerged, REMOTE_LOGGERS } from './config-compat.js';

const int = () => z.number().int();
const positiveInt = () => z.number().int().positive();
/** 16384 x 16384: beyond this an image size is a typo (min_pixels 1e12), not a setting. */
const MAX_IMAGE_PIXELS = 2 ** 28;
const probability = () => z.number().min(0).max(1);
/** Keys of EasyR1 accepted without effect here (config-compat.ts NOT_APPLICABLE says why); absent unless given. */
const accepted = <T extends z.ZodType>(schema: T) => schema.optional();
const fsdpSchema = z
  .object({
    enable_full_shard: z.boolean(),
    enable_cpu_offload: z.boolean(),
    enable_rank0_init: z.boolean(),
    use_orig_params: z.boolean(),
    torch_dtype: z.string().nullable(),
    fsdp_size: int(),
    mp_param_dtype: z.string(),
    mp_reduce_dtype: z.string(),
    mp_buffer_dtype: z.string(),
  })
  .partial()
  .strict();
const offloadSchema = z.object({ offload_params: z.boolean(), offload_optimizer: z.boolean() }).partial().strict();

const dataSchema = z
  .object({
    /** A parquet/JSONL file or a directory of them (STVQA schema). */
    train_files: z.string().min(1),
    val_files: z.string().min(1).nullable().default(null),
    prompt_key: z.string().default('problem'),
    /** The ground truth the reward compares with. */
    answer_key: z.string().default('answer_option_text'),
    image_key: z.string().default('images'),
    /** Longer prompts are dropped when they are read (`filter_overlong_prompts`). */
    max_prompt_length: positiveInt().default(6144),
    max_response_length: positiveInt().default(2048),
    /** Prompts per training step. */
    rollout_batch_size: positiveInt().default(512),
    /** Validation rows at most (-1: the whole split). */
    val_max_samples: int().min(-1).default(-1),
    shuffle: z.boolean().default(true),
    seed: int().default(1),
    /**
     * Images are scaled into [min_pixels, max_pixels] before the processor
     * (method.md §3.7). Unset, they come from the model's
     * preprocessor_config.json, else these defaults.
     */
    min_pixels: positiveInt().max(MAX_IMAGE_PIXELS).default(262144),
    max_pixels: positiveInt().max(MAX_IMAGE_PIXELS).default(4194304),
    filter_overlong_prompts: z.boolean().default(true),
    /** Skip malformed rows (counted and reported) instead of stopping. */
    skip_invalid: z.boolean().default(false),
    /** SFT target: 'gold_trace' (observe / scene / think / answer written from the ground truth) or a column name. */
    sft_target: z.string().default('gold_trace'),
    /** EasyR1: a base directory for relative image paths (JSONL paths here resolve against the JSONL file). */
    image_dir: z.string().nullable().optional(),
    /** EasyR1: a prompt template (file or text) around prompt_key's text. */
    format_prompt: z.string().nullable().optional(),
    override_chat_template: z.string().nullable().optional(),
    val_batch_size: accepted(int()),
    video_key: accepted(z.string()),
    video_fps: accepted(z.number()),
    mini_rollout_batch_size: accepted(positiveInt().nullable()),
    filter_overlong_prompts_workers: accepted(positiveInt()),
    mixed_data: accepted(z.boolean()),
    text_only: accepted(z.boolean()),
  })
  .strict();

const algorithmSchema = z
  .object({
    adv_estimator: z.enum(['grpo']).default('grpo'),
    /** false: Dr.GRPO-style advantages, R - mean(R) without the std division. */
    norm_adv_by_std_in_grpo: z.boolean().default(true),
    disable_kl: z.boolean().default(false),
    use_kl_loss: z.boolean().default(true),
    kl_penalty: z.enum(['low_var_kl', 'k3', 'kl', 'k1', 'abs', 'mse', 'k2']).default('low_var_kl'),
    kl_coef: z.number().min(0).default(0.01),
    /** DAPO-style: drop groups whose rewards do not vary and sample more prompts. */
    online_filtering: z.boolean().default(false),
    filter_key: z.string().default('overall'),
    /** A group is kept when its mean `filter_key` lies strictly inside (filter_low, filter_high). */
    filter_low: z.number().default(0.01),
    filter_high: z.number().default(0.99),
    gamma: accepted(z.number()),
    lam: accepted(z.number()),
  })
  .strict();

const optimSchema = z
  .object({
    lr: z.number().positive().default(1e-6),
    betas: z.tuple([probability(), probability()]).default([0.9, 0.999]),
    eps: z.number().positive().default(1e-8),
    weight_decay: z.number().min(0).default(0.01),
    /** adamw: fp32 master weights and moments; adamw_bf16: bf16 weights and moments, Kahan-compensated (native/train/optimizer_strategy.h). */
    strategy: z.enum(['adamw', 'adamw_bf16']).default('adamw'),
    lr_scheduler: z.enum(['constant', 'cosine', 'linear-warmup']).default('constant'),
    lr_warmup_ratio: probability().default(0),
    /** Cosine decays to this fraction of lr. */
    min_lr_ratio: probability().default(0),
    /** Warm-up steps; when set it takes the place of lr_warmup_ratio (EasyR1). */
    lr_warmup_steps: int().min(0).nullable().optional(),
    /** EasyR1's names for lr_scheduler (older and newer). */
    warmup_style: z.string().optional(),
    lr_scheduler_type: z.string().optional(),
  })
  .strict();

const actorSchema = z
  .object({
    /** Prompts per optimiser step (each with its n completions). */
    global_batch_size: positiveInt().default(128),
    /** Sequences per forward/backward call; gradients accumulate over them. */
    micro_batch_size_per_device_for_update: positiveInt().default(4),
    /** Sequences per log-prob call (old and reference log-probs). */
    micro_batch_size_per_device_for_experience: positiveInt().default(16),
    max_grad_norm: z.number().min(0).default(1),
    clip_ratio_low: z.number().min(0).max(1).default(0.2),
    clip_ratio_high: z.number().min(0).default(0.3),
    /** <= 1 disables the dual clip. */
    clip_ratio_dual: z.number().default(3),
    /** EasyR1's 'seq' is 'seq-mean-token-mean'. */
    loss_avg_mode: z.enum(['token', 'seq', 'seq-mean-token-mean', 'seq-mean-token-sum']).default('token'),
    ppo_epochs: positiveInt().default(1),
    model: z
      .object({
        model_path: z.string().min(1),
        enable_gradient_checkpointing: z.boolean().default(true),
        freeze_vision_tower: z.boolean().default(false),
        tokenizer_path: accepted(z.string().nullable()),
        override_config: accepted(z.record(z.string(), z.unknown())),
        trust_remote_code: accepted(z.boolean()),
        lora: accepted(
          z
            .object({ rank: int().min(0), alpha: z.number(), target_modules: z.string(), exclude_modules: z.string().nullable() })
            .partial()
            .strict(),
        ),
      })
      .strict(),
    optim: optimSchema.prefault({}),
    strategy: accepted(z.string()),
    padding_free: accepted(z.boolean()),
    dynamic_batching: accepted(z.boolean()),
    ulysses_sequence_parallel_size: accepted(positiveInt()),
    ulysses_size: accepted(positiveInt()),
    use_torch_compile: accepted(z.boolean()),
    loss_type: accepted(z.string()),
    tau_positive: accepted(z.number()),
    tau_negative: accepted(z.number()),
    fsdp: accepted(fsdpSchema),
    offload: z
      .object({
        offload_params: accepted(z.boolean()),
        /** The optimiser state in pinned host memory, streamed through the device at each step (CUDA; nothing to move on the CPU). */
        offload_optimizer: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const samplingOverrideSchema = z
  .object({
    n: positiveInt().optional(),
    temperature: z.number().min(0).optional(),
    top_p: z.number().gt(0).max(1).optional(),
    top_k: int().min(-1).optional(),
  })
  .strict();

const rolloutSchema = z
  .object({
    n: positiveInt().default(8),
    temperature: z.number().min(0).default(1),
    top_p: z.number().gt(0).max(1).default(1),
    /** -1: off. */
    top_k: int().min(-1).default(-1),
    /** Sequences decoded together (continuous batching). */
    max_num_seqs: positiveInt().default(256),
    val_override_config: samplingOverrideSchema.prefault({ n: 1, temperature: 0.5 }),
    name: accepted(z.string()),
    seed: accepted(int()),
    limit_images: accepted(int().min(0)),
    dtype: accepted(z.string()),
    gpu_memory_utilization: accepted(probability()),
    ignore_eos: accepted(z.boolean()),
    enforce_eager: accepted(z.boolean()),
    enable_chunked_prefill: accepted(z.boolean()),
    tensor_parallel_size: accepted(positiveInt()),
    max_model_len: accepted(positiveInt().nullable()),
    max_num_batched_tokens: accepted(positiveInt()),
    disable_log_stats: accepted(z.boolean()),
    disable_tqdm: accepted(z.boolean()),
  })
  .strict();

const rewardSchema = z
  .object({
    /** A registered reward ('spatial', 'sparse', 'sparse_scene') or `path/to/module.js:exportName`. */
    reward_function: z.string().default('spatial'),
    /** Label similarity of the spatial reward. */
    similarity: z.enum(['wordnet', 'exact']).default('wordnet'),
    weights: z
      .object({ format: z.number(), count: z.number(), accuracy: z.number(), spatial: z.number() })
      .partial()
      .strict()
      .optional(),
    /** Keyword arguments of the reward (EasyR1): the spatial reward's options, e.g. { similarity: exact }. */
    reward_function_kwargs: z.record(z.string(), z.unknown()).optional(),
    /** The SpatialThinker fork's name for reward_function: r1v = sparse, r1v_scene = sparse_scene, spatial_sgg = spatial. */
    score_function: z.string().optional(),
    reward_type: accepted(z.string()),
    skip_special_tokens: accepted(z.boolean()),
    num_cpus: accepted(positiveInt()),
  })
  .strict();

const trainerSchema = z
  .object({
    total_epochs: positiveInt().default(15),
    /** Stops after this many steps; null: total_epochs decides. */
    max_steps: positiveInt().nullable().default(null),
    project_name: z.string().default('spatialthinker'),
    experiment_name: z.string().default('grpo'),
    logger: z.array(z.enum(['console', 'file', 'tensorboard', ...REMOTE_LOGGERS])).default(['console', 'file', 'tensorboard']),
    val_freq: int().min(-1).default(5),
    val_before_train: z.boolean().default(true),
    val_only: z.boolean().default(false),
    /** Sampled completions (with reward breakdown) written per step. */
    val_generations_to_log: int().min(0).default(3),
    train_generations_to_log: int().min(0).default(4),
    save_freq: int().min(-1).default(5),
    /** Checkpoints kept (the newest); -1 or 0 keeps all. */
    save_limit: int().min(-1).default(3),
    /** Weights dtype of saved checkpoints (master weights are kept in fp32 beside bf16 ones). */
    save_dtype: z.enum(['bf16', 'fp32']).default('bf16'),
    /** The run directory; default runs/<experiment_name>. */
    save_checkpoint_path: z.string().nullable().default(null),
    /** Resume from this checkpoint; with find_last_checkpoint, from the run's newest one. */
    load_checkpoint_path: z.string().nullable().default(null),
    find_last_checkpoint: z.boolean().default(true),
    device: z.enum(['cpu', 'cuda']).default('cpu'),
    /** Engine CPU threads (default: the machine's cores). */
    threads: positiveInt().nullable().default(null),
    /**
     * Data-parallel runs (more than one rank): ZeRO-1, each rank keeping the
     * AdamW moments (and, in checkpoints, the fp32 master weights) of its
     * own contiguous range of the flattened parameters. false: every rank
     * keeps all of them.
     */
    zero1: z.boolean().default(true),
    /** Data-parallel runs: the gradient all-reduce's bucket in MB (and the parameter all-gather's chunk). */
    bucket_mb: z.number().positive().default(25),
    seed: int().default(1),
    /** With algorithm.online_filtering: rollout rounds per step at most before training on what was kept. */
    max_try_make_batch: positiveInt().default(20),
    /**
     * Stop after this many consecutive steps in which nothing can be learned:
     * every group's rewards are equal (zero advantages) or every response hit
     * max_response_length. Each such step warns; 0 only warns.
     */
    stall_steps: int().min(0).default(5),
    /** Memory the run may use in GiB; default: the machine's physical memory. */
    memory_limit_gb: z.number().positive().nullable().default(null),
    /** Start even when the memory plan says the run does not fit. */
    ignore_memory_plan: z.boolean().default(false),
    /** The SpatialThinker fork's name for total_epochs. */
    total_episodes: positiveInt().optional(),
    nnodes: accepted(positiveInt()),
    n_gpus_per_node: accepted(positiveInt()),
    critic_warmup: accepted(int().min(0)),
    save_model_only: accepted(z.boolean()),
    ray_timeline: accepted(z.string().nullable()),
  })
  .strict();

export const trainConfigSchema = z
  .object({
    data: dataSchema,
    algorithm: algorithmSchema.prefault({}),
    worker: z
      .object({
        actor: actorSchema,
        rollout: rolloutSchema.prefault({}),
        reward: rewardSchema.prefault({}),
        hybrid_engine: accepted(z.boolean()),
        critic: accepted(z.record(z.string(), z.unknown())),
        ref: accepted(z.object({ strategy: z.string(), fsdp: fsdpSchema, offload: offloadSchema }).partial().strict()),
      })
      .strict(),
    trainer: trainerSchema.prefault({}),
  })
  .strict();

export type TrainConfig = z.output<typeof trainConfigSchema>;
/** A configuration before defaults: what a YAML file or a caller writes. */
export type TrainConfigInput = z.input<typeof trainConfigSchema>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Tree = Record<string, unknown>;

/** Presets: complete recipes a run starts from before its file and overrides. */
export const PRESETS: Readonly<Record<string, { summary: string; config: Tree }>> = {
  'spatialthinker-3b': {
    summary: 'the paper recipe: Qwen2.5-VL-3B-Instruct, STVQA-7K, dense spatial reward, 75 steps (method.md §3.1)',
    config: {
      data: {
        train_files: 'data/STVQA-7K/train',
        val_files: 'data/STVQA-7K/val',
        prompt_key: 'problem',
        answer_key: 'answer_option_text',
        max_prompt_length: 6144,
        max_response_length: 2048,
        rollout_batch_size: 512,
        seed: 1,
        min_pixels: 262144,
        max_pixels: 4194304,
      },
      algorithm: { adv_estimator: 'grpo', use_kl_loss: true, kl_penalty: 'low_var_kl', kl_coef: 0.01 },
      worker: {
        actor: {
          global_batch_size: 128,
          micro_batch_size_per_device_for_update: 4,
          micro_batch_size_per_device_for_experience: 16,
          max_grad_norm: 1.0,
          clip_ratio_low: 0.2,
          clip_ratio_high: 0.3,
          clip_ratio_dual: 3.0,
          model: { model_path: 'models/Qwen2.5-VL-3B-Instruct', enable_gradient_checkpointing: true, freeze_vision_tower: false },
          optim: { lr: 1e-6, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01, lr_scheduler: 'constant', lr_warmup_ratio: 0 },
        },
        rollout: { n: 8, temperature: 1.0, top_p: 1.0, top_k: -1, val_override_config: { n: 1, temperature: 0.5 } },
        reward: { reward_function: 'spatial' },
      },
      trainer: {
        experiment_name: 'spatialthinker-3b',
        max_steps: 75,
        val_freq: 5,
        val_before_train: true,
        save_freq: 5,
        save_limit: 1,
        device: 'cuda',
      },
    },
  },
};

/** `a.b.c=value` arguments: the value is parsed as YAML (numbers, booleans, null, [lists]). */
export function parseOverrides(args: readonly string[]): Tree {
  const tree: Tree = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new ConfigError(`override "${arg}" is not of the form section.key=value`);
    const path = arg.slice(0, eq).split('.');
    if (path.some((p) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(p))) throw new ConfigError(`override "${arg}": "${arg.slice(0, eq)}" is not a dotted key`);
    let value: unknown;
    try {
      value = parseYaml(arg.slice(eq + 1));
    } catch {
      value = arg.slice(eq + 1);
    }
    let node = tree;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
      node = node[key] as Tree;
    }
    node[path[path.length - 1] as string] = value ?? null;
  }
  return tree;
}

/** `b` merged into `a`: objects key by key, everything else replaced. */
export function deepMerge(a: Tree, b: Tree): Tree {
  const out: Tree = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const current = out[key];
    out[key] =
      isTree(current) && isTree(value) ? deepMerge(current, value) : value;
  }
  return out;
}

function isTree(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates a configuration tree; the error lists every problem with its dotted key. */
export function validateConfig(tree: unknown, source = 'configuration'): TrainConfig {
  let normalised = tree;
  try {
    if (isTree(tree)) normalised = normaliseMerged(tree);
  } catch (error) {
    throw new ConfigError(`${source} is invalid:\n  ${(error as Error).message}`);
  }
  const { tree: resolved, note } = withModelImageSizes(normalised);
  const result = trainConfigSchema.safeParse(resolved);
  if (result.success) {
    const config = checkConsistency(result.data, source);
    IMAGE_SIZE_NOTES.set(config, note);
    return config;
  }
  const lines = result.error.issues.map((issue) => {
    const key = issue.path.join('.') || '(root)';
    if (issue.code === 'unrecognized_keys') return unknownKeyLines(issue.path, issue.keys).join('\n');
    if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return `  ${key}: required`;
    return `  ${key}: ${issue.message}`;
  });
  throw new ConfigError(`${source} is invalid:\n${lines.join('\n')}`);
}

/** One line per unknown key, with the closest keys its section does have. */
function unknownKeyLines(path: readonly PropertyKey[], keys: readonly string[]): string[] {
  const known = sectionKeys(path);
  const prefix = path.length === 0 ? '' : path.join('.') + '.';
  return keys.map((key) => `  ${prefix}${key}: unknown key${didYouMean(key, known, (k) => prefix + k)}`);
}

/** The keys the schema knows in the section at `path`. */
function sectionKeys(path: readonly PropertyKey[]): string[] {
  let node: z.ZodType | undefined = trainConfigSchema;
  for (const key of path) node = objectShape(node)?.[String(key)];
  return Object.keys(objectShape(node) ?? {});
}

function objectShape(schema: z.ZodType | undefined): Record<string, z.ZodType> | undefined {
  let node = schema;
  // .default(), .prefault(), .optional() and .nullable() wrap the object they apply to.
  while (node && !(node instanceof z.ZodObject)) node = (node.def as { innerType?: z.ZodType }).innerType;
  return node instanceof z.ZodObject ? (node.shape as Record<string, z.ZodType>) : undefined;
}

function checkConsistency(config: TrainConfig, source: string): TrainConfig {
  const problems: string[] = [];
  const { actor, rollout } = config.worker;
  if (config.data.rollout_batch_size % actor.global_batch_size !== 0)
    problems.push(
      `worker.actor.global_batch_size (${actor.global_batch_size}) must divide data.rollout_batch_size (${config.data.rollout_batch_size}): each step makes rollout_batch_size / global_batch_size optimiser steps`,
    );
  if (rollout.n < 2) problems.push(`worker.rollout.n must be at least 2 for group-normalised advantages, got ${rollout.n}`);
  const { algorithm } = config;
  // In EasyR1, use_kl_loss: false with KL enabled means a KL penalty folded
  // into the rewards (kl_penalty, kl_coef, kl_type fixed/adaptive). That is not
  // implemented here; silently training without KL would be worse than refusing.
  if (!algorithm.use_kl_loss && !algorithm.disable_kl && algorithm.kl_coef > 0)
    problems.push(
      `algorithm.use_kl_loss: false asks for EasyR1's KL penalty in the reward, which spatialthinker does not implement; ` +
        `set algorithm.use_kl_loss: true (KL term in the loss, kl_coef ${algorithm.kl_coef}) or algorithm.disable_kl: true (no KL)`,
    );
  if (config.data.min_pixels > config.data.max_pixels) problems.push(`data.min_pixels (${config.data.min_pixels}) exceeds data.max_pixels (${config.data.max_pixels})`);
  problems.push(...unbuiltValues(config));
  if (problems.length > 0) throw new ConfigError(`${source} is invalid:\n${problems.map((p) => '  ' + p).join('\n')}`);
  return config;
}

/** EasyR1 values that ask for what this engine does not build: refused, since ignoring them would train something else. */
function unbuiltValues(config: TrainConfig): string[] {
  const { data, worker } = config;
  const { actor } = worker;
  const problems: string[] = [];
  const notBuilt = (key: string, value: unknown, what: string) => problems.push(`${key}=${JSON.stringify(value)}: ${what} is not built`);
  if (data.text_only === true) notBuilt('data.text_only', true, 'training without the rows\' images');
  if (data.mixed_data === true) notBuilt('data.mixed_data', true, 'the fork\'s mixed text-only/image sampling');
  if (data.image_dir != null) notBuilt('data.image_dir', data.image_dir, 'a base directory for image paths (JSONL image paths resolve against the JSONL file)');
  if (data.override_chat_template != null) notBuilt('data.override_chat_template', '…', 'replacing the model\'s chat template');
  if (data.format_prompt != null && /\.jinja$/i.test(data.format_prompt.trim())) notBuilt('data.format_prompt', data.format_prompt, 'a Jinja prompt template file (text given here is put before each prompt, as the SpatialThinker fork does)');
  if ((actor.model.lora?.rank ?? 0) > 0) notBuilt('worker.actor.model.lora.rank', actor.model.lora?.rank, 'LoRA');
  if (actor.model.tokenizer_path != null && actor.model.tokenizer_path !== actor.model.model_path) notBuilt('worker.actor.model.tokenizer_path', actor.model.tokenizer_path, 'a tokenizer from another directory than the model\'s');
  if (actor.model.override_config && Object.keys(actor.model.override_config).length > 0) notBuilt('worker.actor.model.override_config', actor.model.override_config, 'overriding the model\'s config.json');
  if (actor.loss_type !== undefined && actor.loss_type !== 'default') notBuilt('worker.actor.loss_type', actor.loss_type, 'a policy loss other than the PPO clipped one');
  if (worker.rollout.ignore_eos === true) notBuilt('worker.rollout.ignore_eos', true, 'decoding past the end-of-sequence token');
  return problems;
}

/** The notes a run prints once: EasyR1 keys accepted without effect here, other names read as ours. */
export function configurationNotes(config: TrainConfig): string[] {
  return configNotes(config);
}

export interface LoadConfigOptions {
  /** A YAML file (EasyR1 layout). */
  file?: string;
  preset?: string;
  /** `section.key=value` overrides, applied last. */
  overrides?: readonly string[];
  /** Applied before the file (e.g. the demo's own defaults). */
  base?: Tree;
}

/** preset, then base, then the file, then the overrides; validated. */
export async function loadConfig(options: LoadConfigOptions): Promise<TrainConfig> {
  let tree: Tree = {};
  if (options.preset !== undefined) {
    const preset = PRESETS[options.preset];
    if (!preset) throw new ConfigError(`unknown preset "${options.preset}" (known: ${Object.keys(PRESETS).join(', ')})`);
    tree = deepMerge(tree, normalise(preset.config, `preset ${options.preset}`));
  }
  if (options.base) tree = deepMerge(tree, normalise(options.base, 'the base configuration'));
  let source = 'the configuration';
  if (options.file !== undefined) {
    let text: string;
    try {
      text = await readFile(options.file, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read the configuration file ${options.file}: ${(error as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (error) {
      throw new ConfigError(`${options.file} is not valid YAML: ${(error as Error).message}`);
    }
    if (parsed !== null && parsed !== undefined && !isTree(parsed)) throw new ConfigError(`${options.file} must hold a mapping of sections (data, algorithm, worker, trainer)`);
    tree = deepMerge(tree, normalise((parsed as Tree | null) ?? {}, options.file));
    source = options.file;
  }
  if (options.overrides && options.overrides.length > 0) {
    tree = deepMerge(tree, normalise(parseOverrides(options.overrides), 'the overrides'));
    source += options.file === undefined ? ' (with overrides)' : ' with its overrides';
  }
  return validateConfig(tree, source);
}

/** One layer with its EasyR1 aliases read (config-compat.ts), so later layers win whichever name they use. */
function normalise(layer: Tree, source: string): Tree {
  try {
    return normaliseLayer(layer);
  } catch (error) {
    throw new ConfigError(`${source} is invalid:\n  ${(error as Error).message}`);
  }
}

export function configToYaml(config: TrainConfig): string {
  return stringifyYaml(config);
}

/** The run directory a configuration writes to. */
export function runDirectory(config: TrainConfig): string {
  return config.trainer.save_checkpoint_path ?? `runs/${config.trainer.experiment_name}`;
}

const IMAGE_SIZE_NOTES = new WeakMap<TrainConfig, string>();

/** Where data.min_pixels / max_pixels came from, for the run's log. */
export function imageSizeNote(config: TrainConfig): string {
  const { min_pixels, max_pixels } = config.data;
  return `image sizes: min_pixels ${min_pixels}, max_pixels ${max_pixels} (${IMAGE_SIZE_NOTES.get(config) ?? 'from the configuration'})`;
}

/**
 * The tree with data.min_pixels / max_pixels taken from the model's
 * preprocessor_config.json where the configuration leaves them unset: a
 * checkpoint's own processor settings (3,136 for the tiny demo models) beat
 * a default meant for 3B training (which blew 112 px images up to 512 x 512).
 */
function withModelImageSizes(tree: unknown): { tree: unknown; note: string } {
  const record = (v: unknown) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
  const root = record(tree);
  const data = record(root?.['data']) ?? {};
  const unset = (['min_pixels', 'max_pixels'] as const).filter((k) => data[k] === undefined);
  if (unset.length === 0) return { tree, note: 'from the configuration' };
  const modelPath = record(record(record(record(root?.['worker'])?.['actor'])?.['model']))?.['model_path'];
  if (typeof modelPath !== 'string') return { tree, note: 'defaults' };
  const file = join(modelPath, 'preprocessor_config.json');
  let processor: Record<string, unknown> | undefined;
  try {
    processor = record(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    return { tree, note: `defaults: no readable ${file}` };
  }
  const size = record(processor?.['size']);
  const fromModel = { min_pixels: processor?.['min_pixels'] ?? size?.['shortest_edge'], max_pixels: processor?.['max_pixels'] ?? size?.['longest_edge'] };
  const taken = unset.filter((k) => typeof fromModel[k] === 'number');
  if (taken.length === 0) return { tree, note: `defaults: ${file} sets neither` };
  const patched = { ...data };
  for (const k of taken) patched[k] = fromModel[k];
  const set = ['min_pixels', 'max_pixels'].filter((k) => !unset.includes(k as 'min_pixels'));
  const parts = [`${taken.join(' and ')} from ${file}`, ...(set.length ? [`${set.join(', ')} from the configuration`] : [])];
  return { tree: { ...root, data: patched }, note: parts.join('; ') };
}
