/**
 * Synthesis speed: 10,000 questions from Visual Genome-format scene graphs
 * (files written by the bench: random layouts with VG-style labels and
 * predicates), streamed from disk, without the LLM stages. Target: under a
 * minute on 2 cores.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readVisualGenome } from '../lib/synth/scene-graph.js';
import { synthesizeDataset } from '../lib/synth/synthesize.js';
import { table } from './engine.js';
import { mulberry32 } from '../lib/random.js';

const LABELS = ['man', 'woman', 'chair', 'table', 'dog', 'cat', 'car', 'tree', 'bench', 'lamp', 'cup', 'plate', 'horse', 'bus', 'sign', 'building', 'window', 'bottle', 'bed', 'umbrella', 'kite', 'boat', 'train', 'bicycle', 'truck', 'bird', 'clock', 'vase', 'book', 'laptop'];
const PREDICATES = ['on', 'under', 'behind', 'in front of', 'near', 'next to', 'holding', 'above', 'below', 'beside', 'sitting on', 'riding', 'has', 'left of', 'right of'];

export async function benchSynthesis(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'st-bench-synth-'));
  try {
    const random = mulberry32(12345);
    const images = 8000;
    const graphs = [];
    const imageData = [];
    for (let id = 1; id <= images; id++) {
      const width = 500 + Math.floor(random() * 500);
      const height = 375 + Math.floor(random() * 375);
      const objects = Array.from({ length: 8 + Math.floor(random() * 20) }, (_, k) => {
        const w = Math.floor(width * (0.05 + random() * 0.4));
        const h = Math.floor(height * (0.05 + random() * 0.4));
        return { object_id: id * 1000 + k, names: [LABELS[Math.floor(random() * LABELS.length)]], x: Math.floor(random() * (width - w)), y: Math.floor(random() * (height - h)), w, h, synsets: [] };
      });
      const relationships = Array.from({ length: Math.floor(objects.length / 2) }, (_, k) => ({
        relationship_id: id * 1000 + k,
        predicate: PREDICATES[Math.floor(random() * PREDICATES.length)],
        subject_id: objects[Math.floor(random() * objects.length)]!.object_id,
        object_id: objects[Math.floor(random() * objects.length)]!.object_id,
        synsets: [],
      }));
      graphs.push({ image_id: id, objects, relationships });
      imageData.push({ image_id: id, width, height, url: `https://example.invalid/VG_100K/${id}.jpg` });
    }
    const sceneGraphs = join(dir, 'scene_graphs.json');
    writeFileSync(sceneGraphs, JSON.stringify(graphs));
    writeFileSync(join(dir, 'image_data.json'), JSON.stringify(imageData));
    const started = process.hrtime.bigint();
    const result = await synthesizeDataset(readVisualGenome(sceneGraphs, join(dir, 'image_data.json')), { target: 10_000, seed: 1 });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const rows = result.train.length + result.val.length;
    console.log('\n## Synthesis: STVQA questions from Visual Genome-format scene graphs (streamed, no LLM stages)\n');
    console.log(table(['questions', 'train / val', 'scene graphs read', 'seconds', 'questions/s'], [[rows, `${result.train.length} / ${result.val.length}`, result.stats.images, seconds.toFixed(1), Math.round(rows / seconds)]]));
    console.log('\nTarget: 10,000 questions in under a minute.');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
