/**
 * `spatialthinker score`: reads JSONL rows {prediction, ground_truth, problem,
 * image_size?}, writes each row back with `reward: {overall, ...components}`.
 * Rows are scored in batches (one native matching call per batch) while the
 * input streams, so memory stays flat on large files.
 */
import { createReadStream, createWriteStream, openSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from './args.js';
import { parseImageSize } from '../rewards/image-size.js';
import { rewards } from '../rewards/registry.js';
import type { BatchReward, ImageGeometry, RewardInput } from '../rewards/types.js';
import { CliError, UsageError } from './errors.js';
import { Progress } from './progress.js';

const HELP = `usage: spatialthinker score --input IN.jsonl --output OUT.jsonl [options]

Each input line is a JSON object with "prediction", "ground_truth" and "problem"
(the image size is read from "Image size: (W x H)" in the problem, or from an
"image_size": [W, H] field). Each output line is the input object with
"reward": {overall, format, count, accuracy, spatial} added.

options:
  --input FILE         JSONL to score (required)
  --output FILE        where to write the scored JSONL (required; written atomically)
  --reward NAME        spatial (default), sparse or sparse_scene
  --similarity NAME    label similarity for box matching: wordnet (default) or exact
  --weights LIST       spatial reward weights, e.g. format=0.1,count=0.2,accuracy=0.5,spatial=0.2
  --device NAME        where box matching runs: cpu (default) or cuda
  --batch-size N       rows per scoring batch (default 4096)
  --skip-invalid       skip malformed lines (and report how many) instead of stopping
  -h, --help           show this help
`;

interface ScoreOptions {
  input: string;
  output: string;
  reward: BatchReward;
  batchSize: number;
  skipInvalid: boolean;
}

export async function scoreCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      input: { type: 'string' },
      output: { type: 'string' },
      reward: { type: 'string', default: 'spatial' },
      similarity: { type: 'string', default: 'wordnet' },
      weights: { type: 'string' },
      device: { type: 'string', default: 'cpu' },
      'batch-size': { type: 'string', default: '4096' },
      'skip-invalid': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (!values.input || !values.output) throw new UsageError(`--input and --output are required (--help shows the usage)`);
  const batchSize = Number(values['batch-size']);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`--batch-size must be a positive integer`);
  if (values.device !== 'cpu' && values.device !== 'cuda') throw new UsageError(`--device must be cpu or cuda`);
  if (values.similarity !== 'wordnet' && values.similarity !== 'exact')
    throw new UsageError(`--similarity must be wordnet or exact`);
  if (!rewards.has(values.reward)) throw new UsageError(`unknown --reward "${values.reward}" (one of: ${rewards.names().join(', ')})`);
  const rewardOptions =
    values.reward === 'spatial'
      ? { similarity: values.similarity, device: values.device, weights: parseWeights(values.weights) }
      : {};
  const reward = rewards.create(values.reward, rewardOptions);
  await scoreFile({ input: values.input, output: values.output, reward, batchSize, skipInvalid: values['skip-invalid'] });
}

export function parseWeights(text: string | undefined): Record<string, number> | undefined {
  if (text === undefined) return undefined;
  const weights: Record<string, number> = {};
  for (const part of text.split(',')) {
    const [name, value, extra] = part.split('=');
    const number = Number(value);
    if (!name || value === undefined || extra !== undefined || value.trim() === '' || !Number.isFinite(number))
      throw new UsageError(`--weights: "${part}" is not name=number`);
    if (!['format', 'count', 'accuracy', 'spatial'].includes(name))
      throw new UsageError(`--weights: unknown component "${name}" (format, count, accuracy, spatial)`);
    weights[name] = number;
  }
  return weights;
}

interface PendingRow {
  line: number;
  row: Record<string, unknown>;
  input: RewardInput;
}

