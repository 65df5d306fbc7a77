/**
 * Our spatial reward (exact label similarity) against the plain-Python
 * restatement of the reference scorer in bench/reference, on the spec's edge
 * cases and on random rollouts. Needs python3 with scipy, as CI has.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { SpatialReward, checkFormat, native, parseImageSize } from '../lib/index.js';
import { makeRollouts } from '../bench/rollouts.js';
import { mulberry32 } from '../lib/random.js';

const probe = spawnSync('python3', ['-c', 'import scipy'], { encoding: 'utf8' });
const skip = probe.status === 0 ? false : `python3 with scipy is not available (${(probe.stderr || String(probe.error)).trim()})`;
if (skip) t.comment(`reference parity skipped: ${skip}`);

interface Row {
  prediction: string;
  ground_truth: string;
  problem: string;
  name?: string;
}

const COMPONENTS = ['overall', 'format', 'count', 'accuracy', 'spatial'] as const;

async function compare(t: Test, rows: Row[], dir: string, label: string) {
  const input = join(dir, `${label}.jsonl`);
  const dump = join(dir, `${label}.scores.jsonl`);
  writeFileSync(input, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  execFileSync('python3', ['bench/reference/spatial_reward.py', input, '--dump', dump], { stdio: 'pipe' });
  const expected = readFileSync(dump, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  const reward = new SpatialReward({ similarity: 'exact' });
  const ours = await reward.scoreBatch(
    rows.map((r) => ({
      completion: r.prediction,
      groundTruth: r.ground_truth,
      prompt: r.problem,
      image: parseImageSize(r.problem) ?? { width: 1, height: 1 },
    })),
  );
  let worst = 0;
  const mismatches: string[] = [];
  let malformed = 0;
  ours.forEach((s, i) => {
    // A predicted box with x1 > x2, y1 > y2 is left out of our matching (README,
    // "The reward"); the reference scores it with an unbounded negative CIoU.
    // Such rows must agree on format, count and accuracy and stay in bounds.
    const deviates = hasMalformedPredictedBox(rows[i]?.prediction ?? '');
    if (deviates) {
      malformed++;
      if (!(s.spatial > -0.25 && s.spatial <= 1)) mismatches.push(`${rows[i]?.name ?? `row ${i}`}: spatial ${s.spatial} out of (-0.25, 1]`);
    }
    for (const c of COMPONENTS) {
      if (deviates && (c === 'spatial' || c === 'overall')) continue;
      const diff = Math.abs((s[c] as number) - (expected[i]?.[c] as number));
      worst = Math.max(worst, diff);
      if (!(diff <= 1e-9)) mismatches.push(`${rows[i]?.name ?? `row ${i}`}: ${c} ours ${s[c]} reference ${expected[i]?.[c]}`);
    }
  });
  t.same(mismatches, [], `${rows.length} ${label} rows agree with the reference (max abs difference ${worst}; ${malformed} with a malformed predicted box agree but for spatial)`);
}

function hasMalformedPredictedBox(prediction: string): boolean {
  const parsed = checkFormat(prediction);
  if (!parsed) return false;
  return parsed.objects.some(({ bbox }) => {
    const [x1, y1, x2, y2] = bbox.map(Number) as [number, number, number, number];
    return !(x1 <= x2 && y1 <= y2);
  });
}

t.test('agrees with the reference scorer', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-parity-'));
  const vectors = join(dir, 'vectors.jsonl');
  execFileSync('python3', ['bench/reference/test_vectors.py', vectors, '--no-run'], { stdio: 'pipe' });
  const edgeCases = readFileSync(vectors, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Row);
  await compare(t, edgeCases, dir, 'edge-case');
  await compare(t, makeRollouts(2000, 11), dir, 'random-rollout');
});

t.test('assignments equal scipy.optimize.linear_sum_assignment, ties included', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-lsa-'));
  for (const [n, levels] of [[6, 0], [6, 3], [20, 2], [40, 0]] as const) {
    // levels > 0: integer costs from a few values, so most matrices have tied optima
    const count = 200;
    const random = mulberry32(n * 31 + levels);
    const costs = Float64Array.from({ length: n * n * count }, () => (levels > 0 ? Math.floor(random() * levels) : random()));
    const file = join(dir, `lsa-${n}-${levels}.bin`);
    writeFileSync(file, Buffer.from(costs.buffer));
    const scipy = JSON.parse(
      execFileSync('python3', ['bench/reference/lsa_scipy.py', file, '--n', String(n), '--count', String(count)], { encoding: 'utf8' }),
    ) as { assignments_sha: string };
    const { rowToCol } = await native().linearSumAssignment({
      costs,
      rows: new Int32Array(count).fill(n),
      cols: new Int32Array(count).fill(n),
      device: 'cpu',
    });
    const sha = createHash('sha256').update(Buffer.from(rowToCol.buffer)).digest('hex');
    t.equal(sha, scipy.assignments_sha, `${count} ${n}x${n} matrices${levels > 0 ? ` with costs in 0..${levels - 1}` : ''}: identical assignments`);
  }
});
