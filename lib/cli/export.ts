/**
 * `spatialthinker export SRC OUT`: loads a model or checkpoint directory into
 * the engine and writes a clean Hugging Face model directory through the
 * trainer's native writer (config.json with torch_dtype, safetensors sharded
 * with their index, tokenizer, chat template, preprocessor and generation
 * configs). The output is written beside OUT and renamed into place.
 */
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Model } from '../engine/model.js';
import { writeModelDirectory } from '../rl/checkpoint.js';
import { parseArgs } from './args.js';
import { CliError, UsageError } from './errors.js';

const help = `usage: spatialthinker export SRC OUT [--dtype bf16|fp32] [--max-shard-size N] [--force]

Writes the model of SRC (a Hugging Face model directory, or a training
checkpoint's step folder) as a clean model directory OUT: config.json
(torch_dtype set), model.safetensors or model-0000i-of-0000N.safetensors with
model.safetensors.index.json, and the tokenizer, chat template, preprocessor
and generation configs of SRC. The tensors are converted and written by the
engine one at a time. A checkpoint's trainer/ folder (optimiser state) is not
copied.

options:
  --dtype bf16|fp32       weight dtype (default: SRC's torch_dtype, else bf16)
  --max-shard-size N      largest shard: bytes, or 5GB, 500MB, 2GiB (default 5GB, as transformers)
  --force                 replace OUT when it exists and is not empty
`;

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };

/** "5GB" -> 5e9, "500MB" -> 5e8, "2GiB" -> 2^31, "1000" -> 1000 (transformers' convert_file_size_to_int units). */
export function parseShardSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match?.[2]?.toUpperCase() ?? '';
  const factor = unit === '' ? 1 : UNITS[unit];
  if (!match || factor === undefined) throw new UsageError(`--max-shard-size: "${text}" is not a size (use bytes, or e.g. 5GB, 500MB, 2GiB)`);
  const bytes = Math.floor(Number(match[1]) * factor);
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new UsageError(`--max-shard-size: "${text}" must be at least 1 byte`);
  return bytes;
}

async function kindOf(path: string): Promise<'missing' | 'file' | 'directory'> {
  try {
    return (await stat(path)).isDirectory() ? 'directory' : 'file';
  } catch {
    return 'missing';
  }
}

async function sourceDtype(src: string): Promise<'bf16' | 'fp32'> {
  try {
    const config = JSON.parse(await readFile(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
    return config['torch_dtype'] === 'float32' ? 'fp32' : 'bf16';
  } catch {
    return 'bf16'; // Model.load reports what is wrong with config.json
  }
}

export async function exportCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { dtype: { type: 'string' }, 'max-shard-size': { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(help);
    return;
  }
  if (positionals.length !== 2) throw new UsageError(`expected SRC and OUT, got ${positionals.length} arguments (--help shows the usage)`);
  const src = resolve(positionals[0] as string);
  const out = resolve(positionals[1] as string);
  if (values.dtype !== undefined && values.dtype !== 'bf16' && values.dtype !== 'fp32') throw new UsageError(`--dtype must be bf16 or fp32, got "${values.dtype}"`);
  const maxShardBytes = parseShardSize(values['max-shard-size'] ?? '5GB');

  const srcKind = await kindOf(src);
  if (srcKind !== 'directory') throw new CliError(`${src}: ${srcKind === 'missing' ? 'no such directory' : 'not a directory'}`);
  if ((await kindOf(join(src, 'config.json'))) !== 'file') throw new CliError(`${src}: no config.json (not a model directory)`);
  const outKind = await kindOf(out);
  if (outKind === 'file') throw new CliError(`${out}: exists and is a file`);
  if (outKind === 'directory' && (await readdir(out)).length > 0 && !values.force) throw new CliError(`${out}: exists and is not empty (--force replaces it)`);
  if (out === src) throw new CliError(`${out}: OUT is SRC`);
  const dtype = (values.dtype as 'bf16' | 'fp32' | undefined) ?? (await sourceDtype(src));

  process.stderr.write(`loading ${src}\n`);
  const started = Date.now();
  const model = await Model.load(src);
  const temporary = join(dirname(out), `.tmp-export-${basename(out)}-${process.pid}`);
  try {
    await rm(temporary, { recursive: true, force: true });
    await mkdir(temporary, { recursive: true });
    process.stderr.write(`writing ${(model.parameterCount / 1e6).toFixed(1)}M parameters as ${dtype} (shards up to ${maxShardBytes} bytes)\n`);
    const files = await writeModelDirectory(model, src, temporary, { dtype, maxShardBytes });
    if (outKind === 'directory') await rm(out, { recursive: true, force: true });
    await rename(temporary, out);
    process.stderr.write(`wrote ${out} (${files.length} files: ${files.join(', ')}) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  } finally {
    await model.dispose();
  }
}
