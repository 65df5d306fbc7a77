/**
 * `npx tsx bench/demo-heldout.ts RUN_DIR [--rows 300] [--world-seed 99] [--samples 4]`:
 * re-evaluates a finished demo run's policies (its summary.json) on fresh
 * shapes-world rows from another world seed, and prints per-row paired
 * differences (mean ± standard error) of accuracy and box CIoU: each GRPO
 * policy against the SFT start, and dense against sparse per seed and over
 * the seeds. The demo's own held-out split is 100 rows; this is the check
 * that its gains are not that split's noise.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Demo, readSummary, type PolicyResult } from '../lib/demo/demo.js';
import { loadRows } from '../lib/rl/loader.js';
import { writeShapesSplits } from '../lib/shapes/dataset.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rows: { type: 'string', default: '300' }, 'world-seed': { type: 'string', default: '99' }, samples: { type: 'string', default: '4' } },
});
const runDir = positionals[0];
if (!runDir) {
  console.error('usage: npx tsx bench/demo-heldout.ts RUN_DIR [--rows 300] [--world-seed 99] [--samples 4]');
  process.exit(2);
}
const rowCount = Number(values.rows);
const worldSeed = Number(values['world-seed']);
const samples = Number(values.samples);
const summary = await readSummary(runDir);
const o = summary.options;
if (worldSeed === o.worldSeed) throw new Error(`--world-seed ${worldSeed} is the run's own world seed: pick another for fresh rows`);

const dataDir = mkdtempSync(join(tmpdir(), 'st-heldout-'));
try {
  await writeShapesSplits({ outDir: dataDir, trainRows: 1, valRows: rowCount, seed: worldSeed, width: o.imageSize, height: o.imageSize });
  const { rows } = await loadRows(join(dataDir, 'val.jsonl'));
  const label = (r: PolicyResult) => (r.seed === null ? r.policy : `${r.policy}-seed${r.seed}`);
  // The demo's own evaluation, with the run's options (only the sample count may differ).
  const demo = new Demo({ ...o, evalSamples: samples, evalGreedy: false });
  const perRow = new Map<string, { accuracy: Float64Array; ciou: Float64Array }>();
  console.log(`${rows.length} fresh rows (world seed ${worldSeed}), ${samples} samples per row at temperature ${o.evalTemperature}\n`);
  for (const result of summary.results) {
    const evaluation = await demo.evaluate(result.checkpoint, join(dataDir, 'val.jsonl'), { seed: 11 });
    const accuracy = new Float64Array(rows.length);
    const ciou = new Float64Array(rows.length);
    for (const s of evaluation.samples) {
      accuracy[s.rollout.prompt] = (accuracy[s.rollout.prompt] as number) + (s.correct ? 1 : 0) / samples;
      ciou[s.rollout.prompt] = (ciou[s.rollout.prompt] as number) + s.ciou / samples;
    }
    perRow.set(label(result), { accuracy, ciou });
    const m = evaluation.metrics;
    console.log(`${label(result).padEnd(20)} accuracy ${m['val/accuracy']?.toFixed(3)}  format ${m['val/format_rate']?.toFixed(3)}  box CIoU ${m['val/ciou']?.toFixed(3)}  answer is an option ${m['val/answer_is_option']?.toFixed(3)}`);
  }

  const meanOf = (labels: string[], key: 'accuracy' | 'ciou') =>
    rows.map((_, i) => labels.reduce((a, l) => a + ((perRow.get(l) as { accuracy: Float64Array; ciou: Float64Array })[key][i] as number), 0) / labels.length);
  const paired = (a: number[], b: number[]) => {
    const d = a.map((v, i) => v - (b[i] as number));
    const mean = d.reduce((s, v) => s + v, 0) / d.length;
    const sd = Math.sqrt(d.reduce((s, v) => s + (v - mean) ** 2, 0) / Math.max(1, d.length - 1));
    return `${mean >= 0 ? '+' : ''}${mean.toFixed(3)} ± ${(sd / Math.sqrt(d.length)).toFixed(3)}`;
  };
  const line = (name: string, a: string[], b: string[]) =>
    console.log(`${name.padEnd(34)} accuracy ${paired(meanOf(a, 'accuracy'), meanOf(b, 'accuracy'))}   CIoU ${paired(meanOf(a, 'ciou'), meanOf(b, 'ciou'))}`);
  console.log('\nper-row paired differences, mean ± standard error:');
  const dense = o.seeds.map((s) => `grpo-dense-seed${s}`).filter((l) => perRow.has(l));
  const sparse = o.seeds.map((s) => `grpo-sparse-seed${s}`).filter((l) => perRow.has(l));
  for (const l of [...dense, ...sparse]) line(`${l} - sft`, [l], ['sft']);
  for (const s of o.seeds) if (perRow.has(`grpo-dense-seed${s}`) && perRow.has(`grpo-sparse-seed${s}`)) line(`dense - sparse, seed ${s}`, [`grpo-dense-seed${s}`], [`grpo-sparse-seed${s}`]);
  if (dense.length > 0 && sparse.length > 0) {
    line(`dense - sft, mean of ${dense.length} seeds`, dense, ['sft']);
    line(`sparse - sft, mean of ${sparse.length} seeds`, sparse, ['sft']);
    line(`dense - sparse, mean of ${dense.length} seeds`, dense, sparse);
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
