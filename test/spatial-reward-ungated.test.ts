import t from 'tap';
import { SpatialReward, rewards, type SpatialScores } from '../lib/index.js';
import { completion, groundTruth, sceneJson } from './helpers.js';

// The paper's Table 5 ablation: the dense terms without the lexicographic gates.
const gated = new SpatialReward({ similarity: 'exact' });
const ungated = new SpatialReward({ similarity: 'exact', gated: false });
const image = { width: 1000, height: 1000 };
const OBJECTS = [
  { id: 'chair.1', bbox: [100, 100, 300, 400] },
  { id: 'table.1', bbox: [400, 300, 900, 700] },
];
const RELATIONS = [{ subject: 'chair.1', predicate: 'left of', object: 'table.1' }];
const GT = groundTruth(OBJECTS, RELATIONS, '(B) left of');

async function score(reward: SpatialReward, text: string): Promise<SpatialScores> {
  const [s] = await reward.scoreBatch([{ completion: text, groundTruth: GT, prompt: '', image }]);
  return s as SpatialScores;
}

t.test('a well-formed right answer scores the same gated or not', async (t) => {
  const text = completion(sceneJson(OBJECTS, RELATIONS), '(B) left of');
  t.same(await score(ungated, text), await score(gated, text));
});

t.test('a wrong answer with the right boxes: spatial only without the accuracy gate', async (t) => {
  const text = completion(sceneJson(OBJECTS, RELATIONS), '(A) right of');
  const g = await score(gated, text);
  const u = await score(ungated, text);
  t.equal(g.accuracy, 0);
  t.equal(g.spatial, 0, 'gated: a wrong answer earns no spatial reward');
  t.ok(u.spatial > 0.9999, `ungated: spatial ${u.spatial}`);
  t.ok(Math.abs(u.overall - (0.1 + 0.2 + 0.2 * u.spatial)) < 1e-12, `ungated overall ${u.overall}`);
});

t.test('a malformed completion: count and spatial only without the format gate', async (t) => {
  // No observe or think block: the format check fails.
  const text = `<scene>${sceneJson(OBJECTS, RELATIONS)}</scene><answer>(B) left of</answer>`;
  const g = await score(gated, text);
  const u = await score(ungated, text);
  t.same([g.overall, g.format, g.count, g.accuracy, g.spatial], [0, 0, 0, 0, 0], 'gated: nothing');
  t.equal(u.format, 0);
  t.equal(u.count, 1);
  t.equal(u.accuracy, 1);
  t.ok(u.spatial > 0.9999);
  t.ok(Math.abs(u.overall - (0.2 + 0.5 + 0.2 * u.spatial)) < 1e-12);
});

t.test('no scene at all scores zero count and spatial ungated too', async (t) => {
  const u = await score(ungated, 'just text <answer>(B) left of</answer>');
  t.same([u.format, u.count, u.spatial], [0, 0, 0]);
  t.equal(u.accuracy, 1);
});

t.test('the registry builds it as spatial_ungated', async (t) => {
  const reward = rewards.create('spatial_ungated', { similarity: 'exact' }) as SpatialReward;
  t.equal(reward.name, 'spatial_ungated');
  t.equal(reward.gated, false);
  t.equal((rewards.create('spatial') as SpatialReward).gated, true);
});
