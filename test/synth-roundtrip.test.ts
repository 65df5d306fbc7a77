/**
 * The data pipeline end to end: Visual Genome files -> synthesised STVQA rows
 * -> parquet with the images -> read back -> a gold completion built from each
 * row scores overall 1.0 with the spatial reward.
 */
import './helpers-parquet-resolve.js';
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { readRows } from '../lib/data/reader.js';
import { writeParquet } from '../lib/data/writer.js';
import type { StvqaRow } from '../lib/data/schema.js';
import { parseImageSize } from '../lib/rewards/image-size.js';
import { SpatialReward } from '../lib/rewards/spatial-reward.js';
import { readVisualGenome } from '../lib/synth/scene-graph.js';
import { synthesizeDataset } from '../lib/synth/synthesize.js';
import { rng } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'st-roundtrip-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

const LABELS = ['chair', 'table', 'dog', 'lamp', 'car', 'tree', 'bench', 'horse', 'cup', 'bed'];
const PREDICATES = ['on', 'under', 'behind', 'in front of', 'near', 'left of', 'right of', 'above'];

t.test('synthesise -> parquet -> read -> gold completions score 1.0', async (t) => {
  const random = rng(17);
  const images = 40;
  const entries = [];
  const imageData = [];
  mkdirSync(join(root, 'images', 'VG_100K'), { recursive: true });
  for (let id = 1; id <= images; id++) {
    const width = 400 + Math.floor(random() * 400);
    const height = 300 + Math.floor(random() * 300);
    // Distinct labels and large boxes (at least 12% of each side): the
    // reward's CIoU epsilon stays far below 1e-6.
    const labels = [...LABELS].sort(() => random() - 0.5).slice(0, 3 + Math.floor(random() * 3));
    const objects = labels.map((label, k) => {
      const w = Math.floor(width * (0.15 + random() * 0.3));
      const h = Math.floor(height * (0.15 + random() * 0.3));
      return { object_id: id * 100 + k, names: [label], x: Math.floor(random() * (width - w)), y: Math.floor(random() * (height - h)), w, h, synsets: [] };
    });
    const relationships = objects.slice(1).map((o, k) => ({
      relationship_id: id * 100 + k,
      predicate: PREDICATES[Math.floor(random() * PREDICATES.length)] as string,
      subject_id: (objects[0] as { object_id: number }).object_id,
      object_id: o.object_id,
      synsets: [],
    }));
    entries.push({ image_id: id, objects, relationships });
    imageData.push({ image_id: id, width, height, url: `https://cs.stanford.edu/people/rak248/VG_100K/${id}.jpg` });
    await sharp({ create: { width, height, channels: 3, background: { r: (id * 37) % 255, g: 120, b: 90 } } })
      .jpeg()
      .toFile(join(root, 'images', 'VG_100K', `${id}.jpg`));
  }
  writeFileSync(join(root, 'scene_graphs.json'), JSON.stringify(entries));
  writeFileSync(join(root, 'image_data.json'), JSON.stringify(imageData));

  const dataset = await synthesizeDataset(readVisualGenome(join(root, 'scene_graphs.json'), join(root, 'image_data.json')), { target: 60, seed: 3 });
  const synthesized = [...dataset.train, ...dataset.val];
  t.ok(synthesized.length >= 20, `${synthesized.length} questions synthesised`);
  const rows: StvqaRow[] = synthesized.map((r) => ({
    ...r,
    images: { bytes: readFileSync(join(root, 'images', r.images.path)), path: r.images.path },
  }));
  const file = join(root, 'train.parquet');
  await writeParquet(file, rows);

  const back: StvqaRow[] = [];
  for await (const { row } of readRows(file)) back.push(row);
  t.equal(back.length, rows.length, 'every row comes back');
  const image = (row: StvqaRow) => (Array.isArray(row.images) ? row.images[0] : row.images);
  t.ok(back.every((r, i) => Buffer.from(image(r)!.bytes!).equals(Buffer.from(image(rows[i]!)!.bytes!))), 'with its image bytes');

  const reward = new SpatialReward({ similarity: 'exact' });
  const scores = await reward.scoreBatch(
    back.map((row) => {
      const gt = row.answer_option_text;
      const scene = gt.slice(gt.indexOf('<scene>') + 7, gt.indexOf('</scene>'));
      return {
        completion: `<observe>The relevant objects.</observe>\n<scene>${scene}</scene>\n<think>Reading the scene graph.</think>\n<answer>${row.answer_option_text_only}</answer>`,
        groundTruth: gt,
        prompt: row.problem,
        image: parseImageSize(row.problem)!,
      };
    }),
  );
  const worst = scores.reduce((m, s) => Math.max(m, Math.abs(s.overall - 1)), 0);
  t.ok(worst < 1e-6, `every gold completion scores 1.0 (max |overall - 1| = ${worst.toExponential(2)})`);
  const categories = new Set(back.map((r) => r.category));
  t.ok(categories.size >= 4, `several categories (${[...categories].join(', ')})`);
});
