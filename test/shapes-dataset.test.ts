/**
 * writeShapesSplits end to end: images and JSONL on disk that the project's reader accepts,
 * disjoint train and held-out scenes, the requested row counts and category mix, and
 * rows whose ground-truth boxes are the layouts' boxes.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { readRows } from '../lib/data/reader.js';
import { allocations } from '../lib/synth/balance.js';
import { SHAPES_CATEGORIES, shapesBalance, shapesVocabulary, writeShapesSplits } from '../lib/shapes/dataset.js';
import { pixelBox } from '../lib/shapes/scene-graph.js';
import type { ShapesLayout } from '../lib/shapes/world.js';

t.test('train and held-out splits on disk', async (t) => {
  const outDir = mkdtempSync(join(tmpdir(), 'shapes-'));
  const result = await writeShapesSplits({ outDir, trainRows: 96, valRows: 32, seed: 3, width: 112, height: 112 });
  t.equal(result.train.length, 96, 'train rows');
  t.equal(result.val.length, 32, 'held-out rows');
  t.comment(`train categories ${JSON.stringify(result.summary.train.categories)}; ${result.summary.msPerImage.toFixed(1)} ms per image`);
  for (const c of SHAPES_CATEGORIES) t.ok(result.summary.train.categories[c] > 0, `train has ${c} rows`);
  t.equal(result.summary.train.categories.reach, 0);
  t.ok(Math.abs(result.summary.train.categories.relation / 96 - 0.5) < 0.05, 'about half are relation questions');

  const trainIds = new Set(result.train.map((r) => r.image_id));
  const valIds = new Set(result.val.map((r) => r.image_id));
  t.ok([...valIds].every((id) => !trainIds.has(id)), 'no image in both splits');
  const key = (l: ShapesLayout) => JSON.stringify(l.objects.map((o) => [o.kind, o.colour, o.size, o.x, o.z]));
  const trainScenes = new Set([...trainIds].map((id) => key(result.layouts.get(id) as ShapesLayout)));
  t.ok([...valIds].every((id) => !trainScenes.has(key(result.layouts.get(id) as ShapesLayout))), 'no scene in both splits');

  for (const split of ['train', 'val'] as const) {
    const file = join(outDir, `${split}.jsonl`);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    t.equal(lines.length, result[split].length, `${split}.jsonl has a line per row`);
    let read = 0;
    for await (const { row } of readRows(file, { validateImages: true })) {
      read++;
      const images = Array.isArray(row.images) ? row.images : [row.images];
      t.equal(images.length, 1);
      t.match(row.problem, /Image size: \(112 x 112\)/, 'the prompt gives the image size');
    }
    t.equal(read, lines.length, `${split}: the project's reader accepts every row and image`);
  }
  for (const id of [...trainIds, ...valIds]) {
    const path = join(outDir, 'images', `${id}.png`);
    t.ok(existsSync(path), `${id}.png written`);
  }
  const meta = await sharp(join(outDir, 'images', `${[...valIds][0]}.png`)).metadata();
  t.same([meta.width, meta.height, meta.channels], [112, 112, 3]);
  t.equal(result.summary.train.images + result.summary.val.images, trainIds.size + valIds.size, 'only images with rows are rendered');

  // The ground-truth scene's boxes are the layout's, as [x1, y1, x2, y2].
  for (const row of result.train) {
    const layout = result.layouts.get(row.image_id) as ShapesLayout;
    const scene = JSON.parse(/<scene>(.*)<\/scene>/s.exec(row.answer_option_text)?.[1] ?? 'null') as { objects: { id: string; bbox: number[] }[] };
    for (const o of scene.objects) {
      const label = o.id.replace(/\.\d+$/, '').replace(/_/g, ' ');
      const boxes = layout.objects.filter((s) => s.label === label).map((s) => {
        const [x, y, w, h] = pixelBox(s);
        return [x, y, x + w, y + h];
      });
      if (!boxes.some((b) => b.every((v, i) => v === o.bbox[i]))) t.fail(`${row.image_id}: ${o.id} box ${o.bbox} is no ${label}'s box`);
    }
  }
  const summary = JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8')) as { train: { rows: number }; width: number };
  t.same([summary.train.rows, summary.width], [96, 112], 'summary.json');
});

t.test('the balance target gives the rows, half of them relation questions', async (t) => {
  for (const rows of [1, 7, 50, 96, 2000, 6895]) {
    const { target, relationShare } = shapesBalance(rows);
    const total = (n: number) => SHAPES_CATEGORIES.reduce((sum, c) => sum + allocations(n, relationShare)[c].total, 0);
    t.ok(total(target) >= rows && total(target - 1) < rows, `rows ${rows}: target ${target}`);
    if (rows >= 50) {
      const a = allocations(target, relationShare);
      const share = a.relation.total / total(target);
      t.ok(Math.abs(share - 0.5) < 0.03, `rows ${rows}: relation share ${share.toFixed(3)}`);
    }
  }
  t.equal(shapesBalance(100, 0).relationShare, 0);
  t.throws(() => shapesBalance(10, 1.5), /relationShare must be in \[0, 1\]/);
  t.same(shapesVocabulary({ kinds: ['cube'], colours: ['red', 'blue'] }), ['red cube', 'blue cube']);
});

t.test('bad requests are refused with a reason', async (t) => {
  const outDir = mkdtempSync(join(tmpdir(), 'shapes-bad-'));
  await t.rejects(writeShapesSplits({ outDir, trainRows: 0, valRows: 5 }), /trainRows must be a positive integer/);
  await t.rejects(writeShapesSplits({ outDir, trainRows: 5, valRows: 5, colours: ['pink' as never] }), /unknown colours entry "pink"/);
  // One object per scene: no pair can be asked about.
  await t.rejects(
    writeShapesSplits({ outDir, trainRows: 20, valRows: 5, minObjects: 1, maxObjects: 1, maxScenes: 30 }),
    /train: 30 shapes scenes gave no relation, depth, size, distance, orientation questions/,
  );
});
