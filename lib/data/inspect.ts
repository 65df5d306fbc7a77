/**
 * `spatialthinker data inspect`: what a dataset file holds (schema, row
 * count, category / answer-letter / level distributions, invalid rows) and
 * an HTML page of its first rows with the ground-truth boxes drawn over the
 * images.
 */
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import sharp from 'sharp';
import { boxesSvg, type LabelledBox } from '../report/boxes.js';
import { parseGroundTruth } from '../rewards/ground-truth.js';
import { parseImageSize } from '../rewards/image-size.js';
import { describeParquet, featureName, readParquetMetadata, type ParquetColumn } from './parquet.js';
import { countRows, dataFiles, readRows, type ReadStats, type RowItem } from './reader.js';
import { CATEGORIES, DataError, LEVELS, answerLetter, imagesOf, type StvqaRow } from './schema.js';

export interface InspectOptions {
  /** Rows kept for the HTML page (default 20). */
  rows?: number;
  /** Skip invalid rows (counted) instead of stopping at the first. */
  skipInvalid?: boolean;
  /** Decode image headers while reading (default true). */
  validateImages?: boolean;
  /** Read image paths outside the data file's folder (default false). */
  allowOutsideImages?: boolean;
  /** Called as rows are read. */
  onProgress?: (rowsRead: number) => void;
}

export interface FileSchema {
  /** The files sharing this schema. */
  files: string[];
  kind: 'parquet' | 'jsonl';
  columns: ParquetColumn[];
  /** `datasets` feature per column from the `huggingface` metadata (parquet only). */
  features?: Record<string, string>;
  rowGroups?: number;
  codecs?: string[];
  createdBy?: string;
}

export interface InspectReport {
  path: string;
  files: string[];
  schemas: FileSchema[];
  /** Rows in the files, valid or not. */
  totalRows: number;
  validRows: number;
  invalidRows: number;
  /** The first problems of invalid rows. */
  problems: string[];
  categories: Map<string, number>;
  letters: Map<string, number>;
  levels: Map<string, number>;
  /** The first `rows` valid rows, for rendering. */
  sample: RowItem[];
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

export async function inspectDataset(path: string, options: InspectOptions = {}): Promise<InspectReport> {
  const files = await dataFiles(path);
  const schemas = await describeFiles(files);
  const totalRows = await countRows(path);
  const keep = options.rows ?? 20;
  const categories = new Map<string, number>();
  const letters = new Map<string, number>();
  const levels = new Map<string, number>();
  const sample: RowItem[] = [];
  const stream = readRows(path, {
    skipInvalid: options.skipInvalid ?? false,
    validateImages: options.validateImages ?? true,
    allowOutsideImages: options.allowOutsideImages ?? false,
  });
  let read = 0;
  for await (const item of stream) {
    const { row } = item;
    bump(categories, row.category || '(none)');
    bump(letters, answerLetter(row) ?? '?');
    bump(levels, row.level || '(none)');
    if (sample.length < keep) sample.push(item);
    options.onProgress?.(++read);
  }
  const stats: ReadStats = stream.stats;
  return {
    path,
    files,
    schemas,
    totalRows,
    validRows: stats.rows,
    invalidRows: stats.invalid,
    problems: stats.problems,
    categories,
    letters,
    levels,
    sample,
  };
}

async function describeFiles(files: string[]): Promise<FileSchema[]> {
  const schemas: FileSchema[] = [];
  for (const file of files) {
    let schema: FileSchema;
    if (file.toLowerCase().endsWith('.parquet')) {
      let description;
      try {
        description = describeParquet(await readParquetMetadata(file));
      } catch (error) {
        throw new DataError(`${file}: not a readable parquet file: ${(error as Error).message}`, file);
      }
      schema = {
        files: [file],
        kind: 'parquet',
        columns: description.columns,
        rowGroups: description.rowGroups.length,
        codecs: description.codecs,
        ...(description.createdBy ? { createdBy: description.createdBy } : {}),
        ...(description.features
          ? { features: Object.fromEntries(Object.entries(description.features).map(([k, v]) => [k, featureName(v)])) }
          : {}),
      };
    } else {
      schema = { files: [file], kind: 'jsonl', columns: await jsonlColumns(file) };
    }
    const key = JSON.stringify([schema.kind, schema.columns, schema.features]);
    const same = schemas.find((s) => JSON.stringify([s.kind, s.columns, s.features]) === key);
    if (same) {
      same.files.push(file);
      if (same.rowGroups !== undefined && schema.rowGroups !== undefined) same.rowGroups += schema.rowGroups;
      for (const codec of schema.codecs ?? []) if (!same.codecs?.includes(codec)) same.codecs?.push(codec);
    } else schemas.push(schema);
  }
  return schemas;
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `list<${value.length ? jsonType(value[0]) : 'null'}>`;
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  if (typeof value === 'object') return `struct<${Object.entries(value).map(([k, v]) => `${k}: ${jsonType(v)}`).join(', ')}>`;
  return typeof value;
}

/** Columns of a JSONL file, from its first row. */
async function jsonlColumns(file: string): Promise<ParquetColumn[]> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (line.trim() === '') continue;
      try {
        const first = JSON.parse(line) as unknown;
        if (typeof first !== 'object' || first === null || Array.isArray(first)) return [];
        return Object.entries(first).map(([name, value]) => ({
          name,
          type: name === 'images' && typeof value === 'object' && value !== null && 'bytes_base64' in value ? 'struct<bytes_base64: string>' : jsonType(value),
        }));
      } catch {
        return [];
      }
    }
    return [];
  } finally {
    lines.close();
  }
}

