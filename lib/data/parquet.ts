/**
 * Parquet plumbing shared by the STVQA reader, writer and `data inspect`:
 * local files as hyparquet AsyncBuffers (read on demand, so only the footer
 * and the row group being read are in memory), the decompressors Node has
 * built in, and a readable description of a file's schema.
 */
import { open, type FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { parquetMetadataAsync, parquetSchema, type AsyncBuffer, type Compressors, type FileMetaData, type SchemaTree } from 'hyparquet';

/** A local file read slice by slice; close the handle when done. */
export async function openParquetFile(path: string): Promise<{ buffer: AsyncBuffer; handle: FileHandle }> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const buffer: AsyncBuffer = {
      byteLength: size,
      async slice(start: number, end: number = size): Promise<ArrayBuffer> {
        const length = Math.max(0, Math.min(end, size) - start);
        const bytes = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await handle.read(bytes, done, length - done, start + done);
          if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${start + done}`);
          done += bytesRead;
        }
        return bytes.buffer;
      },
    };
    return { buffer, handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * Decompressors beyond hyparquet's built-in snappy: gzip and brotli from
 * node:zlib, zstd where this Node has it (>= 22.15). pyarrow and the hub
 * write snappy by default.
 */
export const COMPRESSORS: Compressors = (() => {
  const z = zlib as unknown as Record<string, ((input: Uint8Array) => Buffer) | undefined>;
  const compressors: Compressors = {
    GZIP: (input) => new Uint8Array(zlib.gunzipSync(input)),
    BROTLI: (input) => new Uint8Array(zlib.brotliDecompressSync(input)),
  };
  const zstd = z['zstdDecompressSync'];
  if (zstd) compressors.ZSTD = (input) => new Uint8Array(zstd(input));
  return compressors;
})();

/** The footer of a local parquet file. */
export async function readParquetMetadata(path: string): Promise<FileMetaData> {
  const { buffer, handle } = await openParquetFile(path);
  try {
    return await parquetMetadataAsync(buffer);
  } finally {
    await handle.close();
  }
}

export interface ParquetColumn {
  name: string;
  /** Arrow-style type as pyarrow would read it: `string`, `int32`, `list<string>`, `struct<bytes: binary, path: string>`. */
  type: string;
}

export interface ParquetDescription {
  numRows: number;
  rowGroups: number[];
  columns: ParquetColumn[];
  createdBy: string | undefined;
  /** The `huggingface` key-value metadata's `info.features`, when the file has it. */
  features: Record<string, unknown> | undefined;
  /** Codecs used by the column chunks. */
  codecs: string[];
}

export function describeParquet(metadata: FileMetaData): ParquetDescription {
  const root = parquetSchema(metadata);
  const codecs = new Set<string>();
  for (const group of metadata.row_groups) for (const chunk of group.columns) if (chunk.meta_data) codecs.add(chunk.meta_data.codec);
  return {
    numRows: Number(metadata.num_rows),
    rowGroups: metadata.row_groups.map((g) => Number(g.num_rows)),
    columns: root.children.map((child) => ({ name: child.element.name, type: nodeType(child) })),
    createdBy: metadata.created_by,
    features: huggingfaceFeatures(metadata),
    codecs: [...codecs],
  };
}

/** `info.features` of the `huggingface` key-value metadata, or undefined. */
export function huggingfaceFeatures(metadata: FileMetaData): Record<string, unknown> | undefined {
  const entry = metadata.key_value_metadata?.find((kv) => kv.key === 'huggingface');
  if (!entry?.value) return undefined;
  try {
    const parsed = JSON.parse(entry.value) as { info?: { features?: unknown } };
    const features = parsed.info?.features;
    return typeof features === 'object' && features !== null && !Array.isArray(features)
      ? (features as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A `datasets` feature spec in short form: `Image`, `Value(string)`, `Sequence(Value(string))`. */
export function featureName(feature: unknown): string {
  if (Array.isArray(feature)) return `[${feature.map(featureName).join(', ')}]`;
  if (typeof feature !== 'object' || feature === null) return String(feature);
  const f = feature as Record<string, unknown>;
  const type = f['_type'];
  if (typeof type !== 'string') return `{${Object.entries(f).map(([k, v]) => `${k}: ${featureName(v)}`).join(', ')}}`;
  if (type === 'Value') return `Value(${String(f['dtype'])})`;
  if ('feature' in f) return `${type}(${featureName(f['feature'])})`;
  return type;
}

function leafType(node: SchemaTree): string {
  const { type, converted_type: converted, logical_type: logical, type_length: length } = node.element;
  if (logical?.type === 'STRING' || converted === 'UTF8' || logical?.type === 'ENUM' || converted === 'ENUM') return 'string';
  if (logical?.type === 'JSON' || converted === 'JSON') return 'json';
  if (logical?.type === 'INTEGER') return `${logical.isSigned ? 'int' : 'uint'}${logical.bitWidth}`;
  if (converted?.startsWith('INT_')) return `int${converted.slice(4)}`;
  if (converted?.startsWith('UINT_')) return `uint${converted.slice(5)}`;
  if (logical?.type === 'TIMESTAMP') return `timestamp[${logical.unit.toLowerCase()}]`;
  if (logical?.type === 'DATE' || converted === 'DATE') return 'date32';
  switch (type) {
    case 'BOOLEAN':
      return 'bool';
    case 'INT32':
      return 'int32';
    case 'INT64':
      return 'int64';
    case 'INT96':
      return 'timestamp[ns]';
    case 'FLOAT':
      return 'float';
    case 'DOUBLE':
      return 'double';
    case 'BYTE_ARRAY':
      return 'binary';
    case 'FIXED_LEN_BYTE_ARRAY':
      return `fixed_size_binary[${length ?? '?'}]`;
    default:
      return String(type);
  }
}

function structType(children: SchemaTree[]): string {
  return `struct<${children.map((c) => `${c.element.name}: ${nodeType(c)}`).join(', ')}>`;
}

/** The Arrow-style type of a schema node, following parquet's LIST/MAP rules (incl. legacy 2-level lists). */
export function nodeType(node: SchemaTree): string {
  const { element, children } = node;
  const isGroup = children.length > 0 || (element.num_children ?? 0) > 0;
  if (!isGroup) return element.repetition_type === 'REPEATED' ? `list<${leafType(node)}>` : leafType(node);
  const listLike = element.converted_type === 'LIST' || element.logical_type?.type === 'LIST';
  if (listLike && children.length === 1) {
    const repeated = children[0] as SchemaTree;
    // 3-level: repeated group with one child is the list; otherwise (2-level) the repeated node is the element.
    const threeLevel =
      repeated.children.length === 1 && repeated.element.name !== 'array' && !repeated.element.name.endsWith('_tuple');
    if (!repeated.children.length) return `list<${leafType(repeated)}>`;
    return `list<${threeLevel ? nodeType(repeated.children[0] as SchemaTree) : structType(repeated.children)}>`;
  }
  const mapLike = element.converted_type === 'MAP' || element.logical_type?.type === 'MAP';
  if (mapLike && children.length === 1) {
    const kv = children[0] as SchemaTree;
    const [k, v] = kv.children;
    if (k && v) return `map<${nodeType(k)}, ${nodeType(v)}>`;
  }
  const struct = structType(children);
  return element.repetition_type === 'REPEATED' ? `list<${struct}>` : struct;
}
