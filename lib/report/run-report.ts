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
import { configValue } from './config-yaml.js';
import { Problems, ReportError, locateRuns, readRun, readSummary, type Curve, type RunData, type Sample } from './run-data.js';
import { binomialStandardError, formatMeanSe, mean, standardError } from './stats.js';
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
  /** Metrics shown as one "constant" line instead of a chart. */
  constants: number;
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

/** What trained a run, read from what it logs: runs of different kinds never share a step axis. */
export type RunKind = 'SFT' | 'GRPO' | 'run';

export function runKind(run: RunData): RunKind {
  const names = [...run.metrics.curves.keys()];
  if (names.some((n) => n.startsWith('reward/') || n.startsWith('actor/pg_loss'))) return 'GRPO';
  if (names.some((n) => n.startsWith('sft/'))) return 'SFT';
  return 'run';
}

/** The runs of one arm: one run, or one per seed (a demo names them ARM-seedN). */
interface Arm {
  name: string;
  kind: RunKind;
  color: string;
  runs: RunData[];
}

export const armName = (runName: string) => runName.replace(/[-_]seed\d+$/, '');

function armsOf(runs: readonly RunData[]): Arm[] {
  const arms = new Map<string, Arm>();
  for (const run of runs) {
    const key = `${armName(run.name)}\0${runKind(run)}`;
    let arm = arms.get(key);
    if (!arm) arms.set(key, (arm = { name: armName(run.name), kind: runKind(run), color: RUN_COLORS[arms.size % RUN_COLORS.length]!, runs: [] }));
    arm.runs.push(run);
  }
  return [...arms.values()];
}

/** A run's own steps: from the first step it logged anything to its last. */
function stepRange(run: RunData): [number, number] | undefined {
  let first = Infinity;
  for (const curve of run.metrics.curves.values()) if (curve.length) first = Math.min(first, curve[0]![0]);
  return run.metrics.lastStep === undefined || first === Infinity ? undefined : [first, run.metrics.lastStep];
}

/** One arm's line for a metric: the run's curve, or with several seeds their mean and a ± standard-error band. */
function armSeries(arm: Arm, name: string): ChartSeries | undefined {
  const curves = arm.runs.map((run) => run.metrics.curves.get(name)).filter((c): c is Curve => c !== undefined && c.length > 0);
  if (curves.length === 0) return undefined;
  if (curves.length === 1) return { label: arm.runs.length > 1 ? `${arm.name} (1 of ${arm.runs.length} seeds logs it)` : arm.name, color: arm.color, points: curves[0]! };
  const bySteps = new Map<number, number[]>();
  for (const curve of curves)
    for (const [step, value] of curve) {
      let values = bySteps.get(step);
      if (!values) bySteps.set(step, (values = []));
      values.push(value);
    }
  const steps = [...bySteps.keys()].sort((a, b) => a - b);
  const points = steps.map((step) => [step, mean(bySteps.get(step)!)] as [number, number]);
  const band = steps.flatMap((step) => {
    const values = bySteps.get(step)!;
    const se = standardError(values);
    const m = mean(values);
    return se === undefined ? [] : [[step, m - se, m + se] as [number, number, number]];
  });
  return { label: `${arm.name} (${curves.length} seeds)`, color: arm.color, points, band };
}

const flat = (values: readonly number[]) => {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  return hi - lo <= 1e-12 * Math.max(1, Math.abs(hi));
};

