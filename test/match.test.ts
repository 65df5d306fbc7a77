import t from 'tap';
import { ciouMatrices, linearSumAssignment } from '../lib/match/index.js';
import { native } from '../lib/index.js';
import { rng } from './helpers.js';

// Mapped CIoU written out step by step from shared/spec/rewards.md §4, for
// hand-checkable expectations independent of the native code.
function mappedCiouByHand(a: number[], b: number[]): number {
  const eps = 1e-7;
  const [ax1, ay1, ax2, ay2] = a as [number, number, number, number];
  const [bx1, by1, bx2, by2] = b as [number, number, number, number];
  const wa = ax2 - ax1, ha = ay2 - ay1, wb = bx2 - bx1, hb = by2 - by1;
  const inter = Math.max(0, Math.min(ax2, bx2) - Math.max(ax1, bx1)) * Math.max(0, Math.min(ay2, by2) - Math.max(ay1, by1));
  const iou = inter / (wa * ha + wb * hb - inter + eps);
  const rho2 = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2) ** 2 + ((ay1 + ay2) / 2 - (by1 + by2) / 2) ** 2;
  const c2 = (Math.max(ax2, bx2) - Math.min(ax1, bx1)) ** 2 + (Math.max(ay2, by2) - Math.min(ay1, by1)) ** 2 + eps;
  const v = (4 / Math.PI ** 2) * (Math.atan(wb / (hb + eps)) - Math.atan(wa / (ha + eps))) ** 2;
  const denom = 1 - iou + v;
  const alpha = denom === 0 ? 0 : v / denom;
  return (iou - rho2 / c2 - alpha * v + 1) / 2;
}

t.test('mapped CIoU matches the values of the spec', async (t) => {
  const man = [[110 / 640, 60 / 480, 290 / 640, 410 / 480]];
  const [[manRow]] = (await ciouMatrices([{ predictions: man, groundTruth: [[100 / 640, 50 / 480, 300 / 640, 400 / 480]] }])) as [[number[]]];
  t.ok(Math.abs((manRow[0] as number) - 0.925854) < 5e-7, `man.1 mciou ${manRow[0]} = 0.925854 (spec §2.12)`);
  const [[far]] = (await ciouMatrices([{ predictions: [[0, 0, 0.1, 0.001]], groundTruth: [[0.999, 0.9, 1, 1]] }])) as [[number[]]];
  t.ok(Math.abs((far[0] as number) - -0.191) < 1e-3, `far-apart boxes map below 0: ${far[0]}`);
  t.ok(Math.abs((far[0] as number) * 2 - 1 - -1.383) < 1e-3, 'their CIoU is about -1.383');
});

t.test('CIoU matrices agree with a hand computation to 1e-12, including odd boxes', async (t) => {
  const random = rng(7);
  const box = () => {
    const x = random(), y = random();
    // a few inverted and degenerate boxes on purpose: no clamping is applied
    const w = random() < 0.1 ? -random() * 0.2 : random() * 0.5;
    const h = random() < 0.1 ? 0 : random() * 0.5;
    return [x, y, x + w, y + h];
  };
  const pairs = Array.from({ length: 40 }, (_, i) => ({
    predictions: Array.from({ length: i % 7 }, box),
    groundTruth: Array.from({ length: (i * 3) % 5 }, box),
  }));
  const matrices = await ciouMatrices(pairs);
  let worst = 0;
  pairs.forEach((pair, i) =>
    pair.predictions.forEach((p, r) =>
      pair.groundTruth.forEach((g, c) => {
        worst = Math.max(worst, Math.abs((matrices[i]?.[r]?.[c] as number) - mappedCiouByHand(p, g)));
      }),
    ),
  );
  t.ok(worst < 1e-12, `max abs error ${worst}`);
  t.equal(matrices[0]?.length, 0, 'a problem with no predictions gives an empty matrix');
});

t.test('CIoU is symmetric and 1 (up to eps) for identical boxes', async (t) => {
  const a = [0.1, 0.2, 0.5, 0.9];
  const b = [0.3, 0.1, 0.7, 0.4];
  const [[ab], [ba]] = (await ciouMatrices([
    { predictions: [a], groundTruth: [b, a] },
    { predictions: [b], groundTruth: [a] },
  ])) as [[number[]], [number[]]];
  t.equal(ab[0], ba[0], 'symmetric');
  t.ok(Math.abs((ab[1] as number) - 1) < 1e-6, `identical boxes: ${ab[1]}`);
});

