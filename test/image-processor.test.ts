import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';

import { readSafetensors } from '../lib/io/safetensors.js';
import { loadImage, type RgbImage } from '../lib/vision/image.js';
import { ImageProcessor, QWEN2VL_PROCESSOR_DEFAULTS } from '../lib/vision/processor.js';
import { resizeBicubicU8 } from '../lib/vision/resize.js';
import { roundHalfEven, smartResize } from '../lib/vision/smart-resize.js';
import { rng } from './helpers.js';

const FIXTURES = resolve('..', 'shared', 'fixtures', 'qwen25vl-tiny');
const noFixtures = existsSync(join(FIXTURES, 'manifest.json'))
  ? false
  : `the golden fixtures are not at ${FIXTURES}`;

// ---------------------------------------------------------------------------
// An independent restatement of the resampler, line by line from
// shared/spec/qwen25vl.md §3.2 (plain float64, literal polynomials, division
// by the stretch, Math.round-based half-away rounding), to check the native
// code on shapes the fixtures do not cover.
function keys(x: number): number {
  const a = Math.abs(x);
  if (a < 1) return 1.5 * a ** 3 - 2.5 * a ** 2 + 1;
  if (a < 2) return -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2;
  return 0;
}
const halfAway = (v: number) => Math.sign(v) * Math.floor(Math.abs(v) + 0.5);

function specAxis(src: Uint8Array, dims: number[], axis: number, out: number): { data: Uint8Array; dims: number[] } {
  const [h, w, c] = dims as [number, number, number];
  const inSize = axis === 0 ? h : w;
  const scale = inSize / out;
  const fs = Math.max(scale, 1);
  const support = 2 * fs;
  const newDims = axis === 0 ? [out, w, c] : [h, out, c];
  const dst = new Uint8Array(newDims[0]! * newDims[1]! * c);
  for (let i = 0; i < out; i++) {
    const center = (i + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5));
    let weights: number[] = [];
    for (let k = 0; k < xmax - xmin; k++) weights.push(keys((xmin + k - center + 0.5) / fs));
    const sum = weights.reduce((a, b) => a + b, 0);
    if (sum !== 0) weights = weights.map((x) => x / sum);
    const fixed = weights.map((x) => halfAway(x * 2 ** 22));
    const lines = axis === 0 ? w : h;
    for (let l = 0; l < lines; l++)
      for (let ch = 0; ch < c; ch++) {
        let acc = 2 ** 21;
        for (let k = 0; k < fixed.length; k++) {
          const s = xmin + k;
          const idx = axis === 0 ? (s * w + l) * c + ch : (l * w + s) * c + ch;
          acc += src[idx]! * fixed[k]!;
        }
        const v = Math.min(255, Math.max(0, Math.floor(acc / 2 ** 22)));
        const o = axis === 0 ? (i * w + l) * c + ch : (l * out + i) * c + ch;
        dst[o] = v;
      }
  }
  return { data: dst, dims: newDims };
}

function specResize(src: Uint8Array, h: number, w: number, c: number, oh: number, ow: number): Uint8Array {
  let cur = { data: src, dims: [h, w, c] };
  if (ow !== w) cur = specAxis(cur.data, cur.dims, 1, ow);
  if (oh !== h) cur = specAxis(cur.data, cur.dims, 0, oh);
  return cur.data === src ? src.slice() : cur.data;
}

function randomImage(seed: number, n: number, edges = false): Uint8Array {
  const random = rng(seed);
  // Hard 0/255 edges drive the sums past [0, 255] and exercise the clamping.
  return Uint8Array.from({ length: n }, () => (edges ? (random() < 0.5 ? 0 : 255) : Math.floor(random() * 256)));
}

function firstDifference(a: Uint8Array, b: Uint8Array): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `byte ${i}: ${a[i]} vs ${b[i]}`;
  return 'none';
}

