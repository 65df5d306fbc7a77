/**
 * Reading training-run directories for the report: metrics.jsonl (curves),
 * samples.jsonl (sampled completions), config.yaml, checkpoints and
 * TensorBoard files; and finding the runs of a demo directory (one run per
 * subdirectory, plus summary.json).
 *
 * Bad lines never stop the report: each becomes a problem naming the file and
 * line, and a last line cut short by a killed run is noted as truncated.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { textLines } from './json-lines.js';

export class ReportError extends Error {
  override name = 'ReportError';
}

/** (step, value) points sorted by step. */
export type Curve = [step: number, value: number][];

export interface RunMetrics {
  /** Curves by metric name, in the order the names first appear. */
  curves: Map<string, Curve>;
  /** Valid metric lines. */
  lines: number;
  lastStep: number | undefined;
  /** ISO times of the first and last lines that have one. */
  firstTime: string | undefined;
  lastTime: string | undefined;
  /** Validation lines (split "val"). */
  validations: number;
}

export interface Sample {
  /** Where the sample was read: "FILE:LINE". */
  source: string;
  step: number;
  split: string;
  index: number | undefined;
  imageId: string | undefined;
  /** The image path as the run gave it, and resolved against the run directory. */
  image: string | undefined;
  imagePath: string | undefined;
  /** The frame boxes are expressed in ([W, H], the prompt's "Image size"). */
  imageSize: [number, number] | undefined;
  category: string | undefined;
  question: string | undefined;
  completion: string;
  groundTruth: string;
  reward: Record<string, number>;
  advantage: number | undefined;
}

export interface RunSamples {
  /** Samples by split, then by step (at most `perStep` kept per step, in file order). */
  bySplit: Map<string, Map<number, Sample[]>>;
  /** Sample lines read, kept or not. */
  total: number;
}

export interface RunData {
  name: string;
  dir: string;
  metrics: RunMetrics;
  samples: RunSamples;
  /** config.yaml's text, when present. */
  config: string | undefined;
  /** Checkpoint directory names (checkpoints/step-NNNNNN), sorted. */
  checkpoints: string[];
  /** TensorBoard event files under tensorboard/. */
  eventFiles: string[];
}

/** Collects problems with a cap, so a file of garbage does not make a page of garbage. */
export class Problems {
  readonly list: string[] = [];
  count = 0;

  constructor(private readonly cap = 100) {}

  add(message: string): void {
    this.count++;
    if (this.list.length < this.cap) this.list.push(message);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isStep = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/**
 * One line's JSON object, or undefined after reporting why not. A last line
 * with no newline that does not parse is a write cut short, not corruption.
 */
function parseLine(file: string, line: { number: number; text: string; terminated: boolean }, problems: Problems): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line.text);
  } catch (error) {
    if (!line.terminated) problems.add(`${file}:${line.number}: last line is incomplete (the run was probably stopped while writing it); ignored`);
    else problems.add(`${file}:${line.number}: not valid JSON (${(error as Error).message})`);
    return undefined;
  }
  if (!isObject(value)) {
    problems.add(`${file}:${line.number}: not a JSON object`);
    return undefined;
  }
  return value;
}

/**
 * The name a metric is plotted under: validation lines carry `val/...` names;
 * a bare name on a non-train line gets its split as a prefix, so train and
 * validation values of one name never share a curve.
 */
function curveName(split: string, key: string): string {
  return split === 'train' || key.startsWith(`${split}/`) ? key : `${split}/${key}`;
}

export async function readMetrics(file: string, problems: Problems): Promise<RunMetrics> {
  // Steps may repeat when a run resumes from a checkpoint: the later line wins.
  const byName = new Map<string, Map<number, number>>();
  const metrics: RunMetrics = { curves: new Map(), lines: 0, lastStep: undefined, firstTime: undefined, lastTime: undefined, validations: 0 };
  if (!existsSync(file)) return metrics;
  for await (const line of textLines(file)) {
    if (line.text.trim() === '') continue;
    const record = parseLine(file, line, problems);
    if (!record) continue;
    const { step, split = 'train', time } = record;
    if (!isStep(step)) {
      problems.add(`${file}:${line.number}: "step" is missing or not a non-negative integer`);
      continue;
    }
    if (typeof split !== 'string' || split === '') {
      problems.add(`${file}:${line.number}: "split" is not a non-empty string`);
      continue;
    }
    metrics.lines++;
    if (split === 'val') metrics.validations++;
    metrics.lastStep = Math.max(metrics.lastStep ?? step, step);
    if (typeof time === 'string' && !Number.isNaN(Date.parse(time))) {
      metrics.firstTime ??= time;
      metrics.lastTime = time;
    }
    for (const [key, value] of Object.entries(record)) {
      if (key === 'step' || typeof value !== 'number') continue;
      const name = curveName(split, key);
      let points = byName.get(name);
      if (!points) byName.set(name, (points = new Map()));
      points.set(step, value);
    }
  }
  for (const [name, points] of byName) metrics.curves.set(name, [...points].sort((a, b) => a[0] - b[0]));
  return metrics;
}

