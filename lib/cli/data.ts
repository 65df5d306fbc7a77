/**
 * `spatialthinker data`: STVQA dataset tools.
 *
 *   data inspect FILE|DIR [--rows N] [--html OUT.html] [--skip-invalid]
 *   data convert IN OUT [--skip-invalid] [--split NAME] [--rows-per-file N] [--row-group-size N]
 */
import { parseArgs } from './args.js';
import { inspectDataset, formatReport, writeHtml } from '../data/inspect.js';
import { countRows, readRows, type RowStream } from '../data/reader.js';
import { DataError, type StvqaRow } from '../data/schema.js';
import { writeJsonl, writeParquet, writeParquetShards } from '../data/writer.js';
import { CliError, UsageError } from './errors.js';
import { Progress } from './progress.js';
import { didYouMean } from '../util/suggest.js';

const HELP = `usage: spatialthinker data <subcommand> [options]

subcommands:
  inspect FILE|DIR   schema, row count, category / answer-letter / level
                     distributions and invalid rows of an STVQA parquet file,
                     JSONL file, or directory of them (e.g. the hub's
                     train-00000-of-00002.parquet ...); optionally an HTML page
                     of the first rows with their ground-truth boxes
  convert IN OUT     rewrite STVQA rows as parquet (OUT.parquet, or a directory
                     of hub-style shards) or JSONL (OUT.jsonl, images as files
                     in OUT_images/)

inspect options:
  --rows N           rows shown in the HTML page (default 20)
  --html OUT.html    write a self-contained HTML page of the first rows
  --skip-invalid     skip invalid rows (and count them) instead of stopping
  --no-image-check   do not decode image headers
  --allow-outside-images
                     read image paths outside the data file's folder

convert options:
  --skip-invalid     skip invalid rows (and count them) instead of stopping
  --split NAME       shard name prefix when OUT is a directory (default train)
  --rows-per-file N  rows per shard when OUT is a directory (default 1000)
  --row-group-size N rows per parquet row group (default 100)
  --allow-outside-images
                     read image paths that lead outside the input's folder
                     (../x.jpg, absolute paths elsewhere, symlinks out);
                     without it such a row is invalid. Every image is
                     decoded in full before it is written either way.

  -h, --help         show this help

JSONL rows carry the fields of the STVQA schema; "images" is {"path": ...}
(relative to the JSONL file), a path string, {"bytes_base64": ...}, or a list.
Problems name the file and the row, counted from 0 within each file (as
\`datasets\` indexes rows); JSONL rows also give their line number.
`;

function positiveInt(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer (got "${value}")`);
  return n;
}

export async function dataCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined) throw new UsageError(`a subcommand is required (inspect or convert) (--help shows the usage)`);
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(HELP);
    return;
  }
  try {
    if (sub === 'inspect') await inspect(rest);
    else if (sub === 'convert') await convert(rest);
    else throw new UsageError(`unknown subcommand "${sub}"${didYouMean(sub, ['inspect', 'convert'])} (inspect or convert)`);
  } catch (error) {
    if (error instanceof DataError) throw new CliError(error.message);
    throw error;
  }
}

async function inspect(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      rows: { type: 'string' },
      html: { type: 'string' },
      'skip-invalid': { type: 'boolean', default: false },
      'allow-outside-images': { type: 'boolean', default: false },
      'no-image-check': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (positionals.length !== 1) throw new UsageError(`inspect takes one FILE or DIR (got ${positionals.length}) (--help shows the usage)`);
  const path = positionals[0] as string;
  const rows = positiveInt(values.rows, '--rows', 20);
  // Parquet footers give the total at once; JSONL costs one pass over its lines.
  const progress = new Progress('read', 'rows', await countRows(path));
  const report = await inspectDataset(path, {
    rows,
    skipInvalid: values['skip-invalid'],
    validateImages: !values['no-image-check'],
    allowOutsideImages: values['allow-outside-images'],
    onProgress: (n) => progress.update(n),
  });
  progress.done(report.validRows);
  process.stdout.write(formatReport(report));
  const html = values.html;
  if (html) {
    await writeHtml(html, report);
    process.stdout.write(`\nwrote ${html} (${report.sample.length} rows)\n`);
  }
}

async function convert(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'skip-invalid': { type: 'boolean', default: false },
      'allow-outside-images': { type: 'boolean', default: false },
      split: { type: 'string', default: 'train' },
      'rows-per-file': { type: 'string' },
      'row-group-size': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (positionals.length !== 2) throw new UsageError(`convert takes IN and OUT (got ${positionals.length} arguments) (--help shows the usage)`);
  const [input, output] = positionals as [string, string];
  const rowGroupSize = positiveInt(values['row-group-size'], '--row-group-size', 100);
  const rowsPerFile = positiveInt(values['rows-per-file'], '--rows-per-file', 1000);
  const split = values.split;
  if (!/^[A-Za-z0-9_.-]+$/.test(split)) throw new UsageError(`--split must be a plain name (got "${split}")`);
  const stream: RowStream = readRows(input, {
    skipInvalid: values['skip-invalid'],
    decodeImages: true,
    allowOutsideImages: values['allow-outside-images'],
  });
  const progress = new Progress('converted', 'rows', await countRows(input));
  let n = 0;
  async function* rows(): AsyncGenerator<StvqaRow> {
    for await (const { row } of stream) {
      yield row;
      progress.update(++n);
    }
  }
  let written: string;
  if (/\.parquet$/i.test(output)) {
    const r = await writeParquet(output, rows(), { rowGroupSize });
    written = `${output} (${r.rows} rows, ${r.rowGroups} row groups)`;
  } else if (/\.(jsonl|ndjson)$/i.test(output)) {
    const r = await writeJsonl(output, rows());
    written = `${output} (${r.rows} rows, ${r.images} images in ${r.imageDir})`;
  } else {
    const paths = await writeParquetShards(output, split, rows(), { rowGroupSize, rowsPerFile });
    written = `${paths.length} file${paths.length === 1 ? '' : 's'} in ${output} (${n} rows): ${paths.map((p) => p.split(/[\\/]/).pop()).join(', ')}`;
  }
  progress.done(n);
  const invalid = stream.stats.invalid ? `, skipped ${stream.stats.invalid} invalid rows` : '';
  process.stdout.write(`wrote ${written}${invalid}\n`);
}
