import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import t from 'tap';

import {
  encodeSafetensors,
  f32ToBf16Bits,
  f32ToF16Bits,
  inspectModelWeights,
  inspectSafetensors,
  readSafetensors,
  type EncodableTensor,
} from '../lib/io/safetensors.js';

const FIXTURES = resolve('..', 'shared', 'fixtures', 'qwen25vl-tiny');
const CHECKPOINT = join(FIXTURES, 'checkpoint');
const CHECKPOINT_BF16 = join(FIXTURES, 'checkpoint-bf16');

const work = mkdtempSync(join(tmpdir(), 'st-safetensors-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
let counter = 0;
function tempPath(name = 'x.safetensors'): string {
  const dir = join(work, String(counter++));
  mkdirSync(dir);
  return join(dir, name);
}

function writeTemp(bytes: Uint8Array, name?: string): string {
  const path = tempPath(name);
  writeFileSync(path, bytes);
  return path;
}

/** A safetensors file from a raw header text and data, with an optional forged header length. */
function rawFile(header: string | object, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const text = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Round to nearest even bfloat16, written independently of the library's writer. */
function roundToBf16(value: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value, true);
  const bits = view.getUint32(0, true);
  const lower = bits & 0xffff;
  let upper = bits >>> 16;
  if (lower > 0x8000 || (lower === 0x8000 && (upper & 1) === 1)) upper += 1;
  view.setUint32(0, (upper << 16) >>> 0, true);
  return view.getFloat32(0, true);
}

t.test('the fixture checkpoint: names, shapes and dtypes', async (t) => {
  const weights = await inspectModelWeights(CHECKPOINT);
  t.equal(Object.keys(weights).length, 81);
  t.same(weights['model.embed_tokens.weight'], {
    dtype: 'F32',
    shape: [1024, 64],
    file: join(CHECKPOINT, 'model.safetensors'),
  });
  t.same(weights['visual.patch_embed.proj.weight']?.shape, [32, 3, 2, 14, 14]);
  t.same(weights['lm_head.weight']?.shape, [1024, 64]);
  t.same(weights['visual.blocks.0.norm1.weight']?.shape, [32]);
  t.same(weights['visual.merger.mlp.0.weight']?.shape, [128, 128]);
  t.same(weights['model.layers.1.self_attn.k_proj.bias']?.shape, [32]);
  t.same(Object.keys(weights), Object.keys(weights).slice().sort(), 'in name order');

  const header = await inspectSafetensors(join(CHECKPOINT, 'model.safetensors'));
  t.same(header.metadata, {
    format: 'pt',
    generator: 'tiny Qwen2.5-VL fixture checkpoint (float64 PyTorch reference)',
    preset: 'tiny',
    seed: '1234',
  });
  const names = Object.keys(header.tensors);
  t.equal(names[0], 'lm_head.weight', 'file order: by data offset');
  t.equal(names[1], 'model.embed_tokens.weight');
  t.equal(names.at(-1), 'visual.patch_embed.proj.weight');

  const bf16 = await inspectModelWeights(CHECKPOINT_BF16);
  t.same(Object.keys(bf16), Object.keys(weights));
  for (const [name, info] of Object.entries(bf16)) {
    t.equal(info.dtype, 'BF16', name);
    t.same(info.shape, weights[name]!.shape, name);
  }
});

t.test('BF16 checkpoint tensors are the F32 values rounded to bf16', async (t) => {
  const f32 = await readSafetensors(join(CHECKPOINT, 'model.safetensors'));
  const bf16 = await readSafetensors(join(CHECKPOINT_BF16, 'model.safetensors'));
  t.same(Object.keys(bf16.tensors), Object.keys(f32.tensors));
  let elements = 0;
  let changedByRounding = 0;
  let mismatches = 0;
  for (const [name, tensor] of Object.entries(f32.tensors)) {
    const rounded = bf16.tensors[name]!;
    t.equal(tensor.dtype, 'F32');
    t.equal(rounded.dtype, 'BF16');
    t.ok(tensor.data instanceof Float32Array && rounded.data instanceof Float32Array, `${name}: Float32Array`);
    const a = tensor.data as Float32Array;
    const b = rounded.data as Float32Array;
    t.equal(b.length, a.length, name);
    for (let i = 0; i < a.length; i++) {
      const expected = roundToBf16(a[i]!);
      if (!Object.is(b[i], expected)) mismatches++;
      if (expected !== a[i]) changedByRounding++;
      elements++;
    }
  }
  t.equal(mismatches, 0, `all ${elements} elements equal round-to-nearest-even(f32)`);
  t.ok(changedByRounding > elements / 2, 'the f32 values are not already bf16 (the check means something)');
  const lm = f32.tensors['lm_head.weight']!;
  t.same(lm.shape, [1024, 64]);
  t.equal(lm.data.length, 1024 * 64);
});

t.test('readSafetensors: some tensors, in the order asked, and a missing name', async (t) => {
  const path = join(CHECKPOINT, 'model.safetensors');
  const some = await readSafetensors(path, ['model.norm.weight', 'lm_head.weight', 'model.norm.weight']);
  t.same(Object.keys(some.tensors), ['model.norm.weight', 'lm_head.weight']);
  t.equal(some.tensors['model.norm.weight']!.data.length, 64);
  const none = await readSafetensors(path, []);
  t.same(none.tensors, {});
  await t.rejects(readSafetensors(path, ['model.norm.weight', 'lm_head.weights']), {
    message: `${path}: no tensor named 'lm_head.weights'`,
  });
});

t.test('round trip: every dtype through encodeSafetensors and readSafetensors', async (t) => {
  const tensors: Record<string, EncodableTensor> = {
    f64: { dtype: 'F64', shape: [2, 3], data: Float64Array.from([0, -0, 1.5, -1e300, Number.MIN_VALUE, Math.PI]) },
    f32: { dtype: 'F32', shape: [4], data: Float32Array.from([1, -2.5, 3.4028234663852886e38, 1e-45]) },
    f16: { dtype: 'F16', shape: [2, 2], data: Float32Array.from([1, -2, 0.333251953125, 65504]) },
    bf16: { dtype: 'BF16', shape: [3], data: Uint16Array.from([0x3f80, 0xc000, 0x7f80]) },
    i64: { dtype: 'I64', shape: [3], data: BigInt64Array.from([-(2n ** 63n), 2n ** 62n + 1n, -1n]) },
    i32: { dtype: 'I32', shape: [1, 3], data: Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 7]) },
    i16: { dtype: 'I16', shape: [2], data: Int16Array.from([-32768, 32767]) },
    i8: { dtype: 'I8', shape: [3], data: Int8Array.from([-128, 0, 127]) },
    u8: { dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 128, 254, 255]) },
    bool: { dtype: 'BOOL', shape: [2], data: Uint8Array.from([1, 0]) },
    scalar: { dtype: 'F32', shape: [], data: Float32Array.from([42]) },
    empty: { dtype: 'I32', shape: [0, 5], data: new Int32Array(0) },
  };
  const metadata = { format: 'pt', 'note "quoted"': 'tab\there, é, 😀, \u0001' };
  const bytes = encodeSafetensors(tensors, metadata);
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  t.equal(headerLength % 8, 0, 'header padded to 8 bytes');
  const header = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
  t.match(header, /^\{"__metadata__":/);
  t.same(Object.keys(JSON.parse(header)).slice(1), Object.keys(tensors).sort(), 'tensors sorted by name');

  const path = writeTemp(bytes);
  const back = await readSafetensors(path);
  t.same(back.metadata, metadata);
  t.same(Object.keys(back.tensors), Object.keys(tensors).sort(), 'file order = name order');
  const expected: Record<string, { ctor: unknown; values: unknown[] }> = {
    f64: { ctor: Float64Array, values: [0, -0, 1.5, -1e300, Number.MIN_VALUE, Math.PI] },
    f32: { ctor: Float32Array, values: [1, -2.5, 3.4028234663852886e38, Math.fround(1e-45)] },
    f16: { ctor: Float32Array, values: [1, -2, 0.333251953125, 65504] },
    bf16: { ctor: Float32Array, values: [1, -2, Infinity] },
    i64: { ctor: BigInt64Array, values: [-(2n ** 63n), 2n ** 62n + 1n, -1n] },
    i32: { ctor: Int32Array, values: [-(2 ** 31), 2 ** 31 - 1, 7] },
    i16: { ctor: Int16Array, values: [-32768, 32767] },
    i8: { ctor: Int8Array, values: [-128, 0, 127] },
    u8: { ctor: Uint8Array, values: [0, 1, 128, 254, 255] },
    bool: { ctor: Uint8Array, values: [1, 0] },
    scalar: { ctor: Float32Array, values: [42] },
    empty: { ctor: Int32Array, values: [] },
  };
  for (const [name, tensor] of Object.entries(tensors)) {
    const got = back.tensors[name]!;
    t.equal(got.dtype, tensor.dtype, `${name} dtype`);
    t.same(got.shape, tensor.shape, `${name} shape`);
    t.ok(got.data instanceof (expected[name]!.ctor as new () => object), `${name} array type`);
    const values = Array.from(got.data as ArrayLike<number | bigint>);
    const want = expected[name]!.values;
    t.equal(values.length, want.length, `${name} length`);
    t.ok(
      values.every((v, i) => Object.is(v, want[i])),
      `${name} values ${values.map(String).join(',')}`,
    );
  }

  const inspected = await inspectSafetensors(path);
  t.same(inspected.tensors.empty, { dtype: 'I32', shape: [0, 5] });
  t.same(inspected.metadata, metadata);
  t.same(Object.keys(await readSafetensors(writeTemp(encodeSafetensors({}))).then((r) => r.tensors)), []);
});

