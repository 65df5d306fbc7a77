/**
 * Checkpoints: the policy as a Hugging Face model directory that
 * transformers and vLLM load unmodified (config.json, safetensors sharded
 * above a size, tokenizer and processor files copied), plus the trainer's
 * state beside it (fp32 master weights when the model is saved in bf16, AdamW
 * moments, step, and whatever the trainer adds: schedule position, RNG
 * states, data cursor). Writes go to a temporary directory renamed into
 * place, so an interrupted save leaves the last good checkpoint intact.
 */
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Model } from '../engine/model.js';
import { encodeSafetensors, readSafetensors, type EncodableTensor } from '../io/safetensors.js';
import { inspectModelWeights } from '../io/safetensors.js';

export interface SaveOptions {
  /** Weight dtype of the model directory. Default 'bf16' (what the hub checkpoints use). */
  dtype?: 'bf16' | 'fp32';
  /** Shard the weights above this many bytes per file. Default 5 GB, as transformers. */
  maxShardBytes?: number;
  /** Keep only the newest K checkpoints of the run (0: keep all). Default 3. */
  keepLast?: number;
}

/** Files of the source model directory copied into every checkpoint. */
const COPIED_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
  'chat_template.json',
  'chat_template.jinja',
  'preprocessor_config.json',
  'generation_config.json',
];

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';

const stepName = (step: number) => `step-${String(step).padStart(6, '0')}`;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes `tensors` as model.safetensors or as shards with model.safetensors.index.json. */
async function writeWeights(dir: string, tensors: Record<string, EncodableTensor>, maxShardBytes: number): Promise<void> {
  const names = Object.keys(tensors).sort();
  const bytesOf = (t: EncodableTensor) => t.data.length * (t.dtype === 'BF16' || t.dtype === 'F16' ? 2 : t.data.BYTES_PER_ELEMENT);
  const shards: string[][] = [[]];
  let size = 0;
  for (const name of names) {
    const b = bytesOf(tensors[name] as EncodableTensor);
    if (size > 0 && size + b > maxShardBytes) {
      shards.push([]);
      size = 0;
    }
    (shards[shards.length - 1] as string[]).push(name);
    size += b;
  }
  const metadata = { format: 'pt' };
  if (shards.length === 1) {
    await writeFile(join(dir, 'model.safetensors'), encodeSafetensors(tensors, metadata));
    return;
  }
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (const [i, shard] of shards.entries()) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const part: Record<string, EncodableTensor> = {};
    for (const name of shard) {
      part[name] = tensors[name] as EncodableTensor;
      weightMap[name] = file;
      total += bytesOf(part[name] as EncodableTensor);
    }
    await writeFile(join(dir, file), encodeSafetensors(part, metadata));
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
}

/**
 * Saves the model and trainer state as runDir/checkpoints/step-NNNNNN and
 * returns that directory. `sourceDir` is the model directory the run started
 * from (config, tokenizer and processor files come from it).
 */
export async function saveCheckpoint(
  model: Model,
  sourceDir: string,
  runDir: string,
  step: number,
  trainerState: Record<string, unknown>,
  options: SaveOptions = {},
): Promise<string> {
  const dtype = options.dtype ?? 'bf16';
  const root = join(runDir, 'checkpoints');
  const final = join(root, stepName(step));
  const temporary = join(root, `.tmp-${stepName(step)}-${process.pid}`);
  await rm(temporary, { recursive: true, force: true });
  await mkdir(temporary, { recursive: true });
  try {
    const params = await model.parameters();
    // Shapes come from the source checkpoint, so the files read like the hub's.
    const shapes = await inspectModelWeights(sourceDir);
    const shapeOf = (name: string, length: number) => {
      const info = shapes[name] ?? shapes[name.startsWith('visual.') ? `model.${name}` : `model.language_model.${name.slice(6)}`];
      return info ? info.shape : [length];
    };
    const tensors: Record<string, EncodableTensor> = {};
    for (const [name, data] of Object.entries(params))
      tensors[name] = { dtype: dtype === 'bf16' ? 'BF16' : 'F32', shape: shapeOf(name, data.length), data } as EncodableTensor;
    await writeWeights(temporary, tensors, options.maxShardBytes ?? 5e9);

    const config = JSON.parse(await readFile(join(sourceDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    config['torch_dtype'] = dtype === 'bf16' ? 'bfloat16' : 'float32';
    await writeFile(join(temporary, 'config.json'), JSON.stringify(config, null, 2));
    for (const file of COPIED_FILES)
      if (await exists(join(sourceDir, file))) await copyFile(join(sourceDir, file), join(temporary, file));

    const optimizer = await model.optimizerState();
    const state: Record<string, EncodableTensor> = {};
    for (const [name, data] of Object.entries(optimizer.m)) state[`adam_m.${name}`] = { dtype: 'F32', shape: [data.length], data };
    for (const [name, data] of Object.entries(optimizer.v)) state[`adam_v.${name}`] = { dtype: 'F32', shape: [data.length], data };
    // bf16 weights lose the master copy's low bits: keep it for an exact resume.
    if (dtype !== 'fp32') for (const [name, data] of Object.entries(params)) state[`master.${name}`] = { dtype: 'F32', shape: [data.length], data };
    await writeFile(join(temporary, OPTIMIZER_FILE), encodeSafetensors(state, { format: 'spatialthinker-optimizer' }));
    await writeFile(join(temporary, TRAINER_STATE_FILE), JSON.stringify({ ...trainerState, step, optimizerStep: optimizer.step, dtype }, null, 2));

    await rm(final, { recursive: true, force: true });
    await rename(temporary, final);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
  const keep = options.keepLast ?? 3;
  if (keep > 0) {
    const old = (await listCheckpoints(runDir)).slice(0, -keep);
    for (const dir of old) await rm(dir, { recursive: true, force: true });
  }
  return final;
}

/** The run's complete checkpoints, oldest first (temporary directories are ignored). */
export async function listCheckpoints(runDir: string): Promise<string[]> {
  const root = join(runDir, 'checkpoints');
  if (!(await exists(root))) return [];
  const names = (await readdir(root)).filter((n) => /^step-\d{6,}$/.test(n)).sort();
  const complete: string[] = [];
  for (const name of names) if (await exists(join(root, name, TRAINER_STATE_FILE))) complete.push(join(root, name));
  return complete;
}

export async function latestCheckpoint(runDir: string): Promise<string | undefined> {
  return (await listCheckpoints(runDir)).at(-1);
}

/**
 * Restores the exact training state of a checkpoint into `model` (loaded
 * from that checkpoint directory): fp32 master weights and AdamW moments.
 * Returns the trainer state saved with it.
 */
export async function restoreCheckpoint(model: Model, dir: string): Promise<Record<string, unknown>> {
  const statePath = join(dir, TRAINER_STATE_FILE);
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(await readFile(statePath, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`cannot read the trainer state ${statePath}: ${(error as Error).message}`);
  }
  const { tensors } = await readSafetensors(join(dir, OPTIMIZER_FILE));
  const pick = (prefix: string) => {
    const out: Record<string, Float32Array> = {};
    for (const [name, t] of Object.entries(tensors)) if (name.startsWith(prefix)) out[name.slice(prefix.length)] = t.data as Float32Array;
    return out;
  };
  const master = pick('master.');
  if (Object.keys(master).length > 0) await model.setParameters(master);
  const m = pick('adam_m.');
  if (Object.keys(m).length > 0) await model.setOptimizerState({ step: Number(state['optimizerStep'] ?? 0), m, v: pick('adam_v.') });
  return state;
}
