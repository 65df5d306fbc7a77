import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { AVERAGE_KEY, meanOf, paperColumnEstimates, proportion, summarizeBenchmark, type BenchmarkSummary } from '../lib/eval/aggregate.js';
import { PAPER_AVERAGE_KEYS, PAPER_METRICS, PAPER_RESULTS, familyOfHiddenSize, paperValue } from '../lib/eval/paper.js';
import { comparisonTable, markdownTable, percent } from '../lib/eval/report.js';
import type { AnswerKind, EvalRecord } from '../lib/eval/types.js';

const SPEC = new URL('../../shared/spec/method.md', import.meta.url);

t.test('the paper table matches shared/spec/method.md §6.1-6.3', { skip: existsSync(SPEC) ? false : `no ${SPEC.pathname} in this checkout` }, async (t) => {
  const text = readFileSync(SPEC, 'utf8');
  const titles = new Map(PAPER_METRICS.map((m) => [m.title, m.key]));
  // The spec's column names where they differ from ours.
  const specTitles: Record<string, string> = { 'STVQA-7Kval': 'STVQA-7K val' };
  const aliases: Record<string, string> = { 'VLAA-Thinker-Qwen2.5-VL-7B': 'VLAA-Thinker-7B' };
  let cells = 0;
  for (const heading of ['### 6.1', '### 6.2', '### 6.3']) {
    const lines = text.slice(text.indexOf(heading)).split('\n');
    const table = lines.slice(lines.findIndex((l) => l.startsWith('|')));
    const rows = table.slice(0, table.findIndex((l) => !l.startsWith('|'))).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
    const head = rows[0]!;
    for (const row of rows.slice(2)) {
      const model = row[0]!.replace(/\*\*/g, '').replace(' (v2 only)', '');
      const name = aliases[model] ?? model;
      t.ok(PAPER_RESULTS.has(name), `row ${name}`);
      head.slice(1).forEach((column, i) => {
        const key = titles.get(specTitles[column] ?? column);
        if (!key) return t.fail(`unknown column ${column}`);
        const cell = row[i + 1]!.replace(/\*\*/g, '');
        const want = cell === '–' ? undefined : Number(cell);
        t.equal(paperValue(name, key), want, `${name} / ${column}`);
        cells++;
      });
    }
  }
  t.equal(cells, 24 * 7 + 20 * 5 + 17 * 6, 'every cell of the three tables');
});

t.test('Table 4 averages recompute from the stored columns', async (t) => {
  const published: Record<string, number> = {
    'GPT-5-0807': 71.5,
    'GPT-4o-0513': 65.8,
    'Qwen2.5-VL-3B': 56.8,
    'Qwen2.5-VL-7B': 62.8,
    'Qwen3-VL-30B': 68.1,
    'Qwen2.5-VL-3B + SFT': 60.7,
    'Qwen2.5-VL-3B + Vanilla GRPO': 62.0,
    'SpatialThinker-3B': 65.9,
    'Qwen2.5-VL-7B + SFT': 64.9,
    'Qwen2.5-VL-7B + Vanilla GRPO': 67.2,
    'SpatialThinker-7B': 70.5,
    'SpatialThinker-30B': 74.5,
  };
  // Claude-4-Sonnet-0514 (published 68.7) is left out: its columns average to 67.1 in the source itself.
  t.equal(PAPER_AVERAGE_KEYS.length, 14);
  for (const [model, avg] of Object.entries(published)) {
    const values = PAPER_AVERAGE_KEYS.map((k) => paperValue(model, k)!);
    t.ok(Math.abs(values.reduce((a, b) => a + b, 0) / values.length - avg) < 0.051, `${model}: mean of 14 = ${avg}`);
  }
  // Sub-task tables agree with the overall columns they average.
  for (const model of ['SpatialThinker-3B', 'SpatialThinker-7B', 'SpatialThinker-30B']) {
    const v = (k: string) => paperValue(model, k)!;
    t.ok(Math.abs((v('cv-bench-count') + v('cv-bench-relation')) / 2 - v('cv-bench-2d')) < 0.051, `${model}: CV-Bench 2D = mean(Count, Relation)`);
    t.ok(Math.abs((v('cv-bench-depth') + v('cv-bench-distance')) / 2 - v('cv-bench-3d')) < 0.051, `${model}: CV-Bench 3D = mean(Depth, Distance)`);
  }
  t.equal(familyOfHiddenSize(2048), '3b');
  t.equal(familyOfHiddenSize(3584), '7b');
  t.equal(familyOfHiddenSize(64), undefined);
});

t.test('proportions and means', async (t) => {
  const p = proportion(3, 4);
  t.equal(p.value, 0.75);
  t.ok(Math.abs(p.se - Math.sqrt((0.75 * 0.25) / 4)) < 1e-12, 'sqrt(p(1-p)/n)');
  t.ok(Number.isNaN(proportion(0, 0).value), 'no samples: no accuracy');
  const m = meanOf([proportion(1, 2), proportion(1, 4)]);
  t.equal(m.value, 0.375, 'unweighted');
  t.ok(Math.abs(m.se - Math.sqrt(0.125 + 0.046875) / 2) < 1e-12, 'sqrt(se1² + se2²) / 2');
  t.equal(m.n, 6);
  t.equal(percent(proportion(2, 3)), '66.7 ± 27.2');
  t.equal(percent(undefined), '–');
});