t.test('F16 conversion of special values', async (t) => {
  const bits = Uint16Array.from([0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x3c00, 0x3555]);
  const path = writeTemp(encodeSafetensors({ h: { dtype: 'F16', shape: [bits.length], data: bits } }));
  const { tensors } = await readSafetensors(path);
  const got = Array.from(tensors.h!.data as Float32Array);
  const want = [0, -0, 2 ** -24, -(2 ** -24), 1023 * 2 ** -24, 2 ** -14, 65504, -65504, Infinity, -Infinity, NaN, NaN, 1, 0.333251953125];
  t.equal(got.length, want.length);
  want.forEach((w, i) => t.ok(Object.is(got[i], w), `0x${bits[i]!.toString(16)} -> ${w} (got ${got[i]})`));

  // The writer's float32 -> half/bfloat16 rounding.
  t.equal(f32ToF16Bits(65504), 0x7bff);
  t.equal(f32ToF16Bits(65520), 0x7c00, 'halfway above the largest half rounds to infinity');
  t.equal(f32ToF16Bits(65519.99), 0x7bff);
  t.equal(f32ToF16Bits(2 ** -24), 0x0001);
  t.equal(f32ToF16Bits(2 ** -25), 0x0000, 'halfway to the smallest subnormal rounds to even (0)');
  t.equal(f32ToF16Bits(1.5 * 2 ** -24), 0x0002, 'halfway between subnormals 1 and 2 rounds to even (2)');
  t.equal(f32ToF16Bits(-0), 0x8000);
  t.equal(f32ToF16Bits(NaN) & 0x7e00, 0x7e00);
  t.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00, 'tie to even');
  t.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02, 'tie to even (up)');
  t.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80, 'bf16 tie to even');
  t.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  t.equal(f32ToBf16Bits(NaN) & 0x7fc0, 0x7fc0);
});

