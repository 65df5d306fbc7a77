/**
 * `npx tsx bench/demo-heldout.ts RUN_DIR [--rows 300] [--world-seed 99] [--samples 4]`:
 * re-evaluates a finished demo run's policies (its summary.json) on fresh
 * shapes-world rows from another world seed (more rows, another sampling
 * seed than the demo's own second-world evaluation), and prints the demo's
 * paired differences (dense − sparse, dense − SFT, gated − ungated) on
 * them: per seed, mean ± SE over seeds, and the SE over rows.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Demo, readSummary, type PolicyResult } from '../lib/demo/demo.js';
import { loadRows } from '../lib/rl/loader.js';
import { writeShapesSplits } from '../lib/shapes/dataset.js';
import { COMPARISONS } from '../lib/demo/results.js';
import { formatMeanSe, pairedDifference } from '../lib/demo/statistics.js';

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
if (worldSeed === o.secondWorldSeed) throw new Error(`--world-seed ${worldSeed} is the run's second world: pick another for fresh rows`);

const dataDir = mkdtempSync(join(tmpdir(), 'st-heldout-'));
try {
  await writeShapesSplits({ outDir: dataDir, trainRows: 1, valRows: rowCount, seed: worldSeed, width: o.imageSize, height: o.imageSize });
  const { rows } = await loadRows(join(dataDir, 'val.jsonl'));
  const label = (r: PolicyResult) => `${r.policy}-seed${r.seed ?? 'none'}`;
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

  // The demo's comparisons, per seed and over its seeds, on these rows.
  console.log('\npaired differences, mean ± SE over seeds (± SE over rows of the per-row difference):');
  for (const { name, a, b } of COMPARISONS)
    for (const metric of ['accuracy', 'ciou'] as const) {
      const side = (policy: string) => o.seeds.map((s) => perRow.get(`${policy}-seed${s}`)).filter((x) => x !== undefined);
      const as = side(a);
      const bs = side(b);
      if (as.length !== o.seeds.length || bs.length !== o.seeds.length) continue;
      const pick = (x: { accuracy: Float64Array; ciou: Float64Array }) => {
        const values = Array.from(x[metric]);
        return { mean: values.reduce((p, v) => p + v, 0) / values.length, rows: { accuracy: Array.from(x.accuracy), ciou: Array.from(x.ciou), format: [] as number[] } };
      };
      const d = pairedDifference(name, 'fresh', metric, as.map(pick), bs.map(pick));
      console.log(`${`${name} ${metric}`.padEnd(30)} per seed ${d.perSeed.map((v) => v.toFixed(3)).join(', ')}  mean ${formatMeanSe(d.overSeeds, 3, true)}  (SE over rows ${d.overRows.se?.toFixed(3) ?? '-'})`);
    }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