// Every assignment of min(rows, cols) pairs, by brute force.
function bruteForceMinimum(cost: number[][]): number {
  const rows = cost.length;
  const cols = cost[0]?.length ?? 0;
  const tall = rows > cols;
  const n = tall ? cols : rows;
  const m = tall ? rows : cols;
  const at = (i: number, j: number) => (tall ? (cost[j] as number[])[i] : (cost[i] as number[])[j]) as number;
  let best = Infinity;
  const used = new Array<boolean>(m).fill(false);
  const visit = (i: number, sum: number) => {
    if (i === n) {
      best = Math.min(best, sum);
      return;
    }
    for (let j = 0; j < m; j++) {
      if (used[j]) continue;
      used[j] = true;
      visit(i + 1, sum + at(i, j));
      used[j] = false;
    }
  };
  visit(0, 0);
  return best;
}

t.test('Hungarian equals brute force on random rectangular matrices, both ways', async (t) => {
  const random = rng(42);
  const matrices: number[][][] = [];
  for (let k = 0; k < 300; k++) {
    const rows = 1 + Math.floor(random() * 6);
    const cols = 1 + Math.floor(random() * 6);
    matrices.push(Array.from({ length: rows }, () => Array.from({ length: cols }, () => random() * 10 - 3)));
  }
  const results = await linearSumAssignment(matrices);
  let mismatches = 0;
  results.forEach((result, k) => {
    const cost = matrices[k] as number[][];
    const rows = cost.length;
    const cols = (cost[0] as number[]).length;
    const assigned = result.rowToCol.filter((c) => c >= 0);
    const distinct = new Set(assigned).size === assigned.length;
    const complete = assigned.length === Math.min(rows, cols);
    const sum = result.rowToCol.reduce((s, c, r) => (c >= 0 ? s + ((cost[r] as number[])[c] as number) : s), 0);
    if (!distinct || !complete || Math.abs(sum - result.totalCost) > 1e-9 || Math.abs(sum - bruteForceMinimum(cost)) > 1e-9)
      mismatches++;
  });
  t.equal(mismatches, 0, 'every assignment is complete, one-to-one and optimal');
});

t.test('Hungarian handles empty, +inf and bad matrices', async (t) => {
  const [empty] = await linearSumAssignment([[]]);
  t.same(empty, { rowToCol: [], totalCost: 0 });
  const [withInf] = await linearSumAssignment([
    [
      [Infinity, 1],
      [2, Infinity],
    ],
  ]);
  t.same(withInf?.rowToCol, [1, 0], '+inf entries are avoided');
  await t.rejects(linearSumAssignment([[[1]], [[NaN, 1]]]), /problem 1: cost matrix contains NaN/);
  await t.rejects(linearSumAssignment([[[1]], [[-Infinity]]]), /problem 1: .*-inf/);
  await t.rejects(
    linearSumAssignment([[[Infinity, Infinity], [1, 2]]]),
    /problem 0: cost matrix is infeasible/,
  );
  await t.rejects(linearSumAssignment([[[1, 2], [3]]]), /ragged/);
});

t.test('native arguments are checked and named', async (t) => {
  const n = native();
  await t.rejects(
    async () => n.ciouMatrices({ predBoxes: new Float64Array(3), predCounts: Int32Array.of(1), gtBoxes: new Float64Array(0), gtCounts: Int32Array.of(0), device: 'cpu' }),
    /predBoxes.*4 numbers per predicted box/,
  );
  await t.rejects(
    async () => n.ciouMatrices({ predBoxes: [0, 0, 1, 1] as unknown as Float64Array, predCounts: Int32Array.of(1), gtBoxes: new Float64Array(0), gtCounts: Int32Array.of(0), device: 'cpu' }),
    /ciouMatrices: `predBoxes` must be a Float64Array/,
  );
  await t.rejects(
    async () => n.linearSumAssignment({ costs: new Float64Array(5), rows: Int32Array.of(2), cols: Int32Array.of(2), device: 'cpu' }),
    /costs` has 5 entries but rows x cols add up to 4/,
  );
  await t.rejects(
    async () => n.ciouMatrices({ predBoxes: new Float64Array(0), predCounts: Int32Array.of(0), gtBoxes: new Float64Array(0), gtCounts: Int32Array.of(0), device: 'tpu' as 'cpu' }),
    /device` must be "cpu" or "cuda"/,
  );
});

t.test('a large batch runs off the event loop', async (t) => {
  const random = rng(3);
  const size = 64;
  const count = 400;
  const costs = Array.from({ length: count }, () =>
    Array.from({ length: size }, () => Array.from({ length: size }, () => random())),
  );
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  let ticksBeforeResult = -1;
  const pending = linearSumAssignment(costs).then((results) => {
    ticksBeforeResult = ticks;
    return results;
  });
  const results = await pending;
  clearInterval(timer);
  t.equal(results.length, count);
  t.ok(ticksBeforeResult >= 2, `timers fired (${ticksBeforeResult}) while the engine solved ${count} ${size}x${size} problems`);
});
