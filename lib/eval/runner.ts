/**
 * Runs benchmarks through a generator and records every answer as it comes:
 * prompts are built per the template, sent in batches, scored, and appended
 * to `<out>/samples/<benchmark>.jsonl`. A run in an output folder that
 * already has results continues after them (same model, decoding, template
 * and matching, which `<out>/run.json` records); an aborted run stops after
 * writing what had finished.
 */
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { DataError } from '../data/schema.js';
import { loadSamples } from './load.js';
import { scoreCompletion } from './matching.js';
import { ResultsLog } from './results-log.js';
import { renderPrompt, type ImageSize } from './templates.js';
import type { BenchmarkDefinition, EvalRecord, EvalSample, Generation, GenerationRequest, Generator, MatchingMode, TemplateName } from './types.js';

export interface BenchmarkSource {
  definition: BenchmarkDefinition;
  files: readonly string[];
}

export interface EvalProgress {
  benchmark: string;
  /** Samples answered in this run. */
  answered: number;
  /** Samples found already answered in the output folder. */
  resumed: number;
  /** Samples whose request failed (not recorded; a later run retries them). */
  failed: number;
}

export interface EvalRunOptions {
  benchmarks: readonly BenchmarkSource[];
  generator: Generator;
  outDir: string;
  template?: TemplateName;
  matching?: MatchingMode;
  /** Evaluate the first N samples of each benchmark. */
  limit?: number;
  signal?: AbortSignal;
  onProgress?: (progress: EvalProgress) => void;
}

export interface BenchmarkRun {
  definition: BenchmarkDefinition;
  /** Every record of the benchmark in the output folder (earlier runs' too), in file order. */
  records: EvalRecord[];
  /** Samples the benchmark has (within the limit). */
  total: number;
  answered: number;
  resumed: number;
  failures: { id: string; error: string }[];
}

export interface RunSettings {
  template: TemplateName;
  matching: MatchingMode;
  generator: Readonly<Record<string, unknown>>;
}

/** Raised when an output folder holds results of a different configuration. */
export class RunConfigError extends Error {
  override name = 'RunConfigError';
}

export function samplesPath(outDir: string, benchmark: string): string {
  return join(outDir, 'samples', `${benchmark}.jsonl`);
}

function stable(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stable).join(',')}]`;
  if (value && typeof value === 'object')
    return `{${Object.keys(value as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stable((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}

async function hasRecords(outDir: string): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(join(outDir, 'samples'));
  } catch {
    return false;
  }
  for (const name of names) if (name.endsWith('.jsonl') && (await stat(join(outDir, 'samples', name))).size > 0) return true;
  return false;
}

/** Writes `<out>/run.json`, or checks that the folder's earlier run used the same settings. */
export async function claimOutputFolder(outDir: string, settings: RunSettings): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, 'run.json');
  let previous: RunSettings | undefined;
  try {
    previous = JSON.parse(await readFile(path, 'utf8')) as RunSettings;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new RunConfigError(`${path}: ${(error as Error).message}`);
  }
  // A folder whose earlier run recorded nothing (it failed before the first answer) can be reused.
  if (previous && !(await hasRecords(outDir))) previous = undefined;
  if (previous) {
    const differences: string[] = [];
    if (previous.template !== settings.template) differences.push(`template ${previous.template} -> ${settings.template}`);
    if (previous.matching !== settings.matching) differences.push(`matching ${previous.matching} -> ${settings.matching}`);
    if (stable(previous.generator) !== stable(settings.generator))
      differences.push(`model/decoding ${stable(previous.generator)} -> ${stable(settings.generator)}`);
    if (differences.length > 0)
      throw new RunConfigError(
        `${outDir} holds results of another configuration (${differences.join('; ')}); use a new output folder` +
          (differences.length === 1 && previous.matching !== settings.matching ? ' (the report of a run already shows accuracy under both matching modes)' : ''),
      );
    return;
  }
  await writeFile(path, JSON.stringify({ ...settings, created: new Date().toISOString() }, null, 2) + '\n');
}

/** The stored size of an image, as PIL's `Image.size` reports it (no EXIF rotation). */
export async function imageSize(bytes: Uint8Array): Promise<ImageSize> {
  const meta = await sharp(bytes).metadata();
  if (!meta.width || !meta.height) throw new Error('no width/height in the image header');
  return { width: meta.width, height: meta.height };
}

