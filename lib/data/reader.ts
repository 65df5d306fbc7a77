/**
 * Reading STVQA rows, streamed, from the files the dataset comes as:
 *
 * - **Parquet** as downloaded from the Hugging Face hub (`train-00000-of-00002.parquet`,
 *   `val-00000-of-00001.parquet`), with the image column `images` stored the
 *   way `datasets`' Image feature stores it, a struct `{bytes, path}` (a list
 *   of such structs is accepted too). Row groups are read one at a time (and
 *   large row groups in slices where the file has an offset index), so a large
 *   file never has all of its images in memory.
 * - **JSONL**, one row per line with the fields of §4.2. The image is given as
 *   `"images": {"path": "images/000017.jpg"}` (relative to the JSONL file's
 *   directory, or absolute), a bare path string, `{"bytes_base64": "..."}`,
 *   or a list of these. This is what `writeJsonl` writes.
 *
 * A file whose image column is `image` (singular) instead of `images` is
 * read as if it were `images`.
 * - **A directory**: every `*.parquet` and `*.jsonl` file in it (not
 *   recursive), in name order.
 *
 * Every row is validated (`validateRow`); an invalid row is an error naming
 * the file and row, or, with `skipInvalid`, skipped and counted in `stats`.
 * Row numbers are 0-based positions in their file (as `datasets` indexes
 * them); JSONL rows also give their 1-based line.
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { parquetMetadataAsync, type FileMetaData } from 'hyparquet';
import sharp from 'sharp';
import { HubCacheError, hubDatasetFiles, parseHubDatasetSpec } from '../io/hub-cache.js';
import { COMPRESSORS, openParquetFile } from './parquet.js';
import { IsolatedParquetDecoder, type IsolationLimits } from './parquet-isolated.js';
import { DataError, STRING_FIELDS, STVQA_FIELDS, validateRow, type StvqaImage, type StvqaRow } from './schema.js';

export interface ReadStats {
  /** Files opened so far. */
  files: number;
  /** Valid rows yielded. */
  rows: number;
  /** Invalid rows skipped (only with skipInvalid). */
  invalid: number;
  /** The problems of skipped rows, at most `maxProblems` (default 100) of them. */
  problems: string[];
}

export interface BatchEvent {
  file: string;
  /** Row group of a parquet file. */
  rowGroup: number;
  rowStart: number;
  /** Exclusive. */
  rowEnd: number;
}

export interface ReadOptions {
  /** Skip invalid rows (counted in stats) instead of throwing a DataError. */
  skipInvalid?: boolean;
  /** Decode each image's header with sharp and report unreadable images. */
  validateImages?: boolean;
  /** Decode every image in full (not just its header) and report the ones that fail; implies validateImages. */
  decodeImages?: boolean;
  /**
   * Read image paths that lead outside the data file's folder (`../x.jpg`,
   * an absolute path elsewhere, a symlink out). Off by default: a dataset
   * from elsewhere must not make `data convert` copy /etc/passwd.
   */
  allowOutsideImages?: boolean;
  /**
   * The column read as the row's `images` (EasyR1's `data.image_key`; default
   * `images`). `images` and `image` each stand in for the other when a file
   * lacks the one named.
   */
  imageKey?: string;
  /** Stats object to fill in as rows are read (also available as `.stats` on the returned iterator). */
  stats?: ReadStats;
  /** Called for each skipped row. */
  onInvalid?: (problems: string[], where: { file: string; index: number }) => void;
  /** Called before each batch of parquet rows is read (instrumentation / progress). */
  onBatch?: (event: BatchEvent) => void;
  /** Rows per read slice of a large row group that has an offset index (default 128). */
  sliceRows?: number;
  /** How many problem messages `stats.problems` keeps (default 100). */
  maxProblems?: number;
  /** Limits of the worker that decodes parquet (damaged files cannot hang or kill the reader). */
  decodeLimits?: IsolationLimits;
}

export interface RowItem {
  row: StvqaRow;
  /** 0-based position of the row in its file. */
  index: number;
  file: string;
}

export type RowStream = AsyncGenerator<RowItem, void, undefined> & { readonly stats: ReadStats };

export function emptyStats(): ReadStats {
  return { files: 0, rows: 0, invalid: 0, problems: [] };
}

/** Streams the valid rows of a parquet file, a JSONL file or a directory of them. */
export function readRows(path: string, options: ReadOptions = {}): RowStream {
  const stats = options.stats ?? emptyStats();
  const generator = generateRows(path, options, stats) as RowStream;
  Object.defineProperty(generator, 'stats', { value: stats, enumerable: true });
  return generator;
}

