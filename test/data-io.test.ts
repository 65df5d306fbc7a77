import './helpers-parquet-resolve.js';
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { parquetSchema } from 'hyparquet';
import {
  DataError,
  StvqaParquetWriter,
  countRows,
  readRows,
  stvqaFeatures,
  validateRow,
  writeJsonl,
  writeParquet,
  writeParquetShards,
  type RowItem,
  type StvqaImage,
  type StvqaRow,
} from '../lib/data/index.js';
import { describeParquet, nodeType, readParquetMetadata } from '../lib/data/parquet.js';
import { dataCommand } from '../lib/cli/data.js';


const dir = mkdtempSync(join(tmpdir(), 'st-data-'));

// ---------------------------------------------------------------------------
// Fixtures: real images made by sharp, STVQA-shaped rows.

async function image(width: number, height: number, format: 'png' | 'jpeg', seed: number): Promise<Uint8Array> {
  const base = sharp({ create: { width, height, channels: 3, background: { r: (seed * 37) % 256, g: (seed * 91) % 256, b: 200 } } });
  return new Uint8Array(format === 'png' ? await base.png().toBuffer() : await base.jpeg().toBuffer());
}

const CATS = ['relation', 'depth', 'count', 'relation', 'size', 'relation', 'existence'];
const LEVELS = ['easy', 'medium', 'hard'];

function problemFor(w: number, h: number, question: string, options: string[]): string {
  const opts = options.map((o, i) => `(${String.fromCharCode(65 + i)}) ${o}`).join('\n');
  return (
    `<image>You are a vision-language assistant ...\n<observe>...</observe>\n<scene>...</scene>\n<think>...</think>\n<answer>...</answer>\n` +
    `Image size: (${w} x ${h})\nNow answer the following question:\n\nQ. ${question}\nOptions:\n${opts}`
  );
}

function rowFor(i: number, images: StvqaImage | StvqaImage[], w = 640, h = 480): StvqaRow {
  const options = i % 3 === 0 ? ['left of', 'right of'] : ['left of', 'right of', 'behind', 'above'];
  const answerIndex = i % options.length;
  const letter = String.fromCharCode(65 + answerIndex);
  const text = options[answerIndex] as string;
  const scene = JSON.stringify({
    objects: [
      { id: 'chair.1', bbox: [64, 48, 320, 240] },
      { id: 'table.1', bbox: [330 + i, 200, 600, 460] },
    ],
    relationships: [{ subject: 'chair.1', predicate: text, object: 'table.1' }],
  });
  const question = `Where is the chair with respect to the table? (${i})`;
  const qwo = `${question}\nOptions:\n${options.map((o, k) => `(${String.fromCharCode(65 + k)}) ${o}`).join('\n')}`;
  return {
    image_id: String(1000 + i),
    images,
    problem: problemFor(w, h, question, options),
    question_only: question,
    answer: `<scene>${scene}</scene>\n<answer>${letter}</answer>`,
    answer_only: letter,
    answer_text: `<scene>${scene}</scene>\n<answer>${text}</answer>`,
    answer_text_only: text,
    answer_option_text: `<scene>${scene}</scene>\n<answer>(${letter}) ${text}</answer>`,
    answer_option_text_only: `(${letter}) ${text}`,
    category: CATS[i % CATS.length] as string,
    level: LEVELS[i % 3] as string,
    question_with_options: qwo,
    options,
    rating: 1 + (i % 10),
  };
}

const IMAGES: Uint8Array[] = [];
async function rows(n: number, opts: { list?: boolean; from?: number } = {}): Promise<StvqaRow[]> {
  while (IMAGES.length < 4) IMAGES.push(await image(640, 480, IMAGES.length % 2 ? 'png' : 'jpeg', IMAGES.length));
  const out: StvqaRow[] = [];
  for (let k = 0; k < n; k++) {
    const i = (opts.from ?? 0) + k;
    const one: StvqaImage = { bytes: IMAGES[i % 4] as Uint8Array, path: i % 2 ? `vg/${1000 + i}.png` : null };
    out.push(rowFor(i, opts.list ? [one, { bytes: IMAGES[(i + 1) % 4] as Uint8Array, path: null }] : one));
  }
  return out;
}

async function collect(path: string, options: Parameters<typeof readRows>[1] = {}): Promise<RowItem[]> {
  const items: RowItem[] = [];
  for await (const item of readRows(path, options)) items.push(item);
  return items;
}

