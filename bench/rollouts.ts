/**
 * Synthetic rollout batches for benchmarks and parity tests: ground-truth
 * scene graphs with 1-8 objects and completions of the kinds a policy writes
 * during training (good, slightly off boxes, missing or extra objects,
 * synonyms, wrong answers, broken format). Deterministic for a seed.
 */
import { mulberry32 } from '../lib/random.js';
export interface RolloutRow {
  prediction: string;
  ground_truth: string;
  problem: string;
}

const LABELS = [
  'man', 'woman', 'person', 'chair', 'table', 'dog', 'cat', 'car', 'truck', 'bus', 'tree', 'window',
  'bench', 'bike', 'bicycle', 'lamp', 'cup', 'plate', 'sofa', 'bed', 'horse', 'sign', 'traffic_light', 'boy',
];
const PREDICATES = ['left of', 'right of', 'behind', 'in front of', 'on', 'under', 'near'];

/** `count` completions in groups of `samplesPerPrompt` that share a prompt and ground truth, as GRPO samples them. */
export function makeRollouts(count: number, seed = 1, maxObjects = 8, samplesPerPrompt = 1): RolloutRow[] {
  const random = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  const rows: RolloutRow[] = [];
  for (let i = 0; i < count; i += samplesPerPrompt) {
    const width = int(300, 1200);
    const height = int(300, 1200);
    const objects = Array.from({ length: int(1, maxObjects) }, (_, k) => {
      const w = int(10, width / 2);
      const h = int(10, height / 2);
      const x = int(0, width - w);
      const y = int(0, height - h);
      return { id: `${pick(LABELS)}.${k + 1}`, bbox: [x, y, x + w, y + h] };
    });
    const relationships = Array.from({ length: int(0, Math.min(3, objects.length - 1)) }, () => ({
      subject: pick(objects).id,
      predicate: pick(PREDICATES),
      object: pick(objects).id,
    }));
    const answer = `(${pick(['A', 'B', 'C', 'D'])}) ${pick(PREDICATES)}`;
    const groundTruth = `<scene>${JSON.stringify({ objects, relationships })}</scene>\n<answer>${answer}</answer>`;
    const problem = `<image> Answer with a scene graph.\nImage size: (${width} x ${height})\nNow answer the following question:\n\nQ. Where is it?`;
    for (let sample = 0; sample < samplesPerPrompt && i + sample < count; sample++) {
      const kind = random();
      let predObjects = objects.map((o) => {
        const [x1, y1, x2, y2] = o.bbox as [number, number, number, number];
        const jitter = () => int(-25, 25);
        const label = random() < 0.1 ? pick(LABELS) : o.id.split('.')[0];
        return { id: `${label}.${o.id.split('.')[1]}`, bbox: [x1 + jitter(), y1 + jitter(), x2 + jitter(), y2 + jitter()] };
      });
      if (random() < 0.2 && predObjects.length > 1) predObjects = predObjects.slice(1);
      if (random() < 0.2) predObjects.push({ id: `${pick(LABELS)}.99`, bbox: [0, 0, int(5, 100), int(5, 100)] });
      const predAnswer = kind < 0.25 ? `(A) ${pick(PREDICATES)}` : answer;
      let scene = JSON.stringify({ objects: predObjects, relationships });
      if (kind > 0.95) scene = scene.slice(0, scene.length / 2); // truncated JSON
      let prediction =
        `<observe>The image shows ${objects.length} relevant objects.</observe>\n` +
        `<scene>${scene}</scene>\n<think>Compare the boxes of the objects in the question.</think>\n` +
        `<answer>${predAnswer}</answer>`;
      if (kind > 0.9 && kind <= 0.95) prediction = prediction.replace('</think>', '');
      rows.push({ prediction, ground_truth: groundTruth, problem });
    }
  }
  return rows;
}
