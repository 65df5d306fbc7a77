/**
 * The tables of an evaluation, as data, and their markdown rendering: one
 * row per benchmark, one table of tasks per benchmark that has tasks, and the
 * side-by-side comparison with the paper's published numbers. The HTML
 * report (./report-html.ts) renders the same tables.
 */
import { AVERAGE_KEY, averagedKeys, paperColumnEstimates, type BenchmarkSummary, type Estimate } from './aggregate.js';
import { PAPER_METRICS, PAPER_SUBTASK_METRICS, paperValue } from './paper.js';
import type { RunSettings } from './runner.js';

export interface Table {
  title: string;
  head: string[];
  rows: string[][];
  /** Columns after the first are right-aligned numbers. */
  numeric?: boolean;
  note?: string;
}

export interface ReportInput {
  settings: RunSettings;
  summaries: readonly BenchmarkSummary[];
  /** Paper rows to compare with (model names as in the paper's tables). */
  paperModels: readonly string[];
}

const DASH = '–';

/** An estimate as a percentage with its standard error: `71.3 ± 1.2`. */
export function percent(e: Estimate | undefined, withSe = true): string {
  if (!e || !Number.isFinite(e.value)) return DASH;
  const v = (100 * e.value).toFixed(1);
  return withSe ? `${v} ± ${(100 * e.se).toFixed(1)}` : v;
}

function signed(x: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)}`;
}

function status(s: BenchmarkSummary): string {
  const parts = [s.evaluated === s.total ? 'complete' : `${s.evaluated} of ${s.total}`];
  if (s.failedRequests > 0) parts.push(`${s.failedRequests} failed requests`);
  return parts.join(', ');
}

export function benchmarkTable(summaries: readonly BenchmarkSummary[]): Table {
  const matching = summaries[0]?.matching ?? 'corrected';
  const other = matching === 'corrected' ? 'reference' : 'corrected';
  return {
    title: 'Accuracy per benchmark',
    head: ['Benchmark', 'n', 'Accuracy % ± SE', `${other} matching %`, 'no answer', 'no option', 'truncated', 'status'],
    numeric: true,
    rows: summaries.map((s) => [
      s.title,
      String(s.evaluated),
      percent(s.accuracy),
      percent(s.otherMatching.accuracy, false),
      String(s.extractionFailures),
      s.kind === 'open' ? DASH : String(s.unmatched),
      String(s.truncated),
      status(s),
    ]),
    note:
      `Scored with ${matching} matching; the "${other} matching" column scores the same completions the other way. ` +
      '"no answer": nothing could be extracted; "no option": an answer that names no option (wrong under corrected matching, A under reference matching); ' +
      '"truncated": the completion reached the token limit.',
  };
}

export function taskTables(summaries: readonly BenchmarkSummary[]): Table[] {
  return summaries
    .filter((s) => s.tasks.length > 0)
    .map((s) => ({
      title: `${s.title} by task`,
      head: ['Task', 'n', 'correct', 'Accuracy % ± SE'],
      numeric: true,
      rows: s.tasks.map((t) => [t.task, String(t.accuracy.n), String(t.correct), percent(t.accuracy)]),
    }));
}

/** Ours next to the paper's rows, for every paper column the results allow, and the mean of the Table 4 columns present. */
export function comparisonTable(summaries: readonly BenchmarkSummary[], paperModels: readonly string[]): Table {
  const ours = paperColumnEstimates(summaries);
  const rows: string[][] = [];
  const first = paperModels[0];
  const row = (title: string, estimate: Estimate | undefined, paper: (number | undefined)[]) => {
    const base = paper[0];
    rows.push([
      title,
      percent(estimate),
      ...paper.map((v) => (v === undefined ? DASH : v.toFixed(1))),
      ...(first !== undefined ? [estimate && base !== undefined ? signed(100 * estimate.value - base) : DASH] : []),
    ]);
  };
  for (const m of [...PAPER_METRICS, ...PAPER_SUBTASK_METRICS]) {
    const e = ours.get(m.key);
    if (e) row(m.title, e, paperModels.map((model) => paperValue(model, m.key)));
  }
  const keys = averagedKeys(ours);
  if (keys.length > 0) {
    const paperMean = (model: string) => {
      const values = keys.map((k) => paperValue(model, k));
      return values.every((v): v is number => v !== undefined) ? values.reduce((a, b) => a + b, 0) / values.length : undefined;
    };
    row(`Mean of these ${keys.length} of the paper's 14`, ours.get(AVERAGE_KEY), paperModels.map(paperMean));
  }
  return {
    title: 'Against the paper',
    head: ['Paper column', 'Ours % ± SE', ...paperModels, ...(first !== undefined ? [`Δ vs ${first}`] : [])],
    numeric: true,
    rows,
    note:
      "Paper values: arXiv 2511.07403v2 Tables 1–3 and the partial Tables 9–12 (shared/spec/method.md §6). CV-Bench 2D / 3D / Avg and BLINK Avg are unweighted means of their parts, as the paper's. " +
      'The mean row averages the Table 4 columns listed above for us and for each paper model (blank when the model lacks one).',
  };
}

export function markdownTable(table: Table): string {
  const escape = (c: string) => c.replace(/\|/g, '\\|');
  const lines = [
    `| ${table.head.map(escape).join(' | ')} |`,
    `| ${table.head.map((_, i) => (table.numeric && i > 0 ? '---:' : '---')).join(' | ')} |`,
    ...table.rows.map((r) => `| ${r.map(escape).join(' | ')} |`),
  ];
  return lines.join('\n');
}

export function settingsLines(settings: RunSettings): string[] {
  const g = settings.generator;
  const model =
    g['backend'] === 'api'
      ? `${String(g['model'])} via ${String(g['baseURL'])} (temperature ${String(g['temperature'])}, max_tokens ${String(g['maxTokens'])})`
      : `${String(g['model'])} on the engine (${String(g['decoding'])}, max_new_tokens ${String(g['maxNewTokens'])})`;
  return [`model: ${model}`, `template: ${settings.template}`, `matching: ${settings.matching}`];
}

/** Every table of the report, in order, without empty ones. */
export function reportTables(input: ReportInput): Table[] {
  return [benchmarkTable(input.summaries), ...taskTables(input.summaries), comparisonTable(input.summaries, input.paperModels)].filter((t) => t.rows.length > 0);
}

export function markdownReport(input: ReportInput): string {
  const sections = [
    '# Evaluation',
    settingsLines(input.settings)
      .map((l) => `- ${l}`)
      .join('\n'),
  ];
  for (const t of reportTables(input)) {
    sections.push(`## ${t.title}`, markdownTable(t));
    if (t.note) sections.push(t.note);
  }
  return sections.join('\n\n') + '\n';
}