/** Rows compared field by field, image bytes byte for byte. */
function sameRows(t: Test, got: StvqaRow[], want: StvqaRow[], message: string): void {
  t.equal(got.length, want.length, `${message}: row count`);
  const plain = (r: StvqaRow) => {
    const images = Array.isArray(r.images) ? r.images : [r.images];
    return { ...r, images: images.map((i) => ({ bytes: Buffer.from(i.bytes).toString('hex'), path: i.path ?? null })), list: Array.isArray(r.images) };
  };
  for (let i = 0; i < want.length; i++) t.same(plain(got[i] as StvqaRow), plain(want[i] as StvqaRow), `${message}: row ${i}`);
}

// ---------------------------------------------------------------------------

t.test('parquet round trip over several row groups', async (t) => {
  const want = await rows(7);
  const file = join(dir, 'rt.parquet');
  const result = await writeParquet(file, want, { rowGroupSize: 3 });
  t.same(result, { rows: 7, rowGroups: 3, path: file });
  t.equal(readdirSync(dir).filter((n) => n.includes('.tmp')).length, 0, 'no temporary file left');
  const items = await collect(file);
  sameRows(t, items.map((i) => i.row), want, 'parquet');
  t.same(items.map((i) => i.index), [0, 1, 2, 3, 4, 5, 6]);
  t.ok(items.every((i) => i.file === file));
  t.equal(await countRows(file), 7);
  t.ok(items[0]!.row.images instanceof Object && !Array.isArray(items[0]!.row.images), 'single image stays a struct');
});

t.test('the written footer: schema as pyarrow/datasets expect, and the huggingface features', async (t) => {
  const file = join(dir, 'schema.parquet');
  await writeParquet(file, await rows(2));
  const metadata = await readParquetMetadata(file);
  const description = describeParquet(metadata);
  t.same(
    description.columns,
    [
      { name: 'image_id', type: 'string' },
      { name: 'images', type: 'struct<bytes: binary, path: string>' },
      { name: 'problem', type: 'string' },
      { name: 'question_only', type: 'string' },
      { name: 'answer', type: 'string' },
      { name: 'answer_only', type: 'string' },
      { name: 'answer_text', type: 'string' },
      { name: 'answer_text_only', type: 'string' },
      { name: 'answer_option_text', type: 'string' },
      { name: 'answer_option_text_only', type: 'string' },
      { name: 'category', type: 'string' },
      { name: 'level', type: 'string' },
      { name: 'question_with_options', type: 'string' },
      { name: 'options', type: 'list<string>' },
      { name: 'rating', type: 'int32' },
    ],
    'column names, order and types',
  );
  // Physical layout, element by element.
  const byName = Object.fromEntries(metadata.schema.map((e, i) => [`${i}:${e.name}`, e]));
  const root = parquetSchema(metadata);
  const node = (name: string) => root.children.find((c) => c.element.name === name)!;
  for (const c of root.children) t.equal(c.element.repetition_type, 'OPTIONAL', `${c.element.name} is nullable`);
  const problem = node('problem').element;
  t.match(problem, { type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } });
  const images = node('images');
  t.equal(images.element.type, undefined, 'images is a group');
  t.same(images.children.map((c) => [c.element.name, c.element.type, c.element.repetition_type, c.element.logical_type?.type]), [
    ['bytes', 'BYTE_ARRAY', 'OPTIONAL', undefined],
    ['path', 'BYTE_ARRAY', 'OPTIONAL', 'STRING'],
  ]);
  const options = node('options');
  t.equal(options.element.converted_type, 'LIST');
  t.equal(options.children[0]!.element.name, 'list');
  t.equal(options.children[0]!.element.repetition_type, 'REPEATED');
  t.match(options.children[0]!.children[0]!.element, { name: 'item', type: 'BYTE_ARRAY', logical_type: { type: 'STRING' }, repetition_type: 'OPTIONAL' });
  t.match(node('rating').element, { type: 'INT32' });
  t.equal(node('rating').element.converted_type, undefined, 'plain INT32 reads as int32');
  t.ok(Object.keys(byName).length === 1 + 15 + 2 + 2, 'root + 15 columns + 2 struct fields + list/item');
  // Key-value metadata.
  const hf = metadata.key_value_metadata?.find((kv) => kv.key === 'huggingface');
  t.ok(hf, 'huggingface metadata present');
  const parsed = JSON.parse(hf!.value!);
  t.same(Object.keys(parsed), ['info']);
  t.same(parsed.info.features, stvqaFeatures('image'));
  t.same(parsed.info.features.images, { _type: 'Image' });
  t.same(parsed.info.features.options, { feature: { dtype: 'string', _type: 'Value' }, _type: 'Sequence' });
  t.same(parsed.info.features.rating, { dtype: 'int32', _type: 'Value' });
  t.same(parsed.info.features.problem, { dtype: 'string', _type: 'Value' });
  t.same(Object.keys(parsed.info.features), description.columns.map((c) => c.name), 'features in column order');
  t.same(description.codecs, ['SNAPPY']);
});

