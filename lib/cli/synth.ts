/** `spatialthinker synth`: template STVQA questions from Visual Genome or VG150 scene graphs. */
import { createWriteStream, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from './args.js';
import { CATEGORIES } from '../synth/questions.js';
import { JsonStreamError, readVisualGenome, type NormalisedGraph, type SceneGraph } from '../synth/scene-graph.js';
import { candidateRow, synthesizeCandidateDataset, type Candidate, type SynthDataset, type SynthStats } from '../synth/synthesize.js';
import { describeEndpoint } from '../synth/llm.js';
import { synthesizeLlmCandidateDataset, type LlmGenerationStats } from '../synth/llm-generate.js';
import { readVg150Jsonl, Vg150FileError } from '../synth/vg150.js';
import { CliError, UsageError } from './errors.js';
import { Progress } from './progress.js';
import { formatLlmReport, LLM_HELP, LLM_OPTIONS, llmSettings, validateCandidates, withInterrupt, type ValidationOutcome } from './synth-llm.js';

const HELP = `usage: spatialthinker synth --vg-scene-graphs F --vg-image-data F --images DIR --out DIR [options]
       spatialthinker synth --vg150 FILE.jsonl [--images DIR] --out DIR [options]

Synthesises STVQA-style spatial multiple-choice questions (9 categories) from
scene graphs with templates, deciding every answer from box geometry and
relation predicates (or, with --llm-generate, has a model propose them), and
writes train.jsonl, val.jsonl and summary.json to --out. Rows follow the
STVQA-7K schema; "images" is {"path": ...}, relative to --out. With an LLM
stage, a pass-rate report per category ends the output on stderr and goes
into summary.json ("llm").

sources:
  --vg-scene-graphs F   Visual Genome scene_graphs.json (streamed)
  --vg-image-data F     Visual Genome image_data.json (sizes, urls; streamed)
  --images DIR          image root: VG's VG_100K*/ folders (or the images
                        themselves); for --vg150 the base of relative image
                        paths (default: the JSONL file's folder)
  --vg150 FILE.jsonl    VG150 rows: image_id, objects and relationships (JSON
                        strings or lists), image_path|image|file_name, and
                        optionally width/height or image_size

options:
  --out DIR             output folder (required)
  --target N            rows after balancing, train + val (default 10000)
  --seed S              seed of every random choice (default 0)
  --per-image K         template questions per image at most (default 4)
  --oversample X        candidates per category, times its allocation,
                        before reading stops (default 2)
  --max-images N        read at most N scene graphs
${LLM_HELP}`;

function integer(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${text}"`);
  return n;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function requireFile(option: string, path: string): void {
  if (!isFile(path)) throw new CliError(`--${option}: no such file: ${path}`);
}

/** Rows rendered one at a time as they are written (a rendered row carries its whole prompt). */
async function writeJsonl(path: string, candidates: readonly Candidate[]): Promise<void> {
  const out = createWriteStream(path);
  const done = new Promise<void>((resolvePromise, reject) => {
    out.on('finish', resolvePromise);
    out.on('error', reject);
  });
  for (const candidate of candidates) if (!out.write(JSON.stringify(candidateRow(candidate)) + '\n')) await once(out, 'drain');
  out.end();
  await done;
}

export async function synthCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'vg-scene-graphs': { type: 'string' },
      'vg-image-data': { type: 'string' },
      images: { type: 'string' },
      vg150: { type: 'string' },
      out: { type: 'string' },
      target: { type: 'string' },
      seed: { type: 'string' },
      'per-image': { type: 'string' },
      oversample: { type: 'string' },
      'max-images': { type: 'string' },
      ...LLM_OPTIONS,
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (!values.out) throw new UsageError(`--out is required (--help shows the usage)`);
  const vg = values['vg-scene-graphs'] !== undefined || values['vg-image-data'] !== undefined;
  if (vg === (values.vg150 !== undefined))
    throw new UsageError(`give either --vg-scene-graphs with --vg-image-data, or --vg150 (--help shows the usage)`);
  const target = integer('target', values.target, 10_000, 1);
  const seed = integer('seed', values.seed, 0, 0);
  const perImage = integer('per-image', values['per-image'], 4, 1);
  const maxImages = values['max-images'] === undefined ? undefined : integer('max-images', values['max-images'], 0, 1);
  const oversample = values.oversample === undefined ? 2 : Number(values.oversample);
  if (!Number.isFinite(oversample) || oversample < 1) throw new UsageError(`--oversample must be a number >= 1, got "${values.oversample}"`);

  const outDir = resolve(values.out);
  const llm = llmSettings(values, outDir);
  const imagesDir = values.images === undefined ? undefined : resolve(values.images);
  if (imagesDir !== undefined && !statSync(imagesDir, { throwIfNoEntry: false })?.isDirectory())
    throw new CliError(`--images: no such folder: ${imagesDir}`);

  const skippedWhileReading: Record<string, number> = {};
  const skipped = (reason: string) => {
    skippedWhileReading[reason] = (skippedWhileReading[reason] ?? 0) + 1;
  };
  let graphs: AsyncIterable<SceneGraph>;
  let imagePath: (graph: NormalisedGraph) => string | undefined;
  const relativeToOut = (file: string) => relative(outDir, file).split(sep).join('/');
  if (vg) {
    const sceneGraphs = values['vg-scene-graphs'];
    const imageData = values['vg-image-data'];
    if (!sceneGraphs || !imageData) throw new UsageError('--vg-scene-graphs and --vg-image-data go together');
    if (imagesDir === undefined) throw new UsageError('--images DIR is required with --vg-scene-graphs');
    requireFile('vg-scene-graphs', sceneGraphs);
    requireFile('vg-image-data', imageData);
    graphs = readVisualGenome(sceneGraphs, imageData, { onMissingImage: () => skipped('no-image-data') });
    imagePath = (graph) => {
      const file = graph.file ?? `${graph.imageId}.jpg`;
      for (const candidate of [join(imagesDir, file), join(imagesDir, basename(file))])
        if (isFile(candidate)) return relativeToOut(candidate);
      return undefined;
    };
  } else {
    const input = values.vg150 as string;
    requireFile('vg150', input);
    graphs = readVg150Jsonl(input, { ...(imagesDir ? { imagesDir } : {}), onSkip: (reason) => skipped(reason) });
    imagePath = (graph) => (graph.file && isAbsolute(graph.file) ? relativeToOut(graph.file) : undefined);
  }

  mkdirSync(outDir, { recursive: true });
  if (llm?.generate) process.stderr.write(`synth: questions from ${describeEndpoint(llm.generateEndpoint)}\n`);
  if (llm?.validate) process.stderr.write(`synth: validation by ${describeEndpoint(llm.validateEndpoint)}\n`);
  const progress = new Progress('read', 'scene graphs');
  const started = Date.now();
  let result: SynthDataset<Candidate>;
  let generation: LlmGenerationStats | undefined;
  try {
    if (llm?.generate) {
      const settings = llm;
      const generated = await withInterrupt(settings.cacheDir, (signal) =>
        synthesizeLlmCandidateDataset(graphs, {
          endpoint: settings.generateEndpoint,
          concurrency: settings.concurrency,
          cacheDir: settings.cacheDir,
          signal,
          seed,
          target,
          oversample,
          ...(maxImages !== undefined ? { maxImages } : {}),
          imagePath,
          ...(settings.attachImage ? { loadImage: (_graph, path) => readFile(join(outDir, path)) } : {}),
          onProgress: (stats) => progress.update(stats.images),
        }),
      );
      generation = generated.llm;
      result = generated;
    } else {
      result = await synthesizeCandidateDataset(graphs, {
        seed,
        target,
        perImage,
        oversample,
        ...(maxImages !== undefined ? { maxImages } : {}),
        imagePath,
        onProgress: (stats) => progress.update(stats.images),
      });
    }
  } catch (error) {
    if (error instanceof Vg150FileError || error instanceof JsonStreamError) throw new CliError(error.message);
    throw error;
  }
  progress.done(result.stats.images);
  for (const [reason, n] of Object.entries(skippedWhileReading))
    result.stats.imagesSkipped[reason] = (result.stats.imagesSkipped[reason] ?? 0) + n;
  let validation: ValidationOutcome | undefined;
  if (llm?.validate) {
    const settings = llm;
    const before = result;
    validation = await withInterrupt(settings.cacheDir, (signal) => validateCandidates(before.train, before.val, outDir, settings, signal));
    result = { ...result, train: validation.train, val: validation.val };
  }
  await writeJsonl(join(outDir, 'train.jsonl'), result.train);
  await writeJsonl(join(outDir, 'val.jsonl'), result.val);
  const seconds = (Date.now() - started) / 1000;
  const summary = {
    source: vg ? { vgSceneGraphs: values['vg-scene-graphs'], vgImageData: values['vg-image-data'] } : { vg150: values.vg150 },
    seed,
    target,
    perImage,
    oversample,
    seconds,
    train: result.train.length,
    val: result.val.length,
    allocation: result.allocation,
    taken: result.taken,
    stats: result.stats,
    ...(llm
      ? {
          llm: {
            ...(generation ? { generation } : {}),
            ...(validation
              ? {
                  validation: {
                    endpoint: validation.endpoint,
                    requests: validation.requests,
                    cached: validation.cached,
                    retries: validation.retries,
                    perCategory: validation.perCategory,
                  },
                }
              : {}),
          },
        }
      : {}),
  };
  writeFileSync(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  process.stderr.write(formatSummary(result, seconds, outDir));
  if (llm) process.stderr.write(formatLlmReport(result.stats, generation, validation));
}

/** The stderr report: per category, generated / picked / train / val and the main refusal reasons. */
export function formatSummary(result: SynthDataset<unknown>, seconds: number, outDir: string): string {
  const s: SynthStats = result.stats;
  const skipped = Object.entries(s.imagesSkipped)
    .map(([r, n]) => `${r} ${n}`)
    .join(', ');
  const lines = [
    `synth: ${s.images} scene graphs read (${s.imagesUsed} used${skipped ? `; skipped: ${skipped}` : ''}) in ${seconds.toFixed(1)} s`,
    `wrote ${result.train.length} train and ${result.val.length} val rows to ${outDir}`,
    '',
    `${'category'.padEnd(18)} ${'generated'.padStart(9)} ${'picked'.padStart(7)} ${'train'.padStart(6)} ${'val'.padStart(5)} ${'refused'.padStart(8)}  top refusal reasons`,
  ];
  for (const c of CATEGORIES) {
    const reasons = Object.entries(s.refused[c]).sort((a, b) => b[1] - a[1]);
    const refused = reasons.reduce((n, [, k]) => n + k, 0);
    const top = reasons
      .slice(0, 4)
      .map(([r, n]) => `${r} ${n}`)
      .join(', ');
    lines.push(
      `${c.padEnd(18)} ${String(s.generated[c]).padStart(9)} ${String(s.picked[c]).padStart(7)} ${String(result.taken[c].train).padStart(6)} ${String(result.taken[c].val).padStart(5)} ${String(refused).padStart(8)}  ${top}`,
    );
  }
  return lines.join('\n') + '\n';
}
