/**
 * Checkpoints. A step folder's top level is a clean Hugging Face model
 * directory that transformers and vLLM load unmodified (config.json,
 * safetensors sharded above a size with their index, tokenizer, chat
 * template, processor and generation files copied from the source); the
 * trainer's state lives beside it in `trainer/`: optimizer.safetensors (the
 * fp32 master weights when the model is saved in bf16, AdamW m and v) and
 * trainer_state.json (step, optimiser step, schedule position, data cursor,
 * whatever the trainer adds).
 *
 * The engine writes and reads the tensors itself (native/engine/
 * safetensors_writer.cpp, native/model/checkpoint.cpp): one tensor at a time
 * through one write buffer, files over 4 GiB, restore from the memory-mapped
 * files; no weight or moment crosses into JavaScript. Every file is fsynced
 * in a temporary folder, which is then renamed into place, so an interrupted
 * save leaves the last good checkpoint intact. Older checkpoints, with
 * optimizer.safetensors and trainer_state.json at the top level, still resume.
 */
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Model, OptimizerPlacement } from '../engine/model.js';
import type { DataParallelRank } from './data-parallel.js';
import { inspectModelWeights, inspectSafetensors } from '../io/safetensors.js';

export interface SaveOptions {
  /** Weight dtype of the model directory. Default 'bf16' (what the hub checkpoints use). */
  dtype?: 'bf16' | 'fp32';
  /** Shard the weights (and the optimiser state) above this many bytes per file. Default 5e9, as transformers. */
  maxShardBytes?: number;
  /** Keep only the newest K checkpoints of the run (0: keep all). Default 3. */
  keepLast?: number;
  /** The strategy that made the optimiser state, recorded for the resume's check. Default adamw. */
  optimizerStrategy?: 'adamw' | 'adamw_bf16';
  /**
   * A data-parallel run: every rank calls saveCheckpoint; rank 0 writes the
   * model and the trainer state, each rank its ZeRO-1 optimiser shard
   * (optimizer-rank<r>-of-<W>.safetensors), and the step folder is renamed
   * into place by rank 0 only after every rank has written its shard.
   */
  dataParallel?: DataParallelRank;
}

/** Files of the source model directory copied into every checkpoint and export. */
export const COPIED_FILES = [
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

/** The trainer's subfolder of a step folder. */
export const TRAINER_DIR = 'trainer';
export const TRAINER_STATE_FILE = 'trainer_state.json';
/** The optimiser state's file (or `optimizer-0000i-of-0000N.safetensors` with `optimizer.safetensors.index.json`). */
export const OPTIMIZER_FILE = 'optimizer.safetensors';

const stepName = (step: number) => `step-${String(step).padStart(6, '0')}`;
const STEP_FOLDER = /^step-(\d{6,})$/;
const TEMPORARY_FOLDER = /^\.tmp-step-\d{6,}-(\d+)$/;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes a file and fsyncs it before returning. */
async function writeFileSynced(path: string, text: string): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes `model`'s weights into `dir` (which must exist) as a Hugging Face
 * model directory: the engine writes the safetensors (hub names and shapes,
 * sharded above `maxShardBytes`), then config.json (torch_dtype set) and the
 * tokenizer, chat template, processor and generation files of `sourceDir`.
 * Everything is fsynced; the caller syncs `dir` itself after any more files.
 */
export async function writeModelDirectory(
  model: Model,
  sourceDir: string,
  dir: string,
  options: { dtype: 'bf16' | 'fp32'; maxShardBytes?: number; bufferBytes?: number },
): Promise<string[]> {
  const written = await model.saveWeights(dir, options.dtype, {
    ...(options.maxShardBytes !== undefined ? { maxShardBytes: options.maxShardBytes } : {}),
    ...(options.bufferBytes !== undefined ? { bufferBytes: options.bufferBytes } : {}),
  });
  const configPath = join(sourceDir, 'config.json');
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`cannot read ${configPath}: ${(error as Error).message}`);
  }
  config['torch_dtype'] = options.dtype === 'bf16' ? 'bfloat16' : 'float32';
  await writeFileSynced(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  const files = [...written.files, 'config.json'];
  for (const file of COPIED_FILES) {
    if (!(await exists(join(sourceDir, file)))) continue;
    await copyFile(join(sourceDir, file), join(dir, file));
    await syncPath(join(dir, file));
    files.push(file);
  }
  return files;
}