t.test('a list of images per row', async (t) => {
  const want = await rows(4, { list: true });
  const file = join(dir, 'list.parquet');
  await writeParquet(file, want, { rowGroupSize: 2 });
  const description = describeParquet(await readParquetMetadata(file));
  t.equal(description.columns.find((c) => c.name === 'images')?.type, 'list<struct<bytes: binary, path: string>>');
  t.same(description.features?.['images'], { feature: { _type: 'Image' }, _type: 'Sequence' });
  sameRows(t, (await collect(file)).map((i) => i.row), want, 'list layout');
  // A one-image list is unwrapped in the single-image layout; two are refused.
  const single = join(dir, 'single-from-list.parquet');
  const one = (await rows(1))[0]!;
  await writeParquet(single, [{ ...one, images: [one.images as StvqaImage] }], { images: 'image' });
  t.notOk(Array.isArray((await collect(single))[0]!.row.images));
  await t.rejects(writeParquet(join(dir, 'refused.parquet'), want, { images: 'image' }), /has 2 images; this file stores one image per row/);
  t.notOk(existsSync(join(dir, 'refused.parquet')));
});

t.test('hub-style shards and a directory of them', async (t) => {
  const want = await rows(7);
  const shards = join(dir, 'shards');
  const paths = await writeParquetShards(shards, 'train', want, { rowsPerFile: 3, rowGroupSize: 2 });
  t.same(
    paths.map((p) => p.slice(shards.length + 1)),
    ['train-00000-of-00003.parquet', 'train-00001-of-00003.parquet', 'train-00002-of-00003.parquet'],
  );
  t.same(readdirSync(shards).sort(), paths.map((p) => p.slice(shards.length + 1)), 'nothing else left in the directory');
  const items = await collect(shards);
  sameRows(t, items.map((i) => i.row), want, 'shards');
  t.same(items.map((i) => [i.file.slice(shards.length + 1, shards.length + 12), i.index]), [
    ['train-00000', 0], ['train-00000', 1], ['train-00000', 2],
    ['train-00001', 0], ['train-00001', 1], ['train-00001', 2],
    ['train-00002', 0],
  ]);
  t.equal(await countRows(shards), 7);
  const refused = join(dir, 'refused-shards');
  await t.rejects(
    writeParquetShards(refused, 'val', [...want.slice(0, 4), { ...want[4]!, problem: 'no size' }], { rowsPerFile: 3 }),
    { message: `${join(refused, 'val')} row 4: "problem" has no "Image size: (W x H)" with positive integers W and H` },
  );
  t.same(readdirSync(refused), [], 'no shard left behind');
});

