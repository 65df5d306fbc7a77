import t from 'tap';
import { native } from '../lib/index.js';
import { rng } from './helpers.js';

const info = native().runtimeInfo();
const skip = info.cuda.available ? false : `no usable CUDA device: ${info.cuda.reason ?? 'unknown'}`;
if (skip) t.comment(`CUDA matching tests skipped: ${skip}`);

function randomBoxes(random: () => number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = random(), y = random();
    out.push(x, y, x + random() * 0.5, y + random() * 0.5);
  }
  return out;
}

function batch(seed: number, problems: number, maxBoxes: number) {
  const random = rng(seed);
  const predCounts = Int32Array.from({ length: problems }, () => Math.floor(random() * (maxBoxes + 1)));
  const gtCounts = Int32Array.from({ length: problems }, () => Math.floor(random() * (maxBoxes + 1)));
  const sum = (a: Int32Array) => a.reduce((s, v) => s + v, 0);
  let pairs = 0;
  for (let i = 0; i < problems; i++) pairs += (predCounts[i] as number) * (gtCounts[i] as number);
  return {
    predBoxes: Float64Array.from(randomBoxes(random, sum(predCounts))),
    predCounts,
    gtBoxes: Float64Array.from(randomBoxes(random, sum(gtCounts))),
    gtCounts,
    similarity: Float64Array.from({ length: pairs }, () => (random() < 0.5 ? 1 : random())),
  };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
}

t.test('CUDA CIoU matrices equal the CPU ones', { skip }, async (t) => {
  const input = batch(1, 4096, 50);
  const cpu = await native().ciouMatrices({ ...input, device: 'cpu' });
  const gpu = await native().ciouMatrices({ ...input, device: 'cuda' });
  t.ok(maxAbsDiff(cpu, gpu) <= 1e-12, `max abs difference ${maxAbsDiff(cpu, gpu)}`);
});

t.test('CUDA assignments equal the CPU ones, rectangular both ways', { skip }, async (t) => {
  const random = rng(2);
  const rows = Int32Array.from({ length: 2000 }, () => 1 + Math.floor(random() * 40));
  const cols = Int32Array.from({ length: 2000 }, () => 1 + Math.floor(random() * 40));
  let total = 0;
  for (let i = 0; i < rows.length; i++) total += (rows[i] as number) * (cols[i] as number);
  const costs = Float64Array.from({ length: total }, () => random() * 10);
  const cpu = await native().linearSumAssignment({ costs, rows, cols, device: 'cpu' });
  const gpu = await native().linearSumAssignment({ costs, rows, cols, device: 'cuda' });
  t.same(Array.from(gpu.rowToCol), Array.from(cpu.rowToCol), 'same assignment');
  t.ok(maxAbsDiff(cpu.totals, gpu.totals) <= 1e-9, 'same totals');
  await t.rejects(
    native().linearSumAssignment({ costs: Float64Array.of(Infinity, Infinity), rows: Int32Array.of(1), cols: Int32Array.of(2), device: 'cuda' }),
    /problem 0: cost matrix is infeasible/,
  );
});

t.test('CUDA spatial scores equal the CPU ones', { skip }, async (t) => {
  const input = batch(3, 4096, 50);
  const cpu = await native().spatialScores({ ...input, semanticWeight: 2, iouWeight: 1, device: 'cpu' });
  const gpu = await native().spatialScores({ ...input, semanticWeight: 2, iouWeight: 1, device: 'cuda' });
  t.ok(maxAbsDiff(cpu.scores, gpu.scores) <= 1e-12, `scores: max abs difference ${maxAbsDiff(cpu.scores, gpu.scores)}`);
  t.same(Array.from(gpu.gtToPred), Array.from(cpu.gtToPred), 'same matches');
  t.ok(maxAbsDiff(cpu.gtMciou, gpu.gtMciou) <= 1e-12, 'same matched mciou');
});

t.test('the CUDA device reports why it is unavailable instead of failing to load', async (t) => {
  if (info.cuda.available) {
    t.ok(info.cuda.devices.length > 0, 'devices are listed');
    return;
  }
  t.match(info.cuda.reason, /\S/, 'a reason is given');
  await t.rejects(
    native().ciouMatrices({ predBoxes: new Float64Array(0), predCounts: new Int32Array(0), gtBoxes: new Float64Array(0), gtCounts: new Int32Array(0), device: 'cuda' }),
    /CUDA/,
    'asking for CUDA rejects with the reason',
  );
});
