/**
 * Raw rows of benchmark files, streamed: parquet as the Hugging Face hub
 * serves it (row group by row group, only the columns asked for, so a large
 * file never has all its images in memory) or JSONL. Values come as hyparquet
 * decodes them: strings, numbers / bigints, lists, and images as `{bytes,
 * path}` structs; the field readers of ./fields.ts turn them into sample
 * fields with clear errors.
 */
import { createReadStream } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { parquetMetadataAsync, parquetReadObjects, parquetSchema, type FileMetaData } from 'hyparquet';
import { COMPRESSORS, openParquetFile } from '../data/parquet.js';
import { DataError } from '../data/schema.js';
import type { RawRecord, RawRecordItem } from './types.js';

export interface RecordReadOptions {
  /** Columns every row must have; a file without one of them is an error naming what it has. */
  required: readonly string[];
  /** Columns read when the file has them. */
  optional?: readonly string[];
}

/** Streams the rows of one parquet or JSONL file. */
export function readRecords(file: string, options: RecordReadOptions): AsyncGenerator<RawRecordItem, void, undefined> {
  const lower = file.toLowerCase();
  if (lower.endsWith('.parquet')) return readParquetRecords(file, options);
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) return readJsonlRecords(file, options);
  throw new DataError(`${file}: not a .parquet or .jsonl file`, file);
}

async function* readParquetRecords(file: string, options: RecordReadOptions): AsyncGenerator<RawRecordItem, void, undefined> {
  let opened;
  try {
    opened = await openParquetFile(file);
  } catch (error) {
    throw new DataError(`${file}: ${(error as Error).message}`, file);
  }
  const { buffer, handle } = opened;
  try {
    let metadata: FileMetaData;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (error) {
      throw new DataError(`${file}: not a readable parquet file: ${(error as Error).message}`, file);
    }
    const present = parquetSchema(metadata).children.map((c) => c.element.name);
    const missing = options.required.filter((c) => !present.includes(c));
    if (missing.length > 0)
      throw new DataError(
        `${file}: no column${missing.length > 1 ? 's' : ''} ${missing.map((c) => `"${c}"`).join(', ')} (the file has ${present.map((c) => `"${c}"`).join(', ')})`,
        file,
      );
    const columns = [...options.required, ...(options.optional ?? []).filter((c) => present.includes(c))];
    const baseDir = dirname(file);
    let rowStart = 0;
    for (let g = 0; g < metadata.row_groups.length; g++) {
      const rowEnd = rowStart + Number(metadata.row_groups[g]!.num_rows);
      let records: RawRecord[];
      try {
        records = await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd, columns, utf8: false, compressors: COMPRESSORS });
      } catch (error) {
        throw new DataError(`${file}: cannot read rows ${rowStart}-${rowEnd - 1} (row group ${g}): ${(error as Error).message}`, file, rowStart);
      }
      for (let i = 0; i < records.length; i++) {
        const record = records[i]!;
        records[i] = undefined as unknown as RawRecord; // the row's images can go once it is handed on
        yield { record, file, index: rowStart + i, baseDir };
      }
      rowStart = rowEnd;
    }
  } finally {
    await handle.close();
  }
}

async function* readJsonlRecords(file: string, options: RecordReadOptions): AsyncGenerator<RawRecordItem, void, undefined> {
  const input = createReadStream(file);
  await new Promise<void>((resolve, reject) => {
    input.once('open', () => resolve());
    input.once('error', (error) => reject(new DataError(`${file}: ${error.message}`, file)));
  });
  const lines = createInterface({ input, crlfDelay: Infinity });
  const baseDir = dirname(file);
  let lineNo = 0;
  let index = 0;
  try {
    for await (const line of lines) {
      lineNo++;
      if (line.trim() === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch (error) {
        throw new DataError(`${file} row ${index} (line ${lineNo}): not valid JSON (${(error as Error).message})`, file, index);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new DataError(`${file} row ${index} (line ${lineNo}): expected a JSON object`, file, index);
      const record = parsed as RawRecord;
      const missing = options.required.filter((c) => !(c in record));
      if (missing.length > 0)
        throw new DataError(`${file} row ${index} (line ${lineNo}): no field ${missing.map((c) => `"${c}"`).join(', ')}`, file, index);
      yield { record, file, index, baseDir };
      index++;
    }
  } finally {
    lines.close();
    input.destroy();
  }
}
