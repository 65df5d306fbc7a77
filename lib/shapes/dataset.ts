/**
 * Shapes-world datasets: streams of random scenes with their scene graphs, and train /
 * held-out splits of STVQA rows made from them by the project's question synthesis
 * (lib/synth), with the images rendered beside the JSONL files.
 *
 * The two splits come from disjoint scene streams (different seeds, and any layout seed the
 * training stream used is skipped in the held-out one), so no held-out image is ever seen
 * in training.
 *
 * Margins. The generator decides from 2D boxes; in a perspective scene three of its rules
 * disagree with the 3D truth at its default margins, so `SHAPES_MARGINS` tightens them.
 * Measured over all questions of 2,000 default scenes (defaults -> these margins):
 * - distance ("which is closer to the R") compares box-centre distances in the image, and
 *   foreshortening shrinks depth offsets: 217 of 3,181 answers (6.8%) disagreed with the 3D
 *   ground distances at ratio 0.75; none of 1,182 at 0.3 (0.4 still let through 2 of 790
 *   in a larger run);
 * - size ("appears larger") compares box areas, while a cone fills about half of its box and
 *   a sphere about 79%: 13 of 2,712 disagreed with the silhouette areas at 1.3; none at 1.6;
 * - depth falls back to bottom edges for pairs with no "behind" / "in front of" relation
 *   (their order is unclear, truth.ts): 103 such questions at a 5% gap, 6 of them against
 *   the centres' order; none at 15%.
 * test/shapes-graph.test.ts checks every row against the layout.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { allocations, balance } from '../synth/balance.js';
import { CATEGORIES, type Category, type Level, type Margins } from '../synth/questions.js';
import { hash32, seeded, shuffled } from '../random.js';
import type { SynthRow } from '../synth/row.js';
import type { SceneGraph } from '../synth/scene-graph.js';
import { candidateRow, emptySynthStats, poolCaps, synthesizeCandidates, type Candidate, type SynthStats } from '../synth/synthesize.js';
import { renderShapesPng, type RenderOptions } from './render.js';
import { shapesSceneGraph, type RelationFamily } from './scene-graph.js';
import type { TruthMargins } from './truth.js';
import { COLOUR_NAMES, randomLayout, worldConfig, type ShapesLayout, type WorldOptions } from './world.js';
import { SHAPE_KINDS } from './geometry.js';

/** Generator margins for the shapes world (see the module comment). */
export const SHAPES_MARGINS: Readonly<Partial<Margins>> = Object.freeze({ distanceRatio: 0.3, sizeRatio: 1.6, depthGap: 0.15 });

/** The categories shapes scenes can yield: all but reach (nothing holds, rides or wears anything). */
export const SHAPES_CATEGORIES: readonly Category[] = CATEGORIES.filter((c) => c !== 'reach');

export interface ShapesScene {
  graph: SceneGraph;
  layout: ShapesLayout;
  /** The seed randomLayout built the layout from (with the same world options). */
  layoutSeed: number;
}

export interface ShapesSceneOptions extends WorldOptions {
  /** Scenes to yield (default: no end). */
  count?: number;
  seed?: number;
  /** Image ids are `<idPrefix><index, 6 digits>` (default `shapes-<seed>-`). */
  idPrefix?: string;
  /** Image files are `<imageDir>/<image id>.png`, relative to the dataset folder (default `images`). */
  imageDir?: string;
  /** Relation families the graphs annotate (default all). */
  relations?: readonly RelationFamily[];
  truthMargins?: Partial<TruthMargins>;
  /** Layout seeds not to use (the held-out stream skips the training stream's). */
  excludeLayoutSeeds?: ReadonlySet<number>;
}

/**
 * Random scenes with their Visual Genome-form graphs; scene i is a pure function of
 * (seed, i, options). Bad options throw here, not at the first scene.
 */
export function generateShapesScenes(options: ShapesSceneOptions = {}): Generator<ShapesScene> {
  const count = options.count ?? Infinity;
  if (!(count >= 0)) throw new RangeError(`count must be >= 0, got ${String(options.count)}`);
  worldConfig(options);
  return scenes(options, count);
}

function* scenes(options: ShapesSceneOptions, count: number): Generator<ShapesScene> {
  const seed = options.seed ?? 0;
  const prefix = options.idPrefix ?? `shapes-${seed}-`;
  const imageDir = options.imageDir ?? 'images';
  for (let i = 0; i < count; i++) {
    const layoutSeed = hash32('shapes-scene', seed, i);
    if (options.excludeLayoutSeeds?.has(layoutSeed)) continue;
    const layout = randomLayout(layoutSeed, options);
    const imageId = `${prefix}${String(i).padStart(6, '0')}`;
    const graph = shapesSceneGraph(layout, {
      imageId,
      file: `${imageDir}/${imageId}.png`,
      ...(options.relations ? { relations: options.relations } : {}),
      ...(options.truthMargins ? { margins: options.truthMargins } : {}),
    });
    yield { graph, layout, layoutSeed };
  }
}