/**
 * Saves the model and trainer state as runDir/checkpoints/step-NNNNNN and
 * returns that directory. `sourceDir` is the model directory the run started
 * from (config, tokenizer and processor files come from it). Rotation
 * (`keepLast`) removes only checkpoints of earlier steps than this one.
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
  const dp = options.dataParallel;
  const main = !dp || dp.main;
  const sharded = dp !== undefined && dp.distributed && model.processGroupInfo?.zero1 === true;
  const root = join(runDir, 'checkpoints');
  const final = join(root, stepName(step));
  // Every rank writes into rank 0's temporary folder, named by rank 0's pid (for the stale-folder sweep).
  const [owner = process.pid] = dp ? await dp.sum([dp.main ? process.pid : 0]) : [process.pid];
  const temporary = join(root, `.tmp-${stepName(step)}-${owner}`);
  const trainerDir = join(temporary, TRAINER_DIR);
  const shard = options.maxShardBytes !== undefined ? { maxShardBytes: options.maxShardBytes } : {};
  // bf16 weights lose the master copy's low bits: keep it for an exact resume.
  const master = dtype !== 'fp32';
  let failed: unknown;
  if (main) {
    await rm(temporary, { recursive: true, force: true });
    await mkdir(trainerDir, { recursive: true });
  }
  await dp?.barrier();
  let optimizerStep = model.optimizerSteps;
  try {
    if (main) await writeModelDirectory(model, sourceDir, temporary, { dtype, ...shard });
    if (sharded) optimizerStep = (await model.saveOptimizerShard(trainerDir, master, shard)).step;
    else if (main) optimizerStep = (await model.saveOptimizerState(trainerDir, master, shard)).step;
  } catch (error) {
    failed = error;
  }
  // The folder is complete only once every rank's shard is: a rank that failed says so here.
  const [failures = 0] = dp ? await dp.sum([failed === undefined ? 0 : 1]) : [failed === undefined ? 0 : 1];
  if (failures > 0) {
    if (main) await rm(temporary, { recursive: true, force: true });
    throw failed ?? new Error(`saving checkpoint step ${step}: ${failures} other rank(s) could not write their optimiser shard; the previous checkpoint is kept`);
  }
  if (main) {
    try {
      const info = model.processGroupInfo;
      const split =
        sharded && info
          ? {
              dataParallel: {
                worldSize: info.worldSize,
                zero1: true,
                flatTotal: info.flatTotal,
                // Rank r's range of the flattened parameters (named_parameters order), as the shards' metadata says.
                ranges: Array.from({ length: info.worldSize }, (_, r) => {
                  const each = Math.ceil(info.flatTotal / info.worldSize);
                  return [Math.min(info.flatTotal, r * each), Math.min(info.flatTotal, (r + 1) * each)];
                }),
              },
            }
          : dp?.distributed
            ? { dataParallel: { worldSize: dp.worldSize, zero1: false } }
            : {};
      await writeFileSynced(
        join(trainerDir, TRAINER_STATE_FILE),
        JSON.stringify({ ...trainerState, step, optimizerStep, optimizerStrategy: options.optimizerStrategy ?? 'adamw', dtype, ...split }, null, 2) + '\n',
      );
      await syncPath(trainerDir);
      await syncPath(temporary);
      await rm(final, { recursive: true, force: true });
      await rename(temporary, final);
      await syncPath(root);
    } catch (error) {
      await rm(temporary, { recursive: true, force: true });
      failed = error;
    }
  }
  // No rank goes on (or reads the folder) before it is in place.
  const [renameFailed = 0] = dp ? await dp.sum([failed === undefined ? 0 : 1]) : [failed === undefined ? 0 : 1];
  if (renameFailed > 0) throw failed ?? new Error(`saving checkpoint step ${step}: rank 0 could not put ${final} in place; the previous checkpoint is kept`);
  const keep = options.keepLast ?? 3;
  if (keep > 0 && main) {
    const earlier = (await listCheckpoints(runDir)).filter((dir) => checkpointStep(dir) < step);
    for (const dir of earlier.slice(0, Math.max(0, earlier.length - (keep - 1)))) await rm(dir, { recursive: true, force: true });
  }
  return final;
}

/** The step number of a step folder's path. */
export function checkpointStep(dir: string): number {
  const match = STEP_FOLDER.exec(dir.split(/[\\/]/).pop() ?? '');
  return match ? Number(match[1]) : NaN;
}