async function* generateRows(path: string, options: ReadOptions, stats: ReadStats): AsyncGenerator<RowItem, void, undefined> {
  for (const file of await dataFiles(path)) {
    stats.files++;
    if (file.endsWith('.parquet')) yield* readParquet(file, options, stats);
    else yield* readJsonl(file, options, stats);
  }
}

type Kind = 'parquet' | 'jsonl';

function kindOf(path: string): Kind | undefined {
  const lower = path.toLowerCase();
  if (lower.endsWith('.parquet')) return 'parquet';
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) return 'jsonl';
  return undefined;
}

/**
 * The data files `path` stands for: itself, the parquet/JSONL files of a
 * directory in name order, or for `Org/Name@split` (no such local path) the
 * split's parquet files in the local Hugging Face cache.
 */
export async function dataFiles(path: string): Promise<string[]> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    // EasyR1's `Org/Name@split`: a data set in the local Hugging Face cache.
    const hub = missing ? parseHubDatasetSpec(path) : undefined;
    if (hub) return hubSplitFiles(hub.id, hub.split, path);
    throw new DataError(`${path}: ${missing ? 'no such file or directory' : (error as Error).message}`, path);
  }
  if (info.isDirectory()) {
    const names = (await readdir(path, { withFileTypes: true }))
      .filter((e) => (e.isFile() || e.isSymbolicLink()) && kindOf(e.name) !== undefined)
      .map((e) => e.name)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (names.length === 0) throw new DataError(`${path}: no .parquet or .jsonl files in this directory`, path);
    return names.map((name) => join(path, name));
  }
  if (!kindOf(path)) throw new DataError(`${path}: not a .parquet or .jsonl file`, path);
  return [path];
}

function hubSplitFiles(id: string, split: string, spec: string): string[] {
  try {
    return hubDatasetFiles(id, split);
  } catch (error) {
    if (error instanceof HubCacheError) throw new DataError(`${spec}: ${error.message}`, spec);
    throw error;
  }
}

/** Number of rows (valid or not): from the parquet footers, or non-blank JSONL lines. */
export async function countRows(path: string): Promise<number> {
  let total = 0;
  for (const file of await dataFiles(path)) {
    if (kindOf(file) === 'parquet') total += Number((await fileMetadata(file)).num_rows);
    else {
      const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
      for await (const line of lines) if (line.trim() !== '') total++;
    }
  }
  return total;
}

