import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Demo, formatSummary } from '../lib/demo/demo.js';
import { writeRunReport } from '../lib/report/run-report.js';

t.test('demo --quick runs the whole method end to end and writes its run directory', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'st-demo-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const demo = new Demo({ quick: true, out, evalGreedy: true });
  const stages: string[] = [];
  demo.on('stage', (s) => stages.push(s));
  const summary = await demo.run();
  t.same(stages, ['data', 'model', 'sft', 'eval-sft', 'grpo-dense-1', 'eval-grpo-dense-1', 'grpo-sparse-1', 'eval-grpo-sparse-1']);
  t.same(
    summary.table.map((r) => r['policy']),
    ['sft', 'grpo-dense', 'grpo-sparse'],
  );
  for (const r of summary.results) {
    for (const key of ['val/accuracy', 'val/format_rate', 'val/ciou']) {
      const v = r.metrics[key] as number;
      t.ok(v >= 0 && v <= 1, `${r.policy} ${key} = ${v}`);
    }
    t.equal(r.metrics['val/samples'], 24, 'every held-out row is evaluated, twice at temperature 0.5');
    t.equal(r.metrics['greedy/samples'], 12, 'and once greedily');
    t.ok(existsSync(join(r.checkpoint, 'model.safetensors')));
  }
  t.ok(existsSync(join(out, 'data', 'train.jsonl')) && existsSync(join(out, 'model', 'tokenizer.json')));
  for (const run of ['sft', 'grpo-dense', 'grpo-sparse']) {
    const lines = readFileSync(join(out, run, 'metrics.jsonl'), 'utf8').trim().split('\n');
    t.ok(lines.length >= 2, `${run} logged its steps`);
  }
  const dense = readFileSync(join(out, 'grpo-dense', 'config.yaml'), 'utf8');
  const sparse = readFileSync(join(out, 'grpo-sparse', 'config.yaml'), 'utf8');
  t.match(dense, /reward_function: spatial/);
  t.match(sparse, /reward_function: sparse_scene/);
  t.equal(dense.replace('reward_function: spatial', '').replaceAll('grpo-dense', 'X'), sparse.replace('reward_function: sparse_scene', '').replaceAll('grpo-sparse', 'X'), 'same budget and seeds apart from the reward');
  const saved = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  t.equal(saved.table.length, 3);
  t.match(formatSummary(summary), /held-out gain over SFT/);
  const report = await writeRunReport(out);
  t.ok(existsSync(report.path), 'the report renders');
});
