/**
 * Accuracies from per-sample records: per benchmark and per task, with the
 * binomial standard error `sqrt(p(1-p)/n)` (shared/spec/method.md §5.1), and
 * the paper's reported columns derived by its conventions: CV-Bench 2D =
 * unweighted mean of Count and Relation, 3D = mean of Depth and Distance,
 * Avg = mean of 2D and 3D; BLINK Avg = mean of Spatial Relation and Relative
 * Depth; 3DSRBench sample-weighted over its 2,625 questions; RoboSpatial-Home
 * over its configuration and compatibility questions. The standard error of
 * an unweighted mean of k independent accuracies is `sqrt(Σ se²) / k`.
 *
 * Task accuracy here is task correct / task evaluated. The reference divides
 * by `min(task size, samples evaluated)`, which is the same for a complete
 * run and wrong for a partial one.
 */
import { scoreCompletion } from './matching.js';
import { PAPER_AVERAGE_KEYS, PAPER_METRICS, PAPER_SUBTASK_METRICS } from './paper.js';
import type { AnswerKind, BenchmarkDefinition, EvalRecord, MatchingMode } from './types.js';

/** An accuracy in [0, 1] with its standard error and sample count. */
export interface Estimate {
  value: number;
  se: number;
  n: number;
}

export function proportion(correct: number, n: number): Estimate {
  if (n === 0) return { value: NaN, se: NaN, n: 0 };
  const p = correct / n;
  return { value: p, se: Math.sqrt((p * (1 - p)) / n), n };
}

/** Unweighted mean of independent estimates. */
export function meanOf(estimates: readonly Estimate[]): Estimate {
  const k = estimates.length;
  if (k === 0) return { value: NaN, se: NaN, n: 0 };
  return {
    value: estimates.reduce((s, e) => s + e.value, 0) / k,
    se: Math.sqrt(estimates.reduce((s, e) => s + e.se * e.se, 0)) / k,
    n: estimates.reduce((s, e) => s + e.n, 0),
  };
}

export interface TaskSummary {
  task: string;
  correct: number;
  accuracy: Estimate;
}

export interface BenchmarkSummary {
  benchmark: string;
  title: string;
  kind: AnswerKind;
  /** Samples in the benchmark (within the run's limit). */
  total: number;
  /** Samples with a recorded answer. */
  evaluated: number;
  correct: number;
  accuracy: Estimate;
  tasks: TaskSummary[];
  matching: MatchingMode;
  /** The same completions scored under the other matching mode. */
  otherMatching: { mode: MatchingMode; correct: number; accuracy: Estimate };
  /** Completions from which no answer could be extracted. */
  extractionFailures: number;
  /** Option benchmarks: answers extracted but naming no option (corrected matching). */
  unmatched: number;
  /** Completions that hit the token limit. */
  truncated: number;
  /** Requests that failed in the last run (not recorded). */
  failedRequests: number;
}

export interface SummaryInput {
  definition: Pick<BenchmarkDefinition, 'name' | 'title' | 'kind' | 'tasks'>;
  records: readonly EvalRecord[];
  total: number;
  failures?: readonly unknown[];
}

export function summarizeBenchmark(input: SummaryInput, matching: MatchingMode): BenchmarkSummary {
  const { definition, records } = input;
  const other: MatchingMode = matching === 'corrected' ? 'reference' : 'corrected';
  let correct = 0;
  let otherCorrect = 0;
  let extractionFailures = 0;
  let unmatched = 0;
  let truncated = 0;
  const byTask = new Map<string, { correct: number; n: number }>();
  for (const r of records) {
    if (r.correct) correct++;
    if (r.extracted === null) extractionFailures++;
    else if (r.kind !== 'open' && r.prediction === null) unmatched++;
    if (r.finishReason === 'length') truncated++;
    try {
      if (scoreCompletion(r, r.completion, other).correct) otherCorrect++;
    } catch {
      // an answer key the other mode cannot read scores as wrong there
    }
    if (r.task !== undefined) {
      const t = byTask.get(r.task) ?? { correct: 0, n: 0 };
      t.n++;
      if (r.correct) t.correct++;
      byTask.set(r.task, t);
    }
  }
  const order = [...(definition.tasks ?? [])];
  for (const task of [...byTask.keys()].sort()) if (!order.includes(task)) order.push(task);
  const tasks = order.filter((t) => byTask.has(t)).map((task) => {
    const t = byTask.get(task)!;
    return { task, correct: t.correct, accuracy: proportion(t.correct, t.n) };
  });
  return {
    benchmark: definition.name,
    title: definition.title,
    kind: definition.kind,
    total: input.total,
    evaluated: records.length,
    correct,
    accuracy: proportion(correct, records.length),
    tasks,
    matching,
    otherMatching: { mode: other, correct: otherCorrect, accuracy: proportion(otherCorrect, records.length) },
    extractionFailures,
    unmatched,
    truncated,
    failedRequests: input.failures?.length ?? 0,
  };
}