t.test('JSONL round trip: images as files beside it, or inline base64', async (t) => {
  const want = await rows(5);
  const file = join(dir, 'rt.jsonl');
  const result = await writeJsonl(file, want);
  t.equal(result.rows, 5);
  t.equal(result.images, 5);
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.same(lines[0].images, { path: 'rt_images/000000-1000.jpg' });
  t.same(lines[1].images, { path: 'rt_images/000001-1001.png' });
  t.same(Object.keys(lines[0]).slice(0, 3), ['image_id', 'images', 'problem'], 'hub field order');
  t.ok(existsSync(join(dir, 'rt_images', '000001-1001.png')));
  const back = (await collect(file)).map((i) => i.row);
  // JSONL keeps the written file's path, not the original one.
  sameRows(t, back, want.map((r, i) => ({ ...r, images: { bytes: (r.images as StvqaImage).bytes, path: lines[i].images.path } })), 'jsonl');

  const embedded = join(dir, 'embedded.jsonl');
  await writeJsonl(embedded, want.slice(0, 2), { embedImages: true });
  const eLines = readFileSync(embedded, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.type(eLines[0].images.bytes_base64, 'string');
  sameRows(t, (await collect(embedded)).map((i) => i.row), want.slice(0, 2).map((r) => ({ ...r, images: { bytes: (r.images as StvqaImage).bytes, path: null } })), 'base64');

  // A bare path string and an absolute path are accepted too; blank lines are skipped.
  const abs = join(dir, 'rt_images', '000000-1000.jpg');
  const hand = join(dir, 'hand.jsonl');
  const base = { ...want[0]!, images: undefined } as Record<string, unknown>;
  writeFileSync(hand, `${JSON.stringify({ ...base, images: 'rt_images/000000-1000.jpg' })}\n\n${JSON.stringify({ ...base, images: [{ path: abs }] })}\n`);
  writeFileSync(hand, `${JSON.stringify({ ...base, image: { path: 'rt_images/000001-1001.png' } })}\n`, { flag: 'a' });
  const handRows = await collect(hand);
  t.equal(handRows.length, 3);
  t.same(handRows.map((r) => r.index), [0, 1, 2]);
  t.equal(Buffer.compare(Buffer.from((handRows[2]!.row.images as StvqaImage).bytes), Buffer.from(IMAGES[1]!)), 0, '"image" stands in for "images"');
  t.equal(Buffer.compare(Buffer.from((handRows[0]!.row.images as StvqaImage).bytes), Buffer.from(IMAGES[0]!)), 0);
  t.ok(Array.isArray(handRows[1]!.row.images));

  // A parquet Image stored by path only (bytes null) is read from beside the file.
  const pathOnly = join(dir, 'path-only.parquet');
  await writeParquet(pathOnly, [{ ...want[1]!, images: { bytes: null as unknown as Uint8Array, path: 'rt_images/000001-1001.png' } }], { validate: false });
  const [fromPath] = await collect(pathOnly);
  t.equal(Buffer.compare(Buffer.from((fromPath!.row.images as StvqaImage).bytes), Buffer.from(IMAGES[1]!)), 0, 'path-only image loaded');

  // JSONL -> parquet -> rows.
  const converted = join(dir, 'from-jsonl.parquet');
  await writeParquet(converted, back);
  sameRows(t, (await collect(converted)).map((i) => i.row), back, 'jsonl -> parquet');
});

t.test('a directory of parquet and JSONL files is read in name order', async (t) => {
  const mixed = join(dir, 'mixed');
  mkdirSync(mixed);
  const a = await rows(3);
  const b = await rows(2, { from: 3 });
  await writeJsonl(join(mixed, 'a.jsonl'), a);
  await writeParquet(join(mixed, 'b.parquet'), b);
  writeFileSync(join(mixed, 'README.md'), 'not data');
  const items = await collect(mixed);
  t.same(items.map((i) => [i.file.slice(mixed.length + 1), i.index]), [['a.jsonl', 0], ['a.jsonl', 1], ['a.jsonl', 2], ['b.parquet', 0], ['b.parquet', 1]]);
  t.same(items.map((i) => i.row.image_id), ['1000', '1001', '1002', '1003', '1004']);
  t.equal(await countRows(mixed), 5);
  const empty = join(dir, 'empty-dir');
  mkdirSync(empty);
  await t.rejects(collect(empty), /no \.parquet or \.jsonl files/);
  await t.rejects(collect(join(dir, 'nope.parquet')), /nope\.parquet: no such file or directory/);
  await t.rejects(collect(join(mixed, 'README.md')), /not a \.parquet or \.jsonl file/);
});

t.test('streaming: rows come out before later row groups are read', async (t) => {
  const big = join(dir, 'big.parquet');
  const writer = await StvqaParquetWriter.open(big, { rowGroupSize: 20 });
  for (const r of await rows(200)) writer.write(r);
  t.same(writer.close(), { rows: 200, rowGroups: 10, path: big });
  const events: number[] = [];
  const seenAt: number[] = [];
  let maxAhead = 0;
  let n = 0;
  for await (const item of readRows(big, { onBatch: (e) => events.push(e.rowStart), validateImages: true })) {
    t.equal(item.index, n++);
    seenAt.push(events.length);
    // rows read but not yet handed out
    const readSoFar = events.length * 20;
    maxAhead = Math.max(maxAhead, readSoFar - item.index);
  }
  t.equal(n, 200);
  t.same(events, [0, 20, 40, 60, 80, 100, 120, 140, 160, 180], 'one read per row group, in order');
  t.equal(seenAt[0], 1, 'first row yielded after reading only the first row group');
  t.equal(seenAt[20], 2, 'row 20 yielded after the second row group only');
  t.ok(maxAhead <= 20, `at most one row group in flight (${maxAhead})`);

  // One large row group with an offset index is read in slices.
  const one = join(dir, 'one-group.parquet');
  await writeParquet(one, await rows(200), { rowGroupSize: 200 });
  const slices: Array<[number, number]> = [];
  const firstSeen: number[] = [];
  let count = 0;
  const expected = await rows(200);
  for await (const item of readRows(one, { sliceRows: 50, onBatch: (e) => slices.push([e.rowStart, e.rowEnd]) })) {
    if (item.index === 0) firstSeen.push(slices.length);
    if (item.index % 37 === 0) sameRows(t, [item.row], [expected[item.index]!], `sliced row ${item.index}`);
    count++;
  }
  t.equal(count, 200);
  t.same(slices, [[0, 50], [50, 100], [100, 150], [150, 200]]);
  t.same(firstSeen, [1]);

  // Stopping early closes the file (no hang, no error).
  let taken = 0;
  for await (const _ of readRows(big)) if (++taken === 3) break;
  t.equal(taken, 3);
});

// ---------------------------------------------------------------------------
// Validation

t.test('validateRow names the row and each problem', async (t) => {
  const [good] = await rows(1);
  t.same(validateRow(good, 'x row 0'), []);
  const where = 'train-00000.parquet row 17';
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['missing problem', { problem: undefined }, /^train-00000\.parquet row 17: "problem" is missing$/],
    ['problem not a string', { problem: 5 }, /"problem" is a number, not a string/],
    ['no image size', { problem: 'Q. where?' }, /^train-00000\.parquet row 17: "problem" has no "Image size: \(W x H\)"/],
    ['zero image size', { problem: 'Image size: (0 x 480)' }, /"problem" has no "Image size: \(W x H\)"/],
    ['no scene', { answer_option_text: '<answer>(A) left of</answer>' }, /"answer_option_text" has no <scene>\.\.\.<\/scene>/],
    ['no answer', { answer_option_text: '<scene>{"objects": [], "relationships": []}</scene>' }, /"answer_option_text" has no <answer>\.\.\.<\/answer>/],
    ['bad bbox', { answer_option_text: '<scene>{"objects": [{"id": "a.1", "bbox": [1, 2]}], "relationships": []}</scene>\n<answer>(A) x</answer>' }, /"answer_option_text": ground truth object 0 \("a\.1"\) has no "bbox" of 4 numbers/],
    ['scene not JSON', { answer_option_text: '<scene>{oops</scene>\n<answer>(A) x</answer>' }, /"answer_option_text": ground truth <scene> is not a non-empty JSON object/],
    ['missing GT', { answer_option_text: null }, /"answer_option_text" is missing/],
    ['missing images', { images: undefined }, /"images" is missing/],
    ['no image bytes', { images: { bytes: null, path: 'x.jpg' } }, /"images" has no image bytes/],
    ['empty bytes', { images: { bytes: new Uint8Array(0), path: null } }, /"images" has no image bytes/],
    ['empty image list', { images: [] }, /"images" is an empty list/],
    ['one bad image of two', { images: [good!.images, { bytes: null, path: null }] }, /"images"\[1\] has no image bytes/],
    ['unknown category', { category: 'vibes' }, /"category" is "vibes", not one of relation, reach, existence, depth, instance_location, size, distance, orientation, count/],
    ['one option', { options: ['yes'] }, /"options" must be 2 to 4 strings \(got 1 strings\)/],
    ['five options', { options: ['a', 'b', 'c', 'd', 'e'] }, /"options" must be 2 to 4 strings/],
    ['options not strings', { options: ['a', 2] }, /"options" must be 2 to 4 strings \(got 2 values, not all strings\)/],
    ['rating not integer', { rating: 2.5 }, /"rating" is 2\.5, not a 32-bit integer/],
    ['level not string', { level: 3 }, /"level" is a number, not a string/],
  ];
  for (const [name, patch, pattern] of cases) {
    const problems = validateRow({ ...good, ...patch }, where);
    t.equal(problems.length, 1, `${name}: one problem (${problems.join(' | ')})`);
    t.match(problems[0] ?? '', pattern, name);
  }
  // Optional fields may be absent or null; empty category is not an error.
  const minimal = { problem: good!.problem, images: good!.images, answer_option_text: good!.answer_option_text };
  t.same(validateRow(minimal, where), []);
  t.same(validateRow({ ...minimal, category: '', options: null, rating: null, level: null }, where), []);
  t.same(validateRow({ ...minimal, answer_option_text: '<scene>{"objects": [], "relationships": []}</scene>\n<answer>(A) no</answer>' }, where), [], 'an empty GT scene is allowed');
  t.match(validateRow('nope', where), [/is a string, not an object/]);
  t.equal(validateRow({}, where).length, 3, 'all three required fields reported');
});

