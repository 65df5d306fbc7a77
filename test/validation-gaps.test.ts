// Issue 19 defect 12 (the parts in lib/engine and the generate CLI): bad
// generation options and a FIFO in the model directory are clear errors.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../lib/engine/model.js';
import { writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { generateOptionsProblem } from '../lib/engine/generate-options.js';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stderr: r.stderr };
}

t.test('generate refuses out-of-range options before loading anything', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--threads', '100000'], /--threads must be an integer in \[1, 1024\], got 100000/],
    [['--samples', '1e12'], /--samples must be an integer in \[1, 4096\], got 1000000000000/],
    [['--samples', '0'], /--samples must be an integer in \[1, 4096\], got 0/],
    [['--max-new-tokens', '0'], /--max-new-tokens must be an integer in \[1, 1048576\], got 0/],
    [['--top-p', '2'], /--top-p must be in \(0, 1\], got 2/],
    [['--top-p', '0'], /--top-p must be in \(0, 1\], got 0/],
    [['--top-p', ''], /--top-p must be a non-negative number/],
  ];
  for (const [args, message] of cases) {
    const r = cli('generate', '--model', '/nonexistent-model', '--question', 'q', ...args);
    t.equal(r.code, 2, `${args.join(' ')}: a usage error`);
    t.match(r.stderr, message, args.join(' '));
    t.notMatch(r.stderr, /bad_alloc|\n\s+at /, 'no bare C++ error, no stack');
  }
});

t.test('the library checks the same options', async (t) => {
  t.equal(generateOptionsProblem({ samples: 1, maxNewTokens: 16, topP: 1, topK: 0, temperature: 0.7 }), undefined);
  t.match(generateOptionsProblem({ samples: 1e12 }), /samples must be an integer/);
  t.match(generateOptionsProblem({ maxNewTokens: 0 }), /maxNewTokens/);
  t.match(generateOptionsProblem({ topP: Number.NaN }), /topP/);
  t.match(generateOptionsProblem({ temperature: -1 }), /temperature/);
});

t.test('a FIFO named model.safetensors is refused instead of blocking forever', { timeout: 60_000 }, async (t) => {
  const source = mkdtempSync(join(tmpdir(), 'st-fifo-src-'));
  await writeRandomCheckpoint(source, { seed: 4 });
  const dir = mkdtempSync(join(tmpdir(), 'st-fifo-'));
  for (const name of readdirSync(source)) if (name !== 'model.safetensors') copyFileSync(join(source, name), join(dir, name));
  const made = spawnSync('mkfifo', [join(dir, 'model.safetensors')]);
  if (made.status !== 0) {
    t.fail(`mkfifo is not available: ${made.stderr}`);
    return;
  }
  await t.rejects(Model.load(dir), new RegExp(`${join(dir, 'model.safetensors').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not a regular file \\(a FIFO\\)`));
});

t.test('a full disk (ENOSPC) names the file being written', async (t) => {
  const { existsSync, symlinkSync, mkdirSync } = await import('node:fs');
  if (!existsSync('/dev/full')) {
    t.fail('/dev/full is needed to simulate a full disk');
    return;
  }
  const { RunLog } = await import('../lib/rl/run-log.js');
  const { writeJsonl } = await import('../lib/data/writer.js');
  const dir = mkdtempSync(join(tmpdir(), 'st-enospc-'));
  symlinkSync('/dev/full', join(dir, 'metrics.jsonl'));
  symlinkSync('/dev/full', join(dir, 'samples.jsonl'));
  const log = await RunLog.open(dir, { tensorboard: false });
  await t.rejects(log.metrics(1, 'train', { loss: 1 }), new RegExp(`cannot write ${join(dir, 'metrics.jsonl')}: ENOSPC`));
  await t.rejects(log.samples([{ step: 1 } as never]), new RegExp(`cannot write ${join(dir, 'samples.jsonl')}: ENOSPC`));
  const images = join(dir, 'out_images');
  mkdirSync(images);
  symlinkSync('/dev/full', join(images, '000000.png'));
  const sharp = (await import('sharp')).default;
  const png = new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 1, g: 2, b: 3 } } }).png().toBuffer());
  const row = {
    images: { bytes: png, path: null },
    problem: 'Q\nImage size: (8 x 8)',
    answer_option_text: '<scene>{"objects": [], "relationships": []}</scene>\n<answer>(A) yes</answer>',
  };
  await t.rejects(
    writeJsonl(join(dir, 'out.jsonl'), (async function* () { yield row as never; })()),
    new RegExp(`cannot write ${join(images, '000000.png')}: ENOSPC`),
  );
});

t.test('NaN weights: generation warns, naming the tensor, instead of silently sampling token 0', { timeout: 120_000 }, async (t) => {
  const { writeTinyModelDirectory } = await import('../lib/engine/tiny-model.js');
  const { readSafetensors, encodeSafetensors } = await import('../lib/io/safetensors.js');
  const { VisionLanguageModel } = await import('../lib/engine/pipeline.js');
  const { writeFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'st-nan-'));
  await writeTinyModelDirectory(dir, { corpus: ['Where is the chair? It is left of the table.'], vocabSize: 300, seed: 6 });
  const file = join(dir, 'model.safetensors');
  const { tensors } = await readSafetensors(file);
  const name = Object.keys(tensors).find((n) => n.includes('layers.0.mlp.down_proj.weight')) as string;
  (tensors[name]!.data as Float32Array).fill(Number.NaN);
  writeFileSync(file, encodeSafetensors(tensors as never, { format: 'pt' }));
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  const vlm = await VisionLanguageModel.load(dir);
  try {
    await vlm.generate([{ text: 'Where is the chair?' }], { maxNewTokens: 2, greedy: true });
    await vlm.generate([{ text: 'Where is the chair?' }], { maxNewTokens: 2, greedy: true });
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', onWarning);
    await vlm.dispose();
  }
  const ours = warnings.filter((w) => (w as NodeJS.ErrnoException).code === 'SPATIALTHINKER_NONFINITE_LOGITS');
  t.equal(ours.length, 1, 'warned once');
  t.match(ours[0]?.message, `weight tensor "${name}" holds NaN or Inf`);
});