/** Every "<colour> <kind>" label the options allow: what existence "no" questions ask about. */
export function shapesVocabulary(options: WorldOptions = {}): string[] {
  const kinds = options.kinds ?? SHAPE_KINDS;
  const colours = options.colours ?? COLOUR_NAMES;
  return kinds.flatMap((k) => colours.map((c) => `${c} ${k}`));
}

export interface ShapesSplitOptions extends Omit<ShapesSceneOptions, 'count' | 'idPrefix' | 'imageDir' | 'excludeLayoutSeeds'> {
  outDir: string;
  trainRows: number;
  valRows: number;
  /** Questions per image at most (default 4). */
  perImage?: number;
  /** Share of relation questions (default 0.5, the reference's). */
  relationShare?: number;
  /** Candidates per category before reading stops, times its allocation (default 2). */
  oversample?: number;
  /** Generator margins, over SHAPES_MARGINS. */
  margins?: Partial<Margins>;
  /** Scenes read per split at most (default 50 per row + 1,000). */
  maxScenes?: number;
  render?: RenderOptions;
  /** Images rendered at once (default 4). */
  concurrency?: number;
  onProgress?: (event: { split: 'train' | 'val'; phase: 'synthesis' | 'render'; done: number; total?: number }) => void;
}

export interface ShapesSplitSummary {
  rows: number;
  /** Scenes read (their candidates fill the category pools). */
  scenes: number;
  /** Images written: the scenes that have a row. */
  images: number;
  categories: Record<Category, number>;
  levels: Record<Level, number>;
  /** Questions the generator made, per category, before picking and balancing. */
  generated: Record<Category, number>;
  /** Categories that got fewer rows than their allocation (the pools ran dry). */
  short: Partial<Record<Category, { wanted: number; got: number }>>;
  renderMs: number;
}

export interface ShapesSplits {
  train: SynthRow[];
  val: SynthRow[];
  summary: { train: ShapesSplitSummary; val: ShapesSplitSummary; msPerImage: number; margins: Partial<Margins> };
  /** The layouts of the images the rows use, by image id: the 3D truth behind every row. */
  layouts: Map<string, ShapesLayout>;
}

/**
 * The balance target and relation share that give `rows` rows with `relationShare` of them
 * relation questions and the rest split evenly over the other shapes categories. The
 * balancer allocates to all 9 categories and reach gets nothing here, so its share goes
 * back: relation gets s T and each other category (1 - s) T / 8 rows, with s chosen so that
 * s T : (1 - s) T / 8 = relationShare : (1 - relationShare) / 7; T is the smallest target
 * whose allocations over the shapes categories add up to at least `rows`.
 */
export function shapesBalance(rows: number, relationShare = 0.5): { target: number; relationShare: number } {
  if (!(relationShare >= 0 && relationShare <= 1)) throw new RangeError(`relationShare must be in [0, 1], got ${String(relationShare)}`);
  const others = SHAPES_CATEGORIES.length - 1;
  const all = CATEGORIES.length - 1;
  const share = relationShare === 0 ? 0 : relationShare / (relationShare + ((1 - relationShare) * all) / others);
  const total = (t: number) => {
    const a = allocations(t, share);
    return SHAPES_CATEGORIES.reduce((n, c) => n + a[c].total, 0);
  };
  let target = rows;
  while (total(target) < rows) target++;
  return { target, relationShare: share };
}

/**
 * Renders train and held-out splits into `outDir`: `images/<id>.png`, `train.jsonl`,
 * `val.jsonl` (STVQA rows whose `images.path` is relative to outDir) and `summary.json`.
 * Each split reads scenes until every category's candidate pool is full, balances them with
 * the synthesis' own rules and renders only the images its rows use.
 */