t.test('the reader reports invalid rows by file and row; --skip-invalid counts them', async (t) => {
  const good = await rows(8);
  const bad: StvqaRow[] = good.map((r) => ({ ...r }));
  const patch = (i: number, p: Record<string, unknown>) => Object.assign(bad[i] as object, p);
  patch(1, { problem: 'Q. Where is it?' });
  patch(2, { images: { bytes: new Uint8Array([1, 2, 3, 4, 5]), path: null } }); // unreadable image
  patch(3, { answer_option_text: '<answer>(A) left of</answer>' });
  patch(4, { images: { bytes: null, path: 'missing/nowhere.jpg' } });
  patch(5, { problem: null });
  patch(6, { category: 'vibes' });
  const file = join(dir, 'bad.parquet');
  await writeParquet(file, bad, { validate: false, rowGroupSize: 3 });

  await t.rejects(collect(file), { name: 'DataError', message: `${file} row 1: "problem" has no "Image size: (W x H)" with positive integers W and H`, row: 1 });
  const error = await collect(file).catch((e: unknown) => e);
  t.ok(error instanceof DataError);
  t.equal((error as DataError).file, file);

  const stats = { files: 0, rows: 0, invalid: 0, problems: [] as string[] };
  const skipped: number[] = [];
  const items = await collect(file, { skipInvalid: true, validateImages: true, stats, onInvalid: (_, w) => skipped.push(w.index) });
  t.same(items.map((i) => i.index), [0, 7]);
  t.same(skipped, [1, 2, 3, 4, 5, 6]);
  t.same({ ...stats, problems: undefined }, { files: 1, rows: 2, invalid: 6, problems: undefined });
  t.match(stats.problems, [
    `${file} row 1: "problem" has no "Image size: (W x H)" with positive integers W and H`,
    new RegExp(`^${file.replace(/[.]/g, '\\.')} row 2: "images" is not a readable image \\(`),
    `${file} row 3: "answer_option_text" has no <scene>...</scene>`,
    /row 4: "images" has no image bytes and its path "missing\/nowhere\.jpg" cannot be read \(no file .*nowhere\.jpg\)/,
    `${file} row 5: "problem" is missing`,
    /row 6: "category" is "vibes", not one of/,
  ]);
  // Without validateImages the unreadable image passes (only presence is checked).
  t.same((await collect(file, { skipInvalid: true })).map((i) => i.index), [0, 2, 7]);

  // The stream exposes its stats.
  const stream = readRows(file, { skipInvalid: true });
  for await (const _ of stream);
  t.equal(stream.stats.invalid, 5);

  // JSONL: bad JSON, a missing image file, a wrong type; rows named with their line.
  const jsonl = join(dir, 'bad.jsonl');
  const ok = { ...good[0]!, images: { bytes_base64: Buffer.from(IMAGES[0]!).toString('base64') } };
  writeFileSync(
    jsonl,
    [JSON.stringify(ok), '', '{not json', JSON.stringify({ ...ok, images: { path: 'gone.jpg' } }), JSON.stringify({ ...ok, options: 'A,B' }), JSON.stringify(ok)].join('\n') + '\n',
  );
  await t.rejects(collect(jsonl), new RegExp(`^${jsonl.replace(/[.]/g, '\\.')} row 1 \\(line 3\\): not valid JSON`));
  const jStats = { files: 0, rows: 0, invalid: 0, problems: [] as string[] };
  const jItems = await collect(jsonl, { skipInvalid: true, stats: jStats });
  t.same(jItems.map((i) => i.index), [0, 4]);
  t.equal(jStats.invalid, 3);
  t.match(jStats.problems[1], /row 2 \(line 4\): "images" has no image bytes and its path "gone\.jpg" cannot be read/);
  t.match(jStats.problems[2], /row 3 \(line 5\): "options" is a string, not a list of strings/);
  t.equal(await countRows(jsonl), 5);

  // Not a parquet file at all.
  const junk = join(dir, 'junk.parquet');
  writeFileSync(junk, 'this is not parquet');
  await t.rejects(collect(junk), /junk\.parquet: not a readable parquet file/);
});

