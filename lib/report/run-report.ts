/**
 * `spatialthinker report`: one self-contained HTML page for a training run,
 * or for a demo directory of runs (their curves overlaid, one colour per
 * run): a chart per metric, grouped, and sampled completions drawn over their
 * images with the predicted and ground-truth boxes.
 */
import { rename, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { escapeHtml, formatDuration, formatValue } from './html.js';
import { CHART_CSS, lineChart, type ChartSeries } from './line-chart.js';
import { Problems, ReportError, locateRuns, readRun, readSummary, type RunData, type Sample } from './run-data.js';
import { ImageEmbedder, SAMPLE_CSS, boxLegendHtml, renderSample } from './sample-view.js';

export interface RunReportOptions {
  /** Samples shown per run and split (default 8). */
  maxSamples?: number;
  /** Steps the samples are drawn from per run and split: the last, the first and evenly spaced ones between (default 3). */
  sampleSteps?: number;
  /** Longest side of embedded images, in pixels (default 512). */
  imageSide?: number;
  /** Called after each sample is rendered. */
  onProgress?: (samplesRendered: number) => void;
}

export interface RunReport {
  html: string;
  /** Run names, in page order. */
  runs: string[];
  charts: number;
  samples: number;
  /** Problems met reading the runs (the first 100), each naming its file and line. */
  problems: string[];
  problemCount: number;
}

/** One colour per run (Tableau 10). */
const RUN_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

interface MetricGroup {
  title: string;
  matches: (name: string) => boolean;
}

const under = (prefix: string) => (name: string) => name === prefix || name.startsWith(`${prefix}/`);

/** Chart sections in page order; a metric goes to the first group that matches it. */
const METRIC_GROUPS: MetricGroup[] = [
  { title: 'Reward', matches: under('reward') },
  { title: 'Accuracy', matches: under('accuracy') },
  { title: 'Validation', matches: under('val') },
  { title: 'Response length', matches: under('response_length') },
  { title: 'SFT', matches: under('sft') },
  { title: 'Actor', matches: under('actor') },
  { title: 'Timing (seconds)', matches: under('timing') },
  { title: 'Other', matches: () => true },
];

/** Latest values shown in the runs table, when some run logs them. */
const HEADLINE_METRICS = ['reward/overall', 'accuracy', 'val/accuracy', 'val/ciou', 'sft/loss'];

/**
 * The samples shown for one split: up to `sampleSteps` steps (the last, the
 * first, evenly spaced between), taking one sample from each step in turn,
 * latest step first, until `maxSamples`. Returned by step, latest first.
 */
export function pickSamples(bySteps: ReadonlyMap<number, readonly Sample[]>, maxSamples: number, sampleSteps: number): [number, Sample[]][] {
  const steps = [...bySteps.keys()].sort((a, b) => a - b);
  let chosen = steps;
  if (steps.length > sampleSteps) {
    const indices = new Set<number>();
    for (let i = 0; i < sampleSteps; i++) indices.add(sampleSteps === 1 ? steps.length - 1 : Math.round((i * (steps.length - 1)) / (sampleSteps - 1)));
    chosen = [...indices].map((i) => steps[i]!);
  }
  chosen = [...chosen].reverse();
  const picked = new Map<number, Sample[]>(chosen.map((s) => [s, []]));
  let total = 0;
  for (let round = 0; total < maxSamples; round++) {
    let took = false;
    for (const step of chosen) {
      const sample = bySteps.get(step)![round];
      if (sample === undefined || total >= maxSamples) continue;
      picked.get(step)!.push(sample);
      total++;
      took = true;
    }
    if (!took) break;
  }
  return [...picked].filter(([, samples]) => samples.length > 0);
}

function metricNames(runs: readonly RunData[]): string[] {
  const names: string[] = [];
  const seen = new Set<string>();
  for (const run of runs)
    for (const name of run.metrics.curves.keys())
      if (!seen.has(name)) {
        seen.add(name);
        names.push(name);
      }
  return names;
}

function chartsHtml(runs: readonly RunData[], colors: ReadonlyMap<string, string>): { html: string; count: number } {
  const groups = new Map<MetricGroup, string[]>();
  for (const name of metricNames(runs)) {
    const group = METRIC_GROUPS.find((g) => g.matches(name))!;
    let names = groups.get(group);
    if (!names) groups.set(group, (names = []));
    names.push(name);
  }
  const sections: string[] = [];
  let count = 0;
  for (const group of METRIC_GROUPS) {
    const names = groups.get(group);
    if (!names) continue;
    const charts = names.map((name) => {
      const series: ChartSeries[] = runs
        .filter((run) => run.metrics.curves.has(name))
        .map((run) => ({ label: run.name, color: colors.get(run.name)!, points: run.metrics.curves.get(name)! }));
      count++;
      return lineChart(name, series, { legend: runs.length > 1 });
    });
    sections.push(`<h3>${escapeHtml(group.title)}</h3>\n<div class="charts">${charts.join('\n')}</div>`);
  }
  return { html: sections.join('\n'), count };
}

function lastValue(run: RunData, name: string): string {
  const curve = run.metrics.curves.get(name);
  const last = curve?.[curve.length - 1];
  return last ? `${formatValue(last[1])} <span class="dim">@${last[0]}</span>` : '';
}

function runsTableHtml(runs: readonly RunData[], colors: ReadonlyMap<string, string>): string {
  const headlines = HEADLINE_METRICS.filter((name) => runs.some((run) => run.metrics.curves.has(name)));
  const header = ['run', 'metric lines', 'last step', 'validations', 'duration', 'samples', 'checkpoints', 'TensorBoard', ...headlines];
  const rows = runs.map((run) => {
    const m = run.metrics;
    const duration = m.firstTime && m.lastTime ? formatDuration((Date.parse(m.lastTime) - Date.parse(m.firstTime)) / 1000) : '';
    const checkpoints = run.checkpoints.length ? `${run.checkpoints.length} (last ${escapeHtml(run.checkpoints[run.checkpoints.length - 1]!)})` : '0';
    const cells = [
      `<span class="run-swatch" style="background:${colors.get(run.name)}"></span>${escapeHtml(run.name)}`,
      String(m.lines),
      m.lastStep === undefined ? '' : String(m.lastStep),
      String(m.validations),
      duration,
      String(run.samples.total),
      checkpoints,
      run.eventFiles.length ? `${run.eventFiles.length} event file${run.eventFiles.length === 1 ? '' : 's'}` : '',
      ...headlines.map((name) => lastValue(run, name)),
    ];
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
  });
  const configs = runs
    .filter((run) => run.config !== undefined)
    .map((run) => `<details><summary>${escapeHtml(run.name)}: config.yaml</summary><pre>${escapeHtml(run.config!)}</pre></details>`);
  return (
    `<table class="data"><tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>${rows.join('')}</table>\n` +
    configs.join('\n')
  );
}

function cellHtml(value: unknown): string {
  if (typeof value === 'number') return formatValue(value);
  if (typeof value === 'string') return escapeHtml(value);
  if (value === null || value === undefined) return '';
  return escapeHtml(JSON.stringify(value));
}

/** summary.json: its `table` (rows of objects) as an HTML table, the rest as JSON. */
function summaryHtml(summary: unknown): string {
  if (summary === undefined) return '';
  const parts: string[] = ['<h2>Summary</h2>'];
  let rest: unknown = summary;
  if (typeof summary === 'object' && summary !== null && !Array.isArray(summary)) {
    const { table, ...others } = summary as Record<string, unknown>;
    if (Array.isArray(table) && table.every((row) => typeof row === 'object' && row !== null && !Array.isArray(row))) {
      const rows = table as Record<string, unknown>[];
      const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
      parts.push(
        `<table class="data summary"><tr>${columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>` +
          rows.map((row) => `<tr>${columns.map((c) => `<td>${cellHtml(row[c])}</td>`).join('')}</tr>`).join('') +
          `</table>`,
      );
      rest = others;
    }
  }
  if (typeof rest !== 'object' || rest === null || Object.keys(rest).length > 0) {
    const json = JSON.stringify(rest, null, 2);
    // Short extras stay open; long ones (options, per-run results) would push the curves off the first screen.
    parts.push(`<details${json.length <= 800 ? ' open' : ''}><summary>summary.json${rest === summary ? '' : ' (other fields)'}</summary><pre>${escapeHtml(json)}</pre></details>`);
  }
  return parts.join('\n');
}

function problemsHtml(problems: Problems, runCount: number): string {
  if (problems.count === 0) return '';
  const more = problems.count - problems.list.length;
  return (
    `<section class="problems"><h2>Problems reading the run${runCount === 1 ? '' : 's'} (${problems.count})</h2><ul>` +
    problems.list.map((p) => `<li>${escapeHtml(p)}</li>`).join('') +
    (more > 0 ? `<li>... and ${more} more</li>` : '') +
    `</ul></section>`
  );
}

const SPLIT_ORDER = ['train', 'val'];

const PAGE_CSS = `
body{font-family:sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em}
h2{font-size:1.2em;margin-top:1.6em;border-bottom:2px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .4em}
h4{font-size:.95em;margin:1em 0 .3em;color:#444}
.dim,.generated{color:#888;font-size:.85em}
.charts{display:flex;flex-wrap:wrap;gap:10px}
table.data{border-collapse:collapse;font-size:.85em;background:#fff}
table.data th,table.data td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
.run-swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.4em;vertical-align:middle}
.legend-runs span{margin-right:1.2em}
.problems{background:#fff4f4;border:1px solid #e3b3b3;padding:0 1em;margin:1em 0}
.problems li{font-family:monospace;font-size:.85em}
`;

export async function buildRunReport(dir: string, options: RunReportOptions = {}): Promise<RunReport> {
  const maxSamples = options.maxSamples ?? 8;
  const sampleSteps = options.sampleSteps ?? 3;
  if (!Number.isInteger(maxSamples) || maxSamples < 0) throw new ReportError(`maxSamples must be a non-negative integer (got ${maxSamples})`);
  if (!Number.isInteger(sampleSteps) || sampleSteps < 1) throw new ReportError(`sampleSteps must be a positive integer (got ${sampleSteps})`);
  const problems = new Problems();
  const located = await locateRuns(dir);
  const runs: RunData[] = [];
  for (const { name, dir: runDir } of located.runs) runs.push(await readRun(runDir, name, Math.max(1, maxSamples), problems));

  const withoutMetrics = runs.filter((run) => run.metrics.lines === 0);
  if (withoutMetrics.length === runs.length) {
    const where = runs.map((run) => join(run.dir, 'metrics.jsonl'));
    throw new ReportError(
      located.parent
        ? `${dir}: no run has metrics (no valid lines in ${where.join(', ')})`
        : `${dir}: no metrics (${where[0]} is missing or has no valid lines)`,
    );
  }
  for (const run of withoutMetrics) problems.add(`${run.dir}: no metrics (metrics.jsonl is missing or has no valid lines)`);
  const summary = await readSummary(dir, problems);

  const colors = new Map(runs.map((run, i) => [run.name, RUN_COLORS[i % RUN_COLORS.length]!]));
  const charts = chartsHtml(runs, colors);

  const images = new ImageEmbedder(options.imageSide ?? 512);
  const sampleSections: string[] = [];
  let rendered = 0;
  if (maxSamples > 0) {
    for (const run of runs) {
      const splits = [...run.samples.bySplit.keys()].sort(
        (a, b) => (SPLIT_ORDER.indexOf(a) + 1 || 99) - (SPLIT_ORDER.indexOf(b) + 1 || 99) || (a < b ? -1 : 1),
      );
      if (splits.length === 0) continue;
      const parts: string[] = [`<h3><span class="run-swatch" style="background:${colors.get(run.name)}"></span>${escapeHtml(run.name)}</h3>`];
      for (const split of splits) {
        const picked = pickSamples(run.samples.bySplit.get(split)!, maxSamples, sampleSteps);
        const shown = picked.reduce((n, [, s]) => n + s.length, 0);
        parts.push(`<h4>${escapeHtml(split)}: ${shown} sample${shown === 1 ? '' : 's'} from step${picked.length === 1 ? '' : 's'} ${picked.map(([s]) => s).join(', ')}</h4>`);
        for (const [, samples] of picked)
          for (const sample of samples) {
            parts.push(await renderSample(sample, images));
            rendered++;
            options.onProgress?.(rendered);
          }
      }
      sampleSections.push(parts.join('\n'));
    }
  }

  const name = basename(resolve(dir));
  const title = located.parent ? `Training runs: ${name}` : `Training run: ${name}`;
  const legend = runs.length > 1
    ? `<div class="legend-runs">${runs.map((run) => `<span><span class="run-swatch" style="background:${colors.get(run.name)}"></span>${escapeHtml(run.name)}</span>`).join('')}</div>`
    : '';
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>${PAGE_CSS}${CHART_CSS}${SAMPLE_CSS}</style></head><body>
<h1>${escapeHtml(title)}</h1>
<div class="generated">${escapeHtml(resolve(dir))} · generated ${new Date().toISOString()}</div>
${summaryHtml(summary)}
${problemsHtml(problems, runs.length)}
<h2>Run${runs.length === 1 ? '' : 's'}</h2>
${runsTableHtml(runs, colors)}
<h2>Curves</h2>
${legend}
${charts.html}
<h2>Samples</h2>
${rendered > 0 ? boxLegendHtml() : '<p class="dim">no samples (samples.jsonl is missing or empty)</p>'}
${sampleSections.join('\n')}
</body></html>
`;
  return { html, runs: runs.map((r) => r.name), charts: charts.count, samples: rendered, problems: problems.list, problemCount: problems.count };
}

/** The report page of a run directory (or a directory of runs). */
export async function renderRunReport(dir: string, options: RunReportOptions = {}): Promise<string> {
  return (await buildRunReport(dir, options)).html;
}

/** Writes the report page (default RUN_DIR/report.html) and returns what it holds. */
export async function writeRunReport(dir: string, outPath = join(dir, 'report.html'), options: RunReportOptions = {}): Promise<RunReport & { path: string }> {
  const report = await buildRunReport(dir, options);
  const partial = `${outPath}.partial`;
  try {
    await writeFile(partial, report.html);
    await rename(partial, outPath);
  } catch (error) {
    throw new ReportError(`cannot write ${outPath}: ${(error as Error).message}`);
  }
  return { ...report, path: outPath };
}
