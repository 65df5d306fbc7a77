import t from 'tap';
import { formatMeanSe, meanSe, pairedDifference } from '../lib/demo/statistics.js';

t.test('meanSe: mean and the standard error of the mean', async (t) => {
  const m = meanSe([1, 2, 3, 4]);
  t.equal(m.mean, 2.5);
  t.ok(Math.abs((m.se as number) - Math.sqrt(5 / 3 / 4)) < 1e-12);
  t.equal(meanSe([0.4]).se, null, 'one value has no SE');
  t.equal(formatMeanSe(meanSe([0.5, 0.7])), '0.600 ± 0.100');
  t.equal(formatMeanSe(meanSe([0.25]), 3, true), '+0.250');
});

t.test('pairedDifference: per seed, over seeds, over rows', async (t) => {
  const rows = (accuracy: number[]) => ({ accuracy, format: accuracy, ciou: accuracy });
  const a = [
    { mean: 0.75, rows: rows([1, 1, 0.5, 0.5]) },
    { mean: 0.5, rows: rows([1, 0, 0.5, 0.5]) },
  ];
  const b = [
    { mean: 0.25, rows: rows([0, 0.5, 0.5, 0]) },
    { mean: 0.5, rows: rows([0.5, 0.5, 0.5, 0.5]) },
  ];
  const d = pairedDifference('a − b', 'held-out', 'accuracy', a, b);
  t.same(d.perSeed, [0.5, 0]);
  t.equal(d.overSeeds.mean, 0.25);
  t.equal(d.overSeeds.se, 0.25);
  t.equal(d.seFrom, 'seeds');
  t.equal(d.beyondTwoSe, false, '0.25 is not beyond 2 x 0.25');
  // Per-row differences averaged over seeds: [0.75, 0, 0, 0.25].
  t.equal(d.overRows.mean, 0.25);
  t.ok(Math.abs((d.overRows.se as number) - meanSe([0.75, 0, 0, 0.25]).se!) < 1e-12);

  const one = pairedDifference('a − b', 'held-out', 'accuracy', a.slice(0, 1), b.slice(0, 1));
  t.equal(one.overSeeds.se, null);
  t.equal(one.seFrom, 'rows', 'one seed: the SE over rows decides');
  t.equal(one.beyondTwoSe, 0.5 > 2 * (one.overRows.se as number));
  t.throws(() => pairedDifference('x', 's', 'accuracy', a, b.slice(0, 1)), /same non-zero count/);
});