t.test('the writer refuses invalid rows unless told not to validate', async (t) => {
  const [r] = await rows(1);
  await t.rejects(writeParquet(join(dir, 'w.parquet'), [r!, { ...r!, problem: 'no size' }]), /w\.parquet row 1: "problem" has no "Image size/);
  t.notOk(existsSync(join(dir, 'w.parquet')), 'no partial file');
  await t.rejects(writeJsonl(join(dir, 'w.jsonl'), [{ ...r!, answer_option_text: 'x' }]), /w\.jsonl row 0: "answer_option_text" has no <scene>/);
  t.notOk(existsSync(join(dir, 'w.jsonl')));
  // Optional fields absent: written as nulls, read back as nulls.
  const minimal = { problem: r!.problem, images: r!.images, answer_option_text: r!.answer_option_text } as StvqaRow;
  const file = join(dir, 'minimal.parquet');
  await writeParquet(file, [minimal]);
  const [back] = await collect(file);
  t.equal(back!.row.category, null);
  t.equal(back!.row.options, null);
  t.equal(back!.row.rating, null);
  t.equal(back!.row.problem, r!.problem);
  // Zero rows: still a valid file.
  const empty = join(dir, 'empty.parquet');
  await writeParquet(empty, []);
  t.equal(await countRows(empty), 0);
  t.same(await collect(empty), []);
});

// ---------------------------------------------------------------------------
// CLI

async function capture(run: () => Promise<void>): Promise<string> {
  const write = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    await run();
  } finally {
    process.stdout.write = write;
  }
  return out;
}