let serial = 0;
function record(benchmark: string, task: string | undefined, correct: boolean, kind: AnswerKind = 'multiple-choice'): EvalRecord {
  const answer = '(A)';
  const completion = correct ? '<answer>A</answer>' : '<answer>B</answer>';
  return {
    id: `${benchmark}/f.parquet#${serial++}`,
    benchmark,
    row: serial,
    ...(task ? { task } : {}),
    kind,
    prompt: 'p',
    completion,
    extracted: correct ? 'A' : 'B',
    prediction: correct ? 'A' : 'B',
    groundTruth: 'A',
    answer,
    choices: ['x', 'y'],
    matching: 'corrected',
    correct,
  };
}

function summary(name: string, title: string, records: EvalRecord[], tasks?: string[]): BenchmarkSummary {
  return summarizeBenchmark({ definition: { name, title, kind: 'multiple-choice', ...(tasks ? { tasks } : {}) }, records, total: records.length }, 'corrected');
}

t.test('summaries and the paper conventions', async (t) => {
  const cv2 = summary('cv-bench-2d', 'CV-Bench 2D', [
    record('cv-bench-2d', 'Count', true),
    record('cv-bench-2d', 'Count', true),
    record('cv-bench-2d', 'Count', false),
    record('cv-bench-2d', 'Relation', true),
  ], ['Count', 'Relation']);
  t.same(cv2.tasks.map((x) => [x.task, x.correct, x.accuracy.n]), [
    ['Count', 2, 3],
    ['Relation', 1, 1],
  ]);
  t.equal(cv2.accuracy.value, 0.75, 'overall is sample-weighted');
  t.equal(cv2.otherMatching.mode, 'reference');
  t.equal(cv2.otherMatching.correct, 4, 'under reference matching a bare letter counts as A, so the wrong "B" is right too');
  const cv3 = summary('cv-bench-3d', 'CV-Bench 3D', [record('cv-bench-3d', 'Depth', true), record('cv-bench-3d', 'Distance', false)]);
  const robo = summary('robospatial', 'RoboSpatial-Home', [
    record('robospatial', 'configuration', true),
    record('robospatial', 'compatibility', false),
    record('robospatial', 'context', false),
    record('robospatial', 'context', false),
  ]);
  const sr = summary('3dsrbench', '3DSRBench', [record('3dsrbench', 'height', true), record('3dsrbench', 'location', false), record('3dsrbench', 'location', false)]);
  const blink = summary('blink-spatial', 'BLINK Spatial Relation', [record('blink-spatial', undefined, true)]);
  const est = paperColumnEstimates([cv2, cv3, robo, sr, blink]);
  t.equal(est.get('cv-bench-2d')?.value, (2 / 3 + 1) / 2, 'CV-Bench 2D = mean of Count and Relation, not the pooled 3/4');
  t.equal(est.get('cv-bench-3d')?.value, 0.5);
  t.equal(est.get('cv-bench')?.value, ((2 / 3 + 1) / 2 + 0.5) / 2);
  t.equal(est.get('robospatial')?.value, 0.5, 'configuration + compatibility only');
  t.equal(est.get('robospatial')?.n, 2);
  t.equal(est.get('3dsrbench')?.value, 1 / 3, 'sample-weighted');
  t.equal(est.get('3dsrbench-location')?.value, 0);
  t.equal(est.has('blink'), false, 'BLINK Avg needs both of its parts');
  t.equal(est.has('mmvp'), false);
  t.same(
    est.get(AVERAGE_KEY)?.value,
    [est.get('3dsrbench')!, est.get('cv-bench')!, est.get('robospatial')!].reduce((a, e) => a + e.value, 0) / 3,
    'the average over the Table 4 columns present',
  );

  const table = comparisonTable([cv2, cv3, robo, sr, blink], ['SpatialThinker-7B']);
  t.same(table.head, ['Paper column', 'Ours % ± SE', 'SpatialThinker-7B', 'Δ vs SpatialThinker-7B']);
  const row = (title: string) => table.rows.find((r) => r[0] === title);
  t.same(row('CV-Bench 3D'), ['CV-Bench 3D', '50.0 ± 0.0', '78.7', '−28.7'], 'mean of Depth 1/1 and Distance 0/1, each with SE 0');
  t.same(row('BLINK Spatial Rel.'), ['BLINK Spatial Rel.', '100.0 ± 0.0', '86.0', '+14.0']);
  t.same(row('3DSRBench Height')?.slice(2), ['52.0', '+48.0'], 'a partial table cell');
  t.same(row("Mean of these 3 of the paper's 14")?.slice(2, 3), [((56.4 + 78.2 + 76.3) / 3).toFixed(1)], "the paper's mean over the same columns");
  t.equal(markdownTable({ title: 'x', head: ['a|b', 'n'], rows: [['c|d', '1']], numeric: true }), '| a\\|b | n |\n| --- | ---: |\n| c\\|d | 1 |');
});
