/** `spatialthinker report`: the HTML page of a run directory and of a demo directory of runs. */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { Problems, ReportError, readMetrics } from '../lib/report/run-data.js';
import { buildRunReport, pickSamples, renderRunReport, writeRunReport } from '../lib/report/run-report.js';
import { GROUND_TRUTH_BOX_COLOR, PREDICTED_BOX_COLOR } from '../lib/report/sample-view.js';
import type { Sample } from '../lib/report/run-data.js';
import { GRPO_TRAIN_METRICS, GRPO_VAL_METRICS, SFT_METRICS, writeDemo, writeGrpoRun, writeSftRun } from './helpers-report.js';

const root = mkdtempSync(join(tmpdir(), 'st-report-'));

const count = (text: string, pattern: RegExp) => (text.match(new RegExp(pattern.source, 'g')) ?? []).length;

/** The charts' titles, in page order. */
const chartTitles = (html: string) => [...html.matchAll(/<svg class="chart"[^>]*aria-label="([^"]*)"/g)].map((m) => m[1]);

t.test('a GRPO run: a chart per metric, samples over their images, problems named by line', async (t) => {
  const dir = join(root, 'grpo');
  await writeGrpoRun(dir, {
    steps: 10,
    badMetricLines: ['{not json', JSON.stringify({ split: 'train', 'reward/overall': 1 }), '[1, 2]'],
    truncatedLast: true,
  });
  const report = await buildRunReport(dir);
  const { html } = report;

  const varying = [...GRPO_TRAIN_METRICS, ...GRPO_VAL_METRICS].filter((m) => m !== 'actor/lr');
  t.same(chartTitles(html).sort(), varying.sort(), 'one chart per numeric metric that changes; "note" and "time" are not metrics');
  t.equal(report.charts, varying.length);
  t.equal(report.constants, 1);
  t.match(html, /<li class="constant" data-metric="actor\/lr"><b>actor\/lr<\/b>: constant 1e-6 over 10 steps<\/li>/, 'the constant learning rate is one line');
  t.match(html, /<b>In-training validation \(GRPO\)<\/b>: every \? steps/, 'validation is labelled in-training (this config.yaml does not say how often)');
  t.match(html, /<b>In-training \(GRPO\)<\/b>: each point is the mean over one step's rollouts on training rows: \? prompts × 8 samples/, 'train curves say what they average over');
  t.match(html, /svg class="chart"[^>]*aria-label="val\/accuracy" data-x-min="0" data-x-max="10"/, 'validation (steps 0, 5, 10) on the run\'s own steps');
  t.ok(html.indexOf('>Reward</h3>') < html.indexOf('>Validation</h3>') && html.indexOf('>Validation</h3>') < html.indexOf('>Timing (seconds)</h3>'), 'grouped, in order');
  t.notMatch(html, /<g class="legend">/, 'one run: no per-chart legend');
  t.notMatch(html, /\((GRPO|SFT)\)"/, 'one kind of run: titles need no kind');

  // Samples: 8 train (steps 10, 6, 1, latest first) + 3 val (steps 10, 5, 0).
  t.equal(report.samples, 11);
  t.match(html, /train: 8 samples from steps 10, 6, 1/);
  t.match(html, /val: 3 samples from steps 10, 5, 0/);
  t.equal(count(html, /<img src="data:image\/jpeg;base64,/), 10, 'every sample with an image found embeds it');
  t.match(html, /image not found: [^<]*images\/gone\.png/, 'a missing image is a placeholder naming its path');
  t.match(html, new RegExp(`stroke="${PREDICTED_BOX_COLOR}"`), 'predicted boxes drawn');
  t.match(html, new RegExp(`stroke="${GROUND_TRUTH_BOX_COLOR}"`), 'ground-truth boxes drawn');
  t.match(html, /class="box-legend"/);
  t.notMatch(html, /<script>alert/, 'completion text is escaped');
  t.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  t.match(html, /<th>advantage<\/th>/);

  // The 1280 x 1280 image is shown at 512 px, its boxes (in a 320 x 320 frame) scaled by 1.6.
  t.match(html, /<img src="data:image\/jpeg;base64,[^"]+" width="512" height="512"/);
  t.match(html, /1280x1280, boxes in 320x320/);
  t.match(html, /<rect x="102.4" y="153.6" width="153.6" height="153.6"/, 'cube.1 [64, 96, 160, 192] x 1.6');
  t.ok(Buffer.byteLength(html) < 400_000, `page stays small (${Buffer.byteLength(html)} bytes)`);

  // Problems: each names metrics.jsonl and the line.
  const metricsFile = join(dir, 'metrics.jsonl');
  const lines = readFileSync(metricsFile, 'utf8').split('\n');
  const lineOf = (text: string) => lines.indexOf(text) + 1;
  t.same(report.problems, [
    `${metricsFile}:${lineOf('{not json')}: not valid JSON (${(() => { try { JSON.parse('{not json'); } catch (e) { return (e as Error).message; } })()})`,
    `${metricsFile}:${lineOf('{not json') + 1}: "step" is missing or not a non-negative integer`,
    `${metricsFile}:${lineOf('[1, 2]')}: not a JSON object`,
    `${metricsFile}:${lines.length}: last line is incomplete (the run was probably stopped while writing it); ignored`,
  ]);
  t.match(html, /<section class="problems"><h2>Problems reading the run \(4\)/);
  t.match(html, /metrics\.jsonl:\d+: not valid JSON/);

  // The runs table: checkpoints, TensorBoard files, config.
  t.match(html, /1 \(last step-000005\)/);
  t.match(html, /1 event file/);
  t.match(html, /grpo: config.yaml/);
});

t.test('a demo directory: curves of the runs overlaid with a legend, summary table at the top', async (t) => {
  const dir = join(root, 'demo');
  await writeDemo(dir);
  const report = await buildRunReport(dir);
  const { html } = report;
  const chart = (title: string) => html.match(new RegExp(`<svg class="chart"[^>]*aria-label="${title.replace(/[/()]/g, '\\$&')}"[\\s\\S]*?</svg>`))?.[0] ?? '';
  // SFT and GRPO never share a chart: each metric gets a chart per kind of run that logs it, on that kind's own steps.
  const expected = [
    ...[...GRPO_TRAIN_METRICS, ...GRPO_VAL_METRICS].filter((m) => m !== 'actor/lr').map((m) => `${m} (GRPO)`),
    ...['sft/loss', 'actor/grad_norm', 'val/accuracy'].map((m) => `${m} (SFT)`),
  ];
  t.same(chartTitles(html).sort(), expected.sort(), 'a chart per metric and kind of run');
  t.match(chart('val/accuracy (SFT)'), /data-x-min="1" data-x-max="12"/, "SFT's validation on SFT's steps 1-12");
  t.match(chart('val/accuracy (GRPO)'), /data-x-min="0" data-x-max="10"/, "GRPO's validation on GRPO's steps 0-10, not SFT's");
  t.match(chart('val/accuracy (SFT)'), /SFT runs, steps 1–12/);
  t.match(html, /<li class="constant" data-metric="actor\/lr"><b>actor\/lr \(SFT\)<\/b>: constant 1e-5 over 12 steps<\/li>/);
  t.match(html, /<li class="constant" data-metric="actor\/lr"><b>actor\/lr \(GRPO\)<\/b>: constant 1e-6 over 10 steps \(grpo-dense, grpo-sparse\)<\/li>/);
  t.match(html, /<li class="constant" data-metric="val\/samples"><b>val\/samples \(SFT\)<\/b>: constant 16 over 3 validations<\/li>/);
  t.equal(report.constants, 3);

  // Two seeds of grpo-dense: their mean with a ± s.e. band; grpo-sparse's one seed: its line, no band.
  const reward = chart('reward/overall (GRPO)');
  t.equal(count(reward, /<polyline/), 2, 'a line per arm, not per seed');
  t.equal(count(reward, /<polygon class="band"/), 1, 'a band for the arm with two seeds');
  t.match(reward, /<g class="legend">[^]*>grpo-dense \(2 seeds\)<\/text>[^]*>grpo-sparse<\/text>/, 'a legend naming both arms');
  const colors = [...reward.matchAll(/<polyline[^>]*stroke="([^"]+)"/g)].map((m) => m[1]);
  t.not(colors[0], colors[1], 'one colour per arm');
  // Step 1's two seeds: sin(1/3) and sin(1/3) + 0.5: mean sin(1/3) + 0.25, s.e. 0.25.
  const band = /<polygon class="band" points="([^"]+)"/.exec(reward)![1]!.split(' ').map((p) => p.split(',').map(Number));
  t.equal(band.length, 20, 'the band spans the 10 steps, above and below');
  const ys = chart('reward/overall (GRPO)').match(/<circle cx="[\d.]+" cy="([\d.]+)"/g)!;
  t.ok(ys.length >= 20, 'points of both arms are marked');
  t.match(html, /grpo-dense \(2 seeds: mean, band ± s\.e\.\)/, 'the page legend says what the band is');

  // Held-out: one row per policy, mean ± s.e. across seeds, or the binomial s.e. with one seed.
  t.match(html, /<b>Held-out<\/b>: the final evaluation of each policy's last checkpoint on all 50 held-out rows \(the data's val split\), 4 completion\(s\) per row at temperature 0.5: 200 completions per policy and seed/);
  t.match(html, /<tr><td>grpo-dense<\/td><td>2 \(1, 2\)<\/td><td>0.45 ± 0.05<\/td><td>1 ± 0<\/td><td>0.35 ± 0.05<\/td><td><\/td><\/tr>/);
  t.match(html, new RegExp(`<tr><td>grpo-sparse</td><td>1 \\(1\\)</td><td>0.3 ± ${Number(Math.sqrt((0.3 * 0.7) / 200).toPrecision(4))}</td><td>1 ± 0</td><td>0.25</td><td></td></tr>`), 'one seed: a rate gets its binomial s.e., CIoU none');
  t.match(html, /<tr><td>sft<\/td><td>n\/a<\/td>/);
  t.match(html, /<b>In-training validation \(SFT\)<\/b>[^<]*\(16 completions per point\)/, 'in-training validation says how many completions each point averages');
  t.match(html, /class="legend-runs"/);
  // summary.json: the table, before the runs; other keys as JSON.
  t.match(html, /<div class="wide"><table class="data summary"><tr><th>run<\/th><th>accuracy<\/th><th>note<\/th><\/tr><tr><td>sft<\/td><td>0.31<\/td><td><\/td><\/tr><tr><td>grpo-dense<\/td><td>0.4568<\/td><td>dense &lt;reward&gt;<\/td><\/tr><\/table>/);
  t.ok(html.indexOf('class="data held-out"') < html.indexOf('class="data summary"') && html.indexOf('class="data summary"') < html.indexOf('<h2>Runs</h2>'));
  t.match(html, /&quot;seed&quot;: 7/);
  t.match(html, /<h3><span class="run-swatch"[^>]*><\/span>grpo-dense-seed1<\/h3>/, "each run's samples under its name");
});

t.test('metrics: resumed steps keep the later value, bare validation names get the split prefix', async (t) => {
  const file = join(root, 'resumed.jsonl');
  writeFileSync(
    file,
    [
      { step: 1, split: 'train', loss: 3 },
      { step: 2, split: 'train', loss: 2 },
      { step: 2, split: 'train', loss: 2.5 },
      { step: 2, split: 'val', accuracy: 0.4, 'val/ciou': 0.3 },
      { step: 3, loss: 1, flag: true },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n') + '\n\n',
  );
  const problems = new Problems();
  const metrics = await readMetrics(file, problems);
  t.same([...metrics.curves], [
    ['loss', [[1, 3], [2, 2.5], [3, 1]]],
    ['val/accuracy', [[2, 0.4]]],
    ['val/ciou', [[2, 0.3]]],
  ]);
  t.equal(metrics.lines, 5);
  t.equal(metrics.validations, 1);
  t.equal(metrics.lastStep, 3);
  t.equal(problems.count, 0);
});

t.test('sample selection: the last step, the first and one between, latest first', async (t) => {
  const sample = (step: number, index: number) => ({ step, index }) as unknown as Sample;
  const bySteps = new Map(Array.from({ length: 10 }, (_, i) => [i + 1, [0, 1, 2, 3].map((j) => sample(i + 1, j))]));
  const picked = pickSamples(bySteps, 5, 3);
  t.same(picked.map(([step, s]) => [step, s.map((x) => x.index)]), [[10, [0, 1]], [6, [0, 1]], [1, [0]]]);
  t.same(pickSamples(bySteps, 2, 1).map(([step, s]) => [step, s.length]), [[10, 2]]);
  t.same(pickSamples(new Map([[4, [sample(4, 0)]]]), 8, 3).map(([step, s]) => [step, s.length]), [[4, 1]], 'fewer samples than asked for');
  t.same(pickSamples(bySteps, 0, 3), []);
});

t.test('unusable directories are clear errors naming the directory', async (t) => {
  const missing = join(root, 'nope');
  await t.rejects(renderRunReport(missing), new ReportError(`${missing}: no such directory`));
  const empty = join(root, 'empty');
  mkdirSync(empty);
  await t.rejects(renderRunReport(empty), { name: 'ReportError', message: new RegExp(`^${empty}: not a run directory`) });
  const noMetrics = join(root, 'no-metrics');
  mkdirSync(noMetrics);
  writeFileSync(join(noMetrics, 'metrics.jsonl'), '{"broken\n');
  await t.rejects(renderRunReport(noMetrics), { name: 'ReportError', message: new RegExp(`^${noMetrics}: no metrics`) });
  // In a directory of runs, one run without metrics is a problem, not an error.
  const mixed = join(root, 'mixed');
  writeSftRun(join(mixed, 'ok'), 3);
  mkdirSync(join(mixed, 'crashed'), { recursive: true });
  writeFileSync(join(mixed, 'crashed', 'samples.jsonl'), '');
  const report = await buildRunReport(mixed);
  t.same(report.runs, ['crashed', 'ok']);
  t.match(report.problems.join('\n'), /crashed: no metrics/);
});

t.test('samples with bad lines, undecodable images and unreadable ground truth still render', async (t) => {
  const dir = join(root, 'odd-samples');
  writeSftRun(dir, 2);
  writeFileSync(join(dir, 'not-an-image.png'), 'hello');
  await sharp({ create: { width: 40, height: 30, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } }).png().toFile(join(dir, 'alpha.png'));
  const base = { step: 2, split: 'val', completion: 'x', ground_truth: '<answer>no scene</answer>' };
  writeFileSync(
    join(dir, 'samples.jsonl'),
    [
      JSON.stringify({ ...base, image: 'not-an-image.png' }),
      JSON.stringify({ ...base, completion: 5 }),
      JSON.stringify({ ...base, image: null }),
      JSON.stringify({ ...base, image: 'alpha.png', image_size: [40, 30] }),
      JSON.stringify({ ...base, image_size: [0, 1] }),
    ].join('\n') + '\n',
  );
  const report = await buildRunReport(dir);
  t.equal(report.samples, 3);
  t.match(report.html, /image cannot be decoded: [^<]*not-an-image\.png/);
  t.match(report.html, /no image recorded for this sample/);
  t.match(report.html, /ground truth unreadable: ground truth has no &lt;scene&gt;/);
  t.equal(count(report.html, /<img src="data:image\/(png|jpeg)/), 1, 'a transparent PNG embeds (flattened onto white)');
  t.match(report.html, /<img src="data:image\/png;base64,[^"]+" width="400" height="300"/, 'a tiny image is kept lossless and shown enlarged');
  t.same(report.problems, [
    `${join(dir, 'samples.jsonl')}:2: "completion" is missing or not a string`,
    `${join(dir, 'samples.jsonl')}:5: "image_size" is not [W, H] with positive numbers`,
  ]);
});

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('the CLI writes the page, prints its path, and warns about bad lines', async (t) => {
  const dir = join(root, 'cli-run');
  await writeGrpoRun(dir, { steps: 3, badMetricLines: ['oops'] });
  const out = join(root, 'cli.html');
  const r = cli('report', dir, '--out', out, '--max-samples', '2');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `${out}\n`);
  t.match(r.stderr, /warning: .*metrics\.jsonl:\d+: not valid JSON/);
  t.match(r.stderr, /1 run \(cli-run\), 18 charts, 7 constant metrics, 3 samples/, "2 train samples and the one validation sample (step 0); the learning rate and the one validation's metrics are single lines");
  t.ok(existsSync(out));
  const html = readFileSync(out, 'utf8');
  t.match(html, /train: 2 samples/);
  t.notOk(existsSync(`${out}.partial`));

  const byDefault = cli('report', dir);
  t.equal(byDefault.code, 0, byDefault.stderr);
  t.equal(byDefault.stdout, `${join(dir, 'report.html')}\n`);

  const bad = cli('report', join(root, 'nope'));
  t.equal(bad.code, 1);
  t.equal(bad.stderr, `spatialthinker report: ${join(root, 'nope')}: no such directory\n`);
  t.match(cli('report', dir, '--max-samples', 'x').stderr, /--max-samples must be an integer >= 0/);
  t.match(cli('report').stderr, /expected one RUN_DIR/);
  t.match(cli('report', '--help').stdout, /usage: spatialthinker report RUN_DIR/);
});

t.test('writeRunReport reports an unwritable output as a ReportError', async (t) => {
  const dir = join(root, 'write-run');
  writeSftRun(dir, 2);
  const out = join(root, 'no-such-dir', 'r.html');
  await t.rejects(writeRunReport(dir, out), { name: 'ReportError', message: new RegExp(`^cannot write ${out}`) });
  const written = await writeRunReport(dir);
  t.equal(written.path, join(dir, 'report.html'));
  t.equal(written.charts, 2);
  t.equal(written.constants, 1, 'actor/lr');
});
