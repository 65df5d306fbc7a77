/**
 * A trainer's place in a data-parallel run. Every rank reads the same global
 * batch from the same seeded loader (so the loader's cursor, saved once,
 * resumes any world size) and keeps its share: items r, r + W, r + 2W, ...
 * of the batch's order. The engine sums the gradients over the ranks before
 * each optimiser step; the trainers divide each rank's loss by the global
 * batch's counts, so that sum is the single-process gradient of the global
 * batch. Scalars (token counts, metrics) are combined through the engine's
 * group, with every rank getting the same bits.
 */
import type { Model } from '../engine/model.js';

export class DataParallelRank {
  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly model: Model | undefined,
  ) {}

  /** The only rank of a world of one. */
  static alone(): DataParallelRank {
    return new DataParallelRank(0, 1, undefined);
  }

  /** The rank `model` has in the group it was attached to (Model.attachProcessGroup). */
  static of(model: Model): DataParallelRank {
    const info = model.processGroupInfo;
    if (!info) return DataParallelRank.alone();
    return new DataParallelRank(info.rank, info.worldSize, model);
  }

  /** Rank 0 writes the logs, the report and the model files. */
  get main(): boolean {
    return this.rank === 0;
  }

  get distributed(): boolean {
    return this.worldSize > 1;
  }

  /** This rank's share of a global batch: items rank, rank + W, ... */
  share<T>(items: readonly T[]): T[] {
    return items.filter((_, i) => i % this.worldSize === this.rank);
  }

  /** The index in the global batch of this rank's j-th item. */
  globalIndex(j: number): number {
    return this.rank + j * this.worldSize;
  }

  /** Sums over ranks (collective: every rank calls it with as many values). */
  sum(values: readonly number[]): Promise<number[]> {
    return this.reduce(values, 'sum');
  }

  max(values: readonly number[]): Promise<number[]> {
    return this.reduce(values, 'max');
  }

  private async reduce(values: readonly number[], op: 'sum' | 'max'): Promise<number[]> {
    if (!this.model || this.worldSize === 1) return [...values];
    // The lengths must agree before the values travel: a mismatch would be a collective of two sizes.
    const [negativeLeast = 0, most = 0] = await this.model.reduceScalars([-values.length, values.length], 'max');
    if (-negativeLeast !== most)
      throw new Error(`data-parallel ranks disagree on how many values to combine (${-negativeLeast} to ${most}; rank ${this.rank} has ${values.length})`);
    return this.model.reduceScalars(values, op);
  }

  async barrier(): Promise<void> {
    if (this.model && this.worldSize > 1) await this.model.barrier();
  }
}

/**
 * Metrics of a step combined over ranks: `sums` are added (with `counts`,
 * means over every rank's items: name -> [sum, count]), `maxima` take the
 * largest. Names are combined in sorted order, so every rank must pass the
 * same names (checked).
 */
export async function combineMetrics(
  dp: DataParallelRank,
  means: Record<string, [sum: number, count: number]>,
  maxima: Record<string, number> = {},
  sums: Record<string, number> = {},
): Promise<Record<string, number>> {
  const meanNames = Object.keys(means).sort();
  const maxNames = Object.keys(maxima).sort();
  const sumNames = Object.keys(sums).sort();
  const summed = await dp.sum([...meanNames.flatMap((k) => means[k] as [number, number]), ...sumNames.map((k) => sums[k] as number)]);
  const largest = await dp.max(maxNames.map((k) => maxima[k] as number));
  const out: Record<string, number> = {};
  meanNames.forEach((k, i) => (out[k] = (summed[2 * i] as number) / Math.max(1, summed[2 * i + 1] as number)));
  sumNames.forEach((k, i) => (out[k] = summed[2 * meanNames.length + i] as number));
  maxNames.forEach((k, i) => (out[k] = largest[i] as number));
  return out;
}