// ---------------------------------------------------------------------------
t.test('smart_resize: the spec examples', async (t) => {
  t.same(smartResize(150, 200), { height: 140, width: 196 });
  t.same(smartResize(70, 126), { height: 56, width: 112 }, '126/28 = 4.5 rounds half to even: 4');
  t.same(smartResize(40, 50, { minPixels: 3136 }), { height: 56, width: 84 }, 'min branch, ceil of the original size');
  t.same(smartResize(480, 640), { height: 476, width: 644 });
  t.same(smartResize(1000, 1000, { maxPixels: 1003520 }), { height: 980, width: 980 }, 'max branch, floor');
  t.same(smartResize(1080, 1920, { maxPixels: 12845056 }), { height: 1092, width: 1932 });
  t.same(smartResize(28, 28), { height: 56, width: 56 }, 'the 3136 default min_pixels');
  t.same(smartResize(28, 5600), { height: 28, width: 5600 }, 'aspect ratio exactly 200 is allowed');
});

t.test('smart_resize: Python round() semantics', async (t) => {
  t.same([0.5, 1.5, 2.5, 3.5, 4.4, 4.6, 7].map(roundHalfEven), [0, 2, 2, 4, 4, 5, 7]);
  t.same(smartResize(42, 98), { height: 56, width: 112 }, '1.5 -> 2 and 3.5 -> 4');
});

t.test('smart_resize: errors', async (t) => {
  t.throws(() => smartResize(27, 100), { message: /height 27 and width 100 is too small.*at least 28/ });
  t.throws(() => smartResize(100, 10), { message: /height 100 and width 10 is too small/ });
  t.throws(() => smartResize(29, 6000), { message: /height 29 and width 6000 has an aspect ratio of 206\.8.*at most 200/ });
  t.throws(() => smartResize(28, 5600, { maxPixels: 100000 }), { message: /cannot fit maxPixels 100000/ });
  t.throws(() => smartResize(1.5, 100), RangeError);
  t.throws(() => smartResize(100, 100, { minPixels: 10, maxPixels: 5 }), { message: /minPixels \(10\) is larger than maxPixels/ });
});

// ---------------------------------------------------------------------------
t.test('bicubic: the same size returns an equal copy', async (t) => {
  const px = randomImage(1, 5 * 7 * 3);
  const out = await resizeBicubicU8(px, 5, 7, 3, 5, 7);
  t.same(Array.from(out), Array.from(px));
  out[0] = out[0]! ^ 0xff;
  t.not(out[0], px[0], 'not a view of the input');
});

t.test('bicubic: a constant image stays constant', async (t) => {
  const shapes: [number, number, number, number, number][] = [
    [10, 10, 3, 37, 23], // up
    [64, 48, 3, 5, 7], // down
    [30, 30, 1, 30, 91], // width only
    [30, 30, 4, 9, 30], // height only
    [1, 1, 3, 17, 29], // from a single pixel
    [600, 2, 2, 1, 1], // to a single pixel
    [3, 1000, 5, 300, 2], // extreme ratios, 5 channels
  ];
  for (const [h, w, c, oh, ow] of shapes)
    for (const value of [0, 1, 128, 254, 255]) {
      const out = await resizeBicubicU8(new Uint8Array(h * w * c).fill(value), h, w, c, oh, ow);
      t.equal(out.length, oh * ow * c);
      t.ok(out.every((v) => v === value), `${h}x${w}x${c} -> ${oh}x${ow} stays ${value}`);
    }
});

t.test('bicubic: agrees with a restatement of the spec on every kind of shape', async (t) => {
  const shapes: [number, number, number, number, number][] = [
    [1, 9, 3, 1, 4], // 1xN, width only
    [9, 1, 1, 4, 1], // Nx1, height only
    [1, 12, 3, 5, 30], // 1xN up
    [12, 1, 2, 30, 3], // Nx1 up
    [13, 17, 3, 13, 40], // width only, up
    [13, 17, 4, 40, 17], // height only, up
    [40, 50, 3, 56, 84], // both up (the min-pixels fixture's sizes)
    [150, 200, 3, 140, 196], // both down (the default fixture's sizes)
    [31, 37, 5, 29, 41], // mixed, 5 channels
    [2, 2, 1, 300, 1], // extreme upscale
    [5, 700, 3, 3, 2], // extreme downscale
    [300, 3, 3, 1, 7], // tall to wide
    [64, 64, 3, 1, 1], // to one pixel
  ];
  for (const [i, [h, w, c, oh, ow]] of shapes.entries())
    for (const edges of [false, true]) {
      const px = randomImage(100 + i, h * w * c, edges);
      const got = await resizeBicubicU8(px, h, w, c, oh, ow);
      const want = specResize(px, h, w, c, oh, ow);
      t.equal(firstDifference(got, want), 'none', `${h}x${w}x${c} -> ${oh}x${ow}${edges ? ' (hard edges)' : ''}`);
    }
});