t.test('data inspect prints schema, counts and distributions, and writes an HTML page', async (t) => {
  const file = join(dir, 'inspect.parquet');
  await writeParquet(file, await rows(7), { rowGroupSize: 4 });
  const html = join(dir, 'inspect.html');
  const out = await capture(() => dataCommand(['inspect', file, '--rows', '3', '--html', html]));
  t.match(out, /schema, parquet, 2 row groups, SNAPPY/);
  t.match(out, /images\s+struct<bytes: binary, path: string>\s+Image/);
  t.match(out, /options\s+list<string>\s+Sequence\(Value\(string\)\)/);
  t.match(out, /rating\s+int32\s+Value\(int32\)/);
  t.match(out, /rows: 7 \(valid 7, invalid 0\)/);
  t.match(out, /category:\n\s+relation\s+3\s+42\.9%\n\s+reach\s+0\s+0\.0%\n\s+existence\s+1\s+14\.3%\n\s+depth\s+1\s+14\.3%/);
  t.match(out, /answer letter:\n\s+A\s+3\s+42\.9%\n\s+B\s+3\s+42\.9%\n\s+C\s+1\s+14\.3%\n\s+D\s+0\s+0\.0%/);
  t.match(out, /level:\n\s+easy\s+3\s+42\.9%\n\s+medium\s+2\s+28\.6%\n\s+hard\s+2\s+28\.6%/);
  t.match(out, /invalid rows: 0/);
  t.match(out, /wrote .*inspect\.html \(3 rows\)/);
  const page = readFileSync(html, 'utf8');
  t.equal(page.match(/<section class="row">/g)?.length, 3);
  t.equal(page.match(/<img src="data:image\/jpeg;base64,/g)?.length, 3, 'images inlined');
  t.equal(page.match(/<svg /g)?.length, 3, 'one box overlay per image');
  t.match(page, /width="512" height="384"/, '640 px images downscaled to 512');
  // chair.1 [64, 48, 320, 240] in the 640x480 frame, drawn at 0.8 scale.
  t.match(page, /<rect x="51.2" y="38.4" width="204.8" height="153.6"/);
  t.match(page, />chair\.1<\/text>/);
  t.match(page, /Where is the chair with respect to the table\? \(0\)/);
  t.match(page, /<li class="answer">left of<\/li>/);
  t.notMatch(page, /src="(?!data:)/, 'no external resources');
});

t.test('data inspect on a directory with invalid rows, JSONL schema, and errors', async (t) => {
  const d = join(dir, 'inspect-dir');
  mkdirSync(d);
  const good = await rows(4);
  await writeParquet(join(d, 'train-00000-of-00001.parquet'), good.slice(0, 2));
  await writeJsonl(join(d, 'val.jsonl'), good.slice(2));
  writeFileSync(join(d, 'zz.jsonl'), JSON.stringify({ ...good[0], images: { path: 'val_images/000000-1002.jpg' }, answer_option_text: '<answer>(A) x</answer>' }) + '\n');
  await t.rejects(capture(() => dataCommand(['inspect', d])), { name: 'CliError', message: /zz\.jsonl row 0 \(line 1\): "answer_option_text" has no <scene>/ });
  const out = await capture(() => dataCommand(['inspect', d, '--skip-invalid']));
  t.match(out, /: 3 files/);
  t.match(out, /schema, jsonl \(.*val\.jsonl, .*zz\.jsonl\):/);
  t.match(out, /images\s+struct<path: string>/);
  t.match(out, /rows: 5 \(valid 4, invalid 1\)/);
  t.match(out, /invalid rows: 1\n\s+.*zz\.jsonl row 0/);

  await t.rejects(dataCommand(['inspect']), { name: 'UsageError', exitCode: 2, message: /inspect takes one FILE or DIR/ });
  await t.rejects(dataCommand(['inspect', d, '--rows', '0']), { name: 'UsageError', exitCode: 2, message: /--rows must be a positive integer/ });
  await t.rejects(dataCommand(['inspect', d, '--bogus']), { name: 'UsageError', exitCode: 2, message: /^unknown option --bogus \(--help lists the options\)$/ });
  await t.rejects(dataCommand(['frobnicate']), { name: 'UsageError', exitCode: 2, message: /unknown subcommand "frobnicate"/ });
  await t.rejects(dataCommand(['inpsect', d]), { name: 'UsageError', message: /unknown subcommand "inpsect"; did you mean inspect\?/ });
  await t.rejects(dataCommand([]), { name: 'UsageError', exitCode: 2, message: /a subcommand is required/ });
  await t.rejects(dataCommand(['inspect', join(dir, 'missing.parquet')]), { name: 'CliError', message: /missing\.parquet: no such file or directory/ });
  const help = await capture(() => dataCommand(['--help']));
  t.match(help, /usage: spatialthinker data/);
  t.match(await capture(() => dataCommand(['inspect', '--help'])), /--html OUT\.html/);
});

t.test('data convert: parquet <-> JSONL and hub shards', async (t) => {
  const want = await rows(5);
  const src = join(dir, 'conv-src.parquet');
  await writeParquet(src, want);
  const jsonl = join(dir, 'conv.jsonl');
  t.match(await capture(() => dataCommand(['convert', src, jsonl])), /wrote .*conv\.jsonl \(5 rows, 5 images in .*conv_images\)/);
  const shardDir = join(dir, 'conv-shards');
  t.match(await capture(() => dataCommand(['convert', jsonl, shardDir, '--split', 'val', '--rows-per-file', '2'])), /wrote 3 files in .* \(5 rows\): val-00000-of-00003\.parquet, val-00001-of-00003\.parquet, val-00002-of-00003\.parquet/);
  const back = (await collect(shardDir)).map((i) => i.row);
  const viaJsonl = (await collect(jsonl)).map((i) => i.row);
  sameRows(t, back, viaJsonl, 'parquet -> jsonl -> shards');
  const out = join(dir, 'conv-back.parquet');
  await capture(() => dataCommand(['convert', shardDir, out, '--row-group-size', '2']));
  t.same(describeParquet(await readParquetMetadata(out)).rowGroups, [2, 2, 1]);
});

t.test('nodeType describes legacy list layouts as pyarrow would', async (t) => {
  const leaf = (name: string, extra: Record<string, unknown> = {}) => ({ element: { name, type: 'BYTE_ARRAY' as const, ...extra }, children: [], count: 1, path: [name] });
  t.equal(nodeType(leaf('tags', { repetition_type: 'REPEATED', converted_type: 'UTF8' }) as never), 'list<string>');
  const twoLevel = {
    element: { name: 'opts', converted_type: 'LIST' as const, num_children: 1 },
    children: [{ element: { name: 'array', repetition_type: 'REPEATED' as const, type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const }, children: [], count: 1, path: [] }],
    count: 2,
    path: [],
  };
  t.equal(nodeType(twoLevel as never), 'list<string>');
});
