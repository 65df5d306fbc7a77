/**
 * `node --expose-gc --import tsx bench/optimizer-step.ts [--steps N]`: the time of one AdamW step
 * of a 0.5B-class model (Qwen2.5-0.5B's text config, random bf16 weights
 * loaded as fp32) as the trainer takes it now (the step returns metrics only)
 * and as it took it before (it first copied every AdamW moment into
 * JavaScript to read the step count: exportOptimizerState() is that copy).
 * Gradients are accumulated once from a short sequence; the steps reuse them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Model } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';

export const HALF_B_TEXT = { hidden: 896, intermediate: 4864, layers: 24, heads: 14, kvHeads: 2, vocab: 151936, ropeTheta: 1e6, mropeSection: [8, 12, 12] as [number, number, number] };

const { values } = parseArgs({ options: { steps: { type: 'string', default: '3' } } });
const steps = Number(values.steps);
const root = mkdtempSync(join(tmpdir(), 'st-bench-optim-'));
try {
  const dir = join(root, 'half');
  await writeRandomCheckpoint(dir, { text: HALF_B_TEXT, vision: { depth: 2, hidden: 128, heads: 2, intermediate: 256 }, tieEmbeddings: true, dtype: 'BF16' });
  const model = await Model.load(dir);
  const tok = randomCheckpointTokens(model.config.text.vocab);
  const ids = [tok.imStart, ...Array.from({ length: 15 }, (_, i) => (i * 13) % 1000)];
  await model.trainGradients([{ ids, promptLength: 8, advantage: 1, oldLogprobs: new Float32Array(8).fill(-12), refLogprobs: new Float32Array(8).fill(-12) }]);
  await model.optimizerStep({ lr: 1e-6 }); // allocates the moments
  const time = async (body: () => Promise<unknown>) => {
    const times: number[] = [];
    for (let i = 0; i < steps; i++) {
      const started = process.hrtime.bigint();
      await body();
      times.push(Number(process.hrtime.bigint() - started) / 1e9);
    }
    return Math.min(...times);
  };
  const gib = () => ((process.resourceUsage().maxRSS * 1024) / 2 ** 30).toFixed(2);
  console.log(`0.5B-class optimiser step (${(model.parameterCount / 1e6).toFixed(0)}M parameters, best of ${steps}):`);
  const after = await time(() => model.optimizerStep({ lr: 1e-6 }));
  console.log(`  now (the step alone, metrics returned):                 ${after.toFixed(2)} s (peak RSS ${gib()} GiB)`);
  const gc = (globalThis as { gc?: () => void }).gc;
  const before = await time(async () => {
    const step = (await model.exportOptimizerState()).step; // all that run.ts read of it
    gc?.();
    await model.optimizerStep({ lr: 1e-6 });
    return step;
  });
  console.log(`  before (moments copied into JavaScript, then the step): ${before.toFixed(2)} s (peak RSS ${gib()} GiB)`);
  await model.dispose();
} finally {
  rmSync(root, { recursive: true, force: true });
}