t.test('bicubic: argument errors name the field', async (t) => {
  const px = new Uint8Array(4 * 6 * 3);
  const ok = { pixels: px, height: 4, width: 6, channels: 3, outHeight: 2, outWidth: 2 };
  const call = (args: Record<string, unknown>) => {
    const a = { ...ok, ...args };
    return resizeBicubicU8(a.pixels as Uint8Array, a.height as number, a.width as number, a.channels as number, a.outHeight as number, a.outWidth as number);
  };
  t.throws(() => call({ pixels: new Float32Array(72) }), { name: 'TypeError', message: /`pixels` must be a Uint8Array/ });
  t.throws(() => call({ height: '4' }), { name: 'TypeError', message: /`height` must be a number/ });
  t.throws(() => call({ outWidth: 0 }), { name: 'RangeError', message: /`outWidth` must be an integer from 1/ });
  t.throws(() => call({ channels: 2.5 }), { name: 'RangeError', message: /`channels` must be an integer/ });
  t.throws(() => call({ width: 5 }), { name: 'RangeError', message: /`pixels` holds 72 bytes but height x width x channels = 4 x 5 x 3 = 60/ });
  t.throws(() => call({ outHeight: 100000, outWidth: 100000 }), { name: 'RangeError', message: /output image/ });
});

// ---------------------------------------------------------------------------
/** The spec's normalisation of one byte, in float32 steps (§3.3). */
function normalised(v: number, c: number): number {
  const x = Math.fround(v * (1 / 255));
  const mean = Math.fround(QWEN2VL_PROCESSOR_DEFAULTS.imageMean[c]!);
  const std = Math.fround(QWEN2VL_PROCESSOR_DEFAULTS.imageStd[c]!);
  return Math.fround(Math.fround(x - mean) / std);
}

t.test('processor: patches follow the layout of spec §3.4', async (t) => {
  // 56 x 84 is already a smart_resize fixed point, so the resize is a copy.
  const image: RgbImage = { data: randomImage(7, 56 * 84 * 3), width: 84, height: 56 };
  const proc = new ImageProcessor();
  const out = await proc.process([image]);
  t.same(out.gridThw, [[1, 4, 6]]);
  t.same(out.imageTokens, [6]);
  t.same(Array.from(out.resized[0]!.data), Array.from(image.data));
  const [gt, gh, gw] = out.gridThw[0]!;
  const hB = gh / 2, wB = gw / 2;
  let bad = 0;
  for (let tt = 0; tt < gt; tt++)
    for (let bh = 0; bh < hB; bh++)
      for (let bw = 0; bw < wB; bw++)
        for (let ih = 0; ih < 2; ih++)
          for (let iw = 0; iw < 2; iw++)
            for (let c = 0; c < 3; c++)
              for (let f = 0; f < 2; f++)
                for (let i = 0; i < 14; i++)
                  for (let j = 0; j < 14; j++) {
                    const row = ((tt * hB + bh) * wB + bw) * 4 + ih * 2 + iw;
                    const col = ((c * 2 + f) * 14 + i) * 14 + j;
                    const y = (bh * 2 + ih) * 14 + i, x = (bw * 2 + iw) * 14 + j;
                    const want = normalised(image.data[(y * 84 + x) * 3 + c]!, c);
                    if (out.pixelValues[row * 1176 + col] !== want) bad++;
                  }
  t.equal(out.pixelValues.length, 24 * 1176);
  t.equal(bad, 0, 'every element equals the spec formula exactly');
});

