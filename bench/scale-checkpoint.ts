/**
 * A real-size checkpoint and what the scale bench measures on it:
 *  - writeScaleCheckpoint: random weights of the real Qwen2.5-VL-3B config,
 *    written by transformers (bench/reference/random_checkpoint.py: bf16, 2
 *    shards), with a small tokenizer of our own beside them (the embedding
 *    keeps its 151,936 rows; the config's special token ids are the
 *    tokenizer's);
 *  - measureLoad: seconds and peak RSS of loading it, ours (Model.load) or
 *    transformers' (from_pretrained in fp32), each in a child process so its
 *    memory is its own;
 *  - realSizeFidelity: log-probs of one fixed image+text completion, ours
 *    through VisionLanguageModel beside transformers' on the same ids and
 *    pixels, run one after the other (each holds the fp32 weights).
 *
 * usage: tsx bench/scale-checkpoint.ts make DIR [--size 3b|tiny]
 *        tsx bench/scale-checkpoint.ts load DIR [--engine ours|transformers]
 *        tsx bench/scale-checkpoint.ts fidelity DIR
 * Python is SPATIALTHINKER_PYTHON (default python3), with torch and transformers.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Model } from '../lib/engine/model.js';
import { VisionLanguageModel } from '../lib/engine/pipeline.js';
import { writePreprocessorConfig } from '../lib/engine/random-checkpoint.js';
import { buildTokenizer, writeTokenizerFiles } from '../lib/tokenizer/tiny.js';
import type { RgbImage } from '../lib/vision/image.js';

const here = dirname(fileURLToPath(import.meta.url));
const python = () => process.env['SPATIALTHINKER_PYTHON'] ?? 'python3';

/** Runs a command, returning the JSON object on the last line of its stdout; throws with its stderr on failure. */
async function runJson(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<Record<string, unknown>> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((done) => child.on('close', done));
  const last = stdout.trim().split('\n').at(-1) ?? '';
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = JSON.parse(last) as Record<string, unknown>;
  } catch {
    parsed = undefined;
  }
  if (code !== 0 || !parsed) throw new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim().split('\n').slice(-5).join(' | ') || last}`);
  if (typeof parsed['error'] === 'string') throw new Error(`${command} ${args[0]}: ${parsed['error']}`);
  return parsed;
}

const CORPUS = [
  'Where is the red cube relative to the blue sphere? The red cube is to the left of the blue sphere.',
  'How many objects are on the table? There are three objects: a cube, a sphere and a cylinder.',
  '<think>The box is above the line, so it is higher.</think><answer>above</answer>',
];

export interface ScaleCheckpoint {
  dir: string;
  parameters: number;
  bytes: number;
  files: string[];
  seconds: number;
}

/** Writes the checkpoint into `dir` (created; should be outside any git work tree: about 7.5 GB for 3b). */
export async function writeScaleCheckpoint(dir: string, size: '3b' | 'tiny' = '3b'): Promise<ScaleCheckpoint> {
  await mkdir(dir, { recursive: true });
  const built = buildTokenizer(CORPUS, { vocabSize: 400, minPairFrequency: 1 });
  await writeTokenizerFiles(dir, built);
  const idsFile = join(dir, 'token_ids.json');
  await writeFile(idsFile, JSON.stringify(built.specialTokenIds));
  const out = await runJson(python(), [join(here, 'reference/random_checkpoint.py'), dir, '--token-ids', idsFile, '--size', size]);
  await rm(idsFile);
  // transformers writes no preprocessor config for a bare model.
  await writePreprocessorConfig(dir);
  return { dir, parameters: out['parameters'] as number, bytes: out['bytes'] as number, files: out['files'] as string[], seconds: out['seconds'] as number };
}

export interface LoadMeasurement {
  engine: 'ours' | 'transformers';
  seconds: number;
  /** Peak resident set of the loading process (getrusage maxrss). */
  peakRssBytes: number;
  parameters: number;
}

/** Loads `dir` in a fresh child process and reports its time and peak RSS. */
export async function measureLoad(dir: string, engine: 'ours' | 'transformers'): Promise<LoadMeasurement> {
  const out =
    engine === 'ours'
      ? await runJson(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), 'load-child', dir])
      : await runJson(python(), [join(here, 'reference/load_transformers.py'), dir]);
  return { engine, seconds: out['seconds'] as number, peakRssBytes: out['peakRssBytes'] as number, parameters: out['parameters'] as number };
}

async function loadChild(dir: string): Promise<void> {
  const start = performance.now();
  const model = await Model.load(dir);
  const seconds = (performance.now() - start) / 1000;
  const parameters = model.parameterCount;
  await model.dispose();
  console.log(JSON.stringify({ seconds, peakRssBytes: process.resourceUsage().maxRSS * 1024, parameters }));
}

/** A fixed image (a smooth colour pattern, 224 x 224) and question, and a fixed completion. */
function fixedImage(side = 224): RgbImage {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++)
    for (let x = 0; x < side; x++) {
      const i = (y * side + x) * 3;
      data[i] = (x * 255) / (side - 1);
      data[i + 1] = (y * 255) / (side - 1);
      data[i + 2] = ((x + y) * 97) % 256;
    }
  return { data, width: side, height: side };
}

export interface FidelityResult {
  tokens: number;
  maxAbsDiff: number;
  meanAbsDiff: number;
  promptTokens: number;
  imageTokens: number;
}

/**
 * Ours first (prepares the prompt with our tokenizer and image processor, computes
 * log-probs, releases the model), then transformers in a child process on the same
 * ids, pixels and grid.
 */
export async function realSizeFidelity(dir: string): Promise<FidelityResult> {
  const work = await mkdtemp(join(tmpdir(), 'st-fidelity-'));
  try {
    const vlm = await VisionLanguageModel.load(dir);
    let prompt;
    let completion: number[];
    let ours: Float32Array;
    try {
      prompt = await vlm.prepare({ text: 'Where is the red cube relative to the blue sphere?', images: [fixedImage()] });
      completion = vlm.tokenizer.encode('<think>The red cube is left of the sphere.</think><answer>left</answer>');
      [ours] = (await vlm.model.logprobs([prompt.input], [completion])) as [Float32Array];
    } finally {
      await vlm.dispose();
    }
    const images = prompt.input.images;
    if (!images) throw new Error('the fidelity prompt lost its image');
    const input = { ids: Array.from(prompt.input.ids), completion, grid: images.gridThw.map((g) => Array.from(g)), pixelShape: [images.pixels.length] };
    await writeFile(join(work, 'input.json'), JSON.stringify(input));
    await writeFile(join(work, 'pixels.f32'), Buffer.from(images.pixels.buffer, images.pixels.byteOffset, images.pixels.byteLength));
    await runJson(python(), [join(here, 'reference/fidelity_transformers.py'), dir, work]);
    const theirs = JSON.parse(await readFile(join(work, 'logprobs.json'), 'utf8')) as number[];
    if (theirs.length !== ours.length) throw new Error(`transformers gave ${theirs.length} log-probs for ${ours.length} tokens`);
    let max = 0;
    let sum = 0;
    for (let i = 0; i < ours.length; i++) {
      const d = Math.abs((ours[i] as number) - (theirs[i] as number));
      max = Math.max(max, d);
      sum += d;
    }
    const imageTokens = images.gridThw.reduce((a, [t, h, w]) => a + (t * h * w) / 4, 0);
    return { tokens: ours.length, maxAbsDiff: max, meanAbsDiff: sum / ours.length, promptTokens: prompt.input.ids.length, imageTokens };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { size: { type: 'string' }, engine: { type: 'string' } } });
  const [command, dirArg] = positionals;
  if (!command || !dirArg) throw new Error('usage: scale-checkpoint.ts make|load|fidelity DIR [--size 3b|tiny] [--engine ours|transformers]');
  const dir = resolve(dirArg);
  if (command === 'load-child') return loadChild(dir);
  if (command === 'make') console.log(JSON.stringify(await writeScaleCheckpoint(dir, (values.size ?? '3b') as '3b' | 'tiny')));
  else if (command === 'load') console.log(JSON.stringify(await measureLoad(dir, (values.engine ?? 'ours') as 'ours' | 'transformers')));
  else if (command === 'fidelity') console.log(JSON.stringify(await realSizeFidelity(dir)));
  else throw new Error(`unknown command ${command}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
