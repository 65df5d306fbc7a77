/**
 * The synthesis pipeline: scene graphs in, STVQA rows out.
 *
 * `synthesizeRows` is the streaming seam: it yields one row object per picked question,
 * image by image, for any writer (JSONL here; Parquet can be plugged in the same way).
 * `synthesizeDataset` drives it until every category has enough candidates for the target
 * (or the input ends), then balances into train and val (balance.ts).
 *
 * Per image, the generator's questions are picked one at a time, up to `perImage`: each
 * pick goes to the category furthest below its target share (relation 50%, the other 8
 * equal), skipping categories whose pool is already full (`oversample` x allocation), and
 * takes that category's best-rated remaining question of the level furthest below the
 * reference's difficulty mix (40% easy, 40% medium, 20% hard, kept per category).
 * Everything is deterministic given the seed.
 */
import { allocations, balance, type Allocation } from './balance.js';
import {
  CATEGORIES,
  emptyRefusals,
  generateQuestions,
  type Category,
  type Level,
  type Margins,
  type Question,
  type RefusalCounts,
} from './questions.js';
import { hash32 } from '../random.js';
import { rowFromContext, type RowContext, type SynthRow } from './row.js';
import { normaliseGraph, type NormaliseIssues, type NormalisedGraph, type SceneGraph } from './scene-graph.js';
import { questionSubgraph, sceneJson } from './subgraph.js';

export interface SynthOptions {
  /** Seed of every random choice (default 0). */
  seed?: number;
  /** Questions picked per image at most (default 4). */
  perImage?: number;
  /** Rows wanted after balancing (default 10,000); also sizes the candidate pools. */
  target?: number;
  /** Candidate pool per category, as a multiple of its allocation (default 2). */
  oversample?: number;
  /** Stop after this many scene graphs. */
  maxImages?: number;
  /** Share of relation questions (default 0.5). */
  relationShare?: number;
  margins?: Partial<Margins>;
  /** Labels an existence "no" question may ask about (default: VG150 classes). */
  absentVocabulary?: readonly string[];
  /**
   * The `images.path` of a graph's rows, or undefined to skip the image (counted as
   * `image-missing`). Default: the graph's file, else `<image_id>.jpg`.
   */
  imagePath?: (graph: NormalisedGraph) => string | undefined | Promise<string | undefined>;
  /** Called after every scene graph. */
  onProgress?: (stats: SynthStats) => void;
}

export interface SynthStats {
  /** Scene graphs read. */
  images: number;
  /** Scene graphs that gave at least one row. */
  imagesUsed: number;
  /** Scene graphs skipped, by reason. */
  imagesSkipped: Record<string, number>;
  /** Questions generated (before picking), per category. */
  generated: Record<Category, number>;
  /** Questions picked into rows, per category. */
  picked: Record<Category, number>;
  /** Questions picked into rows, per category and level. */
  pickedLevels: Record<Category, Record<Level, number>>;
  /** Refused candidates per category and reason. */
  refused: RefusalCounts;
  /** What normalisation dropped. */
  normalise: NormaliseIssues;
}

export function emptySynthStats(): SynthStats {
  const zero = () => Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  return {
    images: 0,
    imagesUsed: 0,
    imagesSkipped: {},
    generated: zero(),
    picked: zero(),
    pickedLevels: Object.fromEntries(CATEGORIES.map((c) => [c, { easy: 0, medium: 0, hard: 0 }])) as Record<
      Category,
      Record<Level, number>
    >,
    refused: emptyRefusals(),
    normalise: { unnamed: 0, degenerateBox: 0, duplicateObject: 0, danglingRelation: 0, duplicateRelation: 0 },
  };
}

const DEFAULTS = { seed: 0, perImage: 4, target: 10_000, oversample: 2, relationShare: 0.5 };

/** The reference's difficulty mix (method.md §4.3 step 1). */
export const LEVEL_SHARES: Readonly<Record<Level, number>> = { easy: 0.4, medium: 0.4, hard: 0.2 };
const LEVELS: readonly Level[] = ['easy', 'medium', 'hard'];

/** The best-rated question of the level furthest below its share in the category so far. */
function pickQuestion(pool: Question[], counts: Record<Level, number>): Question {
  const total = counts.easy + counts.medium + counts.hard;
  let best: Level | undefined;
  let bestDeficit = -Infinity;
  for (const level of LEVELS) {
    if (!pool.some((q) => q.level === level)) continue;
    const deficit = LEVEL_SHARES[level] * (total + 1) - counts[level];
    if (deficit > bestDeficit) {
      bestDeficit = deficit;
      best = level;
    }
  }
  const index = pool.findIndex((q) => q.level === best);
  return pool.splice(index, 1)[0] as Question;
}

/** Pool caps per category: oversample x allocation (at least 1 for a non-empty allocation). */
export function poolCaps(target: number, oversample: number, relationShare: number): Record<Category, number> {
  const alloc = allocations(target, relationShare);
  return Object.fromEntries(CATEGORIES.map((c) => [c, alloc[c].total === 0 ? 0 : Math.max(1, Math.ceil(oversample * alloc[c].total))])) as Record<
    Category,
    number
  >;
}

/**
 * A picked question with what its row needs (about 1 KB, where the rendered row with its
 * prompt is several): pools are kept in this form and rendered after balancing.
 */
export interface Candidate {
  question: Question;
  context: RowContext;
  category: Category;
  rating: number;
}

export function candidateRow(candidate: Candidate): SynthRow {
  return rowFromContext(candidate.question, candidate.context);
}

/**
 * Rows for the questions picked from each scene graph, streamed: the seam for any row
 * writer. Stops picking a category once it reaches `caps` (default: from target and
 * oversample); stops altogether when every category is full. `stats` is updated as it goes.
 */