t.test('processor: several images concatenate their rows', async (t) => {
  const a: RgbImage = { data: randomImage(11, 150 * 200 * 3), width: 200, height: 150 };
  const b: RgbImage = { data: randomImage(12, 40 * 50 * 3), width: 50, height: 40 };
  const proc = new ImageProcessor({ maxPixels: 12845056 });
  const [oa, ob, both] = await Promise.all([proc.process([a]), proc.process([b]), proc.process([a, b])]);
  t.same(both.gridThw, [[1, 10, 14], [1, 4, 6]]);
  t.same(both.imageTokens, [35, 6]);
  t.equal(both.pixelValues.length, oa.pixelValues.length + ob.pixelValues.length);
  t.ok(both.pixelValues.subarray(0, oa.pixelValues.length).every((v, i) => v === oa.pixelValues[i]), 'first image rows');
  t.ok(both.pixelValues.subarray(oa.pixelValues.length).every((v, i) => v === ob.pixelValues[i]), 'second image rows');
  const none = await proc.process([]);
  t.same([none.pixelValues.length, none.gridThw, none.imageTokens], [0, [], []]);
});

t.test('processor: bad images are rejected with their index', async (t) => {
  const proc = new ImageProcessor();
  await t.rejects(proc.process([{ data: new Uint8Array(10), width: 2, height: 2 }]), { message: /images\[0\]\.data holds 10 bytes/ });
  await t.rejects(proc.process([{ data: new Uint8Array(20 * 30 * 3), width: 30, height: 20 }]), {
    message: /images\[0\]: smartResize: image of height 20 and width 30 is too small/,
  });
  await t.rejects(proc.process({} as unknown as RgbImage[]), TypeError);
});

t.test('processor: configuration', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-processor-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'preprocessor_config.json');

  const defaults = ImageProcessor.fromConfig({});
  t.same(defaults.config, QWEN2VL_PROCESSOR_DEFAULTS, 'absent fields take the reference class defaults');
  t.equal(defaults.config.maxPixels, 1003520);
  t.equal(ImageProcessor.fromConfig({ size: { shortest_edge: 100, longest_edge: 200000 } }).config.maxPixels, 200000);
  t.equal(
    ImageProcessor.fromConfig({ size: { shortest_edge: 100, longest_edge: 200000 }, max_pixels: 300000 }).config.maxPixels,
    300000,
    'max_pixels wins over size.longest_edge',
  );

  const bad: [unknown, RegExp][] = [
    [null, /cfg: expected a JSON object/],
    [[1, 2], /cfg: expected a JSON object/],
    [{ min_pixels: 'abc' }, /cfg: `min_pixels` must be a positive integer \(got "abc"\)/],
    [{ max_pixels: -5 }, /cfg: `max_pixels` must be a positive integer/],
    [{ min_pixels: 5000, max_pixels: 4000 }, /`min_pixels` \(5000\) is larger than `max_pixels` \(4000\)/],
    [{ patch_size: 0 }, /`patch_size` must be an integer from 1 to 4096/],
    [{ merge_size: 1.5 }, /`merge_size` must be an integer/],
    [{ temporal_patch_size: '2' }, /`temporal_patch_size` must be an integer/],
    [{ image_mean: [0.5, 0.5] }, /`image_mean` must be a list of 3 finite numbers/],
    [{ image_std: [0.5, 0, 0.5] }, /`image_std` must be positive/],
    [{ rescale_factor: 0 }, /`rescale_factor` must be a positive number/],
    [{ do_normalize: 'yes' }, /`do_normalize` must be true or false/],
    [{ size: 5 }, /`size` must be an object/],
    [{ size: { shortest_edge: -1 } }, /`size\.shortest_edge` must be a positive integer/],
  ];
  for (const [config, message] of bad) t.throws(() => ImageProcessor.fromConfig(config, 'cfg'), { message }, String(message));
  t.throws(() => new ImageProcessor({ patchSize: -1 }), { message: /`patchSize` must be/ });

  await t.rejects(ImageProcessor.fromDirectory(join(dir, 'nowhere')), {
    message: new RegExp(`cannot read the image processor config ${join(dir, 'nowhere', 'preprocessor_config.json').replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}: no such file`),
  });
  writeFileSync(file, '{ "min_pixels": 3136, ');
  await t.rejects(ImageProcessor.fromDirectory(dir), { message: /preprocessor_config\.json: not valid JSON/ });
  writeFileSync(file, JSON.stringify({ merge_size: 0 }));
  await t.rejects(ImageProcessor.fromDirectory(dir), { message: /preprocessor_config\.json: `merge_size` must be/ });

  // do_resize false: no resampling, sides must be multiples of 28.
  const plain = ImageProcessor.fromConfig({ do_resize: false });
  const img: RgbImage = { data: randomImage(3, 28 * 56 * 3), width: 56, height: 28 };
  t.same((await plain.process([img])).gridThw, [[1, 2, 4]]);
  await t.rejects(plain.process([{ data: new Uint8Array(30 * 56 * 3), width: 56, height: 30 }]), { message: /multiples of 28/ });
  // do_rescale / do_normalize false: raw bytes as floats.
  const raw = ImageProcessor.fromConfig({ do_rescale: false, do_normalize: false });
  const rawOut = await raw.process([{ data: new Uint8Array(56 * 56 * 3).fill(200), width: 56, height: 56 }]);
  t.ok(rawOut.pixelValues.every((v) => v === 200));
});

