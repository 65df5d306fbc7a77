import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { VisionLanguageModel } from '../lib/engine/pipeline.js';
import { drawBoxes, sceneBoxes } from '../lib/report/boxes.js';
import { loadImage } from '../lib/vision/image.js';
import { writeQwenTestModel } from './helpers-model.js';

const root = mkdtempSync(join(tmpdir(), 'st-pipeline-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const modelDir = join(root, 'model');
await writeQwenTestModel(modelDir);
const imagePath = join(root, 'scene.png');
await sharp({ create: { width: 120, height: 90, channels: 3, background: { r: 40, g: 120, b: 200 } } }).png().toFile(imagePath);

t.test('image and question in, text out, with stop strings', async (t) => {
  const vlm = await VisionLanguageModel.load(modelDir);
  t.teardown(() => vlm.dispose());
  const prepared = await vlm.prepare({ images: [imagePath], text: 'Where is the cube?' });
  t.match(prepared.text, /<\|im_start\|>user\n<\|vision_start\|>(<\|image_pad\|>)+<\|vision_end\|>Where is the cube\?<\|im_end\|>\n<\|im_start\|>assistant\n$/);
  // 120x90 -> smart_resize 112x84 -> grid 8x6 -> 12 image tokens
  t.equal(prepared.input.ids.length - Array.from(prepared.input.ids).filter((id) => id !== 151655).length, 12, '12 image tokens');
  const [greedy] = await vlm.generate([{ images: [imagePath], text: 'Where is the cube?' }], { greedy: true, maxNewTokens: 24, stopTokenIds: [] });
  t.equal(greedy?.tokens.length, 24);
  t.equal(greedy?.text, vlm.tokenizer.decode(Array.from(greedy!.tokens), { skipSpecialTokens: true }), 'text is the decoded tokens');
  // Stop at a string that occurs in the greedy text: generation ends early and the string is cut.
  const text = greedy!.text;
  const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
  t.ok(stop.length > 0, `stop string ${JSON.stringify(stop)}`);
  const streamed: string[] = [];
  const [stopped] = await vlm.generate([{ images: [imagePath], text: 'Where is the cube?' }], {
    greedy: true,
    maxNewTokens: 24,
    stopTokenIds: [],
    stop: [stop],
    onText: (_p, _s, piece) => streamed.push(piece),
  });
  t.equal(stopped?.finishReason, 'stop');
  t.equal(stopped?.text, text.slice(0, text.indexOf(stop)), 'the text ends before the stop string');
  t.ok((stopped?.tokens.length ?? 99) < 24, `generation ended early (${stopped?.tokens.length} tokens)`);
  t.ok(streamed.join('').startsWith(stopped!.text), 'text streamed as it was decoded');
});

t.test('predicted scene boxes are drawn on the image', async (t) => {
  const completion = '<observe>x</observe><scene>{"objects": [{"id": "cube.1", "bbox": [10, 10, 60, 50]}, {"id": "bad.1", "bbox": [1, 2]}]}</scene><think>t</think><answer>(A) left</answer>';
  const boxes = sceneBoxes(completion);
  t.same(boxes.map((b) => b.label), ['cube.1'], 'only well-formed boxes');
  const out = join(root, 'boxes.png');
  const source = await loadImage(imagePath);
  await drawBoxes(source, boxes, out);
  const drawn = await loadImage(out);
  const scale = drawn.width / source.width;
  t.ok(Math.max(drawn.width, drawn.height) >= 512, `a small image is enlarged so its labels can be read (${drawn.width}x${drawn.height})`);
  t.equal(drawn.height, Math.round(source.height * scale), 'keeping its aspect ratio');
  // (x, y) in the source image's pixels.
  const at = (x: number, y: number) => {
    const i = (Math.round(y * scale) * drawn.width + Math.round(x * scale)) * 3;
    return Array.from(drawn.data.subarray(i, i + 3));
  };
  t.not(JSON.stringify(at(10, 30)), JSON.stringify([40, 120, 200]), 'the box edge is drawn');
  t.same(at(100, 80), [40, 120, 200], 'pixels away from boxes are untouched');
  t.same(sceneBoxes('no scene here'), []);
});

t.test('spatialthinker generate end to end', async (t) => {
  const out = join(root, 'cli-boxes.png');
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'generate', '--model', modelDir, '--image', imagePath, '--question', 'Where?', '--max-new-tokens', '8', '--boxes', out], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /8 tokens, finished by length/);
  t.match(r.stderr, /drew \d+ predicted boxes/);
  t.ok(existsSync(out), 'the boxes image is written');
  const several = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'generate', '--model', modelDir, '--image', imagePath, '--question', 'Where?', '--max-new-tokens', '4', '--samples', '2', '--temperature', '1', '--boxes', join(root, 'each.png')], { encoding: 'utf8' });
  t.equal(several.status, 0, several.stderr);
  t.ok(existsSync(join(root, 'each-0.png')) && existsSync(join(root, 'each-1.png')), 'with --samples 2, one boxes image per sample');
  t.notOk(existsSync(join(root, 'each.png')));
  const bad = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'generate', '--model', join(root, 'missing'), '--question', 'x'], { encoding: 'utf8' });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /^spatialthinker generate: cannot read tokenizer .*missing\/tokenizer\.json/);
  t.notMatch(bad.stderr, /\n\s+at /, 'one line, no stack trace');
});
