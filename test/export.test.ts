/**
 * `spatialthinker export`: the fixture model to fp32 reproduces every tensor
 * bit for bit; to bf16 with a tiny shard size it gives several shards and an
 * index that our loader and the Python safetensors library both read; bad
 * arguments are one-line errors.
 */
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Model } from '../lib/engine/model.js';
import { f32ToBf16Bits, inspectModelWeights, readSafetensors } from '../lib/io/safetensors.js';
import { parseShardSize } from '../lib/cli/export.js';

const SOURCE = resolve('..', 'shared', 'fixtures', 'qwen25vl-tiny', 'checkpoint');
const root = mkdtempSync(join(tmpdir(), 'st-export-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'export', ...args], { encoding: 'utf8' });
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

async function tensorsOf(dir: string): Promise<Record<string, { dtype: string; shape: number[]; data: Float32Array }>> {
  const info = await inspectModelWeights(dir);
  const out: Record<string, { dtype: string; shape: number[]; data: Float32Array }> = {};
  const byFile = new Map<string, string[]>();
  for (const [name, i] of Object.entries(info)) byFile.set(i.file, [...(byFile.get(i.file) ?? []), name]);
  for (const [file, names] of byFile) {
    const { tensors } = await readSafetensors(file, names);
    for (const [name, x] of Object.entries(tensors)) out[name] = { dtype: x.dtype, shape: x.shape, data: x.data as Float32Array };
  }
  return out;
}

t.test('--max-shard-size takes bytes or transformers-style units', async (t) => {
  t.equal(parseShardSize('5GB'), 5e9);
  t.equal(parseShardSize('500MB'), 5e8);
  t.equal(parseShardSize('2GiB'), 2 ** 31);
  t.equal(parseShardSize('1000'), 1000);
  t.throws(() => parseShardSize('lots'), /not a size/);
  t.throws(() => parseShardSize('0'), /at least 1 byte/);
});

t.test('fp32 export reproduces every tensor bit for bit', async (t) => {
  const out = join(root, 'fp32');
  const r = cli(SOURCE, out, '--dtype', 'fp32');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /loading .*\nwriting .*\nwrote /, 'progress on stderr');
  const source = await tensorsOf(SOURCE);
  const exported = await tensorsOf(out);
  t.same(Object.keys(exported).sort(), Object.keys(source).sort());
  const differing = Object.keys(source).filter((n) => {
    const a = source[n]!, b = exported[n]!;
    return b.dtype !== 'F32' || JSON.stringify(a.shape) !== JSON.stringify(b.shape) || !bitsOf(a.data).every((x, i) => x === bitsOf(b.data)[i]);
  });
  t.same(differing, [], 'dtype, shape and bits');
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.equal(config['torch_dtype'], 'float32');
  t.ok(existsSync(join(out, 'preprocessor_config.json')), 'processor config copied');
});

t.test('bf16 export with a tiny shard size: shards, index, our loader and Python safetensors read it', async (t) => {
  const out = join(root, 'bf16');
  const r = cli(SOURCE, out, '--dtype', 'bf16', '--max-shard-size', '20000');
  t.equal(r.status, 0, r.stderr);
  const files = readdirSync(out).sort();
  const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
  t.ok(shards.length > 1, `${shards.length} shards`);
  const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  t.same(new Set(Object.values(index.weight_map)), new Set(shards), 'the index names every shard');
  const source = await tensorsOf(SOURCE);
  const exported = await tensorsOf(out);
  t.equal(index.metadata.total_size, Object.values(exported).reduce((a, x) => a + x.data.length * 2, 0));
  const wrong = Object.keys(source).filter((n) => {
    const b = exported[n]!;
    return b.dtype !== 'BF16' || !source[n]!.data.every((v, i) => (bitsOf(b.data)[i] as number) >>> 16 === f32ToBf16Bits(v));
  });
  t.same(wrong, [], 'every value rounded to nearest even');
  const model = await Model.load(out);
  t.ok(model.parameterCount > 0, 'our loader reads it');
  await model.dispose();

  // Python: an interpreter with safetensors and numpy, or a venv made for the test.
  let python = process.env['SPATIALTHINKER_PYTHON'] ?? 'python3';
  const probe = () => spawnSync(python, ['-c', 'import safetensors, numpy'], { encoding: 'utf8' }).status === 0;
  let why = '';
  if (!probe()) {
    const venv = join(root, 'venv');
    const made = spawnSync('python3', ['-m', 'venv', venv], { encoding: 'utf8' });
    const pip = made.status === 0 ? spawnSync(join(venv, 'bin', 'pip'), ['install', '-q', '--retries', '0', '--timeout', '5', 'safetensors', 'numpy'], { encoding: 'utf8', timeout: 300_000 }) : made;
    python = join(venv, 'bin', 'python');
    if (pip.status !== 0 || !probe()) why = `no Python with safetensors and numpy (pip: ${(pip.stderr ?? '').trim().split('\n').at(-1) ?? ''})`;
  }
  if (why) {
    t.comment(`skipped the Python safetensors check: ${why}`);
    t.pass(`Python check skipped: ${why}`);
    return;
  }
  const script = `
import json, sys, numpy as np
from safetensors import deserialize
out = sys.argv[1]
index = json.load(open(out + '/model.safetensors.index.json'))
total = 0
# numpy has no bfloat16: the library hands over each tensor's raw bytes.
for shard in sorted(set(index['weight_map'].values())):
    for name, tensor in deserialize(open(out + '/' + shard, 'rb').read()):
        assert index['weight_map'][name] == shard, name
        assert tensor['dtype'] == 'BF16', tensor['dtype']
        bits = np.frombuffer(tensor['data'], dtype='<u2')
        assert bits.size == int(np.prod(tensor['shape'])), name
        total += len(tensor['data'])
        print(name, tensor['dtype'], list(tensor['shape']), int(bits.astype(np.uint64).sum()))
assert total == index['metadata']['total_size'], (total, index['metadata']['total_size'])
`;
  const py = spawnSync(python, ['-c', script, out], { encoding: 'utf8' });
  t.equal(py.status, 0, py.stderr);
  const lines = py.stdout.trim().split('\n');
  t.equal(lines.length, Object.keys(exported).length, 'Python reads every tensor');
  for (const line of lines) {
    const [, name, , shape, checksum] = /^(\S+) (\S+) (\[.*\]) (\d+)$/.exec(line) ?? [];
    const mine = exported[name ?? ''];
    if (!mine) {
      t.fail(`Python names an unknown tensor: ${line}`);
      continue;
    }
    const sum = [...bitsOf(mine.data)].reduce((a, x) => a + BigInt(x >>> 16), 0n);
    if (shape !== JSON.stringify(mine.shape).replaceAll(',', ', ') || BigInt(checksum!) !== sum) t.fail(`${name}: Python reads ${line}`);
  }
});

t.test('clear errors: missing SRC, OUT not empty without --force, bad dtype', async (t) => {
  const missing = cli(join(root, 'nope'), join(root, 'x'));
  t.equal(missing.status, 1);
  t.match(missing.stderr, /^spatialthinker export: .*nope: no such directory\n$/);
  const busy = join(root, 'busy');
  mkdirSync(busy);
  writeFileSync(join(busy, 'keep.txt'), 'mine');
  const refused = cli(SOURCE, busy);
  t.match(refused.stderr, /busy: exists and is not empty \(--force replaces it\)/);
  t.ok(existsSync(join(busy, 'keep.txt')), 'nothing touched');
  const forced = cli(SOURCE, busy, '--force', '--dtype', 'fp32');
  t.equal(forced.status, 0, forced.stderr);
  t.notOk(existsSync(join(busy, 'keep.txt')), '--force replaced it');
  const dtype = cli(SOURCE, join(root, 'y'), '--dtype', 'fp16');
  t.equal(dtype.status, 2);
  t.match(dtype.stderr, /--dtype must be bf16 or fp32/);
});