/** The prompt text of a sample under a template. */
export async function promptOf(definition: BenchmarkDefinition, sample: EvalSample, template: TemplateName): Promise<string> {
  let size: ImageSize | undefined;
  if (template === 'spatial_thinker') {
    const first = sample.images[0];
    if (!first) throw new DataError(`${sample.file} row ${sample.row}: the spatial_thinker template needs an image`, sample.file, sample.row);
    try {
      size = await imageSize(first.bytes);
    } catch (error) {
      throw new DataError(`${sample.file} row ${sample.row}: the first image cannot be read (${(error as Error).message})`, sample.file, sample.row);
    }
  }
  return renderPrompt(definition, sample.question, template, size);
}

/** The record of a sample and its answer. */
export function recordOf(sample: EvalSample, prompt: string, generation: Generation, matching: MatchingMode): EvalRecord {
  const scored = scoreCompletion(sample, generation.text, matching);
  return {
    id: sample.id,
    benchmark: sample.benchmark,
    row: sample.row,
    ...(sample.sourceId !== undefined ? { sourceId: sample.sourceId } : {}),
    ...(sample.task !== undefined ? { task: sample.task } : {}),
    kind: sample.kind,
    prompt,
    completion: generation.text,
    ...(generation.finishReason ? { finishReason: generation.finishReason } : {}),
    ...(generation.tokens !== undefined ? { tokens: generation.tokens } : {}),
    extracted: scored.extracted,
    prediction: scored.prediction,
    groundTruth: scored.groundTruth,
    answer: sample.answer,
    ...(sample.choices ? { choices: sample.choices } : {}),
    matching,
    correct: scored.correct,
  };
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('evaluation aborted', 'AbortError');
}

/** Evaluates the benchmarks in order; rejects with the signal's reason (an AbortError) when aborted. */
export async function runEvaluation(options: EvalRunOptions): Promise<BenchmarkRun[]> {
  const template = options.template ?? 'spatial_thinker';
  const matching = options.matching ?? 'corrected';
  const { generator, signal } = options;
  await claimOutputFolder(options.outDir, { template, matching, generator: generator.identity });
  const runs: BenchmarkRun[] = [];
  for (const { definition, files } of options.benchmarks) {
    if (signal?.aborted) throw abortError(signal);
    const log = await ResultsLog.open(samplesPath(options.outDir, definition.name));
    const run: BenchmarkRun = { definition, records: [], total: 0, answered: 0, resumed: 0, failures: [] };
    const seen = new Set<string>();
    const progress = () => options.onProgress?.({ benchmark: definition.name, answered: run.answered, resumed: run.resumed, failed: run.failures.length });
    try {
      let batch: EvalSample[] = [];
      const flush = async () => {
        const samples = batch;
        batch = [];
        if (samples.length === 0) return;
        const byId = new Map<string, { sample: EvalSample; prompt: string }>();
        const requests: GenerationRequest[] = [];
        for (const sample of samples) {
          const prompt = await promptOf(definition, sample, template);
          byId.set(sample.id, { sample, prompt });
          requests.push({ id: sample.id, images: sample.images, text: prompt });
        }
        try {
          await generator.generate(requests, {
            ...(signal ? { signal } : {}),
            onResult: async (generation) => {
              const entry = byId.get(generation.id);
              if (!entry) throw new Error(`the generator answered an unknown request ${generation.id}`);
              await log.append(recordOf(entry.sample, entry.prompt, generation, matching));
              run.answered++;
              progress();
            },
            onError: (id, error) => {
              run.failures.push({ id, error: error.message });
              progress();
            },
          });
        } catch (error) {
          if (signal?.aborted) throw abortError(signal);
          throw error;
        }
        if (signal?.aborted) throw abortError(signal);
      };
      for await (const sample of loadSamples(definition, files, options.limit !== undefined ? { limit: options.limit } : {})) {
        run.total++;
        seen.add(sample.id);
        if (log.has(sample.id)) {
          run.resumed++;
          continue;
        }
        batch.push(sample);
        if (batch.length >= generator.batchSize) await flush();
      }
      await flush();
      progress();
    } finally {
      await log.close();
    }
    // Records of samples outside this run's limit stay in the file but not in the results.
    run.records = [...log.records.values()].filter((r) => seen.has(r.id));
    runs.push(run);
  }
  return runs;
}
