/**
 * Writing STVQA rows as parquet that the Python `datasets` library (and so
 * EasyR1 / the SpatialThinker trainer) loads unchanged, and as JSONL with the
 * images as files beside it.
 *
 * Parquet layout (what pyarrow writes for the features of `generate_hf_data`):
 *
 * | column | parquet | Arrow type read back | `datasets` feature |
 * | --- | --- | --- | --- |
 * | strings (12 columns) | optional BYTE_ARRAY, STRING (UTF8) | string | Value("string") |
 * | images | optional group { optional BYTE_ARRAY bytes; optional BYTE_ARRAY path (STRING) } | struct<bytes: binary, path: string> | Image() |
 * | images (list form) | optional group (LIST) { repeated group list { optional group item {bytes, path} } } | list<item: struct<...>> | Sequence(Image()) |
 * | options | optional group (LIST) { repeated group list { optional BYTE_ARRAY item (STRING) } } | list<item: string> | Sequence(Value("string")) |
 * | rating | optional INT32 | int32 | Value("int32") |
 *
 * All columns are nullable, as `datasets` declares them. The key-value
 * metadata carries `huggingface` = `{"info": {"features": {...}}}`, which
 * `datasets.Features.from_arrow_schema` uses to decode `images` as PIL
 * images. List elements are named `item` (as `datasets`' own Arrow types
 * are) so the declared features match the file's Arrow schema exactly.
 * Row groups hold 100 rows by default, as `datasets` uses for image data;
 * pages are snappy-compressed, pyarrow's default.
 */
import { writingTo } from '../io/write-errors.js';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { open, mkdir, writeFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { KeyValue, SchemaElement } from 'hyparquet';
import type { ParquetWriter } from 'hyparquet-writer';
import { DataError, STRING_FIELDS, STVQA_FIELDS, imagesOf, validateRow, type StvqaImage, type StvqaRow } from './schema.js';

export type ImagesLayout = 'image' | 'list' | 'auto';

export interface ParquetWriteOptions {
  /** Rows per row group (default 100, as `datasets` writes image datasets). */
  rowGroupSize?: number;
  /**
   * `image`: one Image per row (the hub's STVQA-7K layout); `list`: a list of
   * Images; `auto` (default): as the first row has it.
   */
  images?: ImagesLayout;
  /** Feature type name for lists in the `huggingface` metadata: `Sequence` (default; every `datasets` version reads it) or `List` (datasets >= 4). */
  listFeature?: 'Sequence' | 'List';
  /** Check each row with validateRow first (default true). */
  validate?: boolean;
}

const STRING_ELEMENT = { type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } } as const;

function stringColumn(name: string): SchemaElement {
  return { name, repetition_type: 'OPTIONAL', ...STRING_ELEMENT };
}

function imageStruct(name: string): SchemaElement[] {
  return [
    { name, repetition_type: 'OPTIONAL', num_children: 2 },
    { name: 'bytes', repetition_type: 'OPTIONAL', type: 'BYTE_ARRAY' },
    { name: 'path', repetition_type: 'OPTIONAL', ...STRING_ELEMENT },
  ];
}

