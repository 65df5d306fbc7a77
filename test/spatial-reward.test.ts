import t from 'tap';
import { SpatialReward, type RewardInput, type SpatialScores } from '../lib/index.js';
import { WORKED, completion, groundTruth, sceneJson } from './helpers.js';

const exact = new SpatialReward({ similarity: 'exact' });
const image = { width: 1000, height: 1000 };

const GT = groundTruth(
  [
    { id: 'chair.1', bbox: [100, 100, 300, 400] },
    { id: 'table.1', bbox: [400, 300, 900, 700] },
  ],
  [{ subject: 'chair.1', predicate: 'left of', object: 'table.1' }],
  '(B) left of',
);
const GOOD_OBJECTS = [
  { id: 'chair.1', bbox: [100, 100, 300, 400] },
  { id: 'table.1', bbox: [400, 300, 900, 700] },
];
const GOOD_RELATIONS = [{ subject: 'chair.1', predicate: 'left of', object: 'table.1' }];
const GOOD = completion(sceneJson(GOOD_OBJECTS, GOOD_RELATIONS), '(B) left of');

async function score(text: string, gt = GT, img = image): Promise<SpatialScores> {
  const [s] = await exact.scoreBatch([{ completion: text, groundTruth: gt, prompt: '', image: img }]);
  return s as SpatialScores;
}

const close = (a: number, b: number, tol = 1e-6) => Math.abs(a - b) <= tol;

t.test('the worked example of the spec scores 0.915203', async (t) => {
  const s = await score(WORKED.completion, WORKED.groundTruth, WORKED.image);
  t.equal(s.format, 1);
  t.ok(close(s.count, 0.65), `count ${s.count}`);
  t.equal(s.accuracy, 1, 'answers compare stripped and lower-cased');
  t.ok(close(s.spatial, 0.926015), `spatial ${s.spatial}`);
  t.ok(close(s.overall, 0.915203), `overall ${s.overall}`);
});

t.test('a perfect completion scores (almost) 1', async (t) => {
  const s = await score(GOOD);
  t.same([s.format, s.count, s.accuracy], [1, 1, 1]);
  t.ok(s.spatial > 0.9999, `spatial ${s.spatial}`);
  t.ok(close(s.overall, 0.8 + 0.2 * s.spatial, 1e-12));
});

t.test('format rule 1: each tag pair must occur', async (t) => {
  for (const tag of ['observe', 'think', 'scene', 'answer']) {
    const broken = GOOD.replace(`</${tag}>`, '');
    t.equal((await score(broken)).format, 0, `no </${tag}>`);
  }
  const reordered =
    `<answer>(B) left of</answer><think>t</think><scene>${sceneJson(GOOD_OBJECTS, GOOD_RELATIONS)}</scene><observe>o</observe>`;
  t.equal((await score(reordered)).format, 1, 'order is not checked');
  t.equal((await score(GOOD.replace('<observe>I see the objects.</observe>', '<observe></observe>'))).format, 1, 'empty blocks count');
});

t.test('format rule 2: each opening tag exactly once (closing tags not counted)', async (t) => {
  t.equal((await score(GOOD + '\n<think>again</think>')).format, 0, 'repeated <think>');
  t.equal((await score(GOOD + '\n<observe>')).format, 0, 'a stray second <observe>');
  t.equal((await score(GOOD + '\n</think></answer>')).format, 1, 'extra closing tags are fine');
});

t.test('format rule 3: the scene must be a non-empty JSON object', async (t) => {
  t.equal((await score(completion('{}', '(B) left of'))).format, 0, '{}');
  t.equal((await score(completion('[1, 2]', '(B) left of'))).format, 0, 'an array');
  t.equal((await score(completion('{"objects": [', '(B) left of'))).format, 0, 'invalid JSON');
  t.equal((await score(completion('{"objects": [{"id": "a.1", "bbox": [NaN, 0, 1, 1]}]}', '(B) left of'))).format, 0, 'NaN literal');
  t.equal((await score(completion('{"objects": [{"id": "a.1", "bbox": [1e999, 0, 1, 1]}]}', '(B) left of'))).format, 0, 'overflowing number');
  t.equal((await score(completion(`  \n${sceneJson(GOOD_OBJECTS, GOOD_RELATIONS)}\n `, '(B) left of'))).format, 1, 'whitespace around the JSON');
});

