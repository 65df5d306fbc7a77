/**
 * The rewards never throw, hang or return NaN, whatever the model writes:
 * arbitrary strings, arbitrary JSON in the scene, huge numbers, unbalanced
 * tags, deep nesting, megabytes of text.
 */
import t from 'tap';
import fc from 'fast-check';
import { SparseReward, SparseSceneReward, SpatialReward, type RewardInput, type RewardScores } from '../lib/index.js';
import { WORKED, completion } from './helpers.js';

const spatialExact = new SpatialReward({ similarity: 'exact' });
const spatialWordnet = new SpatialReward();
const sparse = new SparseReward();
const sparseScene = new SparseSceneReward();

function inRange(s: RewardScores): string | undefined {
  for (const [name, value] of Object.entries(s)) if (!Number.isFinite(value)) return `${name} is ${value}`;
  for (const name of ['format', 'count', 'accuracy'])
    if (name in s && !((s[name] as number) >= 0 && (s[name] as number) <= 1)) return `${name} = ${s[name]} outside [0, 1]`;
  if ('spatial' in s && !((s['spatial'] as number) > -0.25 && (s['spatial'] as number) <= 1)) return `spatial = ${s['spatial']} outside (-0.25, 1]`;
  return undefined;
}

async function checkAll(completions: string[]): Promise<string | undefined> {
  const inputs: RewardInput[] = completions.map((c) => ({ completion: c, groundTruth: WORKED.groundTruth, prompt: '', image: WORKED.image }));
  for (const reward of [spatialExact, spatialWordnet, sparse, sparseScene]) {
    const scores = await reward.scoreBatch(inputs);
    if (scores.length !== inputs.length) return `${reward.name}: ${scores.length} scores for ${inputs.length} inputs`;
    for (const s of scores) {
      const problem = inRange(s);
      if (problem) return `${reward.name}: ${problem}`;
    }
  }
  return undefined;
}

const tagged = fc.constantFrom('<observe>', '</observe>', '<think>', '</think>', '<scene>', '</scene>', '<answer>', '</answer>', '{', '}', '"objects"', ':', '[', ']', ',');

t.test('arbitrary strings, and strings made of tags and JSON fragments', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.oneof(fc.string({ unit: 'binary' }), fc.string(), tagged), { maxLength: 40 }), async (parts) => {
      const problem = await checkAll([parts.join(''), parts.join('\n')]);
      if (problem) throw new Error(problem);
    }),
    { numRuns: 300 },
  );
  t.pass('300 runs without a throw or an out-of-range component');
});

const box = fc.array(fc.oneof(fc.double(), fc.integer(), fc.boolean(), fc.constant(1e308), fc.constant(-1e308), fc.constant(5e-324)), {
  minLength: 3,
  maxLength: 5,
});
const id = fc.oneof(fc.constantFrom('man.1', 'bench.2', 'bench.1', 'dog.1', 'traffic_light.3', 'man_.1', 'a.0'), fc.string());
const sceneObject = fc.oneof(fc.record({ id, bbox: box }), fc.jsonValue());
const scene = fc.oneof(
  fc.record({ objects: fc.array(sceneObject, { maxLength: 12 }), relationships: fc.array(fc.jsonValue(), { maxLength: 4 }) }),
  fc.jsonValue(),
);

t.test('arbitrary JSON in a well-formed completion', async (t) => {
  await fc.assert(
    fc.asyncProperty(scene, fc.constantFrom('(A) sitting on', '(a) sitting on', 'B', ''), async (s, answer) => {
      const problem = await checkAll([completion(JSON.stringify(s) ?? 'null', answer)]);
      if (problem) throw new Error(problem);
    }),
    { numRuns: 500 },
  );
  t.pass('500 runs without a throw or an out-of-range component');
});

t.test('malformed shapes the spec lists, and hostile sizes', async (t) => {
  const deep = '['.repeat(200_000) + ']'.repeat(200_000);
  const hugeNumbers = completion(
    JSON.stringify({ objects: [{ id: 'man.1', bbox: [1e308, -1e308, 1e308, 1e308] }, { id: 'bench.2', bbox: [-1e308, 1e308, 5e-324, -5e-324] }] }),
    '(A) sitting on',
  );
  const megabytes = '<observe>'.repeat(1) + 'x'.repeat(4_000_000) + '</observe>';
  const cases = [
    completion(deep, '(A) sitting on'),
    completion(`{"objects": ${deep}}`, '(A) sitting on'),
    hugeNumbers,
    megabytes,
    '<scene>'.repeat(100_000),
    '<think>' + '</think> '.repeat(100_000) + '<answer>',
    '\ud800\udfff\ud800 invalid surrogates <answer>\udc00</answer>',
    WORKED.completion.replace('</answer>', ''),
  ];
  const started = Date.now();
  const problem = await checkAll(cases);
  t.equal(problem, undefined, 'every component finite and in range');
  t.ok(Date.now() - started < 20_000, `no pathological slowness (${Date.now() - started} ms for ${cases.length} hostile completions)`);
  const [huge] = await spatialExact.scoreBatch([{ completion: hugeNumbers, groundTruth: WORKED.groundTruth, prompt: '', image: WORKED.image }]);
  t.equal(huge?.format, 1, 'huge but finite coordinates are well-formed');
  t.ok(Number.isFinite(huge?.spatial), `and their spatial score is finite (${huge?.spatial})`);
});