export async function* synthesizeRows(
  graphs: AsyncIterable<SceneGraph> | Iterable<SceneGraph>,
  options: SynthOptions = {},
  stats: SynthStats = emptySynthStats(),
  caps?: Record<Category, number>,
): AsyncGenerator<SynthRow> {
  for await (const candidate of synthesizeCandidates(graphs, options, stats, caps)) yield candidateRow(candidate);
}

/** synthesizeRows before rendering: the picked questions with their row context. */
export async function* synthesizeCandidates(
  graphs: AsyncIterable<SceneGraph> | Iterable<SceneGraph>,
  options: SynthOptions = {},
  stats: SynthStats = emptySynthStats(),
  caps?: Record<Category, number>,
): AsyncGenerator<Candidate> {
  const seed = options.seed ?? DEFAULTS.seed;
  const perImage = options.perImage ?? DEFAULTS.perImage;
  if (!Number.isSafeInteger(perImage) || perImage < 1) throw new RangeError(`perImage must be a positive integer, got ${perImage}`);
  const relationShare = options.relationShare ?? DEFAULTS.relationShare;
  const limit =
    caps ?? poolCaps(options.target ?? DEFAULTS.target, options.oversample ?? DEFAULTS.oversample, relationShare);
  const share = (c: Category) => (c === 'relation' ? relationShare : (1 - relationShare) / (CATEGORIES.length - 1));
  const full = () => CATEGORIES.every((c) => stats.picked[c] >= limit[c]);
  let totalPicked = CATEGORIES.reduce((n, c) => n + stats.picked[c], 0);
  for await (const sceneGraph of graphs) {
    if (full()) return;
    if (options.maxImages !== undefined && stats.images >= options.maxImages) return;
    stats.images++;
    let graph: NormalisedGraph;
    try {
      graph = normaliseGraph(sceneGraph, stats.normalise);
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      skip(stats, 'bad-image-size');
      options.onProgress?.(stats);
      continue;
    }
    const path = options.imagePath ? await options.imagePath(graph) : (graph.file ?? `${graph.imageId}.jpg`);
    if (path === undefined) {
      skip(stats, 'image-missing');
      options.onProgress?.(stats);
      continue;
    }
    const { questions, refusals } = generateQuestions(graph, {
      seed,
      ...(options.margins ? { margins: options.margins } : {}),
      ...(options.absentVocabulary ? { absentVocabulary: options.absentVocabulary } : {}),
    });
    for (const c of CATEGORIES) {
      for (const [reason, n] of Object.entries(refusals[c])) stats.refused[c][reason] = (stats.refused[c][reason] ?? 0) + n;
    }
    const pools = new Map<Category, Question[]>();
    for (const q of questions) {
      stats.generated[q.category]++;
      const list = pools.get(q.category);
      if (list) list.push(q);
      else pools.set(q.category, [q]);
    }
    for (const list of pools.values())
      list.sort((a, b) => b.rating - a.rating || hash32(seed, a.question) - hash32(seed, b.question));
    let used = false;
    for (let k = 0; k < perImage; k++) {
      let best: Category | undefined;
      let bestDeficit = -Infinity;
      for (const c of CATEGORIES) {
        if ((pools.get(c)?.length ?? 0) === 0 || stats.picked[c] >= limit[c]) continue;
        const deficit = share(c) * (totalPicked + 1) - stats.picked[c];
        if (deficit > bestDeficit) {
          bestDeficit = deficit;
          best = c;
        }
      }
      if (best === undefined) break;
      const question = pickQuestion(pools.get(best) as Question[], stats.pickedLevels[best]);
      stats.pickedLevels[best][question.level]++;
      stats.picked[best]++;
      totalPicked++;
      used = true;
      yield {
        question,
        category: question.category,
        rating: question.rating,
        context: {
          imageId: graph.imageId,
          width: graph.width,
          height: graph.height,
          scene: sceneJson(questionSubgraph(graph, question.question)),
          imagePath: path,
        },
      };
    }
    if (used) stats.imagesUsed++;
    options.onProgress?.(stats);
  }
}

function skip(stats: SynthStats, reason: string): void {
  stats.imagesSkipped[reason] = (stats.imagesSkipped[reason] ?? 0) + 1;
}

export interface SynthDataset<R = SynthRow> {
  train: R[];
  val: R[];
  stats: SynthStats;
  allocation: Record<Category, Allocation>;
  taken: Record<Category, { available: number; train: number; val: number }>;
}

/**
 * Candidates until the pools are full or the input ends, balanced into train and val but
 * not yet rendered (render with candidateRow while writing, to keep memory small).
 */
export async function synthesizeCandidateDataset(
  graphs: AsyncIterable<SceneGraph> | Iterable<SceneGraph>,
  options: SynthOptions = {},
): Promise<SynthDataset<Candidate>> {
  const stats = emptySynthStats();
  const candidates: Candidate[] = [];
  for await (const candidate of synthesizeCandidates(graphs, options, stats)) candidates.push(candidate);
  const result = balance(candidates, {
    target: options.target ?? DEFAULTS.target,
    seed: options.seed ?? DEFAULTS.seed,
    relationShare: options.relationShare ?? DEFAULTS.relationShare,
  });
  return { train: result.train, val: result.val, stats, allocation: result.allocation, taken: result.taken };
}

/** Candidate rows until the pools are full or the input ends, then balanced into train and val. */
export async function synthesizeDataset(
  graphs: AsyncIterable<SceneGraph> | Iterable<SceneGraph>,
  options: SynthOptions = {},
): Promise<SynthDataset> {
  const result = await synthesizeCandidateDataset(graphs, options);
  return { ...result, train: result.train.map(candidateRow), val: result.val.map(candidateRow) };
}