t.test('format rule 4: objects and relationships must be lists (absent counts as empty)', async (t) => {
  t.equal((await score(completion('{"objects": {}}', '(B) left of'))).format, 0, 'objects a dict');
  t.equal((await score(completion('{"objects": [], "relationships": null}', '(B) left of'))).format, 0, 'relationships null');
  const relOnly = await score(completion('{"relationships": []}', '(B) left of'));
  t.equal(relOnly.format, 1, '{"relationships": []} passes the format check');
  t.equal(relOnly.count, 0, 'but its count is 0 (no objects array)');
  t.equal(relOnly.spatial, 0, 'and no predicted boxes match anything');
});

t.test('format rule 5: objects have exactly id and bbox, a valid id and 4 numbers', async (t) => {
  const one = (object: unknown) => completion(sceneJson([object]), '(B) left of');
  t.equal((await score(one({ id: 'chair.1', bbox: [1, 2, 3, 4], label: 'x' }))).format, 0, 'an extra key');
  t.equal((await score(one({ id: 'chair.1' }))).format, 0, 'no bbox');
  t.equal((await score(one({ id: 'chair.1', bbox: [1, 2, 3] }))).format, 0, 'bbox of 3');
  t.equal((await score(one({ id: 'chair.1', bbox: [1, 2, 3, '4'] }))).format, 0, 'a string coordinate');
  t.equal((await score(one({ id: 'chair.1', bbox: [true, false, 3, 4] }))).format, 1, 'booleans count as numbers');
  for (const id of ['fire hydrant.1', 'chair', 'Man.1a', 'man1', 'chair.', '.1', 'chair.1.2', 'chair-1.1'])
    t.equal((await score(one({ id, bbox: [1, 2, 3, 4] }))).format, 0, `id "${id}" is invalid`);
  for (const id of ['traffic_light.2', 'Chair.10', '_.0', 'chair.\u0661'])
    t.equal((await score(one({ id, bbox: [1, 2, 3, 4] }))).format, 1, `id "${id}" is valid`);
  t.equal((await score(one({ id: 7, bbox: [1, 2, 3, 4] }))).format, 0, 'a numeric id');
  t.equal((await score(one(['chair.1', [1, 2, 3, 4]]))).format, 0, 'an object that is an array');
});

t.test('format rule 6: relationships need subject, predicate, object strings with valid ids', async (t) => {
  const withRel = (rel: unknown) => completion(sceneJson(GOOD_OBJECTS, [rel]), '(B) left of');
  t.equal((await score(withRel({ subject: 'chair.1', predicate: 'near', object: 'table.1', note: 'x' }))).format, 1, 'extra keys allowed');
  t.equal((await score(withRel({ subject: 'chair.1', predicate: 'near', object: 'sofa.9' }))).format, 1, 'endpoints need not exist');
  t.equal((await score(withRel({ subject: 'chair.1', object: 'table.1' }))).format, 0, 'no predicate');
  t.equal((await score(withRel({ subject: 'chair.1', predicate: 3, object: 'table.1' }))).format, 0, 'numeric predicate');
  t.equal((await score(withRel({ subject: 'chair 1', predicate: 'near', object: 'table.1' }))).format, 0, 'invalid subject id');
  t.equal((await score(withRel({ subject: 'chair.1', predicate: 'near', object: 'table' }))).format, 0, 'invalid object id');
});

t.test('format rule 7: object ids are unique', async (t) => {
  const dup = completion(sceneJson([GOOD_OBJECTS[0], GOOD_OBJECTS[0]]), '(B) left of');
  t.equal((await score(dup)).format, 0);
});

t.test('format 0 zeroes every component', async (t) => {
  const s = await score(GOOD.replace('<think>', '<thinking>'));
  t.same(s, { overall: 0, format: 0, count: 0, accuracy: 0, spatial: 0 });
});

