/**
 * The per-sample results of one benchmark, `samples/<benchmark>.jsonl`: one
 * record per line, each written to the file as soon as it is scored, so an
 * interrupted evaluation loses at most the samples in flight. Opening an
 * existing log loads its records (a run continues after them) and cuts off
 * a last line left half-written by a crash.
 */
import { open, readFile, truncate, type FileHandle } from 'node:fs/promises';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DataError } from '../data/schema.js';
import type { EvalRecord } from './types.js';

export class ResultsLog {
  /** Records in file order, by id. */
  readonly records = new Map<string, EvalRecord>();
  private pending: Promise<void> = Promise.resolve();

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  static async open(path: string): Promise<ResultsLog> {
    await mkdir(dirname(path), { recursive: true });
    const existing = await readRecordsFile(path, { repair: true });
    const log = new ResultsLog(path, await open(path, 'a'));
    for (const record of existing) if (!log.records.has(record.id)) log.records.set(record.id, record);
    return log;
  }

  has(id: string): boolean {
    return this.records.has(id);
  }

  /** Appends a record; writes are queued so lines never interleave. */
  append(record: EvalRecord): Promise<void> {
    if (this.records.has(record.id)) return Promise.reject(new Error(`${this.path}: ${record.id} is already recorded`));
    this.records.set(record.id, record);
    const line = JSON.stringify(record) + '\n';
    this.pending = this.pending.then(() => this.handle.write(line).then(() => undefined));
    return this.pending;
  }

  async close(): Promise<void> {
    try {
      await this.pending;
    } finally {
      await this.handle.close();
    }
  }
}

/**
 * The records of a results file (none when it does not exist). A trailing
 * partial line (no newline) is ignored, and with `repair` cut from the file.
 */
export async function readRecordsFile(path: string, options: { repair?: boolean } = {}): Promise<EvalRecord[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const end = text.lastIndexOf('\n') + 1;
  if (end < text.length && options.repair) await truncate(path, Buffer.byteLength(text.slice(0, end)));
  const records: EvalRecord[] = [];
  const lines = text.slice(0, end).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new DataError(`${path} line ${i + 1}: not valid JSON (${(error as Error).message}); move the file away to start this benchmark over`, path);
    }
    const r = parsed as Partial<EvalRecord>;
    if (typeof r.id !== 'string' || typeof r.correct !== 'boolean' || typeof r.completion !== 'string')
      throw new DataError(`${path} line ${i + 1}: not an evaluation record (needs id, completion, correct)`, path);
    records.push(r as EvalRecord);
  }
  return records;
}