/** The one line that replaces a chart whose every line is flat (and whose seeds agree), else undefined. */
function constantLine(title: string, name: string, series: readonly ChartSeries[], arms: readonly string[]): string | undefined {
  if (series.length === 0) return undefined;
  if (!series.every((s) => flat(s.points.map((p) => p[1])) && (s.band ?? []).every(([, lo, hi]) => hi - lo <= 1e-12 * Math.max(1, Math.abs(hi))))) return undefined;
  const unit = name.startsWith('val/') ? 'validation' : 'step';
  const count = (n: number) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  const values = series.map((s) => s.points[0]![1]);
  const what =
    flat(values) && new Set(series.map((s) => s.points.length)).size === 1
      ? `constant ${formatValue(values[0]!)} over ${count(series[0]!.points.length)}${series.length > 1 ? ` (${arms.map(escapeHtml).join(', ')})` : ''}`
      : `constant: ${series.map((s, i) => `${escapeHtml(arms[i]!)} ${formatValue(s.points[0]![1])} over ${count(s.points.length)}`).join('; ')}`;
  return `<li class="constant" data-metric="${escapeHtml(name)}"><b>${escapeHtml(title)}</b>: ${what}</li>`;
}

/** What a group's numbers are, per kind of run: which rows, how many, which decoding. */
function groupCaption(group: MetricGroup, kinds: ReadonlyMap<RunKind, RunData[]>): string {
  const value = (runs: readonly RunData[], path: string) => configValue(runs.find((r) => r.config !== undefined)?.config, path);
  const parts: string[] = [];
  for (const [kind, runs] of kinds) {
    const v = (path: string, fallback = '?') => value(runs, path) ?? fallback;
    if (group.title === 'Validation') {
      const samples = [...new Set(runs.flatMap((r) => (r.metrics.curves.get('val/samples') ?? []).map((p) => p[1])))];
      const override = (key: string) => value(runs, `worker.rollout.val_override_config.${key}`) ?? v(`worker.rollout.${key}`);
      parts.push(
        `<b>In-training validation (${kind})</b>: every ${v('trainer.val_freq')} steps, the first ${v('data.val_max_samples', 'all')} held-out rows, ` +
          `${override('n')} completion(s) per row at temperature ${override('temperature')}` +
          (samples.length ? ` (${samples.map(formatValue).join(' or ')} completions per point)` : '') +
          '; each point is a mean over them. Not the final held-out evaluation (the Summary table).',
      );
    } else if (kind === 'GRPO' && ['Reward', 'Accuracy', 'Response length'].includes(group.title)) {
      parts.push(
        `<b>In-training (GRPO)</b>: each point is the mean over one step's rollouts on training rows: ${v('data.rollout_batch_size')} prompts × ${v('worker.rollout.n')} samples ` +
          `at temperature ${v('worker.rollout.temperature')}, scored by the ${v('worker.reward.reward_function')} reward.`,
      );
    } else if (kind === 'SFT' && group.title === 'SFT') {
      parts.push(`<b>In-training (SFT)</b>: each point is one step's batch of ${v('worker.actor.global_batch_size')} training rows' gold traces, teacher-forced (no decoding).`);
    }
  }
  if (group.title === 'Actor') parts.push('Per step: gradient norm (before clipping), learning rate, and for GRPO the policy-gradient, KL and entropy terms of the loss.');
  if (group.title === 'Timing (seconds)') parts.push('Wall-clock seconds per step, by phase.');
  return parts.length ? `<p class="caption">${parts.join('<br>')}</p>` : '';
}