async function fileMetadata(file: string): Promise<FileMetaData> {
  const { buffer, handle } = await openParquetFile(file);
  try {
    return await parquetMetadataAsync(buffer);
  } catch (error) {
    throw new DataError(`${file}: not a readable parquet file: ${(error as Error).message}`, file);
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------
// Parquet

/** Most bytes of unindexed column chunks re-read per slice of a row group. */
const SLICE_UNINDEXED_LIMIT = 16 << 20;

async function* readParquet(file: string, options: ReadOptions, stats: ReadStats): AsyncGenerator<RowItem, void, undefined> {
  let opened;
  try {
    opened = await openParquetFile(file);
  } catch (error) {
    throw new DataError(`${file}: ${(error as Error).message}`, file);
  }
  const { buffer, handle } = opened;
  const decoder = new IsolatedParquetDecoder(file, options.decodeLimits);
  try {
    let metadata: FileMetaData;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (error) {
      throw new DataError(`${file}: not a readable parquet file: ${(error as Error).message}`, file);
    }
    const sliceRows = Math.max(1, options.sliceRows ?? 128);
    let groupStart = 0;
    for (let g = 0; g < metadata.row_groups.length; g++) {
      const group = metadata.row_groups[g]!;
      const groupRows = Number(group.num_rows);
      const groupEnd = groupStart + groupRows;
      // A large row group is read in slices when that reads less: the column
      // chunks without an offset index (single-page ones, typically) are read
      // whole for every slice, so they must be small; the indexed ones (image
      // bytes span many pages) are fetched page by page.
      let unindexedBytes = 0;
      for (const c of group.columns)
        if (c.offset_index_offset === undefined || !c.offset_index_length) unindexedBytes += Number(c.meta_data?.total_compressed_size ?? 0);
      const step = groupRows > sliceRows && unindexedBytes <= SLICE_UNINDEXED_LIMIT ? sliceRows : groupRows;
      for (let rowStart = groupStart; rowStart < groupEnd; rowStart += step) {
        const rowEnd = Math.min(groupEnd, rowStart + step);
        options.onBatch?.({ file, rowGroup: g, rowStart, rowEnd });
        let records: Record<string, unknown>[];
        try {
          records = await decoder.decode({ rowStart, rowEnd, useOffsetIndex: step < groupRows });
        } catch (error) {
          const message = (error as Error).message;
          const hint = /compression codec/.test(message)
            ? ` (this Node reads snappy, gzip, brotli${COMPRESSORS.ZSTD ? ', zstd' : ''} and uncompressed parquet${COMPRESSORS.ZSTD ? '' : '; zstd needs Node >= 22.15'})`
            : '';
          throw new DataError(
            `${file}: cannot read rows ${rowStart}-${rowEnd - 1} (row group ${g}): ${message}${hint}`,
            file,
            rowStart,
          );
        }
        for (let i = 0; i < records.length; i++) {
          const index = rowStart + i;
          const where = `${file} row ${index}`;
          const item = await finishRow(records[i]!, 'parquet', dirname(file), where, options);
          records[i] = undefined as unknown as Record<string, unknown>; // let the row's images go once yielded
          if (accept(item, file, index, options, stats)) yield { row: item.row as unknown as StvqaRow, index, file };
        }
      }
      groupStart = groupEnd;
    }
  } finally {
    await decoder.close();
    await handle.close();
  }
}

// ---------------------------------------------------------------------------
// JSONL

async function* readJsonl(file: string, options: ReadOptions, stats: ReadStats): AsyncGenerator<RowItem, void, undefined> {
  const input = createReadStream(file);
  const opened = new Promise<void>((resolveOpen, reject) => {
    input.once('open', () => resolveOpen());
    input.once('error', reject);
  });
  try {
    await opened;
  } catch (error) {
    throw new DataError(`${file}: ${(error as Error).message}`, file);
  }
  const lines = createInterface({ input, crlfDelay: Infinity });
  const base = dirname(file);
  let lineNo = 0;
  let index = 0;
  try {
    for await (const line of lines) {
      lineNo++;
      if (line.trim() === '') continue;
      const where = `${file} row ${index} (line ${lineNo})`;
      let parsed: unknown;
      let item: Checked;
      try {
        parsed = JSON.parse(line);
        item = await finishRow(parsed, 'jsonl', base, where, options);
      } catch (error) {
        if (!(error instanceof SyntaxError)) throw error;
        item = { row: undefined, problems: [`${where}: not valid JSON (${oneLine(error.message)})`] };
      }
      if (accept(item, file, index, options, stats)) yield { row: item.row as unknown as StvqaRow, index, file };
      index++;
    }
  } finally {
    lines.close();
    input.destroy();
  }
}

// ---------------------------------------------------------------------------
// Rows

interface Checked {
  row: Record<string, unknown> | undefined;
  problems: string[];
}

function accept(item: Checked, file: string, index: number, options: ReadOptions, stats: ReadStats): boolean {
  if (item.problems.length === 0) {
    stats.rows++;
    return true;
  }
  if (!options.skipInvalid) {
    const [first, ...rest] = item.problems;
    const more = rest.length ? ` (and ${rest.length} more problem${rest.length > 1 ? 's' : ''})` : '';
    throw new DataError(`${first}${more}`, file, index, item.problems);
  }
  stats.invalid++;
  const max = options.maxProblems ?? 100;
  for (const p of item.problems) if (stats.problems.length < max) stats.problems.push(p);
  options.onInvalid?.(item.problems, { file, index });
  return false;
}

const decoder = new TextDecoder('utf-8', { fatal: false });

/** Unannotated BYTE_ARRAY columns arrive as bytes (utf8: false keeps image bytes binary): decode text fields. */
function text(value: unknown): unknown {
  return value instanceof Uint8Array ? decoder.decode(value) : value;
}

/** The column of `record` that holds its images: `imageKey`, or for `images`/`image` the other one when the file has only that. */
function imageColumn(record: Record<string, unknown>, imageKey: string): string {
  if (imageKey in record) return imageKey;
  // `image` (singular, as in VG150-style datasets) and `images` stand in for each other.
  const other = imageKey === 'images' ? 'image' : imageKey === 'image' ? 'images' : undefined;
  return other !== undefined && other in record ? other : imageKey;
}

/** Normalises a raw record (parquet object or parsed JSON) into a candidate row and validates it. */
async function finishRow(raw: unknown, kind: Kind, base: string, where: string, options: ReadOptions): Promise<Checked> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { row: undefined, problems: validateRow(raw, where) };
  const record = raw as Record<string, unknown>;
  const row: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const field of STVQA_FIELDS) {
    const key = field === 'images' ? imageColumn(record, options.imageKey ?? 'images') : field;
    if (!(key in record)) continue;
    let value = record[key];
    if (value === undefined) value = null; // parquet nulls of nested columns
    if ((STRING_FIELDS as readonly string[]).includes(field)) value = text(value);
    else if (field === 'options' && Array.isArray(value)) value = value.map(text);
    else if (field === 'rating' && typeof value === 'bigint') value = Number(value);
    else if (field === 'images') value = await loadImages(value, kind, base, where, problems, options);
    row[field] = value;
  }
  if (problems.length === 0) problems.push(...validateRow(row, where));
  if (problems.length === 0 && (options.validateImages || options.decodeImages)) {
    const images = Array.isArray(row['images']) ? (row['images'] as StvqaImage[]) : [row['images'] as StvqaImage];
    for (let i = 0; i < images.length; i++) {
      const name = images.length > 1 || Array.isArray(row['images']) ? `"images"[${i}]` : '"images"';
      const reason = await imageProblem(images[i]!.bytes, options.decodeImages ?? false);
      if (reason) problems.push(`${where}: ${name} is not a readable image (${reason})`);
    }
  }
  return { row, problems };
}

