import './helpers-parquet-resolve.js';
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCHMARKS, benchmarkByName, genericBenchmark } from '../lib/eval/benchmarks/index.js';
import { REALWORLDQA_LETTER_ONLY } from '../lib/eval/benchmarks/realworldqa.js';
import { benchmarkFiles, loadSamples } from '../lib/eval/load.js';
import { promptOf } from '../lib/eval/runner.js';
import { SPATIAL_THINKER_TEMPLATE } from '../lib/eval/templates.js';
import type { BenchmarkDefinition, EvalSample } from '../lib/eval/types.js';
import { imageValue, png, writeBenchmarkFixtures, writeHubParquet, type BenchmarkFixture } from './helpers-eval.js';

const root = mkdtempSync(join(tmpdir(), 'st-eval-bench-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const data = join(root, 'data');
const fixtures = await writeBenchmarkFixtures(data);

function definition(name: string): BenchmarkDefinition {
  const d = benchmarkByName(name);
  if (!d) throw new Error(`no benchmark ${name}`);
  return d;
}

async function samplesOf(name: string, limit?: number): Promise<EvalSample[]> {
  const d = definition(name);
  const out: EvalSample[] = [];
  for await (const s of loadSamples(d, await benchmarkFiles(d, data), limit !== undefined ? { limit } : {})) out.push(s);
  return out;
}

t.test('every benchmark fixture loads in its own layout', async (t) => {
  const expected = new Map<string, BenchmarkFixture>(fixtures.map((f) => [f.name, f]));
  for (const d of BENCHMARKS) {
    const name = d.name === 'robospatial-rgb' ? 'robospatial' : d.name;
    const fixture = expected.get(name);
    if (!fixture) {
      t.fail(`no fixture for ${d.name}`);
      continue;
    }
    const samples = await samplesOf(d.name);
    t.equal(samples.length, fixture.rows.length, `${d.name}: one sample per row`);
    samples.forEach((s, i) => {
      const row = fixture.rows[i]!;
      t.ok(s.question.includes(row.key), `${d.name} row ${i}: question in order`);
      t.equal(s.benchmark, d.name);
      t.equal(s.kind, d.kind);
      t.match(s.id, new RegExp(`^${d.name}/[^#]+\\.parquet#\\d+$`), 'id names benchmark, file and row');
      t.equal(s.task, row.task, `${d.name} row ${i}: task`);
      t.ok(s.images.length > 0 && s.images.every((im) => im.bytes.byteLength > 0), 'images with bytes');
    });
    t.equal(new Set(samples.map((s) => s.id)).size, samples.length, `${d.name}: ids are unique`);
  }
});

t.test('fields as each dataset stores them', async (t) => {
  const [count] = await samplesOf('cv-bench-2d');
  t.same(count?.choices, ['3', '2', '1', '0']);
  t.equal(count?.answer, '(B)');
  t.equal(count?.sourceId, '0', 'idx (int64) as the source id');
  t.same((await samplesOf('spatialreasoner'))[1]?.choices, ["the dog's bowl", 'the lamp'], 'choices from a list literal');
  t.equal((await samplesOf('blink-multi-view'))[0]?.images.length, 2, 'image_1 and image_2');
  t.equal((await samplesOf('blink-spatial'))[0]?.images.length, 1, 'only image_1, as the reference');
  t.equal((await samplesOf('robospatial'))[0]?.images.length, 2, 'rgb and depth');
  t.equal((await samplesOf('robospatial-rgb'))[0]?.images.length, 1, 'rgb only');
  const [yes, no] = await samplesOf('hallusionbench');
  t.same([yes?.answer, no?.answer, yes?.choices], ['1', '0', ['Yes', 'No']]);
  const realworld = await samplesOf('realworldqa');
  t.equal(realworld.length, 2, 'both shards of data/test-*.parquet, in name order');
  t.match(realworld[1]?.id, /test-00001-of-00002\.parquet#0$/);
  const stvqa = await samplesOf('stvqa');
  t.equal(stvqa[0]?.answer, 'A');
  t.same(stvqa[0]?.choices, ['behind', 'in front of', 'beside']);
  t.equal(stvqa[0]?.task, 'relation');
  t.equal((await samplesOf('spatialbench'))[1]?.sourceId, '2', 'question_id');
  t.equal((await samplesOf('3dsrbench', 2)).length, 2, 'limit');
});

t.test('prompts: templates and the dataset-specific additions', async (t) => {
  const prompt = async (name: string, template: 'spatial_thinker' | 'reasoning' | 'no_reasoning', index = 0) => {
    const d = definition(name);
    return promptOf(d, (await samplesOf(name))[index]!, template);
  };
  const cv = await prompt('cv-bench-2d', 'spatial_thinker');
  t.ok(cv.startsWith(`${SPATIAL_THINKER_TEMPLATE}\n(84 x 56)\n\nNow answer the following question:\nHow many chairs`), 'spatial_thinker: template, first image size, question');
  t.match(cv, /Image size: \{Width\} x \{Height\}\n\(84 x 56\)/, 'the placeholder line stays unsubstituted, as the reference sends it');
  t.match(cv, /\(A\) 3\n\(B\) 2\n\(C\) 1\n\(D\) 0$/, 'the prompt field already lists the options');
  t.match(await prompt('cv-bench-2d', 'reasoning'), /^You FIRST think about the reasoning process[^\n]*\nQuestion: How many chairs/);
  t.match(await prompt('cv-bench-2d', 'no_reasoning'), /^Question: How many chairs/);
  t.match(await prompt('blink-multi-view', 'spatial_thinker'), /\n\(56 x 56\)\n/, 'the size of the first image');
  t.match(await prompt('hallusionbench', 'no_reasoning'), /^Question: Is the red bar taller than the blue bar\?\nOptions:\n\(A\) Yes \n\(B\) No$/);
  t.match(await prompt('mmvp', 'no_reasoning'), /\(b\) Right\. Please give the final answer within answer tags\.$/, 'MMVP: period added, answer tags asked for');
  t.match(await prompt('spatialbench', 'no_reasoning', 0), /Is there a cup on the table\?\. Please give/, 'a question mark still gets the period, as in the reference');
  t.match(await prompt('spatialbench', 'no_reasoning', 1), /in the bowl\. Please give/);
  t.notOk((await prompt('realworldqa', 'spatial_thinker')).includes(REALWORLDQA_LETTER_ONLY), 'RealWorldQA: the letter-only sentence goes with spatial_thinker');
  t.ok((await prompt('realworldqa', 'reasoning')).includes(REALWORLDQA_LETTER_ONLY), '... and stays otherwise');
  t.match(await prompt('stvqa', 'no_reasoning'), /^Question: Where is the chair with respect to the table\?\nOptions:\n\(A\) behind/);
});

t.test('CV-Bench from the combined test.parquet of older revisions', async (t) => {
  const old = join(root, 'cv-old');
  const columns = [
    { name: 'idx', type: 'int64' },
    { name: 'type', type: 'string' },
    { name: 'task', type: 'string' },
    { name: 'image', type: 'image' },
    { name: 'choices', type: 'list<string>' },
    { name: 'answer', type: 'string' },
    { name: 'prompt', type: 'string' },
  ] as const;
  const row = async (idx: number, type: string, task: string) => ({ idx, type, task, image: await imageValue(56, 56, `${idx}.png`), choices: ['a', 'b'], answer: '(A)', prompt: `q${idx}\n(A) a\n(B) b` });
  await writeHubParquet(join(old, 'test.parquet'), [...columns], [await row(0, '2D', 'Count'), await row(1, '3D', 'Depth'), await row(2, '2D', 'Relation')]);
  const d = definition('cv-bench-3d');
  const files = await benchmarkFiles(d, root, old);
  t.same(files, [join(old, 'test.parquet')]);
  const got: EvalSample[] = [];
  for await (const s of loadSamples(d, files)) got.push(s);
  t.same(got.map((s) => s.task), ['Depth'], 'only the 3D rows');
  t.equal(got[0]?.row, 1, 'rows keep their position in the file');
});

t.test('missing and malformed data are clear errors', async (t) => {
  await t.rejects(benchmarkFiles(definition('mmvp'), join(root, 'nowhere')), /MMVP: no folder .*nowhere\/MMVP; get it with `huggingface-cli download hunarbatra\/MMVP --repo-type dataset --local-dir /);
  mkdirSync(join(root, 'empty/BLINK'), { recursive: true });
  await t.rejects(benchmarkFiles(definition('blink-depth'), join(root, 'empty')), /BLINK Relative Depth: no Relative_Depth\/val-\*\.parquet in .*empty\/BLINK/);

  const bad = join(root, 'bad');
  await writeHubParquet(join(bad, 'data/train-00000-of-00001.parquet'), [{ name: 'image', type: 'image' }, { name: 'question', type: 'string' }], [{ image: await imageValue(56, 56, 'x.png'), question: 'q' }]);
  const mmvp = definition('mmvp');
  const drain = async (d: BenchmarkDefinition, files: string[]) => {
    for await (const _ of loadSamples(d, files));
  };
  await t.rejects(drain(mmvp, await benchmarkFiles(mmvp, bad, bad)), /train-00000-of-00001\.parquet: no columns "text", "label" \(the file has "image", "question"\)/);

  const wrongAnswer = join(root, 'wrong');
  await writeHubParquet(
    join(wrongAnswer, 'data/test-00000-of-00001.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'prompt', type: 'string' },
      { name: 'answer', type: 'string' },
      { name: 'choices', type: 'list<string>' },
      { name: 'task', type: 'string' },
    ],
    [
      { image: await imageValue(56, 56, 'a.png'), prompt: 'ok', answer: '(A)', choices: ['x', 'y'], task: 'height' },
      { image: await imageValue(56, 56, 'b.png'), prompt: 'bad', answer: '(E)', choices: ['x', 'y'], task: 'height' },
    ],
  );
  const sr = definition('3dsrbench');
  await t.rejects(drain(sr, await benchmarkFiles(sr, wrongAnswer, wrongAnswer)), /test-00000-of-00001\.parquet row 1: the answer "\(E\)" names none of the options \["x","y"\]/);
  await writeHubParquet(
    join(wrongAnswer, 'noimage/data/test-00000-of-00001.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'prompt', type: 'string' },
      { name: 'answer', type: 'string' },
      { name: 'choices', type: 'list<string>' },
      { name: 'task', type: 'string' },
    ],
    [{ image: null, prompt: 'q', answer: '(A)', choices: ['x'], task: 'height' }],
  );
  await t.rejects(drain(sr, await benchmarkFiles(sr, wrongAnswer, join(wrongAnswer, 'noimage'))), /row 0: "image" has no image/);
});

t.test('the generic loader: JSONL with images by path, and parquet', async (t) => {
  const dir = join(root, 'generic');
  mkdirSync(join(dir, 'imgs'), { recursive: true });
  writeFileSync(join(dir, 'imgs/one.png'), await png(60, 56));
  const lines = [
    { qid: 7, q: 'Which side is the cup on?\n(A) left\n(B) right', a: 'B', opts: ['left', 'right'], img: 'imgs/one.png', kind: 'side' },
    { qid: 8, q: 'Which side is the pen on?\n(A) left\n(B) right', a: 'left', opts: ['left', 'right'], img: { bytes_base64: Buffer.from(await png(56, 60)).toString('base64') }, kind: 'side' },
  ];
  writeFileSync(join(dir, 'mine.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  const d = genericBenchmark({ name: 'mine', path: join(dir, 'mine.jsonl'), isFolder: false, question: 'q', answer: 'a', choices: 'opts', images: ['img'], task: 'kind', id: 'qid' });
  t.equal(d.kind, 'multiple-choice');
  const got: EvalSample[] = [];
  for await (const s of loadSamples(d, await benchmarkFiles(d, root))) got.push(s);
  t.same(
    got.map((s) => [s.id, s.sourceId, s.task, s.choices, s.answer, s.images[0]?.bytes.byteLength! > 0]),
    [
      ['mine/mine.jsonl#0', '7', 'side', ['left', 'right'], 'B', true],
      ['mine/mine.jsonl#1', '8', 'side', ['left', 'right'], 'left', true],
    ],
  );
  t.match(await promptOf(d, got[1]!, 'spatial_thinker'), /\n\(56 x 60\)\n/, 'size of the base64 image');
  const open = genericBenchmark({ name: 'open', path: dir, isFolder: true, question: 'q', answer: 'a', images: ['img'] });
  t.equal(open.kind, 'open', 'without an option list the answer is free text');
  const files = await benchmarkFiles(open, root);
  t.same(files, [join(dir, 'mine.jsonl')], 'a folder: its JSONL files');
  writeFileSync(join(dir, 'broken.jsonl'), '{"q": "x", "a": "y", "img": "imgs/missing.png"}\n');
  const broken = genericBenchmark({ name: 'broken', path: join(dir, 'broken.jsonl'), isFolder: false, question: 'q', answer: 'a', images: ['img'] });
  await t.rejects(
    (async () => {
      for await (const _ of loadSamples(broken, await benchmarkFiles(broken, root)));
    })(),
    /broken\.jsonl row 0: "img" has no bytes and its path cannot be read \(no file .*imgs\/missing\.png\)/,
  );
});
