// Issue 19 defects 6, 8 and 12 (token ids): config.json values the model code
// would loop on, divide by or index with are errors naming the file and field,
// in the library and again in the native loader for callers that bypass it.
import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModelConfig, readModelConfig, type ModelConfig } from '../lib/engine/config.js';
import { Model } from '../lib/engine/model.js';
import { TINY, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { native } from '../lib/native/binding.js';

const dir = mkdtempSync(join(tmpdir(), 'st-config-checks-'));
await writeRandomCheckpoint(dir, { seed: 3 });
const file = join(dir, 'config.json');
const good = JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>;

function withVision(patch: Record<string, unknown>): Record<string, unknown> {
  return { ...good, vision_config: { ...good['vision_config'], ...patch } };
}

t.test('the library rejects the bad values naming file and field', async (t) => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['window_size 14', withVision({ window_size: 14 }), /config\.json: vision_config\.window_size \(14\) is smaller than one merged patch \(spatial_merge_size x patch_size = 28\)/],
    ['window_size 27', withVision({ window_size: 27 }), /vision_config\.window_size \(27\)/],
    ['num_heads 3 of hidden 32', withVision({ num_heads: 3 }), /config\.json: vision_config\.num_heads \(3\) does not divide vision_config\.hidden_size \(32\)/],
    ['num_heads 64 of hidden 32', withVision({ num_heads: 64 }), /vision_config\.num_heads \(64\) does not divide/],
    ['head size 2', withVision({ num_heads: 16 }), /vision head size 2 .* multiple of 4/],
    ['image_token_id past the vocabulary', { ...good, image_token_id: TINY.text.vocab + 5 }, /config\.json: image_token_id \(1029\) is outside the vocabulary \(vocab_size 1024\)/],
    ['negative vision_start_token_id', { ...good, vision_start_token_id: -1 }, /config\.json: vision_start_token_id \(-1\) is outside the vocabulary/],
  ];
  for (const [name, raw, message] of cases) t.throws(() => parseModelConfig(raw, file), message, name);
  t.equal(parseModelConfig(withVision({ window_size: 28 }), file).vision.windowSize, 28, 'one merged patch is the smallest window');
});

t.test('Model.load refuses a window_size below one merged patch instead of allocating without end (defect 6)', async (t) => {
  const bad = mkdtempSync(join(tmpdir(), 'st-config-window-'));
  await writeRandomCheckpoint(bad, { seed: 3, vision: { windowSize: 14 } });
  await t.rejects(Model.load(bad), /config\.json: vision_config\.window_size \(14\)/);
});

t.test('the native loader checks the same values when handed a config directly', async (t) => {
  const config = await readModelConfig(dir);
  const load = async (c: ModelConfig) => native().loadModel({ dir, config: c, device: 'cpu', imageCacheBytes: 0 });
  const cases: [string, ModelConfig, RegExp][] = [
    ['window 14', { ...config, vision: { ...config.vision, windowSize: 14 } }, /loadModel: config\.json: vision_config\.window_size 14 is smaller than one merged patch/],
    ['window 0', { ...config, vision: { ...config.vision, windowSize: 0 } }, /vision_config\.window_size 0 must be positive/],
    ['heads 3', { ...config, vision: { ...config.vision, heads: 3 } }, /vision_config\.num_heads 3 does not divide vision_config\.hidden_size 32/],
    ['text heads 3', { ...config, text: { ...config.text, heads: 3 } }, /num_attention_heads 3 does not divide hidden_size 64/],
    ['image token', { ...config, imageTokenId: 5000 }, /image_token_id 5000 is outside the vocabulary/],
  ];
  for (const [name, c, message] of cases) await t.rejects(load(c), message, name);
  const model = await load(config);
  t.ok(model, 'the unmodified config loads');
});
