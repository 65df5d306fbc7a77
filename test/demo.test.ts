import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ARMS, Demo, formatSummary } from '../lib/demo/demo.js';
import { writeRunReport } from '../lib/report/run-report.js';
import { PRETRAIN_WORLD_SEED, shippedBasePath } from '../lib/demo/pretrain.js';

t.test('demo --quick runs the protocol end to end: base, four arms, two question sets, statistics', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'st-demo-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const demo = new Demo({ quick: true, out, evalGreedy: true });
  const stages: string[] = [];
  demo.on('stage', (s) => stages.push(s));
  const summary = await demo.run();
  t.same(stages, ['data', 'base', 'eval-base', ...ARMS.flatMap((arm) => [`${arm}-1`, `eval-${arm}-1`])]);
  t.same(
    summary.results.map((r) => r.policy),
    ['base', 'sft', 'grpo-sparse', 'grpo-dense', 'grpo-dense-ungated'],
  );
  t.equal(summary.base.source, 'from-scratch', '--quick builds its own base');
  for (const [set, info] of Object.entries(summary.sets)) {
    const rows = readFileSync(info.file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { options: string[] });
    t.equal(info.rows, 12, `${set}: every row`);
    t.ok(Math.abs(info.chance - rows.reduce((a, r) => a + 1 / r.options.length, 0) / rows.length) < 1e-12, `${set}: chance is the mean of 1 / options`);
  }
  t.not(summary.sets['held-out'].worldSeed, summary.sets['second-world'].worldSeed, 'the second world is another seed');
  for (const r of summary.results) {
    for (const set of ['held-out', 'second-world'] as const) {
      const e = r.evaluations[set];
      for (const key of ['val/accuracy', 'val/format_rate', 'val/ciou']) {
        const v = e.metrics[key] as number;
        t.ok(v >= 0 && v <= 1, `${r.policy} ${set} ${key} = ${v}`);
      }
      t.equal(e.metrics['val/samples'], 24, 'every row is evaluated, twice at temperature 0.5');
      t.equal(e.metrics['greedy/samples'], 12, 'and once greedily');
      t.equal(e.rows.accuracy.length, 12, 'per-row values for the paired differences');
      const rowMean = e.rows.accuracy.reduce((a, b) => a + b, 0) / 12;
      t.ok(Math.abs(rowMean - (e.metrics['val/accuracy'] as number)) < 1e-3, 'the per-row values average to the metric');
    }
    t.ok(existsSync(join(r.checkpoint, 'model.safetensors')));
  }
  for (const run of ['base-warm-start', ...ARMS]) {
    const lines = readFileSync(join(out, run, 'metrics.jsonl'), 'utf8').trim().split('\n');
    t.ok(lines.length >= 2, `${run} logged its steps`);
  }
  // The three GRPO arms differ in their reward and nothing else.
  const config = (arm: string) => readFileSync(join(out, arm, 'config.yaml'), 'utf8').replaceAll(arm, 'ARM');
  const dense = config('grpo-dense');
  t.match(dense, /reward_function: spatial\n/);
  t.match(config('grpo-sparse'), /reward_function: sparse_scene/);
  t.match(config('grpo-dense-ungated'), /reward_function: spatial_ungated/);
  const strip = (text: string) => text.replace(/reward_function: \S+\n/, '').replace(/ *reward_function_kwargs:\n *similarity: exact\n/, '');
  t.equal(strip(config('grpo-sparse')), strip(dense), 'sparse: same budget and seeds apart from the reward');
  t.equal(strip(config('grpo-dense-ungated')), strip(dense), 'ungated: same budget and seeds apart from the reward');
  t.match(config('sft'), /model_path: .*base-warm-start/, 'the SFT arm starts from the base');

  const paired = summary.statistics.paired;
  t.equal(paired.length, 3 * 3 * 2, 'three comparisons, three metrics, two sets');
  const d = paired.find((p) => p.name === 'dense − sparse' && p.set === 'held-out' && p.metric === 'accuracy')!;
  const metric = (policy: string) => summary.results.find((r) => r.policy === policy)!.evaluations['held-out'].metrics['val/accuracy'] as number;
  t.ok(Math.abs(d.perSeed[0]! - (metric('grpo-dense') - metric('grpo-sparse'))) < 1e-12);
  t.equal(d.overSeeds.se, null, 'one seed: no SE over seeds');
  t.equal(d.seFrom, 'rows');

  const saved = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  t.equal(saved.results.length, 5);
  t.match(saved.command, /Demo/);
  const markdown = readFileSync(join(out, 'results.md'), 'utf8');
  t.match(markdown, /- commit: `/);
  t.match(markdown, /\| comparison \| set \| metric \|/);
  t.match(markdown, /chance accuracy 0\.\d{3}/);
  t.match(formatSummary(summary), /gated > ungated on held-out accuracy/);
  const report = await writeRunReport(out);
  const html = readFileSync(report.path, 'utf8');
  t.match(html, /paired differences/, 'the report shows the paired differences');
  t.match(html, /mean ± SE \(seeds\)/);
});

const shippedBase = join(shippedBasePath(), 'pretrain.json');
t.test(
  'a base pre-trained on the demo world is refused',
  { skip: existsSync(shippedBase) ? false : `no shipped base at ${shippedBase} (make it with \`spatialthinker demo pretrain\`)` },
  async (t) => {
    const out = mkdtempSync(join(tmpdir(), 'st-demo-'));
    t.teardown(() => rmSync(out, { recursive: true, force: true }));
    await t.rejects(new Demo({ out, worldSeed: PRETRAIN_WORLD_SEED }).run(), /is the world the base .* was pre-trained on/);
  },
);
