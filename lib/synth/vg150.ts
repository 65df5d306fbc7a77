/**
 * VG150 conversion rows from a JSONL file (one row per line, the columns of
 * `JosephZ/vg150_train_sgg_prompt`: `image_id`, `objects`, `relationships`, plus an image
 * reference and optionally its size).
 *
 * The image of a row is `image_path`, else `image` (when a string), else `file_name`, else
 * `<image_id>.jpg`, relative to `imagesDir` (default: the JSONL file's directory). Its size
 * is the row's `width`/`height` or `image_size`, else read from the image file.
 */
import { createReadStream, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fromVg150Row, Vg150RowError, type SceneGraph, type Vg150Row } from './scene-graph.js';

export interface ReadVg150Options {
  imagesDir?: string;
  /** A row skipped: `image-missing` or `no-image-size`. */
  onSkip?: (reason: string, imageId: string) => void;
}

export class Vg150FileError extends Error {
  override name = 'Vg150FileError';
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Scene graphs of a VG150 JSONL file; `image.file` is the image's absolute path. */
export async function* readVg150Jsonl(path: string, options: ReadVg150Options = {}): AsyncGenerator<SceneGraph> {
  const root = resolve(options.imagesDir ?? dirname(path));
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  let lineNumber = 0;
  for await (const line of lines) {
    lineNumber++;
    if (line.trim() === '') continue;
    let row: Vg150Row;
    try {
      row = JSON.parse(line) as Vg150Row;
    } catch (error) {
      throw new Vg150FileError(`${path}:${lineNumber}: not JSON (${(error as Error).message})`);
    }
    if (typeof row !== 'object' || row === null || row.image_id === undefined)
      throw new Vg150FileError(`${path}:${lineNumber}: a row needs "image_id", "objects" and "relationships"`);
    const imageId = String(row.image_id);
    const reference = [row['image_path'], row['image'], row['file_name']].find((v): v is string => typeof v === 'string') ?? `${imageId}.jpg`;
    const file = isAbsolute(reference) ? reference : resolve(root, reference);
    if (!isFile(file)) {
      options.onSkip?.('image-missing', imageId);
      continue;
    }
    let size: { width: number; height: number } | undefined;
    const w = row.width ?? row.image_size?.[0];
    const h = row.height ?? row.image_size?.[1];
    if (typeof w === 'number' && typeof h === 'number') size = { width: w, height: h };
    else {
      const { default: sharp } = await import('sharp');
      const meta = await sharp(file).metadata().catch(() => undefined);
      if (meta?.width && meta.height) size = { width: meta.width, height: meta.height };
    }
    if (!size) {
      options.onSkip?.('no-image-size', imageId);
      continue;
    }
    try {
      yield fromVg150Row(row, size, file);
    } catch (error) {
      if (error instanceof Vg150RowError) throw new Vg150FileError(`${path}:${lineNumber}: ${error.message}`);
      throw error;
    }
  }
}
