/**
 * Runs a short training job in this process and prints, as JSON on the last
 * line, the largest peak the memory plans of its runs announced beside the
 * process's measured peak resident set: the child side of
 * test/memory-plan.test.ts (each measurement needs a process of its own).
 *
 * usage: tsx test/helpers-memory-plan.ts fixture|demo|half-b WORKDIR
 *  fixture: the tiny model and toy dataset of the trainer tests, 2 GRPO steps with a KL term;
 *  demo:    `spatialthinker demo --quick` (SFT, then GRPO, then evaluation);
 *  half-b:  a 0.5B-class model (Qwen2.5-0.5B's text size, a small vision tower), 1 GRPO step.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Demo } from '../lib/demo/demo.js';
import { deepMerge, validateConfig } from '../lib/rl/config.js';
import { GrpoTrainer } from '../lib/rl/grpo-trainer.js';
import { RewardRegistry } from '../lib/rewards/registry.js';
import { goldTrace } from '../lib/rl/gold-trace.js';
import { writeTinyModelDirectory } from '../lib/engine/tiny-model.js';
import { writeToyDataset, writeToyModel } from './helpers-rl.js';

const UNITS: Record<string, number> = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/** The "peak" figure of a formatted memory plan, in bytes. */
export function planPeak(text: string): number | undefined {
  const m = /^\s*peak\s+([\d.]+) (KiB|MiB|GiB)/m.exec(text);
  return m ? Number(m[1]) * (UNITS[m[2] as string] as number) : undefined;
}

async function main(): Promise<void> {
  const [mode, work] = process.argv.slice(2);
  if (!mode || !work) throw new Error('usage: helpers-memory-plan.ts fixture|demo|half-b WORKDIR');
  let planned = 0;
  const listen = (message: string) => {
    const peak = planPeak(message);
    if (peak !== undefined) planned = Math.max(planned, peak);
  };
  if (mode === 'demo') {
    const demo = new Demo({ quick: true, out: work });
    demo.on('run', (run) => run.on('log', listen));
    await demo.run();
  } else {
    const data = join(work, 'data');
    const train = await writeToyDataset(data, 'train', 8, 1);
    const val = await writeToyDataset(data, 'val', 3, 2);
    const modelDir = join(work, 'model');
    if (mode === 'fixture') await writeToyModel(modelDir, [...train, ...val]);
    else if (mode === 'half-b' && !existsSync(join(modelDir, 'config.json'))) {
      // Writing 0.5B random weights leaves gigabytes of freed JavaScript heap in this
      // process's RSS, which a real run never has: write them in a process of their own.
      await writeTinyModelDirectory(modelDir, {
        corpus: [...train, ...val].flatMap((r) => [r.problem, goldTrace(r.answer_option_text)]),
        vocabSize: 700,
        text: { hidden: 896, intermediate: 4864, layers: 24, heads: 14, kvHeads: 2, vocab: 151936, ropeTheta: 1e6, mropeSection: [8, 12, 12] },
        vision: { depth: 2, hidden: 128, heads: 2, intermediate: 256, windowSize: 112, fullAttentionBlocks: [1] },
        tieEmbeddings: true,
      });
      console.log(JSON.stringify({ wrote: modelDir, next: 'run the same command again to measure' }));
      return;
    } else if (mode !== 'half-b') throw new Error(`unknown mode ${mode}`);
    const registry = new RewardRegistry().register('by-length', (input) => ({ overall: (input.completion.length % 5) / 4 }));
    const config = validateConfig(
      deepMerge(
        {
          data: { train_files: join(data, 'train.jsonl'), max_prompt_length: 2048, max_response_length: 20, rollout_batch_size: mode === 'fixture' ? 4 : 2, min_pixels: 56 * 56, max_pixels: 56 * 56 },
          worker: {
            actor: { global_batch_size: 2, micro_batch_size_per_device_for_update: 2, micro_batch_size_per_device_for_experience: 4, model: { model_path: modelDir, enable_gradient_checkpointing: false }, optim: { lr: 1e-4 } },
            rollout: { n: 4 },
            reward: { reward_function: 'by-length' },
          },
          trainer: { max_steps: mode === 'fixture' ? 2 : 1, val_freq: -1, save_freq: -1, save_checkpoint_path: join(work, 'run'), logger: ['file'] },
        },
        {},
      ),
    );
    const trainer = new GrpoTrainer(config, { rewards: registry });
    trainer.on('log', listen);
    await trainer.train();
    await trainer.dispose();
  }
  console.log(JSON.stringify({ plannedBytes: planned, measuredBytes: process.resourceUsage().maxRSS * 1024 }));
}

if (process.argv[1]?.endsWith('helpers-memory-plan.ts')) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.stack : e);
    process.exit(1);
  });
}
