// Issue 19 defects 4 and 5: `data convert` reads only images inside the
// dataset's folder and only writes images that decode; a damaged parquet file
// is a clear error naming the file and row group, never a dead process.
import './helpers-parquet-resolve.js';
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

const dir = mkdtempSync(join(tmpdir(), 'st-data-safety-'));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const scene = JSON.stringify({ objects: [{ id: 'chair.1', bbox: [1, 1, 30, 30] }], relationships: [] });
function row(images: unknown) {
  return {
    images,
    problem: 'Where is the chair?\nImage size: (64 x 48)',
    answer_option_text: `<scene>${scene}</scene>\n<answer>(A) left</answer>`,
  };
}

async function png(): Promise<Buffer> {
  return sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 9, g: 90, b: 200 } } }).png().toBuffer();
}

t.test('data convert refuses image paths outside the dataset folder unless allowed (defect 4)', async (t) => {
  const root = join(dir, 'outside');
  const data = join(root, 'dataset');
  mkdirSync(join(data, 'images'), { recursive: true });
  const secret = join(root, 'secret.png');
  writeFileSync(secret, await png());
  writeFileSync(join(data, 'images', 'ok.png'), await png());
  symlinkSync(secret, join(data, 'images', 'link.png'));
  const cases: [string, unknown][] = [
    ['dot-dot', { path: '../secret.png' }],
    ['absolute', { path: secret }],
    ['symlink out', { path: 'images/link.png' }],
    ['deep dot-dot', '../../../../../../../../etc/passwd'],
  ];
  for (const [name, images] of cases) {
    const input = join(data, `${name.replace(/ /g, '-')}.jsonl`);
    writeFileSync(input, JSON.stringify(row(images)) + '\n');
    const output = join(root, `${name.replace(/ /g, '-')}-out.jsonl`);
    const r = cli('data', 'convert', input, output);
    t.equal(r.code, 1, `${name}: exit 1`);
    t.match(r.stderr, /row 0 .*leads outside the dataset's folder.*--allow-outside-images/, `${name}: ${r.stderr.trim()}`);
    t.notOk(existsSync(output), `${name}: nothing written`);
  }
  const inside = join(data, 'inside.jsonl');
  writeFileSync(inside, JSON.stringify(row({ path: 'images/ok.png' })) + '\n');
  t.equal(cli('data', 'convert', inside, join(root, 'inside-out.jsonl')).code, 0, 'a path inside the folder converts');
  const allowed = cli('data', 'convert', join(data, 'dot-dot.jsonl'), join(root, 'allowed-out.jsonl'), '--allow-outside-images');
  t.equal(allowed.code, 0, `--allow-outside-images reads it: ${allowed.stderr}`);
});

t.test('data convert decodes every image before writing it (defect 4)', async (t) => {
  const data = join(dir, 'undecodable');
  mkdirSync(data, { recursive: true });
  const good = await png();
  writeFileSync(join(data, 'text.png'), 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(join(data, 'truncated.png'), good.subarray(0, Math.floor(good.length * 0.6)));
  for (const name of ['text.png', 'truncated.png']) {
    const input = join(data, `${name}.jsonl`);
    writeFileSync(input, JSON.stringify(row({ path: name })) + '\n');
    const output = join(data, `${name}-out.jsonl`);
    const r = cli('data', 'convert', input, output);
    t.equal(r.code, 1, `${name}: exit 1 (${r.stderr.trim()})`);
    t.match(r.stderr, /row 0.*"images" is not a readable image/, name);
    t.notOk(existsSync(output), `${name}: nothing written`);
  }
});

t.test('a damaged parquet page header is an error naming the file and row group, not a hung or dead process (defect 5)', async (t) => {
  const { writeParquet } = await import('../lib/data/writer.js');
  const { readParquetMetadata } = await import('../lib/data/parquet.js');
  const { readRows } = await import('../lib/data/reader.js');
  const image = new Uint8Array(await png());
  const rows = Array.from({ length: 30 }, (_, i) => ({
    images: { bytes: image, path: null },
    problem: `Q${i} ${'where is the chair relative to the table? '.repeat(5)} Image size: (64 x 48)`,
    answer_option_text: `<scene>${scene}</scene>\n<answer>(A) yes</answer>`,
    category: 'relation',
  }));
  const good = join(dir, 'good.parquet');
  await writeParquet(good, (async function* () { yield* rows as never[]; })(), { rowGroupSize: 10 });
  // The all-null "answer" column of row group 0: a flipped num_values in its
  // page header made hyparquet decode 2^31 definition levels.
  const metadata = await readParquetMetadata(good);
  const chunk = metadata.row_groups[0]!.columns.find((c) => c.meta_data?.path_in_schema.join('.') === 'answer')!;
  const start = Number(chunk.meta_data!.data_page_offset);
  const length = Number(chunk.meta_data!.total_compressed_size);
  const bytes = readFileSync(good);
  let clear = 0;
  let loaded = 0;
  for (let at = start; at < start + length; at++) {
    const damaged = Buffer.from(bytes);
    damaged[at] = (damaged[at] as number) ^ (1 + ((at * 2654435761) >>> 0) % 255);
    const file = join(dir, `damaged-${at}.parquet`);
    writeFileSync(file, damaged);
    try {
      for await (const _ of readRows(file, { decodeLimits: { timeoutMs: 3000 } })) void _;
      loaded++;
    } catch (error) {
      const message = (error as Error).message;
      t.match(message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: .*row group 0`), `byte ${at}: ${message}`);
      t.notMatch(message, /\n/);
      clear++;
    }
  }
  t.comment(`${length} damaged page-header bytes: ${clear} clear errors, ${loaded} loaded`);
  t.ok(clear > 0);
});
