/**
 * The demo's statistics: means with standard errors over seeds, and paired
 * differences between arms (same seed = same base and data order), with
 * their standard error over seeds and, for the evaluation's own noise, over
 * rows.
 */

export interface MeanSe {
  mean: number;
  /** Standard error of the mean; null with fewer than two values. */
  se: number | null;
  n: number;
}

export function meanSe(values: readonly number[]): MeanSe {
  const n = values.length;
  if (n === 0) return { mean: NaN, se: null, n };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, se: null, n };
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(variance / n), n };
}

/** Per-row values of one policy on one question set: the mean over the row's sampled completions. */
export interface RowValues {
  accuracy: number[];
  format: number[];
  ciou: number[];
}

export interface PairedDifference {
  /** e.g. "dense − sparse". */
  name: string;
  set: string;
  metric: keyof RowValues;
  /** a − b for each seed, in seed order. */
  perSeed: number[];
  overSeeds: MeanSe;
  /**
   * The per-row paired difference averaged over seeds, with its standard
   * error over rows: the evaluation's sampling noise alone (seed-to-seed
   * training variation is in `overSeeds`).
   */
  overRows: MeanSe;
  /** Whether |mean| > 2 SE, with the SE over seeds when there are two or more seeds, else over rows. */
  beyondTwoSe: boolean;
  /** Which SE `beyondTwoSe` used. */
  seFrom: 'seeds' | 'rows';
}

/**
 * `a` and `b` are, per seed (the same seeds in the same order), a policy's
 * mean metric and its per-row values on one question set.
 */
export function pairedDifference(
  name: string,
  set: string,
  metric: keyof RowValues,
  a: readonly { mean: number; rows: RowValues }[],
  b: readonly { mean: number; rows: RowValues }[],
): PairedDifference {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`${name}: ${a.length} and ${b.length} seeds, expected the same non-zero count`);
  const perSeed = a.map((x, i) => x.mean - (b[i] as { mean: number }).mean);
  const rowCount = a[0]!.rows[metric].length;
  for (const x of [...a, ...b]) if (x.rows[metric].length !== rowCount) throw new RangeError(`${name}: per-row ${metric} of different lengths`);
  const rowDiffs = Array.from({ length: rowCount }, (_, r) => a.reduce((s, x, i) => s + (x.rows[metric][r] as number) - ((b[i] as { rows: RowValues }).rows[metric][r] as number), 0) / a.length);
  const overSeeds = meanSe(perSeed);
  const overRows = meanSe(rowDiffs);
  const seFrom = overSeeds.se !== null ? 'seeds' : 'rows';
  const se = (seFrom === 'seeds' ? overSeeds.se : overRows.se) ?? NaN;
  return { name, set, metric, perSeed, overSeeds, overRows, beyondTwoSe: Math.abs(overSeeds.mean) > 2 * se, seFrom };
}

/** `0.512 ± 0.031`, or the mean alone when there is no SE. */
export function formatMeanSe(m: MeanSe, digits = 3, signed = false): string {
  if (!Number.isFinite(m.mean)) return '-';
  const value = `${signed && m.mean >= 0 ? '+' : ''}${m.mean.toFixed(digits)}`;
  return m.se === null ? value : `${value} ± ${m.se.toFixed(digits)}`;
}