t.test('count: objects, and relations when the ground truth has them', async (t) => {
  const three = [...GOOD_OBJECTS, { id: 'lamp.1', bbox: [0, 0, 10, 10] }];
  t.ok(close((await score(completion(sceneJson(three, GOOD_RELATIONS), '(B) left of'))).count, 0.7 * 0.5 + 0.3));
  t.ok(close((await score(completion(sceneJson(GOOD_OBJECTS, []), '(B) left of'))).count, 0.7));
  const noRelGt = groundTruth(GOOD_OBJECTS as never, [], '(B) left of');
  const manyRels = completion(sceneJson(GOOD_OBJECTS, [GOOD_RELATIONS[0], GOOD_RELATIONS[0], GOOD_RELATIONS[0]]), '(B) left of');
  t.equal((await score(manyRels, noRelGt)).count, 1, 'relations ignored when the ground truth has none');
  const zeroGt = groundTruth([], [], '(B) left of');
  t.equal((await score(completion(sceneJson([]), '(B) left of'), zeroGt)).count, 1, '0 vs 0 objects');
  t.equal((await score(completion(sceneJson([GOOD_OBJECTS[0]]), '(B) left of'), zeroGt)).count, 0, '1 vs 0 objects');
  const many = Array.from({ length: 9 }, (_, i) => ({ id: `cup.${i}`, bbox: [0, 0, 1, 1] }));
  t.equal((await score(completion(sceneJson(many), '(B) left of'), noRelGt)).count, 0, 'never below 0');
});

t.test('accuracy: first <answer>, stripped, case-insensitive, otherwise exact', async (t) => {
  t.equal((await score(GOOD.replace('(B) left of', '  (b) LEFT OF\n'))).accuracy, 1);
  t.equal((await score(GOOD.replace('(B) left of', 'B'))).accuracy, 0, 'bare letter');
  t.equal((await score(GOOD.replace('(B) left of', '(B)left of'))).accuracy, 0, 'missing space');
  t.equal((await score(GOOD.replace('(B) left of', '(B) left of.'))).accuracy, 0, 'trailing period');
  t.equal((await score(GOOD.replace('(B) left of', '(B)  left of'))).accuracy, 0, 'internal whitespace is exact');
});

t.test('spatial is gated by accuracy and averages over ground-truth objects', async (t) => {
  const wrong = await score(GOOD.replace('(B) left of', '(A) right of'));
  t.equal(wrong.spatial, 0, 'wrong answer: spatial 0');
  t.ok(close(wrong.overall, 0.1 + 0.2), 'overall keeps format and count');
  const onlyChair = await score(completion(sceneJson([GOOD_OBJECTS[0]], GOOD_RELATIONS), '(B) left of'));
  t.ok(onlyChair.spatial > 0.49 && onlyChair.spatial < 0.5, `one of two objects found: ${onlyChair.spatial}`);
  const none = await score(completion(sceneJson([], GOOD_RELATIONS), '(B) left of'));
  t.equal(none.spatial, 0, 'no predictions: 0');
  const extra = await score(completion(sceneJson([...GOOD_OBJECTS, { id: 'lamp.1', bbox: [0, 0, 5, 5] }], GOOD_RELATIONS), '(B) left of'));
  t.ok(extra.spatial > 0.9999, 'extra predictions are not penalised by spatial');
});

t.test('spatial: labels choose the pairs, boxes are normalised by the image size', async (t) => {
  // Two predictions with swapped labels: the label term (weight 2) wins over box overlap.
  const swapped = completion(
    sceneJson([
      { id: 'table.1', bbox: [100, 100, 300, 400] },
      { id: 'chair.1', bbox: [400, 300, 900, 700] },
    ]),
    '(B) left of',
  );
  const s = await score(swapped);
  t.ok(s.spatial < 0.5, `labels decide the matching (spatial ${s.spatial})`);
  // A wrongly labelled single prediction is still matched and earns its CIoU.
  const mislabeled = await score(completion(sceneJson([{ id: 'dog.1', bbox: [100, 100, 300, 400] }]), '(B) left of'));
  t.ok(mislabeled.spatial > 0.49, `a wrong label still earns its box (spatial ${mislabeled.spatial})`);
  // CIoU is not invariant to anisotropic scaling: the same pixels in another frame score differently.
  const off = completion(sceneJson([{ id: 'chair.1', bbox: [120, 100, 320, 380] }, GOOD_OBJECTS[1]]), '(B) left of');
  const a = await score(off, GT, { width: 1000, height: 1000 });
  const b = await score(off, GT, { width: 1000, height: 400 });
  t.not(a.spatial, b.spatial, 'image size enters through normalisation');
});

