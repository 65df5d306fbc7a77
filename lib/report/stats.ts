/** Means with standard errors, as the report's tables and bands show them. */
import { formatValue } from './html.js';

export function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** The standard error of the mean (sample standard deviation / sqrt(n)); undefined for fewer than 2 values. */
export function standardError(values: readonly number[]): number | undefined {
  if (values.length < 2) return undefined;
  const m = mean(values);
  const variance = values.reduce((a, v) => a + (v - m) ** 2, 0) / (values.length - 1);
  return Math.sqrt(variance / values.length);
}

/** The standard error of a rate `p` measured on `n` independent trials. */
export function binomialStandardError(p: number, n: number): number | undefined {
  if (!(n > 0) || p < 0 || p > 1) return undefined;
  return Math.sqrt((p * (1 - p)) / n);
}

/** "0.512 ± 0.031", or the value alone without a standard error. */
export function formatMeanSe(value: number, se: number | undefined): string {
  return se === undefined ? formatValue(value) : `${formatValue(value)} ± ${formatValue(se)}`;
}
