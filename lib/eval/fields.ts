/**
 * Typed access to the columns of a raw benchmark row, with errors that name
 * the file, row and column. Images are accepted in every form a `datasets`
 * parquet or one of our JSONL files can hold them.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { DataError } from '../data/schema.js';
import type { EvalImage, RawRecordItem } from './types.js';

const utf8 = new TextDecoder('utf-8', { fatal: false });

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Uint8Array) return 'bytes';
  return typeof value;
}

function fail(item: RawRecordItem, where: string, message: string): never {
  throw new DataError(`${where}: ${message}`, item.file, item.index);
}

/** The column as text; numbers are written out (some datasets store integer answers). */
export function optionalText(item: RawRecordItem, field: string, where: string): string | undefined {
  const value = item.record[field];
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return utf8.decode(value);
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return fail(item, where, `"${field}" must be text, got ${describe(value)}`);
}

export function text(item: RawRecordItem, field: string, where: string): string {
  const value = optionalText(item, field, where);
  if (value === undefined) fail(item, where, `"${field}" is missing or null`);
  return value;
}

/**
 * A list of strings: a list column, or a string holding a Python or JSON
 * list literal (SpatialReasonerEval stores `choices` as `"['a', 'b']"`, which
 * the reference decodes with `ast.literal_eval`).
 */
export function stringList(item: RawRecordItem, field: string, where: string): string[] {
  const value = item.record[field];
  if (Array.isArray(value)) {
    return value.map((v, i) => {
      if (typeof v === 'string') return v;
      if (v instanceof Uint8Array) return utf8.decode(v);
      if (typeof v === 'number' || typeof v === 'bigint') return String(v);
      return fail(item, where, `"${field}"[${i}] must be text, got ${describe(v)}`);
    });
  }
  const literal = optionalText(item, field, where);
  if (literal === undefined) fail(item, where, `"${field}" is missing or null`);
  const parsed = parseListLiteral(literal);
  if (!parsed) fail(item, where, `"${field}" is neither a list nor a list literal: ${JSON.stringify(literal.slice(0, 80))}`);
  return parsed;
}

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0' };

/** `['a', "b", 3]` (Python or JSON) as strings, or undefined when the text is not such a list. */
export function parseListLiteral(source: string): string[] | undefined {
  let i = 0;
  const n = source.length;
  const space = () => {
    while (i < n && /\s/.test(source[i]!)) i++;
  };
  space();
  if (source[i] !== '[') return undefined;
  i++;
  const items: string[] = [];
  for (;;) {
    space();
    if (source[i] === ']') {
      i++;
      break;
    }
    const quote = source[i];
    if (quote === "'" || quote === '"') {
      i++;
      let out = '';
      for (;;) {
        if (i >= n) return undefined;
        const c = source[i]!;
        if (c === quote) {
          i++;
          break;
        }
        if (c === '\\') {
          const e = source[i + 1];
          if (e === undefined) return undefined;
          if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(source.slice(i + 2, i + 6))) {
            out += String.fromCharCode(parseInt(source.slice(i + 2, i + 6), 16));
            i += 6;
          } else {
            out += ESCAPES[e] ?? `\\${e}`;
            i += 2;
          }
          continue;
        }
        out += c;
        i++;
      }
      items.push(out);
    } else {
      const m = /^-?\d+(\.\d+)?/.exec(source.slice(i));
      if (!m) return undefined;
      items.push(m[0]);
      i += m[0].length;
    }
    space();
    if (source[i] === ',') {
      i++;
      continue;
    }
    if (source[i] === ']') {
      i++;
      break;
    }
    return undefined;
  }
  space();
  return i === n ? items : undefined;
}

/**
 * An image column: a `datasets` Image struct `{bytes, path}` (bytes may be
 * null when the image is stored by path), or in JSONL a path string,
 * `{"path": ...}` or `{"bytes_base64": ...}`. Relative paths resolve against
 * the data file's folder. Undefined when the column is null.
 */
export async function optionalImage(item: RawRecordItem, field: string, where: string): Promise<EvalImage | undefined> {
  let value = item.record[field];
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') value = { path: value };
  if (value instanceof Uint8Array) return value.byteLength > 0 ? { bytes: new Uint8Array(value), path: null } : undefined;
  if (typeof value !== 'object' || Array.isArray(value)) fail(item, where, `"${field}" must be an image, got ${describe(value)}`);
  const v = value as Record<string, unknown>;
  const rawPath = v['path'] instanceof Uint8Array ? utf8.decode(v['path']) : v['path'];
  const path = typeof rawPath === 'string' && rawPath !== '' ? rawPath : null;
  // A copy, so that holding a sample does not hold the whole decoded page.
  if (v['bytes'] instanceof Uint8Array && v['bytes'].byteLength > 0) return { bytes: new Uint8Array(v['bytes']), path };
  if (typeof v['bytes_base64'] === 'string') {
    const bytes = new Uint8Array(Buffer.from(v['bytes_base64'], 'base64'));
    if (bytes.byteLength === 0) fail(item, where, `"${field}".bytes_base64 decodes to no bytes`);
    return { bytes, path };
  }
  if (path !== null) {
    const file = isAbsolute(path) ? path : resolve(item.baseDir, path);
    try {
      return { bytes: new Uint8Array(await readFile(file)), path };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      fail(item, where, `"${field}" has no bytes and its path cannot be read (${code === 'ENOENT' ? `no file ${file}` : (error as Error).message})`);
    }
  }
  return fail(item, where, `"${field}" has neither bytes nor a path`);
}

export async function image(item: RawRecordItem, field: string, where: string): Promise<EvalImage> {
  const found = await optionalImage(item, field, where);
  if (!found) fail(item, where, `"${field}" has no image`);
  return found;
}

/** The dataset's own row id as text, when the column exists and is set. */
export function sourceId(item: RawRecordItem, field: string): string | undefined {
  const value = item.record[field];
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return undefined;
}
