// Issue 19 defect 1: the spatial reward has a lower bound whatever boxes a
// completion or a ground truth holds.
import t from 'tap';
import { SpatialReward, type SpatialScores } from '../lib/index.js';
import { completion, groundTruth, sceneJson } from './helpers.js';

const exact = new SpatialReward({ similarity: 'exact' });
const image = { width: 640, height: 480 };
const GT = groundTruth([{ id: 'chair.1', bbox: [10, 10, 20, 20] }], [], '(A) yes');

async function score(boxes: number[][], gt = GT): Promise<SpatialScores> {
  const objects = boxes.map((bbox, i) => ({ id: `chair.${i + 1}`, bbox }));
  const text = completion(sceneJson(objects, []), '(A) yes');
  const [s] = await exact.scoreBatch([{ completion: text, groundTruth: gt, prompt: '', image }]);
  return s as SpatialScores;
}

function inBounds(t: { ok(value: boolean, message: string): void }, s: SpatialScores, what: string) {
  t.ok(s.spatial >= -0.5 && s.spatial <= 1, `${what}: spatial ${s.spatial} in [-0.5, 1]`);
  t.ok(s.overall >= -0.1 && s.overall <= 1, `${what}: overall ${s.overall} in [-0.1, 1]`);
}

t.test('an inverted predicted box scores as unmatched, not far below zero (the issue repro)', async (t) => {
  const s = await score([[600, 400, 5, 5]]);
  inBounds(t, s, 'inverted');
  t.equal(s.spatial, 0, 'the only prediction is malformed: the ground-truth object is unmatched');
  t.equal(s.format, 1, 'the format check is the reference one and still passes');
  t.equal(s.count, 1, 'count still counts the object');
});

t.test('a malformed predicted box does not take the match from a good one', async (t) => {
  const good = await score([[10, 10, 20, 20]]);
  const withBad = await score([[20, 20, 10, 10], [10, 10, 20, 20]]);
  t.equal(withBad.spatial, good.spatial, 'the good box is matched either way');
});

t.test('every malformed or huge predicted box keeps the reward in bounds', async (t) => {
  const cases: number[][] = [
    [600, 400, 5, 5],
    [5, 400, 600, 5],
    [600, 5, 5, 400],
    [-1e300, -1e300, 1e300, 1e300],
    [1e300, 1e300, -1e300, -1e300],
    [0, 0, 1e300, 1e-300],
    [-50, -50, -10, -10],
    [1e308, 1e308, 1e308, 1e308],
    [0, 0, 0, 0],
    [640, 480, 640, 480],
    [0, 0, 1e-300, 1e300],
  ];
  for (const box of cases) inBounds(t, await score([box]), JSON.stringify(box));
});

t.test('well-formed boxes keep the reference numbers (the spec example of a negative mciou)', async (t) => {
  // rewards.md §4: normalised [0,0,0.1,0.001] vs [0.999,0.9,1,1] gives mciou about -0.191.
  const gt = groundTruth([{ id: 'chair.1', bbox: [639.36, 432, 640, 480] }], [], '(A) yes');
  const s = await score([[0, 0, 64, 0.48]], gt);
  t.ok(Math.abs(s.spatial - -0.191) < 1e-3, `spatial ${s.spatial}`);
});

t.test('ground-truth boxes that are reversed, negative, non-finite or far outside the image are rejected, naming the object', async (t) => {
  const bad: [number[], RegExp][] = [
    [[20, 10, 10, 20], /object 0 \("chair\.1"\).*x1 > x2/],
    [[10, 20, 20, 10], /object 0 \("chair\.1"\).*y1 > y2/],
    [[-5, 10, 20, 20], /object 0 \("chair\.1"\).*negative/],
    [[10, 10, 1e300, 20], /object 0 \("chair\.1"\).*outside the image/],
  ];
  for (const [bbox, message] of bad) {
    const gt = groundTruth([{ id: 'chair.1', bbox }], [], '(A) yes');
    const why = exact.validate({ completion: '', groundTruth: gt, prompt: '', image });
    t.match(why, message, JSON.stringify(bbox));
    await t.rejects(exact.scoreBatch([{ completion: '', groundTruth: gt, prompt: '', image }]), message);
  }
  const edge = groundTruth([{ id: 'chair.1', bbox: [0, 0, 640, 480] }], [], '(A) yes');
  t.equal(exact.validate({ completion: '', groundTruth: edge, prompt: '', image }), undefined, 'the whole image is a fine box');
});
