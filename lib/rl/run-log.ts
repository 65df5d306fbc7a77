/**
 * What a run writes as it goes (the format `spatialthinker report` reads):
 * RUN_DIR/metrics.jsonl (a line per step and split), RUN_DIR/samples.jsonl
 * (sampled completions with their reward breakdown) and TensorBoard event
 * files under RUN_DIR/tensorboard. Every line is flushed when written, so a
 * killed run keeps everything up to its last step.
 */
import { writingTo } from '../io/write-errors.js';
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TensorBoardWriter } from '../report/tensorboard.js';

export type Split = 'train' | 'val';
export type Metrics = Record<string, number>;

export interface SampleRecord {
  step: number;
  split: Split;
  index: number;
  image_id: string | null;
  /** Image file for the report: absolute, or relative to the run directory. */
  image: string | null;
  image_size: [number, number] | null;
  category: string | null;
  question: string | null;
  completion: string;
  ground_truth: string;
  reward: Record<string, number>;
  advantage?: number;
}

export interface RunLogOptions {
  tensorboard?: boolean;
  file?: boolean;
}

export class RunLog {
  private readonly board: TensorBoardWriter | undefined;

  private constructor(
    readonly dir: string,
    private readonly file: boolean,
    board: TensorBoardWriter | undefined,
  ) {
    this.board = board;
  }

  static async open(dir: string, options: RunLogOptions = {}): Promise<RunLog> {
    await mkdir(dir, { recursive: true });
    const board = options.tensorboard === false ? undefined : new TensorBoardWriter(join(dir, 'tensorboard'));
    return new RunLog(dir, options.file !== false, board);
  }

  async metrics(step: number, split: Split, metrics: Metrics): Promise<void> {
    const finite: Metrics = {};
    for (const [k, v] of Object.entries(metrics)) if (Number.isFinite(v)) finite[k] = v;
    const metricsFile = join(this.dir, 'metrics.jsonl');
    if (this.file) await writingTo(metricsFile, () => appendFile(metricsFile, JSON.stringify({ step, split, time: new Date().toISOString(), ...finite }) + '\n'));
    if (this.board) {
      // The same names as metrics.jsonl (and as `spatialthinker report` plots them), so a curve is found under one name everywhere.
      this.board.scalars(tensorBoardTags(split, finite), step);
      await this.board.flush();
    }
  }

  async samples(records: readonly SampleRecord[]): Promise<void> {
    if (!this.file || records.length === 0) return;
    const file = join(this.dir, 'samples.jsonl');
    await writingTo(file, () => appendFile(file, records.map((r) => JSON.stringify(r)).join('\n') + '\n'));
  }

  /**
   * Drops the metrics and samples lines of steps after `step` (a resume from
   * that step's checkpoint logs them again); returns how many went. The
   * TensorBoard files keep theirs: TensorBoard shows the newest value of a step.
   */
  async dropAfter(step: number): Promise<number> {
    let dropped = 0;
    for (const name of ['metrics.jsonl', 'samples.jsonl']) {
      const path = join(this.dir, name);
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch {
        continue;
      }
      const lines = text.split('\n').filter((line) => line.trim() !== '');
      const kept = lines.filter((line) => {
        try {
          const value = (JSON.parse(line) as { step?: unknown }).step;
          return typeof value !== 'number' || value <= step;
        } catch {
          return false; // a line cut short by a kill
        }
      });
      if (kept.length === lines.length) continue;
      dropped += lines.length - kept.length;
      await writeFile(path, kept.map((line) => line + '\n').join(''));
    }
    return dropped;
  }

  async writeText(name: string, text: string): Promise<void> {
    const file = join(this.dir, name);
    await writingTo(file, () => writeFile(file, text));
  }

  async close(): Promise<void> {
    await this.board?.close();
  }
}

/**
 * TensorBoard tags of one metrics line: a train metric keeps its metrics.jsonl
 * name (EasyR1's names: reward/overall, actor/pg_loss, ...); a validation
 * metric is logged with its `val/` prefix, which a bare name gains, as the
 * report does, so train and validation values never share a tag.
 */
export function tensorBoardTags(split: Split, metrics: Metrics): Metrics {
  if (split === 'train') return metrics;
  const out: Metrics = {};
  for (const [k, v] of Object.entries(metrics)) out[k.startsWith(`${split}/`) ? k : `${split}/${k}`] = v;
  return out;
}
