/**
 * Finding a benchmark's files under the data directory and streaming its
 * samples. Nothing is downloaded: a missing benchmark is an error that says
 * which repository to fetch and where to put it.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { DataError } from '../data/schema.js';
import { answerKeyLetter } from './matching.js';
import { readRecords } from './records.js';
import type { BenchmarkDefinition, EvalSample } from './types.js';

async function kindOf(path: string): Promise<'file' | 'dir' | undefined> {
  try {
    const s = await stat(path);
    return s.isDirectory() ? 'dir' : s.isFile() ? 'file' : undefined;
  } catch {
    return undefined;
  }
}

/** The files of one pattern (`data/test-*.parquet`, `test_2d.parquet`) in a folder, in name order. */
async function matchPattern(folder: string, pattern: string): Promise<string[]> {
  const dir = join(folder, dirname(pattern));
  const name = basename(pattern);
  if (!name.includes('*')) return (await kindOf(join(dir, name))) === 'file' ? [join(dir, name)] : [];
  const [prefix, suffix] = name.split('*', 2) as [string, string];
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.startsWith(prefix) && e.endsWith(suffix) && e.length >= prefix.length + suffix.length && !e.startsWith('.'))
    .sort()
    .map((e) => join(dir, e));
}

/** The command that fetches a benchmark into `folder`, when it comes from the hub. */
export function downloadHint(benchmark: Pick<BenchmarkDefinition, 'repo'>, folder: string): string | undefined {
  return benchmark.repo ? `huggingface-cli download ${benchmark.repo} --repo-type dataset --local-dir ${folder}` : undefined;
}

/**
 * The data files of a benchmark: `location` when it is a file, else the
 * first of the benchmark's patterns that matches in `location` (default
 * `<dataDir>/<folder>`).
 */
export async function benchmarkFiles(benchmark: BenchmarkDefinition, dataDir: string, location?: string): Promise<string[]> {
  const folder = location ?? resolve(dataDir, benchmark.folder);
  const kind = await kindOf(folder);
  if (kind === 'file') return [folder];
  if (kind === 'dir')
    for (const pattern of benchmark.files) {
      const found = await matchPattern(folder, pattern);
      if (found.length > 0) return found;
    }
  const where = kind === 'dir' ? `no ${benchmark.files.join(' or ')} in ${folder}` : `no folder ${folder}`;
  const hint = downloadHint(benchmark, folder);
  throw new DataError(`${benchmark.title}: ${where}${hint ? `; get it with \`${hint}\`` : ''}`, folder);
}

export interface LoadOptions {
  /** The first N samples (after the benchmark's row filter), as the reference's `--num_samples`. */
  limit?: number;
}

/** Streams a benchmark's samples from its files, checking each answer against its options. */
export async function* loadSamples(benchmark: BenchmarkDefinition, files: readonly string[], options: LoadOptions = {}): AsyncGenerator<EvalSample, void, undefined> {
  const limit = options.limit ?? Infinity;
  let yielded = 0;
  if (yielded >= limit) return;
  const columns = [...benchmark.requiredColumns, ...(benchmark.optionalColumns ?? [])];
  for (const file of files) {
    const items = benchmark.readRecords
      ? benchmark.readRecords(file, columns)
      : readRecords(file, { required: benchmark.requiredColumns, optional: benchmark.optionalColumns ?? [] });
    for await (const item of items) {
      if (benchmark.include && !benchmark.include(item.record)) continue;
      const where = `${file} row ${item.index}`;
      const fields = await benchmark.toSample(item, where);
      if (fields.kind !== 'open') {
        if (fields.kind === 'multiple-choice' && !(fields.choices && fields.choices.length > 0))
          throw new DataError(`${where}: a multiple-choice question without options`, file, item.index);
        if (answerKeyLetter(fields) === undefined)
          throw new DataError(
            `${where}: the answer ${JSON.stringify(fields.answer)} names none of the options ${JSON.stringify(fields.kind === 'yes-no' ? ['1 (Yes)', '0 (No)'] : fields.choices)}`,
            file,
            item.index,
          );
      }
      yield { ...fields, id: `${benchmark.name}/${basename(file)}#${item.index}`, benchmark: benchmark.name, file, row: item.index };
      if (++yielded >= limit) return;
    }
  }
}