// ---------------------------------------------------------------------------
// Text report

function table(map: Map<string, number>, total: number, order: readonly string[] = []): string[] {
  const keys = [...order, ...[...map.keys()].filter((k) => !order.includes(k)).sort((a, b) => (map.get(b) ?? 0) - (map.get(a) ?? 0) || (a < b ? -1 : 1))];
  const width = Math.max(8, ...keys.map((k) => k.length));
  return keys.map((k) => {
    const n = map.get(k) ?? 0;
    const pct = total ? ((100 * n) / total).toFixed(1) : '0.0';
    return `  ${k.padEnd(width)} ${String(n).padStart(7)}  ${pct.padStart(5)}%`;
  });
}

export function formatReport(report: InspectReport): string {
  const out: string[] = [];
  const { files } = report;
  out.push(`${report.path}: ${files.length} file${files.length === 1 ? '' : 's'}`);
  if (files.length > 1) for (const f of files) out.push(`  ${f}`);
  for (const schema of report.schemas) {
    const which = report.schemas.length > 1 ? ` (${schema.files.join(', ')})` : '';
    const extra = [
      schema.rowGroups !== undefined ? `${schema.rowGroups} row group${schema.rowGroups === 1 ? '' : 's'}` : undefined,
      schema.codecs?.length ? schema.codecs.join('/') : undefined,
      schema.createdBy ? `created by ${schema.createdBy}` : undefined,
    ].filter(Boolean);
    out.push('', `schema, ${schema.kind}${extra.length ? `, ${extra.join(', ')}` : ''}${which}:`);
    const width = Math.max(...schema.columns.map((c) => c.name.length), 4);
    const typeWidth = Math.max(...schema.columns.map((c) => c.type.length), 4);
    for (const c of schema.columns) {
      const feature = schema.features?.[c.name];
      out.push(`  ${c.name.padEnd(width)}  ${feature ? `${c.type.padEnd(typeWidth)}  ${feature}` : c.type}`);
    }
    if (schema.kind === 'parquet' && !schema.features) out.push('  (no "huggingface" features metadata: `datasets` reads images as {bytes, path} dicts)');
  }
  out.push('', `rows: ${report.totalRows} (valid ${report.validRows}, invalid ${report.invalidRows})`);
  const n = report.validRows;
  out.push('', 'category:', ...table(report.categories, n, CATEGORIES));
  out.push('', 'answer letter:', ...table(report.letters, n, ['A', 'B', 'C', 'D']));
  out.push('', 'level:', ...table(report.levels, n, LEVELS));
  out.push('', `invalid rows: ${report.invalidRows}`);
  const shown = report.problems.slice(0, 10);
  for (const p of shown) out.push(`  ${p}`);
  if (report.invalidRows > 0 && report.problems.length > shown.length) out.push(`  ... (${report.problems.length - shown.length} more problems listed, first 100 kept)`);
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------
// HTML

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

const MAX_WIDTH = 512;

const r2 = (v: number) => Math.round(v * 100) / 100;

interface RenderedImage {
  html: string;
}

async function renderImage(bytes: Uint8Array, frame: { width: number; height: number } | undefined, boxes: LabelledBox[]): Promise<RenderedImage> {
  try {
    const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const meta = await sharp(input).metadata();
    const { data, info } = await sharp(input)
      .resize({ width: MAX_WIDTH, withoutEnlargement: true })
      .jpeg({ quality: 80 })
      .toBuffer({ resolveWithObject: true });
    const w = info.width;
    const h = info.height;
    // Boxes are in the frame the prompt states (`Image size: (W x H)`), else the image's own.
    const fw = frame?.width ?? meta.width ?? w;
    const fh = frame?.height ?? meta.height ?? h;
    const sx = w / fw;
    const sy = h / fh;
    const scaled = boxes.map((b) => ({
      ...b,
      bbox: [r2(b.bbox[0] * sx), r2(b.bbox[1] * sy), r2(b.bbox[2] * sx), r2(b.bbox[3] * sy)] as [number, number, number, number],
    }));
    const src = `data:image/jpeg;base64,${data.toString('base64')}`;
    const note = `${meta.width}x${meta.height} ${meta.format ?? ''}${frame && (frame.width !== meta.width || frame.height !== meta.height) ? ` (prompt says ${frame.width}x${frame.height})` : ''}`;
    return {
      html:
        `<div class="pic" style="width:${w}px;height:${h}px"><img src="${src}" width="${w}" height="${h}" alt="">` +
        `${boxesSvg(w, h, scaled)}</div><div class="meta">${escapeHtml(note)}</div>`,
    };
  } catch (error) {
    return { html: `<div class="bad">image cannot be decoded: ${escapeHtml((error as Error).message)}</div>` };
  }
}

function questionOf(row: StvqaRow): string {
  // The options are listed separately when the row has them.
  if (row.question_only && row.options?.length) return row.question_only;
  if (row.question_with_options) return row.question_with_options;
  if (row.question_only) return row.question_only;
  const at = row.problem.lastIndexOf('Q. ');
  return at >= 0 ? row.problem.slice(at + 3) : row.problem;
}

async function renderRow(item: RowItem): Promise<string> {
  const { row, index, file } = item;
  let boxes: LabelledBox[] = [];
  let scene = '';
  let gtAnswer = '';
  try {
    const gt = parseGroundTruth(row.answer_option_text);
    boxes = gt.objects.map((o) => ({ label: o.id, bbox: o.box }));
    scene = JSON.stringify(gt.scene);
    gtAnswer = gt.answer;
  } catch {
    // validated rows parse; keep the page going otherwise
  }
  const frame = parseImageSize(row.problem);
  const images = imagesOf(row);
  const pics: string[] = [];
  for (let i = 0; i < images.length; i++) pics.push((await renderImage(images[i]!.bytes, frame, i === 0 ? boxes : [])).html);
  const letter = answerLetter(row);
  const options = row.options?.length
    ? `<ol type="A">${row.options
        .map((o, i) => `<li${String.fromCharCode(65 + i) === letter ? ' class="answer"' : ''}>${escapeHtml(o)}</li>`)
        .join('')}</ol>`
    : '';
  const facts = [
    row.category && `category <b>${escapeHtml(row.category)}</b>`,
    row.level && `level <b>${escapeHtml(row.level)}</b>`,
    row.rating !== undefined && row.rating !== null && `rating <b>${row.rating}</b>`,
    row.image_id && `image ${escapeHtml(row.image_id)}`,
    frame && `Image size ${frame.width}x${frame.height}`,
  ].filter(Boolean);
  return `<section class="row">
<h2>${escapeHtml(file)} row ${index}</h2>
<div class="facts">${facts.join(' · ')}</div>
<div class="body"><div class="pics">${pics.join('')}</div>
<div class="text"><p class="q">${escapeHtml(questionOf(row)).replace(/\n/g, '<br>')}</p>${options}
<p>answer: <b>${escapeHtml(row.answer_option_text_only ?? gtAnswer)}</b></p>
<p class="objects">${boxes.length ? boxes.map((b) => `${escapeHtml(b.label)} [${b.bbox.join(', ')}]`).join('<br>') : '(ground-truth scene has no objects)'}</p>
<details><summary>ground truth</summary><pre>${escapeHtml(scene || row.answer_option_text)}</pre></details>
<details><summary>prompt</summary><pre>${escapeHtml(row.problem)}</pre></details></div></div>
</section>`;
}

/** A self-contained HTML page (images inlined, at most 512 px wide) of the rows with their ground-truth boxes. */
export async function renderHtml(rows: readonly RowItem[], title: string, summary = ''): Promise<string> {
  const sections: string[] = [];
  for (const item of rows) sections.push(await renderRow(item));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
body{font-family:sans-serif;margin:1.5em;color:#222}
section.row{border-top:1px solid #ccc;padding:1em 0}
h2{font-size:1em;margin:0 0 .3em}
.facts,.meta{color:#666;font-size:.85em;margin:.2em 0}
.body{display:flex;gap:1.5em;align-items:flex-start}
.pic{position:relative}
.pic img,.pic svg{position:absolute;left:0;top:0}
.pic svg text{paint-order:stroke;stroke-width:3px;stroke-linejoin:round;font-weight:bold}
.text{max-width:60em}
.q{white-space:normal}
li.answer{font-weight:bold;color:#1a7f37}
.objects{font-family:monospace;font-size:.85em}
pre{white-space:pre-wrap;font-size:.8em;background:#f6f6f6;padding:.5em}
.bad{color:#b00}
</style></head><body>
<h1>${escapeHtml(title)}</h1>
${summary ? `<pre>${escapeHtml(summary)}</pre>` : ''}
${sections.join('\n')}
</body></html>
`;
}

export async function writeHtml(out: string, report: InspectReport): Promise<void> {
  await writeFile(out, await renderHtml(report.sample, `${report.path}: first ${report.sample.length} rows`, formatReport(report)));
}