function chartsHtml(runs: readonly RunData[], arms: readonly Arm[]): { html: string; count: number; constants: number } {
  const groups = new Map<MetricGroup, string[]>();
  for (const name of metricNames(runs)) {
    const group = METRIC_GROUPS.find((g) => g.matches(name))!;
    let names = groups.get(group);
    if (!names) groups.set(group, (names = []));
    names.push(name);
  }
  const kindsOnPage = new Set(arms.map((a) => a.kind));
  const ranges = new Map<RunKind, [number, number]>();
  for (const run of runs) {
    const range = stepRange(run);
    if (!range) continue;
    const kind = runKind(run);
    const known = ranges.get(kind);
    ranges.set(kind, known ? [Math.min(known[0], range[0]), Math.max(known[1], range[1])] : range);
  }
  const sections: string[] = [];
  let count = 0;
  let constants = 0;
  for (const group of METRIC_GROUPS) {
    const names = groups.get(group);
    if (!names) continue;
    const charts: string[] = [];
    const flatLines: string[] = [];
    const kinds = new Map<RunKind, RunData[]>();
    for (const name of names)
      for (const kind of kindsOnPage) {
        const drawn = arms.filter((a) => a.kind === kind).flatMap((arm) => {
          const line = armSeries(arm, name);
          return line ? [{ arm: arm.name, line }] : [];
        });
        const series = drawn.map((d) => d.line);
        if (series.length === 0) continue;
        const kindRuns = runs.filter((r) => runKind(r) === kind);
        kinds.set(kind, kindRuns);
        // Runs of different kinds keep their own step axes: GRPO's 20 steps are not drawn against SFT's 900.
        const title = kindsOnPage.size > 1 ? `${name} (${kind})` : name;
        const line = constantLine(title, name, series, drawn.map((d) => d.arm));
        if (line) {
          flatLines.push(line);
          constants++;
          continue;
        }
        const range = ranges.get(kind);
        charts.push(
          lineChart(title, series, {
            legend: arms.length > 1,
            ...(range ? { xDomain: range } : {}),
            ...(kindsOnPage.size > 1 ? { subtitle: `${kind} runs, steps ${range?.[0] ?? '?'}–${range?.[1] ?? '?'}` } : {}),
          }),
        );
        count++;
      }
    sections.push(
      `<h3>${escapeHtml(group.title)}</h3>\n${groupCaption(group, kinds)}` +
        (charts.length ? `\n<div class="charts">${charts.join('\n')}</div>` : '') +
        (flatLines.length ? `\n<ul class="constants">${flatLines.join('')}</ul>` : ''),
    );
  }
  return { html: sections.join('\n'), count, constants };
}

/** The last value of a metric, with its binomial standard error when it is a rate over the validation's completions. */
function lastValue(run: RunData, name: string): string {
  const curve = run.metrics.curves.get(name);
  const last = curve?.[curve.length - 1];
  if (!last) return '';
  const n = name.startsWith('val/') ? run.metrics.curves.get('val/samples')?.find((p) => p[0] === last[0])?.[1] : undefined;
  const se = n !== undefined && RATE_METRICS.has(name.slice(4)) ? binomialStandardError(last[1], n) : undefined;
  return `${formatMeanSe(last[1], se)} <span class="dim">@${last[0]}</span>`;
}

/** Metrics that are a fraction of completions (so their standard error follows from their count). */
const RATE_METRICS = new Set(['accuracy', 'format_rate', 'answer_is_option']);