/** How one of the paper's columns comes from benchmark results. */
type Derivation =
  | { from: readonly string[]; tasks?: readonly string[] } // the first benchmark present; overall, or sample-weighted over tasks
  | { mean: readonly string[] }; // unweighted mean of other columns

const DERIVATIONS: Readonly<Record<string, Derivation>> = {
  '3dsrbench': { from: ['3dsrbench'] },
  '3dsrbench-height': { from: ['3dsrbench'], tasks: ['height'] },
  '3dsrbench-location': { from: ['3dsrbench'], tasks: ['location'] },
  '3dsrbench-orientation': { from: ['3dsrbench'], tasks: ['orientation'] },
  '3dsrbench-multi_object': { from: ['3dsrbench'], tasks: ['multi_object'] },
  'cv-bench-count': { from: ['cv-bench-2d'], tasks: ['Count'] },
  'cv-bench-relation': { from: ['cv-bench-2d'], tasks: ['Relation'] },
  'cv-bench-depth': { from: ['cv-bench-3d'], tasks: ['Depth'] },
  'cv-bench-distance': { from: ['cv-bench-3d'], tasks: ['Distance'] },
  'cv-bench-2d': { mean: ['cv-bench-count', 'cv-bench-relation'] },
  'cv-bench-3d': { mean: ['cv-bench-depth', 'cv-bench-distance'] },
  'cv-bench': { mean: ['cv-bench-2d', 'cv-bench-3d'] },
  'blink-spatial': { from: ['blink-spatial'] },
  'blink-depth': { from: ['blink-depth'] },
  blink: { mean: ['blink-spatial', 'blink-depth'] },
  'blink-multi-view': { from: ['blink-multi-view'] },
  mmvp: { from: ['mmvp'] },
  spatialreasoner: { from: ['spatialreasoner'] },
  spatialbench: { from: ['spatialbench'] },
  stvqa: { from: ['stvqa'] },
  realworldqa: { from: ['realworldqa'] },
  robospatial: { from: ['robospatial', 'robospatial-rgb'], tasks: ['configuration', 'compatibility'] },
  hallusionbench: { from: ['hallusionbench'] },
};

/** The key of the row that averages the paper's 14-benchmark columns we have. */
export const AVERAGE_KEY = 'average';

/** Our value of each of the paper's columns that the results allow, plus the average of the Table 4 columns present. */
export function paperColumnEstimates(summaries: readonly BenchmarkSummary[]): Map<string, Estimate> {
  const byName = new Map(summaries.filter((s) => s.evaluated > 0).map((s) => [s.benchmark, s]));
  const out = new Map<string, Estimate>();
  const derive = (key: string): Estimate | undefined => {
    if (out.has(key)) return out.get(key);
    const d = DERIVATIONS[key];
    if (!d) return undefined;
    let e: Estimate | undefined;
    if ('mean' in d) {
      const parts = d.mean.map(derive);
      if (parts.every((p): p is Estimate => p !== undefined)) e = meanOf(parts);
    } else {
      const s = d.from.map((name) => byName.get(name)).find((x) => x !== undefined);
      if (s && !d.tasks) e = s.accuracy;
      else if (s && d.tasks) {
        const tasks = s.tasks.filter((t) => d.tasks!.includes(t.task));
        const n = tasks.reduce((a, t) => a + t.accuracy.n, 0);
        if (n > 0) e = proportion(tasks.reduce((a, t) => a + t.correct, 0), n);
      }
    }
    if (e) out.set(key, e);
    return e;
  };
  for (const m of [...PAPER_METRICS, ...PAPER_SUBTASK_METRICS]) derive(m.key);
  const averaged = PAPER_AVERAGE_KEYS.map((k) => out.get(k)).filter((e): e is Estimate => e !== undefined);
  if (averaged.length > 0) out.set(AVERAGE_KEY, meanOf(averaged));
  return out;
}

/** The Table 4 columns present in `estimates`, in the paper's order. */
export function averagedKeys(estimates: ReadonlyMap<string, Estimate>): string[] {
  return PAPER_AVERAGE_KEYS.filter((k) => estimates.has(k));
}
