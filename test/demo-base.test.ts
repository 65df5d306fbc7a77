import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VisionLanguageModel } from '../lib/engine/pipeline.js';
import { DEMO_DEFAULTS } from '../lib/demo/options.js';
import { writeShapesSplits } from '../lib/shapes/dataset.js';
import { BASE_FILES, readPretrainManifest, sha256File, shippedBasePath } from '../lib/demo/pretrain.js';

// The pre-trained base the demo starts from ships in the package (assets/demo-base).
const base = shippedBasePath();
const root = join(base, '..', '..');

t.test('the shipped base is complete, small, and its hash is the README\'s', async (t) => {
  for (const f of BASE_FILES) t.ok(statSync(join(base, f)).isFile(), `${f} is there`);
  const bytes = statSync(join(base, 'model.safetensors')).size;
  t.ok(bytes < 10e6, `model.safetensors is ${bytes} bytes, under 10 MB`);
  const hash = await sha256File(join(base, 'model.safetensors'));
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const stated = /assets\/demo-base\/model\.safetensors` sha256 `([0-9a-f]{64})`/.exec(readme);
  t.ok(stated, 'the README states the base\'s sha256');
  t.equal(hash, stated?.[1], 'the shipped weights are the ones the README names');
  const manifest = await readPretrainManifest(base);
  t.match(readme, manifest.command.replace(/--out \S+/, '--out assets/demo-base').replace(/^spatialthinker/, ''), 'the README gives the command that made it');
  t.not(manifest.options.worldSeed, DEMO_DEFAULTS.worldSeed, 'pre-trained on another world than the demo\'s');
  t.not(manifest.options.worldSeed, DEMO_DEFAULTS.secondWorldSeed, 'and than its second world');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { files: string[] };
  t.ok(pkg.files.includes('assets'), 'package.json ships assets/');
});

t.test('the shipped base loads and writes the four blocks for a demo question', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-base-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { val } = await writeShapesSplits({ outDir: dir, trainRows: 1, valRows: 2, seed: DEMO_DEFAULTS.worldSeed, width: DEMO_DEFAULTS.imageSize, height: DEMO_DEFAULTS.imageSize });
  const vlm = await VisionLanguageModel.load(base, { threads: 1 });
  t.teardown(() => vlm.dispose());
  t.equal(vlm.model.config.text.hidden, DEMO_DEFAULTS.hidden);
  const completions = await vlm.generate(
    val.map((row) => ({ images: [join(dir, row.images.path)], text: row.question_with_options })),
    { maxNewTokens: DEMO_DEFAULTS.maxResponseTokens, temperature: 0 },
  );
  for (const [i, c] of completions.entries())
    for (const tag of ['observe', 'scene', 'think', 'answer']) t.match(c.text, `<${tag}>`, `row ${i}: it writes <${tag}>`);
});