const optionalString = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

function imageSizeOf(value: unknown): [number, number] | undefined {
  if (!Array.isArray(value) || value.length !== 2) return undefined;
  const [w, h] = value;
  return typeof w === 'number' && typeof h === 'number' && w > 0 && h > 0 ? [w, h] : undefined;
}

function sampleOf(runDir: string, source: string, record: Record<string, unknown>): Sample | string {
  const { step, split = 'train', completion, ground_truth: groundTruth, reward, advantage, index, image, image_size: imageSize } = record;
  if (!isStep(step)) return '"step" is missing or not a non-negative integer';
  if (typeof split !== 'string' || split === '') return '"split" is not a non-empty string';
  if (typeof completion !== 'string') return '"completion" is missing or not a string';
  if (typeof groundTruth !== 'string') return '"ground_truth" is missing or not a string';
  if (image !== undefined && image !== null && typeof image !== 'string') return '"image" is not a path string';
  if (imageSize !== undefined && imageSize !== null && !imageSizeOf(imageSize)) return '"image_size" is not [W, H] with positive numbers';
  const rewards: Record<string, number> = {};
  if (isObject(reward)) for (const [k, v] of Object.entries(reward)) if (typeof v === 'number') rewards[k] = v;
  return {
    source,
    step,
    split,
    index: typeof index === 'number' ? index : undefined,
    imageId: optionalString(record['image_id']),
    image: image || undefined,
    imagePath: image ? resolve(runDir, image) : undefined,
    imageSize: imageSizeOf(imageSize),
    category: optionalString(record['category']),
    question: optionalString(record['question']),
    completion,
    groundTruth,
    reward: rewards,
    advantage: typeof advantage === 'number' ? advantage : undefined,
  };
}

export async function readSamples(runDir: string, file: string, perStep: number, problems: Problems): Promise<RunSamples> {
  const samples: RunSamples = { bySplit: new Map(), total: 0 };
  if (!existsSync(file)) return samples;
  for await (const line of textLines(file)) {
    if (line.text.trim() === '') continue;
    const record = parseLine(file, line, problems);
    if (!record) continue;
    const sample = sampleOf(runDir, `${file}:${line.number}`, record);
    if (typeof sample === 'string') {
      problems.add(`${file}:${line.number}: ${sample}`);
      continue;
    }
    samples.total++;
    let bySteps = samples.bySplit.get(sample.split);
    if (!bySteps) samples.bySplit.set(sample.split, (bySteps = new Map()));
    let kept = bySteps.get(sample.step);
    if (!kept) bySteps.set(sample.step, (kept = []));
    if (kept.length < perStep) kept.push(sample);
  }
  return samples;
}

async function listNames(dir: string, keep: (name: string) => boolean): Promise<string[]> {
  try {
    return (await readdir(dir)).filter(keep).sort();
  } catch {
    return [];
  }
}

export async function readRun(dir: string, name: string, samplesPerStep: number, problems: Problems): Promise<RunData> {
  const configPath = join(dir, 'config.yaml');
  return {
    name,
    dir,
    metrics: await readMetrics(join(dir, 'metrics.jsonl'), problems),
    samples: await readSamples(dir, join(dir, 'samples.jsonl'), samplesPerStep, problems),
    config: existsSync(configPath) ? await readFile(configPath, 'utf8') : undefined,
    checkpoints: await listNames(join(dir, 'checkpoints'), (n) => /^step-\d+$/.test(n)),
    eventFiles: await listNames(join(dir, 'tensorboard'), (n) => n.startsWith('events.out.tfevents.')),
  };
}

const isRunDir = (dir: string) => existsSync(join(dir, 'metrics.jsonl')) || existsSync(join(dir, 'samples.jsonl'));

export interface RunLocations {
  /** Each run's display name and directory. */
  runs: { name: string; dir: string }[];
  /** True when `dir` holds runs as subdirectories (a demo directory). */
  parent: boolean;
}

/** The run `dir` is, or the runs it holds as subdirectories (sorted by name). */
export async function locateRuns(dir: string): Promise<RunLocations> {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new ReportError(`${dir}: no such directory`);
  }
  if (!isDir) throw new ReportError(`${dir}: not a directory`);
  if (isRunDir(dir)) return { runs: [{ name: basename(resolve(dir)), dir }], parent: false };
  const entries = await readdir(dir, { withFileTypes: true });
  const runs = entries
    .filter((e) => e.isDirectory() && isRunDir(join(dir, e.name)))
    .map((e) => ({ name: e.name, dir: join(dir, e.name) }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  if (runs.length === 0)
    throw new ReportError(`${dir}: not a run directory (no metrics.jsonl or samples.jsonl) and no subdirectory is one`);
  return { runs, parent: true };
}

/** summary.json of a directory, or undefined when absent; unreadable JSON is a problem. */
export async function readSummary(dir: string, problems: Problems): Promise<unknown> {
  const file = join(dir, 'summary.json');
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (error) {
    problems.add(`${file}: not valid JSON (${(error as Error).message})`);
    return undefined;
  }
}