/** Why sharp cannot read the image's header (or, with `decode`, its pixels), or undefined if it can. */
export async function imageProblem(bytes: Uint8Array, decode = false): Promise<string | undefined> {
  try {
    const meta = await sharp(bytes).metadata();
    if (!meta.width || !meta.height) return 'no width/height';
    // A header can be intact over truncated or corrupt pixel data.
    if (decode) await sharp(bytes, { failOn: 'error' }).raw().toBuffer();
    return undefined;
  } catch (error) {
    return oneLine((error as Error).message);
  }
}

/** libvips and JSON.parse report over several lines (libvips often repeating one); a problem is one line. */
export function oneLine(message: string): string {
  const lines = [...new Set(message.split(/\s*[\r\n]+\s*/).filter(Boolean))];
  return lines.join('; ');
}

async function loadImages(value: unknown, kind: Kind, base: string, where: string, problems: string[], options: ReadOptions): Promise<unknown> {
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (let i = 0; i < value.length; i++) out.push(await loadImage(value[i], kind, base, `${where}: "images"[${i}]`, problems, options));
    return out;
  }
  if (value === null) return null;
  return loadImage(value, kind, base, `${where}: "images"`, problems, options);
}

/** Whether `file`, symlinks resolved, lies inside `folder`. */
async function isInside(file: string, folder: string): Promise<boolean> {
  let real: string;
  try {
    real = await realpath(file);
  } catch {
    real = resolve(file); // a missing file is reported by the read that follows
  }
  const within = relative(await realpath(folder).catch(() => resolve(folder)), real);
  return within !== '' && !within.startsWith('..') && !isAbsolute(within);
}

/** One image as {bytes, path}: bytes copied out of the page buffer, or read from `path` / `bytes_base64`. */
async function loadImage(value: unknown, kind: Kind, base: string, what: string, problems: string[], options: ReadOptions): Promise<unknown> {
  if (typeof value === 'string' && kind === 'jsonl') value = { path: value };
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return value;
  const v = value as Record<string, unknown>;
  const path = text(v['path']);
  const pathOrNull = typeof path === 'string' ? path : null;
  if (v['bytes'] instanceof Uint8Array && v['bytes'].byteLength > 0) {
    // A copy, so that holding a row does not hold the whole decompressed page.
    return { bytes: new Uint8Array(v['bytes']), path: pathOrNull };
  }
  if (kind === 'jsonl' && typeof v['bytes_base64'] === 'string') {
    const bytes = new Uint8Array(Buffer.from(v['bytes_base64'], 'base64'));
    if (bytes.byteLength === 0) problems.push(`${what}: "bytes_base64" decodes to no bytes`);
    return { bytes, path: pathOrNull };
  }
  if (pathOrNull) {
    // JSONL images by path; parquet rows whose Image was stored by path only (bytes null), as `datasets` allows.
    const file = isAbsolute(pathOrNull) ? pathOrNull : resolve(base, pathOrNull);
    if (!options.allowOutsideImages && !(await isInside(file, base))) {
      problems.push(
        `${what}: path "${pathOrNull}" leads outside the dataset's folder ${base} (allow it with --allow-outside-images, or allowOutsideImages in code)`,
      );
      return { bytes: null, path: pathOrNull };
    }
    try {
      return { bytes: new Uint8Array(await readFile(file)), path: pathOrNull };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      problems.push(
        `${what} has no image bytes and its path "${pathOrNull}" cannot be read (${code === 'ENOENT' ? `no file ${file}` : (error as Error).message})`,
      );
      return { bytes: null, path: pathOrNull };
    }
  }
  return v;
}