// ---------------------------------------------------------------------------
t.test('loadImage', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-image-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const grey = await sharp(Buffer.from([0, 50, 100, 200, 255, 7]), { raw: { width: 3, height: 2, channels: 1 } }).png().toBuffer();
  const g = await loadImage(grey);
  t.same([g.width, g.height], [3, 2]);
  t.same(Array.from(g.data), [0, 0, 0, 50, 50, 50, 100, 100, 100, 200, 200, 200, 255, 255, 255, 7, 7, 7], 'grey expands to RGB');

  const rgba = await sharp(Buffer.from([10, 20, 30, 0, 40, 50, 60, 128]), { raw: { width: 2, height: 1, channels: 4 } }).png().toBuffer();
  t.same(Array.from((await loadImage(rgba)).data), [10, 20, 30, 40, 50, 60], 'alpha dropped, colours kept (no compositing)');

  // EXIF orientation 6 (rotate 90) is ignored, as PIL's Image.open does.
  const oriented = await sharp(Buffer.from([255, 0, 0, 0, 0, 255]), { raw: { width: 2, height: 1, channels: 3 } })
    .withMetadata({ orientation: 6 })
    .jpeg({ quality: 100 })
    .toBuffer();
  const o = await loadImage(oriented);
  t.same([o.width, o.height], [2, 1], 'not rotated');

  // An embedded ICC profile is ignored (PIL's convert('RGB') ignores it): the
  // stored samples come back, not sharp's colour-managed conversion of them.
  const tagged = await sharp(Buffer.from([200, 30, 40, 10, 220, 90]), { raw: { width: 2, height: 1, channels: 3 } })
    .withIccProfile('p3')
    .png()
    .toBuffer();
  t.ok((await sharp(tagged).metadata()).hasProfile);
  const storedSamples = await sharp(tagged, { ignoreIcc: true }).raw().toBuffer();
  const managed = await sharp(tagged).raw().toBuffer();
  t.notSame(Array.from(storedSamples), Array.from(managed), 'the profile matters for this image');
  t.same(Array.from((await loadImage(tagged)).data), Array.from(storedSamples), 'stored samples, not colour-managed');

  const path = join(dir, 'x.webp');
  writeFileSync(path, await sharp(Buffer.from([1, 2, 3, 4, 5, 6]), { raw: { width: 1, height: 2, channels: 3 } }).webp({ lossless: true }).toBuffer());
  t.same(await loadImage(path), { data: new Uint8Array([1, 2, 3, 4, 5, 6]), width: 1, height: 2 }, 'lossless WebP from a path');

  const junk = join(dir, 'junk.png');
  writeFileSync(junk, 'not an image');
  await t.rejects(loadImage(junk), { message: new RegExp(`^cannot decode image ${junk.replace(/[.]/g, '\\.')}: `) });
  await t.rejects(loadImage(join(dir, 'missing.jpg')), { message: /cannot decode image .*missing\.jpg: / });
  await t.rejects(loadImage(new Uint8Array([1, 2, 3])), { message: /cannot decode image \(3 bytes in memory\): / });
});