function runsTableHtml(runs: readonly RunData[], arms: readonly Arm[]): string {
  const colorOf = new Map(arms.flatMap((a) => a.runs.map((r) => [r.name, a.color] as const)));
  const headlines = HEADLINE_METRICS.filter((name) => runs.some((run) => run.metrics.curves.has(name)));
  const header = ['run', 'kind', 'metric lines', 'last step', 'validations', 'duration', 'samples', 'checkpoints', 'TensorBoard', ...headlines];
  const rows = runs.map((run) => {
    const m = run.metrics;
    const duration = m.firstTime && m.lastTime ? formatDuration((Date.parse(m.lastTime) - Date.parse(m.firstTime)) / 1000) : '';
    const checkpoints = run.checkpoints.length ? `${run.checkpoints.length} (last ${escapeHtml(run.checkpoints[run.checkpoints.length - 1]!)})` : '0';
    const cells = [
      `<span class="run-swatch" style="background:${colorOf.get(run.name)}"></span>${escapeHtml(run.name)}`,
      runKind(run),
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
  const caption = headlines.length
    ? `<p class="caption">The last logged value of each metric (@ its step), all in-training: train metrics over that step's rollouts or batch, ` +
      `<code>val/</code> ones over the in-training validation's completions (± their binomial standard error, where the metric is a rate).</p>`
    : '';
  return (
    `<div class="wide"><table class="data runs"><tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>${rows.join('')}</table></div>\n${caption}\n` +
    configs.join('\n')
  );
}

function cellHtml(value: unknown): string {
  if (typeof value === 'number') return formatValue(value);
  if (typeof value === 'string') return escapeHtml(value);
  if (value === null || value === undefined) return '';
  return escapeHtml(JSON.stringify(value));
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The held-out metrics shown per policy, with their names in summary.json's results. */
const HELD_OUT_COLUMNS: [label: string, key: string][] = [
  ['accuracy', 'val/accuracy'],
  ['format rate', 'val/format_rate'],
  ['box CIoU', 'val/ciou'],
  ['reward', 'val/reward/overall'],
];

/**
 * A demo's final held-out evaluation (summary.json's `results`: policy, seed,
 * metrics) as one row per policy: the mean over its seeds ± the standard error
 * across seeds, or with one seed the binomial standard error of the rates over
 * the evaluation's completions.
 */
function heldOutHtml(summary: Record<string, unknown>): string {
  const { results, options } = summary;
  if (!Array.isArray(results)) return '';
  const rows = results.filter((r): r is { policy: string; seed: unknown; metrics: Record<string, number> } => isRecord(r) && typeof r['policy'] === 'string' && isRecord(r['metrics']));
  if (rows.length === 0) return '';
  const policies = [...new Set(rows.map((r) => r.policy))];
  let singleSeedRates = false;
  const body = policies.map((policy) => {
    const mine = rows.filter((r) => r.policy === policy);
    const cells = HELD_OUT_COLUMNS.map(([, key]) => {
      const values = mine.map((r) => r.metrics[key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
      if (values.length === 0) return '';
      if (values.length > 1) return formatMeanSe(mean(values), standardError(values));
      const n = mine[0]!.metrics['val/samples'];
      const rate = RATE_METRICS.has(key.slice(4));
      if (rate && typeof n === 'number') singleSeedRates = true;
      return formatMeanSe(values[0]!, rate && typeof n === 'number' ? binomialStandardError(values[0]!, n) : undefined);
    });
    const seeds = mine.map((r) => r.seed).filter((s) => typeof s === 'number');
    return `<tr><td>${escapeHtml(policy)}</td><td>${seeds.length ? `${seeds.length} (${seeds.join(', ')})` : 'n/a'}</td>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
  });
  const o = isRecord(options) ? options : {};
  const completions = rows[0]!.metrics['val/samples'];
  const decoding =
    typeof o['evalSamples'] === 'number'
      ? `${o['evalSamples']} completion(s) per row at temperature ${escapeHtml(String(o['evalTemperature']))}`
      : 'the decoding the demo was given';
  const caption =
    `<p class="caption"><b>Held-out</b>: the final evaluation of each policy's last checkpoint on all ${typeof o['valRows'] === 'number' ? o['valRows'] : ''} held-out rows ` +
    `(the data's val split), ${decoding}${typeof completions === 'number' ? `: ${formatValue(completions)} completions per policy and seed` : ''}. ` +
    `With several seeds, ± is the standard error of the mean across seeds` +
    (singleSeedRates
      ? `; with one seed, it is the binomial standard error of a rate over the completions (completions of one row are not independent, so it understates the spread), and other metrics have none`
      : '') +
    `.</p>`;
  return (
    `<h3>Held-out evaluation, by policy</h3>\n${caption}\n` +
    `<table class="data held-out"><tr><th>policy</th><th>seeds</th>${HELD_OUT_COLUMNS.map(([label]) => `<th>${label}</th>`).join('')}</tr>${body.join('')}</table>`
  );
}

/**
 * A demo's statistics (lib/demo/results.ts): titled tables of means ±
 * standard errors and paired differences, already formatted, and the
 * verdict on each of the paper's claims.
 */
function statisticsHtml(statistics: unknown): string {
  if (!isRecord(statistics) || !Array.isArray(statistics['tables'])) return '';
  const parts: string[] = [];
  for (const t of statistics['tables']) {
    if (!isRecord(t) || !Array.isArray(t['columns']) || !Array.isArray(t['rows'])) continue;
    const columns = t['columns'].map(String);
    const rows = t['rows'].filter(Array.isArray) as unknown[][];
    parts.push(
      `<h3>${escapeHtml(String(t['title'] ?? ''))}</h3>\n<p class="caption">${escapeHtml(String(t['caption'] ?? ''))}</p>\n` +
        `<div class="wide"><table class="data statistics"><tr>${columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>` +
        rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(String(c))}</td>`).join('')}</tr>`).join('') +
        `</table></div>`,
    );
  }
  const verdicts = Array.isArray(statistics['verdicts']) ? statistics['verdicts'].map(String) : [];
  if (verdicts.length > 0) parts.push(`<h3>The paper's claims here</h3>\n<ul>${verdicts.map((v) => `<li>${escapeHtml(v)}</li>`).join('')}</ul>`);
  return parts.join('\n');
}

/** summary.json: the held-out evaluation by policy, its `table` (rows of objects) as an HTML table, the rest as JSON. */
function summaryHtml(summary: unknown): string {
  if (summary === undefined) return '';
  const parts: string[] = ['<h2>Summary</h2>'];
  let rest: unknown = summary;
  if (isRecord(summary)) {
    const statistics = statisticsHtml(summary['statistics']);
    if (statistics) parts.push(statistics);
    const heldOut = statistics ? '' : heldOutHtml(summary);
    if (heldOut) parts.push(heldOut);
    const { table, statistics: _statistics, ...others } = summary;
    if (Array.isArray(table) && table.every(isRecord)) {
      const rows = table as Record<string, unknown>[];
      const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
      if (heldOut) parts.push('<h3>Held-out evaluation, each run</h3>');
      parts.push(
        `<div class="wide"><table class="data summary"><tr>${columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>` +
          rows.map((row) => `<tr>${columns.map((c) => `<td>${cellHtml(row[c])}</td>`).join('')}</tr>`).join('') +
          `</table></div>`,
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
div.wide{overflow-x:auto;max-width:100%}
table.data td:first-child{white-space:nowrap}
.caption{color:#555;font-size:.85em;margin:.3em 0 .6em;max-width:70em}
ul.constants{font-size:.85em;color:#444;margin:.5em 0;padding-left:1.2em}
ul.constants li{margin:.15em 0}
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

  const arms = armsOf(runs);
  const colors = new Map(arms.flatMap((arm) => arm.runs.map((run) => [run.name, arm.color] as const)));
  const charts = chartsHtml(runs, arms);

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
  const legend = arms.length > 1
    ? `<div class="legend-runs">${arms.map((arm) => `<span><span class="run-swatch" style="background:${arm.color}"></span>${escapeHtml(arm.name)}${arm.runs.length > 1 ? ` (${arm.runs.length} seeds: mean, band ± s.e.)` : ''}</span>`).join('')}</div>`
    : '';
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>${PAGE_CSS}${CHART_CSS}${SAMPLE_CSS}</style></head><body>
<h1>${escapeHtml(title)}</h1>
<div class="generated">${escapeHtml(resolve(dir))} · generated ${new Date().toISOString()}</div>
${summaryHtml(summary)}
${problemsHtml(problems, runs.length)}
<h2>Run${runs.length === 1 ? '' : 's'}</h2>
${runsTableHtml(runs, arms)}
<h2>Curves</h2>
<p class="caption">Each chart is one metric against its run's own training steps; runs of different kinds (SFT, GRPO) are drawn on separate charts, never on one step axis. A metric that never changes is one line under its group, not a chart.</p>
${legend}
${charts.html}
<h2>Samples</h2>
${rendered > 0 ? boxLegendHtml() : '<p class="dim">no samples (samples.jsonl is missing or empty)</p>'}
${sampleSections.join('\n')}
</body></html>
`;
  return { html, runs: runs.map((r) => r.name), charts: charts.count, constants: charts.constants, samples: rendered, problems: problems.list, problemCount: problems.count };
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
