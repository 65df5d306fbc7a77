/**
 * Training data: the rows of an STVQA dataset in a seeded order, epoch after
 * epoch. The order is a pure function of (seed, epoch), so a checkpoint only
 * needs the cursor (rows consumed) to resume with the data order intact.
 */
import { readRows, type ReadStats } from '../data/reader.js';
import { DataError, type StvqaRow } from '../data/schema.js';
import { hash32, mulberry32, shuffled } from '../random.js';

/** A row with where it came from, for messages that name it. */
export interface TrainingRow {
  row: StvqaRow;
  /** `file row N`. */
  where: string;
}

export interface LoadRowsOptions {
  skipInvalid?: boolean;
  /** The column holding the row's image(s) (`data.image_key`; default `images`). */
  imageKey?: string;
  /** Keep at most this many rows (in file order). */
  limit?: number;
  /** Rows failing this are dropped and counted (e.g. over-long prompts). */
  keep?: (row: StvqaRow) => string | undefined;
  onProgress?: (rows: number) => void;
}

export interface LoadedRows {
  rows: TrainingRow[];
  stats: ReadStats;
  /** Rows dropped by `keep`, by reason. */
  dropped: Record<string, number>;
}

/**
 * Reads a dataset into memory. Images stay as their encoded bytes (JPEG/PNG),
 * decoded per batch, so STVQA-7K holds about its file size.
 */
export async function loadRows(path: string, options: LoadRowsOptions = {}): Promise<LoadedRows> {
  const stream = readRows(path, { skipInvalid: options.skipInvalid ?? false, ...(options.imageKey !== undefined ? { imageKey: options.imageKey } : {}) });
  const rows: TrainingRow[] = [];
  const dropped: Record<string, number> = {};
  for await (const item of stream) {
    const reason = options.keep?.(item.row);
    if (reason !== undefined) {
      dropped[reason] = (dropped[reason] ?? 0) + 1;
    } else {
      rows.push({ row: item.row, where: `${item.file} row ${item.index}` });
    }
    if (rows.length % 256 === 0) options.onProgress?.(rows.length);
    if (options.limit !== undefined && options.limit >= 0 && rows.length >= options.limit) break;
  }
  return { rows, stats: stream.stats, dropped };
}

export interface LoaderState {
  seed: number;
  /** Rows handed out so far, over all epochs. */
  cursor: number;
}

export class DataLoader {
  private order: number[] = [];
  private orderEpoch = -1;

  constructor(
    readonly rows: readonly TrainingRow[],
    private readonly seed: number,
    private readonly shuffle = true,
    private position = 0,
  ) {
    if (rows.length === 0) throw new DataError('the training split has no rows');
  }

  get epoch(): number {
    return Math.floor(this.position / this.rows.length);
  }

  get cursor(): number {
    return this.position;
  }

  /** The next `count` rows; a batch may run on into the next epoch's order. */
  take(count: number): TrainingRow[] {
    const out: TrainingRow[] = [];
    for (let i = 0; i < count; i++) {
      const epoch = Math.floor(this.position / this.rows.length);
      if (epoch !== this.orderEpoch) {
        const indices = this.rows.map((_, k) => k);
        this.order = this.shuffle ? shuffled(indices, mulberry32(hash32('epoch', this.seed, epoch))) : indices;
        this.orderEpoch = epoch;
      }
      out.push(this.rows[this.order[this.position % this.rows.length] as number] as TrainingRow);
      this.position++;
    }
    return out;
  }

  state(): LoaderState {
    return { seed: this.seed, cursor: this.position };
  }

  static restore(rows: readonly TrainingRow[], state: LoaderState, shuffle = true): DataLoader {
    return new DataLoader(rows, state.seed, shuffle, state.cursor);
  }
}