export async function writeShapesSplits(options: ShapesSplitOptions): Promise<ShapesSplits> {
  for (const name of ['trainRows', 'valRows'] as const) {
    const v = options[name];
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${String(v)}`);
  }
  const seed = options.seed ?? 0;
  const { width, height } = worldConfig(options);
  const margins = { ...SHAPES_MARGINS, ...options.margins };
  const context: SplitContext = { seed, margins, options, layouts: new Map(), trainSeeds: new Set() };
  const train = await synthesizeSplit('train', options.trainRows, context);
  const val = await synthesizeSplit('val', options.valRows, context);
  await mkdir(options.outDir, { recursive: true });
  await writeRows(join(options.outDir, 'train.jsonl'), train.rows);
  await writeRows(join(options.outDir, 'val.jsonl'), val.rows);
  const images = train.summary.images + val.summary.images;
  const msPerImage = images === 0 ? 0 : (train.summary.renderMs + val.summary.renderMs) / images;
  const summary = { train: train.summary, val: val.summary, msPerImage, margins };
  await writeFile(
    join(options.outDir, 'summary.json'),
    JSON.stringify({ seed, width, height, ...summary }, null, 2) + '\n',
  );
  return { train: train.rows, val: val.rows, summary, layouts: context.layouts };
}

interface SplitContext {
  seed: number;
  margins: Partial<Margins>;
  options: ShapesSplitOptions;
  /** Filled with the layouts of the images that get rows. */
  layouts: Map<string, ShapesLayout>;
  /** Layout seeds the training split read: the held-out split skips them. */
  trainSeeds: Set<number>;
}

async function synthesizeSplit(split: 'train' | 'val', rows: number, context: SplitContext): Promise<{ rows: SynthRow[]; summary: ShapesSplitSummary }> {
  const { seed, margins, options, layouts, trainSeeds } = context;
  const { target, relationShare } = shapesBalance(rows, options.relationShare ?? 0.5);
  const caps = poolCaps(target, options.oversample ?? 2, relationShare);
  for (const c of CATEGORIES) if (!SHAPES_CATEGORIES.includes(c)) caps[c] = 0;
  const splitSeed = hash32('shapes-split', seed, split);
  // Layout seeds by image id: the few layouts that get rows are rebuilt from them, so that
  // the thousands of scenes read are not all kept in memory.
  const layoutSeeds = new Map<string, number>();
  const stream = generateShapesScenes({
    ...options,
    seed: splitSeed,
    count: options.maxScenes ?? 50 * rows + 1000,
    idPrefix: `shapes-${split}-`,
    ...(split === 'val' ? { excludeLayoutSeeds: trainSeeds } : {}),
  });
  function* graphs(): Generator<SceneGraph> {
    for (const { graph, layoutSeed } of stream) {
      layoutSeeds.set(String(graph.image.image_id), layoutSeed);
      if (split === 'train') trainSeeds.add(layoutSeed);
      yield graph;
    }
  }
  const stats: SynthStats = emptySynthStats();
  const candidates: Candidate[] = [];
  for await (const candidate of synthesizeCandidates(
    graphs(),
    {
      seed: splitSeed,
      perImage: options.perImage ?? 4,
      relationShare,
      margins,
      absentVocabulary: shapesVocabulary(options),
      onProgress: (s) => options.onProgress?.({ split, phase: 'synthesis', done: s.images }),
    },
    stats,
    caps,
  ))
    candidates.push(candidate);
  const balanced = balance(candidates, { target, seed: splitSeed, relationShare });
  const empty = SHAPES_CATEGORIES.filter((c) => balanced.allocation[c].total > 0 && balanced.taken[c].available === 0);
  if (empty.length > 0)
    throw new RangeError(`${split}: ${stats.images} shapes scenes gave no ${empty.join(', ')} questions; the world options leave them impossible`);
  const chosen = shuffled([...balanced.train, ...balanced.val], seeded(splitSeed, 'rows')).slice(0, rows);

  const short: ShapesSplitSummary['short'] = {};
  for (const c of SHAPES_CATEGORIES) {
    const got = balanced.taken[c].train + balanced.taken[c].val;
    if (got < balanced.allocation[c].total) short[c] = { wanted: balanced.allocation[c].total, got };
  }
  const imageIds = [...new Set(chosen.map((c) => c.context.imageId))];
  for (const id of imageIds) layouts.set(id, randomLayout(layoutSeeds.get(id) as number, options));
  const started = performance.now();
  await renderAll(imageIds, layouts, options, split);
  const renderMs = performance.now() - started;

  const out = chosen.map(candidateRow);
  const categories = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  const levels: Record<Level, number> = { easy: 0, medium: 0, hard: 0 };
  for (const row of out) {
    categories[row.category]++;
    levels[row.level]++;
  }
  return {
    rows: out,
    summary: { rows: out.length, scenes: stats.images, images: imageIds.length, categories, levels, generated: stats.generated, short, renderMs },
  };
}

async function renderAll(ids: readonly string[], layouts: ReadonlyMap<string, ShapesLayout>, options: ShapesSplitOptions, split: 'train' | 'val'): Promise<void> {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 4));
  const dir = join(options.outDir, 'images');
  await mkdir(dir, { recursive: true });
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++] as string;
      await writeFile(join(dir, `${id}.png`), await renderShapesPng(layouts.get(id) as ShapesLayout, options.render));
      options.onProgress?.({ split, phase: 'render', done: ++done, total: ids.length });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, worker));
}

/** JSON lines, one row each, in the STVQA field order rows are built in. */
async function writeRows(path: string, rows: readonly SynthRow[]): Promise<void> {
  const out = createWriteStream(path);
  const done = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  for (const row of rows) if (!out.write(JSON.stringify(row) + '\n')) await once(out, 'drain');
  out.end();
  await done;
}
