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
