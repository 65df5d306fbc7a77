/**
 * Batched box matching on the native engine: mapped-CIoU matrices, exact
 * minimum-cost assignment (same optimum as scipy.optimize.linear_sum_assignment),
 * and the fused spatial score of the SpatialThinker reward. Each call takes a
 * whole batch of small problems and runs off the event loop.
 */
import { native, type Device } from '../native/binding.js';

/** [x1, y1, x2, y2] */
export type Box = readonly [number, number, number, number] | readonly number[];

export interface BoxSetPair {
  predictions: readonly Box[];
  groundTruth: readonly Box[];
}

export interface MatchOptions {
  /** 'cpu' (default) or 'cuda'; CUDA rejects with the reason when no GPU is usable. */
  device?: Device;
}

/** A packed batch of box-set pairs, as the engine takes it. */
export interface PackedBoxPairs {
  predBoxes: Float64Array;
  predCounts: Int32Array;
  gtBoxes: Float64Array;
  gtCounts: Int32Array;
}

export function packBoxPairs(pairs: readonly BoxSetPair[]): PackedBoxPairs {
  let nPred = 0;
  let nGt = 0;
  for (const pair of pairs) {
    nPred += pair.predictions.length;
    nGt += pair.groundTruth.length;
  }
  const packed: PackedBoxPairs = {
    predBoxes: new Float64Array(4 * nPred),
    predCounts: new Int32Array(pairs.length),
    gtBoxes: new Float64Array(4 * nGt),
    gtCounts: new Int32Array(pairs.length),
  };
  let p = 0;
  let g = 0;
  pairs.forEach((pair, i) => {
    packed.predCounts[i] = pair.predictions.length;
    packed.gtCounts[i] = pair.groundTruth.length;
    for (const box of pair.predictions) p = writeBox(packed.predBoxes, p, box, i, 'predictions');
    for (const box of pair.groundTruth) g = writeBox(packed.gtBoxes, g, box, i, 'groundTruth');
  });
  return packed;
}

function writeBox(out: Float64Array, at: number, box: Box, problem: number, side: string): number {
  if (box.length !== 4) throw new RangeError(`pair ${problem}: a box in ${side} has ${box.length} numbers, not 4`);
  for (let k = 0; k < 4; k++) out[at + k] = box[k] as number;
  return at + 4;
}

/**
 * For each pair, the [predictions x groundTruth] matrix of mapped CIoU values
 * ((CIoU + 1) / 2, in (-0.25, 1]), as nested arrays.
 */
export async function ciouMatrices(pairs: readonly BoxSetPair[], options: MatchOptions = {}): Promise<number[][][]> {
  const packed = packBoxPairs(pairs);
  const flat = await native().ciouMatrices({ ...packed, device: options.device ?? 'cpu' });
  const out: number[][][] = [];
  let at = 0;
  for (const pair of pairs) {
    const cols = pair.groundTruth.length;
    const matrix: number[][] = [];
    for (let r = 0; r < pair.predictions.length; r++) {
      matrix.push(Array.from(flat.subarray(at, at + cols)));
      at += cols;
    }
    out.push(matrix);
  }
  return out;
}

export interface Assignment {
  /** For each row, the assigned column, or -1 when rows outnumber columns. */
  rowToCol: number[];
  /** Sum of the assigned costs. */
  totalCost: number;
}

/**
 * Minimum-cost assignment of each (rectangular) cost matrix. Every row is
 * assigned when rows <= cols, every column otherwise. NaN or -Infinity
 * entries, or a matrix with no finite assignment, reject with the problem's
 * index.
 */
export async function linearSumAssignment(
  matrices: readonly (readonly (readonly number[])[])[],
  options: MatchOptions = {},
): Promise<Assignment[]> {
  const rows = new Int32Array(matrices.length);
  const cols = new Int32Array(matrices.length);
  let total = 0;
  matrices.forEach((m, i) => {
    rows[i] = m.length;
    cols[i] = m[0]?.length ?? 0;
    for (const row of m)
      if (row.length !== cols[i]) throw new RangeError(`matrix ${i} is ragged: rows of ${cols[i]} and ${row.length} entries`);
    total += m.length * (cols[i] as number);
  });
  const costs = new Float64Array(total);
  let at = 0;
  for (const m of matrices)
    for (const row of m) {
      costs.set(row, at);
      at += row.length;
    }
  const { rowToCol, totals } = await native().linearSumAssignment({ costs, rows, cols, device: options.device ?? 'cpu' });
  const out: Assignment[] = [];
  let r = 0;
  matrices.forEach((m, i) => {
    out.push({ rowToCol: Array.from(rowToCol.subarray(r, r + m.length)), totalCost: totals[i] as number });
    r += m.length;
  });
  return out;
}