t.test('spatial edge cases of a ground truth without objects', async (t) => {
  const emptyGt = groundTruth([], [], '(B) left of');
  t.equal((await score(completion(sceneJson([]), '(B) left of'), emptyGt)).spatial, 1, '0 predicted: 1');
  t.equal((await score(completion(sceneJson([GOOD_OBJECTS[0]]), '(B) left of'), emptyGt)).spatial, 0, '1 predicted: 0');
  const relOnlyGt = groundTruth([], GOOD_RELATIONS, '(B) left of');
  t.equal((await score(completion(sceneJson([GOOD_OBJECTS[0]]), '(B) left of'), relOnlyGt)).spatial, 1, 'reference quirk: relations but no objects gives 1');
});

t.test('spatial can dip below 0 for far-apart boxes of different shapes, as the reference', async (t) => {
  const gt = groundTruth([{ id: 'pole.1', bbox: [999, 900, 1000, 1000] }], [], '(A) yes');
  const s = await score(completion(sceneJson([{ id: 'pole.1', bbox: [0, 0, 100, 1] }]), '(A) yes'), gt);
  t.ok(s.spatial < 0 && s.spatial > -0.25, `spatial ${s.spatial}`);
  t.ok(close(s.overall, 0.1 + 0.2 + 0.5 + 0.2 * s.spatial, 1e-12));
});

t.test('weights are configuration', async (t) => {
  const custom = new SpatialReward({ similarity: 'exact', weights: { format: 1, count: 0, accuracy: 0, spatial: 0 } });
  const [s] = await custom.scoreBatch([{ completion: GOOD.replace('(B) left of', '(C) no'), groundTruth: GT, prompt: '', image }]);
  t.equal(s?.overall, 1);
  t.throws(() => new SpatialReward({ weights: { format: Number.NaN } }), /weight "format" must be a finite number/);
});

t.test('bad ground truth and image sizes are reported with the batch index', async (t) => {
  const inputs = (gt: string, img = image): RewardInput[] => [
    { completion: GOOD, groundTruth: GT, prompt: '', image },
    { completion: GOOD, groundTruth: gt, prompt: '', image: img },
  ];
  await t.rejects(exact.scoreBatch(inputs('<scene>{"objects": []}</scene>')), { name: 'RewardInputError', index: 1, message: /no <answer>/ });
  await t.rejects(exact.scoreBatch(inputs('<answer>(A) x</answer>')), { index: 1, message: /no <scene>/ });
  await t.rejects(exact.scoreBatch(inputs('<scene>{"objects": [{"id": "a.1"}]}</scene><answer>x</answer>')), { message: /object 0 \("a.1"\) has no "bbox"/ });
  await t.rejects(exact.scoreBatch(inputs(GT, { width: 0, height: 10 })), { index: 1, message: /image size 0 x 10/ });
  await t.rejects(exact.scoreBatch([{ completion: GOOD, groundTruth: GT, prompt: 'no size here' }]), { message: /no image size/ });
});

t.test('a whole batch is scored in order', async (t) => {
  const inputs: RewardInput[] = Array.from({ length: 64 }, (_, i) => ({
    completion: i % 3 === 0 ? GOOD : i % 3 === 1 ? GOOD.replace('(B) left of', '(A) x') : 'garbage',
    groundTruth: GT,
    prompt: '',
    image,
  }));
  const scores = await exact.scoreBatch(inputs);
  t.equal(scores.length, 64);
  t.ok(scores.every((s, i) => s.format === (i % 3 === 2 ? 0 : 1) && s.accuracy === (i % 3 === 0 ? 1 : 0)));
  t.same(await exact.scoreBatch([]), [], 'an empty batch');
});
