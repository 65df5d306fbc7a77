import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { VisionLanguageModel } from '../lib/engine/pipeline.js';
import { Model, type LoadProgress } from '../lib/engine/model.js';
import { inspectModelWeights } from '../lib/io/safetensors.js';
import { writeQwenTestModel } from './helpers-model.js';

const root = mkdtempSync(join(tmpdir(), 'st-engine-api-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const modelDir = join(root, 'model');
await writeQwenTestModel(modelDir);
const imagePath = join(root, 'scene.png');
await sharp({ create: { width: 120, height: 90, channels: 3, background: { r: 40, g: 120, b: 200 } } }).png().toFile(imagePath);

t.test('vlm.logprobs agrees with generate\'s own log-probs of the same completion', async (t) => {
  const vlm = await VisionLanguageModel.load(modelDir);
  t.teardown(() => vlm.dispose());
  const request = { images: [imagePath], text: 'Where is the cube?' };
  const [greedy] = await vlm.generate([request], { greedy: true, temperature: 1, maxNewTokens: 16, stopTokenIds: [] });
  t.equal(greedy!.tokens.length, 16);
  const scored = await vlm.logprobs(request, greedy!.tokens);
  t.same(Array.from(scored.tokens), Array.from(greedy!.tokens));
  t.equal(scored.logprobs.length, 16);
  let worst = 0;
  for (let i = 0; i < 16; i++) worst = Math.max(worst, Math.abs(scored.logprobs[i]! - greedy!.logprobs[i]!));
  t.ok(worst < 1e-4, `max |difference| ${worst.toExponential(2)} < 1e-4`);
  t.ok(Array.from(scored.logprobs).every((l) => l <= 0 && Number.isFinite(l)), 'log-probabilities');

  // Text is encoded without special tokens and scored the same way as those ids.
  const text = vlm.tokenizer.decode(vlm.tokenizer.encode('left of the sphere'));
  const fromText = await vlm.logprobs(request, text);
  const fromIds = await vlm.logprobs(request, vlm.tokenizer.encode(text));
  t.same(Array.from(fromText.tokens), vlm.tokenizer.encode(text));
  t.same(Array.from(fromText.logprobs), Array.from(fromIds.logprobs));
  const other = await vlm.logprobs({ text: 'Where is the cube?' }, text);
  t.not(Array.from(other.logprobs).join(), Array.from(fromText.logprobs).join(), 'the image is part of the condition');
});

t.test('load progress: config, tokenizer, then weights with their bytes', async (t) => {
  const weights = await inspectModelWeights(modelDir);
  const size = { F32: 4, BF16: 2, F16: 2 } as Record<string, number>;
  const expected = Object.values(weights).reduce((a, w) => a + (size[w.dtype] ?? 0) * w.shape.reduce((x, d) => x * d, 1), 0);
  const events: LoadProgress[] = [];
  const vlm = await VisionLanguageModel.load(modelDir, { onProgress: (p) => events.push(p) });
  t.teardown(() => vlm.dispose());
  t.same(events.map((e) => `${e.phase} ${e.done}/${e.total}`), ['tokenizer 0/1', 'tokenizer 1/1', 'config 0/1', 'config 1/1', 'weights 0/1', 'weights 1/1']);
  t.equal(events.at(-1)!.bytes, expected, `weights report their bytes (${expected})`);
  t.ok(expected > 0);
  const plain: LoadProgress[] = [];
  const model = await Model.load(modelDir, { onProgress: (p) => plain.push(p) });
  t.teardown(() => model.dispose());
  t.same(plain.map((e) => e.phase), ['config', 'config', 'weights', 'weights'], 'Model.load has no tokenizer phase');
  const failed: LoadProgress[] = [];
  await t.rejects(Model.load(join(root, 'nowhere'), { onProgress: (p) => failed.push(p) }));
  t.same(failed.map((e) => `${e.phase} ${e.done}`), ['config 0'], 'a failed load ends with the phase that failed started, not done');
});
