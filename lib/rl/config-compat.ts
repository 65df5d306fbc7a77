/**
 * EasyR1 compatibility of the trainer's configuration: the keys of EasyR1
 * (and of the SpatialThinker fork of it) that this single-process engine
 * accepts without acting on them, each with why; the older or newer names of
 * keys it does act on; and the notes a run prints once about both. A
 * reference config.yaml is read as it is: no key of it is refused.
 */

type Tree = Record<string, unknown>;

/**
 * EasyR1 keys that are accepted and listed in the run's log as "accepted,
 * not applicable here". Values that would ask for something this engine does
 * not build (LoRA, a text-only run, ...) are refused by the schema's
 * consistency check instead, since ignoring them would train something else.
 */
export const NOT_APPLICABLE: Readonly<Record<string, string>> = {
  'data.val_batch_size': 'validation decodes worker.rollout.max_num_seqs sequences at a time; the batch it is fed in does not change the result',
  'data.video_key': 'no video inputs: rows are images and text',
  'data.video_fps': 'no video inputs: rows are images and text',
  'data.mini_rollout_batch_size': 'rollouts of a step are decoded together by continuous batching (worker.rollout.max_num_seqs)',
  'data.filter_overlong_prompts_workers': 'prompts are filtered in this one process',
  'data.mixed_data': 'the SpatialThinker fork\'s mixed text/image sampling: only false is accepted (every row here has its image)',
  'data.text_only': 'the SpatialThinker fork\'s text-only runs: only false is accepted (images are always given to the model)',
  'algorithm.gamma': 'a GAE discount; GRPO advantages have no value function',
  'algorithm.lam': 'a GAE lambda; GRPO advantages have no value function',
  'worker.hybrid_engine': 'rollout and training share one process and one copy of the weights already',
  'worker.critic': 'GRPO has no critic',
  'worker.ref': 'the reference policy lives in the same process as the actor (FSDP and offload settings are Ray/PyTorch ones)',
  'worker.actor.strategy': 'the training backend is this engine, not PyTorch FSDP',
  'worker.actor.padding_free': 'the engine packs each micro-batch\'s sequences without padding whatever this says',
  'worker.actor.dynamic_batching': 'micro-batches hold worker.actor.micro_batch_size_per_device_for_update sequences',
  'worker.actor.ulysses_sequence_parallel_size': 'sequence parallelism across GPUs: one process here',
  'worker.actor.ulysses_size': 'sequence parallelism across GPUs: one process here',
  'worker.actor.use_torch_compile': 'no PyTorch: the engine\'s kernels are compiled ahead of time',
  'worker.actor.tau_positive': 'the SAPO loss\'s gate (worker.actor.loss_type=sapo), not built; the PPO clipped loss is used',
  'worker.actor.tau_negative': 'the SAPO loss\'s gate (worker.actor.loss_type=sapo), not built; the PPO clipped loss is used',
  'worker.actor.loss_type': 'only "default" (the PPO clipped objective) is built',
  'worker.actor.fsdp.enable_cpu_offload': 'parameters and gradients stay in the engine\'s device memory; trainer.memory_limit_gb plans it',
  'worker.actor.fsdp.enable_rank0_init': 'every rank loads the checkpoint itself, then rank 0\'s weights are broadcast',
  'worker.actor.fsdp.use_orig_params': 'a PyTorch FSDP detail: the engine keeps the parameters as they are',
  'worker.actor.fsdp.torch_dtype': 'the engine keeps fp32 master weights and computes in its own precision',
  'worker.actor.fsdp.fsdp_size': 'the ZeRO-1 group is every data-parallel rank (trainer.zero1)',
  'worker.actor.fsdp.mp_param_dtype': 'mixed-precision dtypes of PyTorch FSDP: the engine keeps fp32 master weights and computes in its own precision',
  'worker.actor.fsdp.mp_reduce_dtype': 'gradients are all-reduced in fp32',
  'worker.actor.fsdp.mp_buffer_dtype': 'mixed-precision dtypes of PyTorch FSDP: the engine keeps fp32 master weights and computes in its own precision',
  'worker.actor.offload.offload_params': 'FSDP parameter offload: the weights stay on the device the run uses (worker.actor.offload.offload_optimizer moves the optimiser state)',
  'worker.actor.model.tokenizer_path': 'the tokenizer is read from the model directory; only null or the model path is accepted',
  'worker.actor.model.override_config': 'changing the model\'s config.json at load: only {} is accepted',
  'worker.actor.model.trust_remote_code': 'no Python model code is run: Qwen2.5-VL is built into the engine',
  'worker.actor.model.lora': 'LoRA adapters are not built: only rank 0 (full fine-tuning) is accepted',
  'worker.rollout.name': 'rollouts are decoded by the engine, not vLLM',
  'worker.rollout.seed': 'sampling is seeded from trainer.seed',
  'worker.rollout.limit_images': 'a vLLM limit; every image of a row is given to the model',
  'worker.rollout.dtype': 'rollouts use the policy\'s own weights in the engine',
  'worker.rollout.gpu_memory_utilization': 'a vLLM memory share; trainer.memory_limit_gb plans memory here',
  'worker.rollout.ignore_eos': 'generation stops at the end-of-sequence token; only false is accepted',
  'worker.rollout.enforce_eager': 'a vLLM CUDA-graph setting',
  'worker.rollout.enable_chunked_prefill': 'a vLLM scheduling setting',
  'worker.rollout.tensor_parallel_size': 'vLLM tensor parallelism: one process here',
  'worker.rollout.max_model_len': 'sequences are bounded by data.max_prompt_length + data.max_response_length',
  'worker.rollout.max_num_batched_tokens': 'a vLLM scheduling limit; worker.rollout.max_num_seqs bounds a decode batch here',
  'worker.rollout.disable_log_stats': 'a vLLM logging setting',
  'worker.rollout.disable_tqdm': 'a vLLM progress bar; progress goes to the console',
  'worker.reward.reward_type': 'rewards are in-process functions (a registered name or module:export in worker.reward.reward_function)',
  'worker.reward.skip_special_tokens': 'completions are always decoded without special tokens before they are scored',
  'worker.reward.num_cpus': 'rewards are scored in this process',
  'trainer.nnodes': 'data-parallel training is not built: the run is one process on one device; batch sizes are global, so the optimisation is the same, one device doing all micro-batches',
  'trainer.n_gpus_per_node': 'data-parallel training is not built: the run is one process on one device; batch sizes are global, so the optimisation is the same, one device doing all micro-batches',
  'trainer.critic_warmup': 'GRPO has no critic',
  'trainer.save_model_only': 'checkpoints always hold the optimiser and loader state, so any of them resumes',
  'trainer.ray_timeline': 'no Ray',
};