async function scoreFile(options: ScoreOptions): Promise<void> {
  const { input, output, reward, batchSize, skipInvalid } = options;
  const lines = createInterface({ input: createReadStream(input), crlfDelay: Infinity });
  const partial = `${output}.partial`;
  const out = createWriteStream(partial, { fd: openOutput(partial, output) });
  // A write can fail later (ENOSPC, EIO): keep the error for the next await
  // instead of letting an 'error' event without a listener kill the process.
  let writeError: Error | undefined;
  out.on('error', (error) => (writeError ??= error));
  const checkWrite = () => {
    if (writeError) throw new CliError(`cannot write ${output}: ${writeError.message}`);
  };
  const progress = new Progress('scored', 'rows');
  let lineNumber = 0;
  let scored = 0;
  let skipped = 0;
  let batch: PendingRow[] = [];

  const invalid = (line: number, message: string) => {
    if (!skipInvalid) throw new CliError(`${input}:${line}: ${message} (use --skip-invalid to skip such lines)`);
    skipped++;
  };
  const flush = async () => {
    if (batch.length === 0) return;
    const scores = await reward.scoreBatch(batch.map((p) => p.input));
    let text = '';
    batch.forEach((p, i) => {
      text += JSON.stringify({ ...p.row, reward: scores[i] }) + '\n';
    });
    checkWrite();
    if (!out.write(text)) await settled(out, 'drain');
    checkWrite();
    scored += batch.length;
    progress.update(scored);
    batch = [];
  };

  try {
    try {
      for await (const text of lines) {
        lineNumber++;
        if (text.trim() === '') continue;
        const pending = parseRow(text, lineNumber, reward);
        if (typeof pending === 'string') {
          invalid(lineNumber, pending);
          continue;
        }
        batch.push(pending);
        if (batch.length >= batchSize) await flush();
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`cannot read ${input}: no such file`);
      throw error;
    }
    await flush();
    out.end();
    await settled(out, 'finish');
    checkWrite();
    renameSync(partial, output);
  } catch (error) {
    out.destroy();
    rmSync(partial, { force: true });
    throw error;
  }
  progress.done(scored);
  process.stderr.write(
    `scored ${scored} rows from ${input} into ${output}` + (skipped > 0 ? `; skipped ${skipped} invalid lines` : '') + '\n',
  );
}

/** Resolves on `event`, or when the stream fails or closes instead (its error is kept by the caller). */
function settled(stream: NodeJS.EventEmitter, event: string): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const name of [event, 'error', 'close']) stream.off(name, done);
      resolve();
    };
    for (const name of [event, 'error', 'close']) stream.on(name, done);
  });
}

/** The partial output file, opened now so that a bad --output is one clear line. */
function openOutput(partial: string, output: string): number {
  try {
    return openSync(partial, 'w');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? `its folder ${dirname(partial)} does not exist` : e.message;
    throw new CliError(`cannot write --output ${output}: ${why}`);
  }
}

function parseRow(text: string, line: number, reward: BatchReward): PendingRow | string {
  let row: unknown;
  try {
    row = JSON.parse(text);
  } catch (error) {
    return `not valid JSON (${(error as Error).message})`;
  }
  if (typeof row !== 'object' || row === null || Array.isArray(row)) return 'not a JSON object';
  const r = row as Record<string, unknown>;
  for (const field of ['prediction', 'ground_truth', 'problem'] as const)
    if (typeof r[field] !== 'string') return `"${field}" is missing or not a string`;
  let image: ImageGeometry | undefined;
  if (r['image_size'] !== undefined) {
    const size = r['image_size'];
    if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v > 0))
      return '"image_size" must be [W, H] with positive integers';
    image = { width: size[0] as number, height: size[1] as number };
  } else {
    image = parseImageSize(r['problem'] as string);
  }
  const input: RewardInput = {
    completion: r['prediction'] as string,
    groundTruth: r['ground_truth'] as string,
    prompt: r['problem'] as string,
    ...(image ? { image } : {}),
  };
  const problem = reward.validate?.(input);
  if (problem !== undefined) return problem;
  void line;
  return { line, row: r, input };
}