// ---------------------------------------------------------------------------
interface Check {
  rule: string;
  atol?: number;
  rtol?: number;
}
interface ProcessorCase {
  name: string;
  kind: string;
  file: string;
  outputs: Record<string, { check: Check }>;
  params: Record<string, unknown> & { raw_hw: [number, number]; resized_hw: [number, number] };
}

t.test('golden fixtures (qwen25vl-tiny)', { skip: noFixtures }, async (t) => {
  const manifest = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8')) as { cases: ProcessorCase[] };
  const cases = manifest.cases.filter((c) => c.kind === 'processor');
  t.same(cases.map((c) => c.name).sort(), ['processor_150x200', 'processor_min_pixels_40x50']);
  const fromDir = await ImageProcessor.fromDirectory(join(FIXTURES, 'checkpoint'));

  for (const c of cases)
    await t.test(c.name, async (t) => {
      const { tensors } = await readSafetensors(join(FIXTURES, c.file));
      const get = (name: string) => {
        const tensor = tensors[name];
        if (!tensor) throw new Error(`${c.file} has no tensor ${name}`);
        return tensor;
      };
      const imageU8 = get('image_u8');
      const [h, w] = c.params.raw_hw;
      t.same(imageU8.shape, [h, w, 3]);
      const proc = ImageProcessor.fromConfig(c.params, `manifest case ${c.name}`);
      t.same(proc.config, fromDir.config, "the case's params are the checkpoint's preprocessor_config.json");
      const out = await proc.process([{ data: imageU8.data as Uint8Array, width: w, height: h }]);

      const resized = get('resized_u8');
      const [rh, rw] = c.params.resized_hw;
      t.same(resized.shape, [rh, rw, 3]);
      t.same([out.resized[0]!.height, out.resized[0]!.width], [rh, rw]);
      t.equal(c.outputs.resized_u8!.check.rule, 'exact');
      t.equal(firstDifference(out.resized[0]!.data, resized.data as Uint8Array), 'none', 'resized_u8 bit-exact');

      const grid = get('image_grid_thw');
      t.same(Array.from(grid.data as BigInt64Array, Number), out.gridThw.flat(), 'image_grid_thw exact');
      t.same(out.imageTokens, [(rh / 28) * (rw / 28)]);

      const expected = get('pixel_values');
      const check = c.outputs.pixel_values!.check;
      t.equal(check.rule, 'allclose');
      t.same(expected.shape, [out.pixelValues.length / 1176, 1176]);
      const ref = expected.data as Float32Array;
      let worst = 0;
      let failures = 0;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(out.pixelValues[i]! - ref[i]!);
        worst = Math.max(worst, d);
        if (!(d <= (check.atol ?? 0) + (check.rtol ?? 0) * Math.abs(ref[i]!))) failures++;
      }
      t.equal(failures, 0, `pixel_values allclose (atol ${check.atol}, rtol ${check.rtol}); max |diff| ${worst}`);
    });

  await t.test('image_150x200.png decodes to the case image', async (t) => {
    const { tensors } = await readSafetensors(join(FIXTURES, 'cases', 'processor_150x200.safetensors'), ['image_u8']);
    const decoded = await loadImage(join(FIXTURES, 'cases', 'image_150x200.png'));
    t.same([decoded.height, decoded.width], [150, 200]);
    t.equal(firstDifference(decoded.data, tensors.image_u8!.data as Uint8Array), 'none');
  });
});