/** Where a checkpoint keeps its trainer state: `trainer/`, or the step folder itself in the older layout. */
export async function trainerDirectory(checkpointDir: string): Promise<string> {
  const nested = join(checkpointDir, TRAINER_DIR);
  return (await exists(join(nested, TRAINER_STATE_FILE))) ? nested : checkpointDir;
}

/** The run's complete checkpoints, oldest first (temporary directories are ignored). */
export async function listCheckpoints(runDir: string): Promise<string[]> {
  const root = join(runDir, 'checkpoints');
  if (!(await exists(root))) return [];
  const names = (await readdir(root)).filter((n) => STEP_FOLDER.test(n)).sort((a, b) => checkpointStep(a) - checkpointStep(b));
  const complete: string[] = [];
  for (const name of names) if (await exists(join(await trainerDirectory(join(root, name)), TRAINER_STATE_FILE))) complete.push(join(root, name));
  return complete;
}

export async function latestCheckpoint(runDir: string): Promise<string | undefined> {
  return (await listCheckpoints(runDir)).at(-1);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary folders (`.tmp-step-N-PID`) that saves killed before
 * their rename left behind: those of processes no longer alive, and this
 * process's own. Returns the folders removed.
 */
export async function removeStaleTemporaries(runDir: string): Promise<string[]> {
  const root = join(runDir, 'checkpoints');
  if (!(await exists(root))) return [];
  const removed: string[] = [];
  for (const name of await readdir(root)) {
    const match = TEMPORARY_FOLDER.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid !== process.pid && processAlive(pid)) continue;
    await rm(join(root, name), { recursive: true, force: true });
    removed.push(join(root, name));
  }
  return removed;
}

/** What every checkpoint's trainer_state.json holds, checked. */
export interface TrainerState {
  step: number;
  optimizerStep: number;
  dtype?: 'bf16' | 'fp32';
  /** The strategy that wrote the optimiser state (absent in older checkpoints: adamw). */
  optimizerStrategy?: 'adamw' | 'adamw_bf16';
  [key: string]: unknown;
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/**
 * Reads and checks a checkpoint's trainer_state.json; a damaged or wrong
 * field is a one-line error naming the file and the field.
 */
export async function readTrainerState(checkpointDir: string): Promise<TrainerState> {
  const path = join(await trainerDirectory(checkpointDir), TRAINER_STATE_FILE);
  let state: unknown;
  try {
    state = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`cannot read the trainer state ${path}: ${(error as Error).message}`);
  }
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw new Error(`${path}: not a JSON object`);
  const record = state as Record<string, unknown>;
  if (!isCount(record['step'])) throw new Error(`${path}: "step" must be a non-negative integer (got ${JSON.stringify(record['step'])})`);
  const optimizerStep = record['optimizerStep'] ?? 0;
  if (!isCount(optimizerStep)) throw new Error(`${path}: "optimizerStep" must be a non-negative integer (got ${JSON.stringify(optimizerStep)})`);
  if (record['dtype'] !== undefined && record['dtype'] !== 'bf16' && record['dtype'] !== 'fp32')
    throw new Error(`${path}: "dtype" must be "bf16" or "fp32" (got ${JSON.stringify(record['dtype'])})`);
  if (record['optimizerStrategy'] !== undefined && record['optimizerStrategy'] !== 'adamw' && record['optimizerStrategy'] !== 'adamw_bf16')
    throw new Error(`${path}: "optimizerStrategy" must be "adamw" or "adamw_bf16" (got ${JSON.stringify(record['optimizerStrategy'])})`);
  return { ...record, step: record['step'], optimizerStep } as TrainerState;
}

