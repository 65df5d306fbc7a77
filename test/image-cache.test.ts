/**
 * The engine's image-feature cache: at one weight version generation,
 * log-probs and forwards encode each image once, per model; the optimiser
 * step and setParameters make the next call encode again; the budget bounds
 * what is kept; and results are bit-identical with and without the cache.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, type ImageInput, type PromptInput } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { native } from '../lib/native/binding.js';

const root = mkdtempSync(join(tmpdir(), 'st-image-cache-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const tok = randomCheckpointTokens(1024);

function image(seed: number, gh: number, gw: number): ImageInput {
  let s = seed;
  const pixels = Float32Array.from({ length: gh * gw * 1176 }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
  return { pixels, gridThw: [[1, gh, gw]] };
}
function prompt(img: ImageInput, text: number[]): PromptInput {
  const [, gh, gw] = img.gridThw[0]!;
  return { ids: Int32Array.from([tok.imStart, ...text, tok.visionStart, ...new Array<number>((gh * gw) / 4).fill(tok.imagePad), tok.visionEnd, 7]), images: img };
}
/** Images encoded by the vision tower since the last call (process-wide). */
function encoded(): number {
  return native().engineCounters(true).visionTowerImages;
}
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

const dir = join(root, 'model');
await writeRandomCheckpoint(dir, { seed: 11 });
const imgA = image(1, 4, 6);
const imgB = image(2, 6, 4);
// A copy of imgA in another buffer: found by content, not by identity.
const imgACopy: ImageInput = { pixels: Float32Array.from(imgA.pixels), gridThw: [[1, 4, 6]] };
const prompts = [prompt(imgA, [5, 6]), prompt(imgB, [8])];

async function rollout(model: Model): Promise<{ tokens: Int32Array[]; sampled: Float32Array[]; old: Float32Array[] }> {
  const completions = await model.generate(prompts, { temperature: 1, samples: 2, seed: 3, maxNewTokens: 6, stopTokenIds: [] });
  const rows = completions.map((c) => (c.prompt === 0 ? prompt(imgACopy, [5, 6]) : prompts[c.prompt]!));
  const old = await model.logprobs(rows, completions.map((c) => c.tokens));
  return { tokens: completions.map((c) => Int32Array.from(c.tokens)), sampled: completions.map((c) => Float32Array.from(c.logprobs)), old };
}
async function step(model: Model): Promise<void> {
  await model.zeroGradients();
  const ids = [...prompts[0]!.ids, 9, 10, 11];
  await model.trainGradients([{ ids, promptLength: prompts[0]!.ids.length, images: imgA, advantage: 0 }], { objective: 'sft' });
  const r = await model.optimizerStep({ lr: 1e-2 });
  if (r.skipped) throw new Error('step skipped');
}

t.test('generation and old log-probs encode each image once per weight version, bit-identical to no cache', async (t) => {
  const cached = await Model.load(dir);
  const uncached = await Model.load(dir, { imageCacheBytes: 0 });
  t.teardown(async () => {
    await cached.dispose();
    await uncached.dispose();
  });

  encoded();
  const a = await rollout(cached);
  t.equal(encoded(), 2, 'generate + logprobs over 2 images (4 rows, one a copy) encode 2 images with the cache');
  const b = await rollout(uncached);
  t.equal(encoded(), 6, 'without the cache: 2 in generate, 4 in logprobs');
  for (let i = 0; i < a.tokens.length; i++) {
    t.ok(sameBits(Float32Array.from(a.tokens[i]!), Float32Array.from(b.tokens[i]!)), `completion ${i}: same tokens`);
    t.ok(sameBits(a.sampled[i]!, b.sampled[i]!), `completion ${i}: same sampling log-probs`);
    t.ok(sameBits(a.old[i]!, b.old[i]!), `completion ${i}: same old log-probs`);
  }
  const f = await cached.forward({ ids: prompts[1]!.ids as Int32Array, mask: new Int32Array(prompts[1]!.ids.length).fill(1), rows: 1, seqLen: prompts[1]!.ids.length, images: imgB });
  t.equal(encoded(), 0, 'a forward on a cached image encodes nothing');
  const g = await uncached.forward({ ids: prompts[1]!.ids as Int32Array, mask: new Int32Array(prompts[1]!.ids.length).fill(1), rows: 1, seqLen: prompts[1]!.ids.length, images: imgB });
  t.ok(sameBits(f.logits, g.logits), 'forward logits: same bits');
  t.equal(encoded(), 1, 'the uncached model encodes it again');

  // A separate model (the reference) keeps its own features.
  const reference = await Model.load(dir);
  await reference.logprobs([prompts[0]!], [a.tokens[0]!]);
  t.equal(encoded(), 1, 'another model object encodes the image itself');
  await reference.dispose();

  // New weights: the next call encodes again, and agrees with the uncached model's.
  await step(cached);
  await step(uncached);
  encoded();
  const after = await cached.logprobs([prompts[0]!, prompts[1]!], [a.tokens[0]!, a.tokens[2]!]);
  t.equal(encoded(), 2, 'after the optimiser step both images are encoded again');
  const afterUncached = await uncached.logprobs([prompts[0]!, prompts[1]!], [a.tokens[0]!, a.tokens[2]!]);
  encoded();
  t.ok(sameBits(after[0]!, afterUncached[0]!) && sameBits(after[1]!, afterUncached[1]!), 'post-step log-probs: same bits with and without the cache');
  t.notOk(sameBits(after[0]!, a.old[0]!), 'and they moved with the weights');
  await cached.logprobs([prompts[0]!], [a.tokens[0]!]);
  t.equal(encoded(), 0, 'then hit again at the new version');

  await cached.setParameters(await uncached.parameters());
  await cached.logprobs([prompts[0]!], [a.tokens[0]!]);
  t.equal(encoded(), 1, 'setParameters makes the next call encode again');
});

t.test('the byte budget bounds the cache', async (t) => {
  // One image's features: 6 merged tokens x 64 floats = 1536 bytes.
  const small = await Model.load(dir, { imageCacheBytes: 2000 });
  const roomy = await Model.load(dir);
  t.teardown(async () => {
    await small.dispose();
    await roomy.dispose();
  });
  const completion = [[3, 4]];
  encoded();
  for (const model of [small, roomy])
    for (const p of [prompts[0]!, prompts[1]!, prompts[0]!]) await model.logprobs([p], completion);
  const counters = native().engineCounters(true);
  t.equal(counters.visionTowerImages, 3 + 2, 'a budget of one image re-encodes the evicted one (3); a roomy one does not (2)');
  t.equal(counters.imageCacheHits, 1, 'one hit: the roomy cache on the third call');
  await t.rejects(Model.load(dir, { imageCacheBytes: -1 }), /imageCacheBytes/);
});
