/**
 * GRPO's outcome advantages (shared/spec/grpo.md): within each group of G
 * completions of one prompt, A_i = (R_i - mean R) / (std R + 1e-6) with the
 * unbiased standard deviation; a group of equal rewards gets 0.
 */

export interface AdvantageOptions {
  /** false: R_i - mean R (Dr.GRPO). Default true. */
  normaliseByStd?: boolean;
  epsilon?: number;
}

/** Advantages of `rewards` laid out group after group, `groupSize` each. */
export function groupAdvantages(rewards: readonly number[], groupSize: number, options: AdvantageOptions = {}): Float64Array {
  if (!Number.isInteger(groupSize) || groupSize < 1) throw new RangeError(`group size must be a positive integer, got ${groupSize}`);
  if (rewards.length % groupSize !== 0) throw new RangeError(`${rewards.length} rewards do not split into groups of ${groupSize}`);
  const byStd = options.normaliseByStd ?? true;
  const eps = options.epsilon ?? 1e-6;
  const out = new Float64Array(rewards.length);
  for (let g = 0; g < rewards.length; g += groupSize) {
    const group = rewards.slice(g, g + groupSize);
    const { mean, std } = groupStats(group);
    if (group.every((r) => r === group[0])) continue; // exactly zero, not (r - r) / eps noise
    for (let i = 0; i < groupSize; i++) {
      const centred = (group[i] as number) - mean;
      out[g + i] = byStd ? centred / (std + eps) : centred;
    }
  }
  return out;
}

/** Mean and unbiased standard deviation (0 for a single value). */
export function groupStats(values: readonly number[]): { mean: number; std: number } {
  const n = values.length;
  if (n === 0) return { mean: 0, std: 0 };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, std: 0 };
  const variance = values.reduce((a, b) => a + (b - mean) * (b - mean), 0) / (n - 1);
  return { mean, std: Math.sqrt(variance) };
}

/** Groups whose mean `key` lies strictly inside (low, high): DAPO's filter of groups that teach nothing. */
export function informativeGroups(values: readonly number[], groupSize: number, low: number, high: number): boolean[] {
  const keep: boolean[] = [];
  for (let g = 0; g < values.length; g += groupSize) {
    const group = values.slice(g, g + groupSize);
    const { mean } = groupStats(group);
    keep.push(mean > low && mean < high && !group.every((v) => v === group[0]));
  }
  return keep;
}