/** Loggers EasyR1 knows that send metrics elsewhere; metrics.jsonl and TensorBoard are written here. */
export const REMOTE_LOGGERS = ['wandb', 'swanlab', 'mlflow'] as const;

/** The reference's `score_function` names and the registered rewards they are. */
export const SCORE_FUNCTIONS: Readonly<Record<string, string>> = {
  r1v: 'sparse',
  r1v_scene: 'sparse_scene',
  spatial_sgg: 'spatial',
};

export interface Alias {
  /** The other name (dotted). */
  from: string;
  /** The key it sets. */
  to: string;
  why: string;
  /** Its value as the key's value; throws a message for one that has none. */
  value?: (value: unknown) => unknown;
}

export const ALIASES: readonly Alias[] = [
  { from: 'trainer.total_episodes', to: 'trainer.total_epochs', why: 'the SpatialThinker fork\'s older EasyR1 name' },
  {
    from: 'worker.reward.score_function',
    to: 'worker.reward.reward_function',
    why: 'the SpatialThinker fork\'s reward name',
    value: (name) => {
      const reward = SCORE_FUNCTIONS[String(name)];
      if (reward === undefined)
        throw new Error(`worker.reward.score_function "${String(name)}" has no reward here (known: ${Object.entries(SCORE_FUNCTIONS).map(([k, v]) => `${k} = ${v}`).join(', ')}); name a reward in worker.reward.reward_function`);
      return reward;
    },
  },
  {
    from: 'worker.actor.fsdp.enable_full_shard',
    to: 'trainer.zero1',
    why: 'FSDP full sharding; the engine shards the optimiser state (ZeRO-1) and keeps whole parameters on every rank',
  },
  { from: 'worker.actor.optim.warmup_style', to: 'worker.actor.optim.lr_scheduler', why: 'the older EasyR1 name' },
  { from: 'worker.actor.optim.lr_scheduler_type', to: 'worker.actor.optim.lr_scheduler', why: 'the newer EasyR1 name' },
];