function listOf(name: string, element: SchemaElement[]): SchemaElement[] {
  return [
    { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    ...element,
  ];
}

/** The parquet schema (flattened, root first) of an STVQA file. */
export function stvqaParquetSchema(images: 'image' | 'list' = 'image'): SchemaElement[] {
  const schema: SchemaElement[] = [{ name: 'schema', num_children: STVQA_FIELDS.length }];
  for (const field of STVQA_FIELDS) {
    if (field === 'images') schema.push(...(images === 'list' ? listOf('images', imageStruct('item')) : imageStruct('images')));
    else if (field === 'options') schema.push(...listOf('options', [stringColumn('item')]));
    else if (field === 'rating') schema.push({ name: 'rating', repetition_type: 'OPTIONAL', type: 'INT32' });
    else schema.push(stringColumn(field));
  }
  return schema;
}

/** The `datasets` features of an STVQA file, as `Features.to_dict()` writes them. */
export function stvqaFeatures(images: 'image' | 'list' = 'image', listFeature: 'Sequence' | 'List' = 'Sequence'): Record<string, unknown> {
  const value = (dtype: string) => ({ dtype, _type: 'Value' });
  const features: Record<string, unknown> = {};
  for (const field of STVQA_FIELDS) {
    if (field === 'images') features[field] = images === 'list' ? { feature: { _type: 'Image' }, _type: listFeature } : { _type: 'Image' };
    else if (field === 'options') features[field] = { feature: value('string'), _type: listFeature };
    else if (field === 'rating') features[field] = value('int32');
    else features[field] = value('string');
  }
  return features;
}

/** The `huggingface` key-value metadata entry. */
export function huggingfaceMetadata(images: 'image' | 'list' = 'image', listFeature: 'Sequence' | 'List' = 'Sequence'): KeyValue {
  return { key: 'huggingface', value: JSON.stringify({ info: { features: stvqaFeatures(images, listFeature) } }) };
}

type Columns = Record<(typeof STVQA_FIELDS)[number], unknown[]>;

function emptyColumns(): Columns {
  return Object.fromEntries(STVQA_FIELDS.map((f) => [f, []])) as unknown as Columns;
}

type WriterModule = typeof import('hyparquet-writer');
let writerModule: Promise<WriterModule> | undefined;

/**
 * hyparquet-writer, loaded on first use: importing this module (and so the
 * package index) does not load it, so readers never pay for it, and test
 * runners whose resolver lacks `exports` subpath patterns (hyparquet-writer
 * imports `hyparquet/src/*.js`) only meet it where parquet is written.
 */
function loadWriterModule(): Promise<WriterModule> {
  return (writerModule ??= import('hyparquet-writer'));
}

let tmpCounter = 0;
function tmpName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${++tmpCounter}.tmp`);
}

/**
 * Streams rows into one parquet file, a row group at a time; the file
 * appears (atomically renamed into place) on close(). Create with
 * `await StvqaParquetWriter.open(path, options)`.
 */
export class StvqaParquetWriter {
  readonly path: string;
  private readonly tmp: string;
  private readonly rowGroupSize: number;
  private readonly validate: boolean;
  private readonly listFeature: 'Sequence' | 'List';
  private layout: ImagesLayout;
  private writer: ParquetWriter | undefined;
  private columns = emptyColumns();
  private buffered = 0;
  private closed = false;
  rows = 0;
  rowGroups = 0;

  static async open(path: string, options: ParquetWriteOptions = {}): Promise<StvqaParquetWriter> {
    return new StvqaParquetWriter(path, options, await loadWriterModule());
  }

  private constructor(
    path: string,
    options: ParquetWriteOptions,
    private readonly lib: WriterModule,
  ) {
    this.path = path;
    this.tmp = tmpName(path);
    this.rowGroupSize = options.rowGroupSize ?? 100;
    if (!Number.isInteger(this.rowGroupSize) || this.rowGroupSize < 1) throw new RangeError('rowGroupSize must be a positive integer');
    this.validate = options.validate ?? true;
    this.listFeature = options.listFeature ?? 'Sequence';
    this.layout = options.images ?? 'auto';
  }

  /** Adds a row (buffered; a full row group is encoded and written out). */
  write(row: StvqaRow): void {
    if (this.closed) throw new Error(`${this.path}: writer is closed`);
    if (this.validate) {
      const problems = validateRow(row, `${this.path} row ${this.rows}`);
      if (problems.length) throw new DataError(problems[0] as string, this.path, this.rows, problems);
    }
    if (this.layout === 'auto') this.layout = Array.isArray(row.images) ? 'list' : 'image';
    let images: StvqaImage | StvqaImage[] | null = row.images ?? null;
    if (this.layout === 'image' && Array.isArray(images)) {
      if (images.length !== 1)
        throw new DataError(`${this.path} row ${this.rows}: has ${images.length} images; this file stores one image per row`, this.path, this.rows);
      images = images[0] as StvqaImage;
    } else if (this.layout === 'list' && images !== null && !Array.isArray(images)) images = [images];
    const image = (i: StvqaImage) => ({ bytes: i.bytes, path: i.path ?? null });
    const c = this.columns;
    for (const field of STRING_FIELDS) c[field].push(row[field] ?? null);
    c.images.push(images === null ? null : Array.isArray(images) ? images.map(image) : image(images));
    c.options.push(row.options ?? null);
    c.rating.push(row.rating ?? null);
    this.buffered++;
    this.rows++;
    if (this.buffered >= this.rowGroupSize) this.flush();
  }

  private open(): ParquetWriter {
    if (!this.writer) {
      const layout = this.layout === 'list' ? 'list' : 'image';
      this.writer = new this.lib.ParquetWriter({
        writer: this.lib.fileWriter(this.tmp),
        schema: stvqaParquetSchema(layout),
        kvMetadata: [huggingfaceMetadata(layout, this.listFeature)],
        createdBy: 'spatialthinker (hyparquet-writer)',
      });
    }
    return this.writer;
  }

  private flush(): void {
    if (this.buffered === 0) return;
    const writer = this.open();
    const columns = this.columns;
    this.columns = emptyColumns();
    const n = this.buffered;
    this.buffered = 0;
    try {
      const pending = writer.write({
        columnData: STVQA_FIELDS.map((name) => ({
          name,
          data: columns[name],
          // Statistics of image bytes are useless and cost a pass over every image.
          ...(name === 'images' ? { statistics: false } : {}),
        })),
        rowGroupSize: n,
      });
      if (pending) throw new Error('unexpected asynchronous parquet writer');
    } catch (error) {
      this.abort();
      throw new DataError(`${this.path}: cannot write rows ${this.rows - n}-${this.rows - 1}: ${(error as Error).message}`, this.path);
    }
    this.rowGroups++;
  }

  /** Writes the last row group and the footer, then moves the file into place. */
  close(): { rows: number; rowGroups: number; path: string } {
    if (this.closed) return { rows: this.rows, rowGroups: this.rowGroups, path: this.path };
    this.flush();
    const writer = this.open();
    writer.finish();
    this.closed = true;
    renameSync(this.tmp, this.path);
    return { rows: this.rows, rowGroups: this.rowGroups, path: this.path };
  }

  /** Drops the partial file. */
  abort(): void {
    this.closed = true;
    rmSync(this.tmp, { force: true });
  }
}

/** Writes `rows` (array, iterable or async iterable) to one parquet file. */
export async function writeParquet(
  path: string,
  rows: Iterable<StvqaRow> | AsyncIterable<StvqaRow>,
  options: ParquetWriteOptions = {},
): Promise<{ rows: number; rowGroups: number; path: string }> {
  mkdirSync(dirname(resolve(path)), { recursive: true });
  const writer = await StvqaParquetWriter.open(path, options);
  try {
    for await (const row of rows) writer.write(row);
    return writer.close();
  } catch (error) {
    writer.abort();
    throw error;
  }
}

export interface ShardOptions extends ParquetWriteOptions {
  /** Rows per file (default 1000). */
  rowsPerFile?: number;
}

/** The hub's shard name: `train-00000-of-00003.parquet`. */
export function shardName(split: string, index: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `${split}-${pad(index)}-of-${pad(count)}.parquet`;
}

/**
 * Writes `rows` as shards named like the hub's (`train-00000-of-00003.parquet`)
 * in `dir`, `rowsPerFile` rows each; returns their paths. The shard count is
 * known only at the end, so shards are renamed into place once all are written.
 */
export async function writeParquetShards(
  dir: string,
  split: string,
  rows: Iterable<StvqaRow> | AsyncIterable<StvqaRow>,
  options: ShardOptions = {},
): Promise<string[]> {
  const rowsPerFile = options.rowsPerFile ?? 1000;
  if (!Number.isInteger(rowsPerFile) || rowsPerFile < 1) throw new RangeError('rowsPerFile must be a positive integer');
  await mkdir(dir, { recursive: true });
  const parts: string[] = [];
  let writer: StvqaParquetWriter | undefined;
  let layout = options.images ?? 'auto';
  let total = 0;
  try {
    for await (const row of rows) {
      // Validated here so that problems name the row in the whole split, not in a temporary shard.
      if (options.validate ?? true) {
        const problems = validateRow(row, `${join(dir, split)} row ${total}`);
        if (problems.length) throw new DataError(problems[0] as string, dir, total, problems);
      }
      if (!writer || writer.rows >= rowsPerFile) {
        if (writer) writer.close();
        const part = join(dir, `.${split}-part-${parts.length}.${process.pid}.parquet`);
        parts.push(part);
        writer = await StvqaParquetWriter.open(part, { ...options, images: layout, validate: false });
      }
      writer.write(row);
      total++;
      if (layout === 'auto') layout = Array.isArray(row.images) ? 'list' : 'image';
    }
    if (!writer) {
      // No rows: one empty shard keeps the split loadable.
      const part = join(dir, `.${split}-part-0.${process.pid}.parquet`);
      parts.push(part);
      writer = await StvqaParquetWriter.open(part, options);
    }
    writer.close();
  } catch (error) {
    writer?.abort();
    for (const part of parts) rmSync(part, { force: true });
    throw error;
  }
  const paths = parts.map((_, i) => join(dir, shardName(split, i, parts.length)));
  for (let i = 0; i < parts.length; i++) renameSync(parts[i] as string, paths[i] as string);
  return paths;
}

// ---------------------------------------------------------------------------
// JSONL

export interface JsonlWriteOptions {
  /**
   * Where image files go: relative to the JSONL file's directory, or absolute
   * (default `<name>_images` beside `<name>.jsonl`). Rows refer to them by
   * path relative to the JSONL file.
   */
  imageDir?: string;
  /** Inline images as `{"bytes_base64": ...}` instead of writing files. */
  embedImages?: boolean;
  /** Check each row with validateRow first (default true). */
  validate?: boolean;
}

/** The file extension for encoded image bytes, from their magic number. */
export function imageExtension(bytes: Uint8Array, fallbackPath?: string | null): string {
  const b = bytes;
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpg';
  if (b[0] === 0x89 && ascii(1, 4) === 'PNG') return 'png';
  if (ascii(0, 4) === 'GIF8') return 'gif';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (ascii(0, 2) === 'BM') return 'bmp';
  if (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*') return 'tiff';
  if (ascii(4, 12) === 'ftypavif') return 'avif';
  const ext = fallbackPath ? extname(fallbackPath).slice(1).toLowerCase() : '';
  return /^[a-z0-9]{1,5}$/.test(ext) ? ext : 'img';
}

function safeName(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64);
}

/**
 * Writes rows as JSONL (fields of §4.2 in hub order) with each image saved as
 * a file in `imageDir` and referenced as `{"path": "<name>_images/000017-2345.jpg"}`
 * (relative to the JSONL file), the convention `readRows` reads back.
 */
export async function writeJsonl(
  path: string,
  rows: Iterable<StvqaRow> | AsyncIterable<StvqaRow>,
  options: JsonlWriteOptions = {},
): Promise<{ rows: number; images: number; path: string; imageDir: string | undefined }> {
  const base = dirname(resolve(path));
  await mkdir(base, { recursive: true });
  const stem = basename(path).replace(/\.(jsonl|ndjson)$/i, '');
  const imageDir = options.embedImages ? undefined : resolve(base, options.imageDir ?? `${stem}_images`);
  if (imageDir) await mkdir(imageDir, { recursive: true });
  const tmp = tmpName(path);
  const handle = await open(tmp, 'w');
  let count = 0;
  let imageCount = 0;
  try {
    let chunk = '';
    for await (const row of rows) {
      if (options.validate ?? true) {
        const problems = validateRow(row, `${path} row ${count}`);
        if (problems.length) throw new DataError(problems[0] as string, path, count, problems);
      }
      const out: Record<string, unknown> = {};
      for (const field of STVQA_FIELDS) {
        const value = row[field];
        if (value === undefined) continue;
        if (field !== 'images' || value === null) {
          out[field] = value;
          continue;
        }
        const list = imagesOf(row);
        const refs = [];
        for (let k = 0; k < list.length; k++) {
          const image = list[k] as StvqaImage;
          if (!imageDir) {
            refs.push({ bytes_base64: Buffer.from(image.bytes.buffer, image.bytes.byteOffset, image.bytes.byteLength).toString('base64') });
            continue;
          }
          const id = typeof row.image_id === 'string' && row.image_id ? `-${safeName(row.image_id)}` : '';
          const name = `${String(count).padStart(6, '0')}${id}${list.length > 1 ? `-${k}` : ''}.${imageExtension(image.bytes, image.path)}`;
          const imageFile = join(imageDir, name);
          await writingTo(imageFile, () => writeFile(imageFile, image.bytes));
          imageCount++;
          const rel = relative(base, join(imageDir, name));
          refs.push({ path: isAbsolute(rel) || rel.startsWith('..') ? join(imageDir, name) : rel.split(sep).join('/') });
        }
        out[field] = Array.isArray(value) ? refs : refs[0];
      }
      chunk += JSON.stringify(out) + '\n';
      count++;
      if (chunk.length > 1 << 20) {
        await writingTo(path, () => handle.write(chunk));
        chunk = '';
      }
    }
    if (chunk) await writingTo(path, () => handle.write(chunk));
    await writingTo(path, () => handle.close());
    await rename(tmp, path);
  } catch (error) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw error;
  }
  return { rows: count, images: imageCount, path, imageDir };
}