t.test('a sharded model directory', async (t) => {
  const dir = join(work, 'sharded');
  mkdirSync(dir);
  const shard1 = 'model-00001-of-00002.safetensors';
  const shard2 = 'model-00002-of-00002.safetensors';
  writeFileSync(
    join(dir, shard1),
    encodeSafetensors({
      'model.embed_tokens.weight': { dtype: 'BF16', shape: [4, 2], data: new Uint16Array(8) },
      'model.norm.weight': { dtype: 'F32', shape: [2], data: new Float32Array(2) },
    }),
  );
  writeFileSync(
    join(dir, shard2),
    encodeSafetensors({ 'lm_head.weight': { dtype: 'F32', shape: [4, 2], data: new Float32Array(8) } }),
  );
  const weightMap = {
    'lm_head.weight': shard2,
    'model.embed_tokens.weight': shard1,
    'model.norm.weight': shard1,
  };
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 56 }, weight_map: weightMap }));
  // A stray model.safetensors is ignored when there is an index.
  writeFileSync(join(dir, 'model.safetensors'), 'not read');
  const weights = await inspectModelWeights(dir);
  t.same(weights, {
    'lm_head.weight': { dtype: 'F32', shape: [4, 2], file: join(dir, shard2) },
    'model.embed_tokens.weight': { dtype: 'BF16', shape: [4, 2], file: join(dir, shard1) },
    'model.norm.weight': { dtype: 'F32', shape: [2], file: join(dir, shard1) },
  });

  // The index names a shard that is missing.
  const missingShard = join(work, 'missing-shard');
  mkdirSync(missingShard);
  writeFileSync(join(missingShard, shard1), readFileSync(join(dir, shard1)));
  writeFileSync(join(missingShard, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
  await t.rejects(inspectModelWeights(missingShard), {
    message: new RegExp(
      `^${escapeRegExp(join(missingShard, 'model.safetensors.index.json'))} names shard '${shard2}' .*` +
        `${escapeRegExp(join(missingShard, shard2))}: cannot open: No such file or directory$`,
    ),
  });

  // The index places a tensor in a shard that lacks it.
  const wrongShard = join(work, 'wrong-shard');
  mkdirSync(wrongShard);
  for (const shard of [shard1, shard2]) writeFileSync(join(wrongShard, shard), readFileSync(join(dir, shard)));
  writeFileSync(
    join(wrongShard, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { ...weightMap, 'model.norm.weight': shard2 } }),
  );
  await t.rejects(inspectModelWeights(wrongShard), {
    message: new RegExp(`^${escapeRegExp(join(wrongShard, shard2))}: no tensor named 'model.norm.weight' \\(`),
  });

  // An index without a weight_map, and one whose shard escapes the directory.
  const noMap = join(work, 'no-map');
  mkdirSync(noMap);
  writeFileSync(join(noMap, 'model.safetensors.index.json'), JSON.stringify({ metadata: {} }));
  await t.rejects(inspectModelWeights(noMap), { message: /model\.safetensors\.index\.json: no "weight_map" object/ });
  writeFileSync(join(noMap, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../x.safetensors' } }));
  await t.rejects(inspectModelWeights(noMap), { message: /names shard '\.\.\/x\.safetensors', which is not a file inside/ });
  const badIndex = '{"weight_map": {"a": "x.safetensors",}}';
  writeFileSync(join(noMap, 'model.safetensors.index.json'), badIndex);
  await t.rejects(inspectModelWeights(noMap), {
    message: `${join(noMap, 'model.safetensors.index.json')}: not valid JSON at byte ${badIndex.indexOf(',}') + 1}: unexpected '}', expected a string key`,
  });
});

t.test('a directory with no weights, and a missing directory', async (t) => {
  const empty = join(work, 'empty');
  mkdirSync(empty);
  await t.rejects(inspectModelWeights(empty), { message: `${empty}: no model.safetensors or model.safetensors.index.json` });
  const missing = join(work, 'does-not-exist');
  await t.rejects(inspectModelWeights(missing), {
    message: new RegExp(`^${escapeRegExp(missing)}: no model\\.safetensors or model\\.safetensors\\.index\\.json`),
  });
  const single = join(work, 'single');
  mkdirSync(single);
  writeFileSync(join(single, 'model.safetensors'), rawFile('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 7]}}', new Uint8Array(8)));
  await t.rejects(inspectModelWeights(single), { message: /model\.safetensors: tensor 'w': data_offsets \[0, 7\] hold 7 bytes/ });
});

t.test('corrupt files are rejected with the file and tensor named', async (t) => {
  const good = encodeSafetensors({
    a: { dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
    b: { dtype: 'I64', shape: [3], data: BigInt64Array.from([1n, 2n, 3n]) },
  });
  const rejects = async (bytes: Uint8Array, message: string | RegExp, name = 'x.safetensors') => {
    const path = writeTemp(bytes, name);
    const expected =
      typeof message === 'string' ? `${path}: ${message}` : new RegExp(`^${escapeRegExp(path)}: ${message.source}`);
    await t.rejects(readSafetensors(path), { message: expected }, String(message));
    await t.rejects(inspectSafetensors(path), { message: expected });
  };

  // Truncated files: cut the data, the header, the header length.
  await rejects(good.subarray(0, good.length - 10), /tensor 'b': data_offsets \[16, 40\] reach beyond the data section \(30 bytes\)/);
  await rejects(good.subarray(0, 20), /truncated: header length \d+ exceeds the file \(20 bytes\)/);
  await rejects(good.subarray(0, 5), 'truncated: 5 bytes, too short for the 8-byte header length');
  await rejects(new Uint8Array(0), 'truncated: 0 bytes, too short for the 8-byte header length');
  await rejects(rawFile('{}', new Uint8Array(100), 5000n), 'truncated: header length 5000 exceeds the file (110 bytes)');
  await rejects(rawFile('{}', new Uint8Array(0), 200n * 1024n * 1024n), /header length 209715200 exceeds the 100 MiB limit/);

  // The header.
  const invalid = '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8],}}';
  await rejects(rawFile(invalid, new Uint8Array(8)), `header is not valid JSON at byte ${invalid.indexOf(',}') + 1} of the header: unexpected '}', expected a string key`);
  await rejects(rawFile('[1, 2]'), 'header is not a JSON object but an array');
  await rejects(rawFile('{} x'), /header is not valid JSON at byte 3 of the header: unexpected 'x' after the JSON value/);
  await rejects(rawFile('{"a": "\\ud800"}'), /header is not valid JSON at byte 7 of the header: high surrogate not followed by a \\u low surrogate/);
  await rejects(rawFile('['.repeat(65) + ']'.repeat(65)), /header is not valid JSON at byte 64 of the header: nesting deeper than 64 levels/);
  await rejects(rawFile('{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, "a": {}}', new Uint8Array(4)), /header is not valid JSON at byte \d+ of the header: duplicate key "a"/);
  await rejects(rawFile({ __metadata__: { k: 1 } }), `"__metadata__" entry 'k' is not a string but a number`);
  await rejects(rawFile({ a: [] }), `tensor 'a' is not an object but an array`);
  await rejects(rawFile({ a: { dtype: 'F32', shape: [1] } }), `tensor 'a' has no "data_offsets"`);

  // Offsets.
  await rejects(
    rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(8)),
    "tensor 'a': data_offsets [4, 12] reach beyond the data section (8 bytes)",
  );
  await rejects(
    rawFile({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, new Uint8Array(8)),
    "tensor 'a': data_offsets [8, 0] end before they begin",
  );
  await rejects(
    rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, new Uint8Array(8)),
    `tensor 'a' has "data_offsets" that are not two non-negative integers`,
  );
  await rejects(
    rawFile(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        z: { dtype: 'U8', shape: [0], data_offsets: [4, 4] },
        b: { dtype: 'I16', shape: [2], data_offsets: [6, 10] },
      },
      new Uint8Array(12),
    ),
    "tensors 'a' [0, 8] and 'b' [6, 10] overlap",
  );
  await rejects(
    rawFile({ 'visual.blocks.0.norm1.weight': { dtype: 'F32', shape: [4], data_offsets: [10, 20] } }, new Uint8Array(24)),
    "tensor 'visual.blocks.0.norm1.weight': data_offsets [10, 20] hold 10 bytes but shape [4] of F32 needs 16",
    'model.safetensors',
  );

  // Dtypes and shapes.
  await rejects(
    rawFile({ a: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)),
    /tensor 'a' has unknown dtype 'F8_E4M3' \(8-bit floats are not supported; supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL\)/,
  );
  await rejects(rawFile({ a: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), /tensor 'a' has unknown dtype 'Q4' \(supported: /);
  await rejects(
    rawFile({ a: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 0] } }),
    "tensor 'a' has shape entry -1; shape entries must be non-negative integers",
  );
  await rejects(
    rawFile({ a: { dtype: 'F32', shape: [2.5], data_offsets: [0, 0] } }),
    "tensor 'a' has shape entry 2.5; shape entries must be non-negative integers",
  );
  await rejects(
    rawFile({ a: { dtype: 'F32', shape: ['2'], data_offsets: [0, 0] } }),
    "tensor 'a' has a shape entry that is a string; shape entries must be non-negative integers",
  );
  await rejects(
    rawFile('{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}'),
    "tensor 'a': shape [4294967296, 4294967296] has too many elements",
  );
  // A zero dimension makes any other dimension harmless.
  const emptyOk = writeTemp(rawFile('{"a": {"dtype": "F32", "shape": [0, 9007199254740991], "data_offsets": [0, 0]}}'));
  t.same((await inspectSafetensors(emptyOk)).tensors.a, { dtype: 'F32', shape: [0, 9007199254740991] });

  // Missing files, directories.
  const missing = join(work, 'missing.safetensors');
  await t.rejects(readSafetensors(missing), { message: `${missing}: cannot open: No such file or directory` });
  await t.rejects(inspectSafetensors(work), { message: `${work}: is a directory, not a file` });

  // Unknown keys inside a tensor entry are ignored (as the reference reader does); padding is allowed.
  const extra = writeTemp(rawFile('{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2], "note": 1}}      ', Uint8Array.from([7, 9])));
  t.same(Array.from((await readSafetensors(extra)).tensors.a!.data as Uint8Array), [7, 9]);
});

t.test('encodeSafetensors checks its input', async (t) => {
  t.throws(() => encodeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), {
    message: "encodeSafetensors: tensor 'a': data holds 2 elements but shape [3] needs 3",
  });
  t.throws(
    () => encodeSafetensors({ a: { dtype: 'I64', shape: [1], data: new Int32Array(1) } as unknown as EncodableTensor }),
    { message: "encodeSafetensors: tensor 'a': I64 data must be a BigInt64Array" },
  );
  t.throws(() => encodeSafetensors({ a: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }), RangeError);
  t.throws(
    () => encodeSafetensors({ a: { dtype: 'F8_E4M3', shape: [1], data: new Uint8Array(1) } as unknown as EncodableTensor }),
    { message: /unknown dtype 'F8_E4M3'/ },
  );
  t.throws(() => encodeSafetensors({ __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }), RangeError);
});

t.test('argument errors', async (t) => {
  await t.rejects(readSafetensors(42 as unknown as string), TypeError);
  await t.rejects(readSafetensors(join(CHECKPOINT, 'model.safetensors'), [1] as unknown as string[]), {
    message: 'readSafetensors: `names[0]` must be a string',
  });
  await t.rejects(inspectModelWeights(''), TypeError);
});