function getPath(tree: Tree, path: string): unknown {
  let node: unknown = tree;
  for (const key of path.split('.')) {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined;
    node = (node as Tree)[key];
  }
  return node;
}

function setPath(tree: Tree, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = tree;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Tree;
  }
  node[keys[keys.length - 1] as string] = value;
}

function clone(tree: Tree): Tree {
  return JSON.parse(JSON.stringify(tree)) as Tree;
}

/**
 * One layer of configuration (a preset, a file, the overrides) with its
 * aliases also written under our names, so a later layer's key wins whichever
 * name either layer used. A layer that sets our name without the alias clears
 * an earlier layer's alias (set to undefined), so the effective configuration
 * never shows a stale one. EasyR1's `min_lr_ratio: null` is our default 0.
 */
export function normaliseLayer(layer: Tree): Tree {
  const out = clone(layer);
  for (const alias of ALIASES) {
    const value = getPath(out, alias.from);
    if (value !== undefined) setPath(out, alias.to, alias.value ? alias.value(value) : value);
    else if (getPath(out, alias.to) !== undefined) setPath(out, alias.from, undefined);
  }
  const optim = getPath(out, 'worker.actor.optim') as Tree | undefined;
  if (optim && optim['min_lr_ratio'] === null) delete optim['min_lr_ratio'];
  return out;
}

/** The merged layers as the schema reads them: aliases read once more, cleared ones dropped. */
export function normaliseMerged(tree: Tree): Tree {
  return clone(normaliseLayer(tree));
}

function show(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * What a run prints once about its configuration: each EasyR1 key it was given
 * that has no effect here ("accepted, not applicable here: why"), each other
 * name that was read as one of ours, and settings honoured differently here.
 */
export function configNotes(config: object): string[] {
  const tree = config as Tree;
  const notes: string[] = [];
  for (const alias of ALIASES) {
    const value = getPath(tree, alias.from);
    if (value !== undefined) notes.push(`${alias.from}=${show(value)}: applied as ${alias.to}=${show(getPath(tree, alias.to))} (${alias.why})`);
  }
  for (const [key, why] of Object.entries(NOT_APPLICABLE)) {
    const value = getPath(tree, key);
    if (value !== undefined) notes.push(`${key}=${show(value)}: accepted, not applicable here: ${why}`);
  }
  const loggers = getPath(tree, 'trainer.logger');
  if (Array.isArray(loggers))
    for (const name of loggers.filter((l) => (REMOTE_LOGGERS as readonly string[]).includes(l)))
      notes.push(`trainer.logger "${name}": accepted, not applicable here: no remote loggers; metrics go to metrics.jsonl and TensorBoard in the run directory`);
  if (getPath(tree, 'worker.actor.optim.strategy') === 'adamw_bf16')
    notes.push('worker.actor.optim.strategy=adamw_bf16: the weights, AdamW moments and a Kahan compensation buffer are bf16 (on the CPU backend fp32 storage rounded to bf16 at every update); no fp32 master copy');
  if (getPath(tree, 'worker.actor.offload.offload_optimizer') === true && getPath(tree, 'trainer.device') !== 'cuda')
    notes.push('worker.actor.offload.offload_optimizer=true: no effect on the CPU backend: the optimiser state is in host memory already');
  return notes;
}
