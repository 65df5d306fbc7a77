/**
 * Hub ids resolve from a local Hugging Face cache: a cache folder laid out
 * as huggingface_hub writes it (blobs/, refs/main, snapshots/<commit>/ with
 * links into blobs/), for a model and a data set.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { hubCacheDir, hubDatasetFiles, HubCacheError, hubSnapshot, looksLikeHubId, parseHubDatasetSpec, resolveModelPath } from '../lib/io/hub-cache.js';
import { dataFiles } from '../lib/data/reader.js';

const cache = mkdtempSync(join(tmpdir(), 'st-hub-'));
t.teardown(() => rmSync(cache, { recursive: true, force: true }));
const env = { HF_HUB_CACHE: cache };

/** One repository in the cache: each file a blob, linked from the snapshot of `commit`, which refs/main names. */
function layOut(folder: string, commit: string, files: Record<string, string>): string {
  const repo = join(cache, folder);
  const snapshot = join(repo, 'snapshots', commit);
  let blob = 0;
  for (const [path, content] of Object.entries(files)) {
    const blobFile = join(repo, 'blobs', `${commit.slice(0, 8)}${blob++}`);
    mkdirSync(dirname(blobFile), { recursive: true });
    writeFileSync(blobFile, content);
    const link = join(snapshot, path);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(relative(dirname(link), blobFile), link);
  }
  mkdirSync(join(repo, 'refs'), { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), commit);
  return snapshot;
}

const modelCommit = 'a'.repeat(40);
const modelSnapshot = layOut('models--Qwen--Qwen2.5-VL-3B-Instruct', modelCommit, { 'config.json': '{}', 'tokenizer.json': '{}' });
const dataCommit = 'b'.repeat(40);
const dataSnapshot = layOut('datasets--OX-PIXL--STVQA-7K', dataCommit, {
  'README.md': '# card',
  'data/train-00001-of-00002.parquet': 'PAR1',
  'data/train-00000-of-00002.parquet': 'PAR1',
  'data/val-00000-of-00001.parquet': 'PAR1',
});
layOut('datasets--org--by-folder', 'c'.repeat(40), { 'default/train/0000.parquet': 'PAR1', 'default/test/0000.parquet': 'PAR1' });