/**
 * Checks that a checkpoint can be resumed without loading it: its trainer
 * state, the headers of its weights and of its optimiser files (which catch
 * a truncated or overwritten file). Throws the first problem found.
 */
export async function verifyCheckpoint(checkpointDir: string): Promise<TrainerState> {
  const state = await readTrainerState(checkpointDir);
  await inspectModelWeights(checkpointDir);
  const trainerDir = await trainerDirectory(checkpointDir);
  const single = join(trainerDir, OPTIMIZER_FILE);
  const index = join(trainerDir, `${OPTIMIZER_FILE}.index.json`);
  const inspectSet = async (base: string): Promise<boolean> => {
    const file = join(trainerDir, `${base}.safetensors`);
    const setIndex = join(trainerDir, `${base}.safetensors.index.json`);
    if (await exists(file)) {
      await inspectSafetensors(file);
      return true;
    }
    if (!(await exists(setIndex))) return false;
    let shards: string[];
    try {
      const parsed = JSON.parse(await readFile(setIndex, 'utf8')) as { weight_map?: Record<string, string> };
      shards = [...new Set(Object.values(parsed.weight_map ?? {}))];
    } catch (error) {
      throw new Error(`${setIndex}: ${(error as Error).message}`);
    }
    for (const file of shards) await inspectSafetensors(join(trainerDir, file));
    return true;
  };
  if (await exists(single)) await inspectSafetensors(single);
  else if (await exists(index)) await inspectSet('optimizer');
  else {
    // ZeRO-1 shards: every rank's file of the world that wrote them.
    const world = (await readdir(trainerDir)).map((n) => /^optimizer-rank0-of-(\d+)\.safetensors/.exec(n)?.[1]).find((w) => w !== undefined);
    if (world === undefined) throw new Error(`${trainerDir}: no ${OPTIMIZER_FILE}, ${OPTIMIZER_FILE}.index.json or optimizer-rank0-of-N.safetensors`);
    for (let r = 0; r < Number(world); r++)
      if (!(await inspectSet(`optimizer-rank${r}-of-${world}`))) throw new Error(`${trainerDir}: optimizer-rank${r}-of-${world}.safetensors is missing (the shards of ${world} ranks are incomplete)`);
  }
  return state;
}

/**
 * Restores the exact training state of a checkpoint into `model` (loaded
 * from that checkpoint directory): fp32 master weights and AdamW moments,
 * read by the engine from the mapped files. Returns the trainer state.
 */
export async function restoreCheckpoint(model: Model, dir: string, placement: OptimizerPlacement = {}): Promise<TrainerState> {
  const state = await readTrainerState(dir);
  const saved = state.optimizerStrategy ?? 'adamw';
  const asked = placement.strategy ?? 'adamw';
  // The state of one strategy is not converted into the other's: refuse before loading anything.
  if (saved !== asked)
    throw new Error(
      `${join(await trainerDirectory(dir), TRAINER_STATE_FILE)}: the checkpoint's optimizer state was made by worker.actor.optim.strategy=${saved}, ` +
        `the run asks for ${asked}; resume with strategy ${saved} (the state is not converted between strategies)`,
    );
  await model.restoreOptimizerState(await trainerDirectory(dir), state.optimizerStep, placement);
  return state;
}