t.test('the cache folder follows HF_HUB_CACHE, then HF_HOME, then ~/.cache', async (t) => {
  t.equal(hubCacheDir({ HF_HUB_CACHE: '/a', HF_HOME: '/b' }), '/a');
  t.equal(hubCacheDir({ HF_HOME: '/b' }), '/b/hub');
  t.equal(hubCacheDir({ HOME: '/h', XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
  t.match(hubCacheDir({}), /\.cache\/huggingface\/hub$/);
});

t.test('what looks like a Hub id', async (t) => {
  for (const id of ['Qwen/Qwen2.5-VL-3B-Instruct', 'OX-PIXL/STVQA-7K', 'a_b/c.d']) t.ok(looksLikeHubId(id), id);
  for (const path of ['./Qwen/x', '/models/x', 'models', 'a/b/c', '../x', 'a/..', 'runs/x/']) t.notOk(looksLikeHubId(path), path);
  t.same(parseHubDatasetSpec('OX-PIXL/STVQA-7K@train'), { id: 'OX-PIXL/STVQA-7K', split: 'train' });
  t.equal(parseHubDatasetSpec('data/train.parquet'), undefined);
  t.equal(parseHubDatasetSpec('@train'), undefined);
});

t.test('a model id resolves to the snapshot refs/main names', async (t) => {
  t.equal(resolveModelPath('Qwen/Qwen2.5-VL-3B-Instruct', env), modelSnapshot);
  t.equal(hubSnapshot('Qwen/Qwen2.5-VL-3B-Instruct', 'model', { revision: modelCommit, env }), modelSnapshot, 'or a commit given as the revision');
  t.equal(resolveModelPath(cache, env), cache, 'an existing folder is used as it is');
  t.equal(resolveModelPath('no-such-folder', env), 'no-such-folder', 'a path that is not an id is left to the caller to report');
});

t.test('a model that is not in the cache says how to download it', async (t) => {
  t.throws(() => resolveModelPath('Qwen/Qwen2.5-VL-7B-Instruct', env), {
    name: 'HubCacheError',
    message: `model Qwen/Qwen2.5-VL-7B-Instruct is not in the local Hugging Face cache ${cache}: download it with \`huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct\`, or give a local folder`,
  });
  const broken = 'models--org--half';
  mkdirSync(join(cache, broken, 'refs'), { recursive: true });
  writeFileSync(join(cache, broken, 'refs', 'main'), 'f'.repeat(40));
  t.throws(() => resolveModelPath('org/half', env), /not fully in the local Hugging Face cache .* \(no snapshot for refs\/main = f{40}\)/, 'a ref without its snapshot');
});

t.test("a data set's split: its parquet files, sorted", async (t) => {
  t.same(hubDatasetFiles('OX-PIXL/STVQA-7K', 'train', env), [
    join(dataSnapshot, 'data/train-00000-of-00002.parquet'),
    join(dataSnapshot, 'data/train-00001-of-00002.parquet'),
  ]);
  t.same(hubDatasetFiles('OX-PIXL/STVQA-7K', 'val', env), [join(dataSnapshot, 'data/val-00000-of-00001.parquet')]);
  t.same(hubDatasetFiles('org/by-folder', 'test', env).map((f) => relative(cache, f)), [`datasets--org--by-folder/snapshots/${'c'.repeat(40)}/default/test/0000.parquet`]);
  t.throws(() => hubDatasetFiles('OX-PIXL/STVQA-7K', 'validation', env), /has no parquet files for split "validation"; splits there: train, val/);
  t.throws(() => hubDatasetFiles('OX-PIXL/Missing', 'train', env), /download it with `huggingface-cli download --repo-type dataset OX-PIXL\/Missing`/);
  t.ok(realpathSync(join(dataSnapshot, 'data/val-00000-of-00001.parquet')).includes('/blobs/'), 'the snapshot holds links into blobs/, as in a real cache');
});

t.test('data.train_files=Org/Name@split reaches the split through the data reader', async (t) => {
  const before = process.env['HF_HUB_CACHE'];
  process.env['HF_HUB_CACHE'] = cache;
  t.teardown(() => {
    if (before === undefined) delete process.env['HF_HUB_CACHE'];
    else process.env['HF_HUB_CACHE'] = before;
  });
  t.same(await dataFiles('OX-PIXL/STVQA-7K@val'), [join(dataSnapshot, 'data/val-00000-of-00001.parquet')]);
  await t.rejects(dataFiles('OX-PIXL/STVQA-7K@dev'), { name: 'DataError', message: /^OX-PIXL\/STVQA-7K@dev: dataset OX-PIXL\/STVQA-7K .* no parquet files for split "dev"/ });
  await t.rejects(dataFiles('missing/file.parquet'), { message: 'missing/file.parquet: no such file or directory' }, 'a plain path is still a plain path');
});

t.test('the CLI resolves --model from the cache, or says in one line how to get it', async (t) => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, HF_HUB_CACHE: cache } });
  const missing = cli('generate', '--model', 'Qwen/Qwen2.5-VL-7B-Instruct', '--question', 'hi');
  t.equal(missing.status, 1);
  t.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
  t.match(missing.stderr, /--model: model Qwen\/Qwen2.5-VL-7B-Instruct is not in the local Hugging Face cache .* `huggingface-cli download Qwen\/Qwen2.5-VL-7B-Instruct`/);
  t.notMatch(missing.stderr, /ENOENT|cannot read tokenizer/);
  const found = cli('generate', '--model', 'Qwen/Qwen2.5-VL-3B-Instruct', '--question', 'hi');
  t.equal(found.status, 1, 'the stand-in snapshot is no real model');
  t.match(found.stderr, modelSnapshot, `the model was looked for in the snapshot: ${found.stderr}`);
});

t.test('HubCacheError is an Error with its own name', async (t) => {
  t.ok(new HubCacheError('x') instanceof Error);
});
