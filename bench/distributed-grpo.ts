/**
 * Data-parallel scaling of a GRPO step on the CPU: the same global batch
 * (P prompts x n samples, generated, then one update: forward, backward,
 * gradient all-reduce, AdamW) in 1 process with 1 thread, 2 processes with
 * 1 thread each (Gloo on 127.0.0.1, ZeRO-1), and 1 process with 2 threads.
 * Each configuration runs in processes of its own (SPATIALTHINKER_THREADS
 * is read once, when the engine starts its pool).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, type ImageInput } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { initProcessGroup } from '../lib/distributed/process-group.js';
import { table } from './engine.js';
import { freePort } from './distributed.js';

/** The benchmark's model: big enough that compute, not call overhead, dominates a step (about 40M parameters). */
const MODEL = {
  text: { hidden: 512, intermediate: 1408, layers: 8, heads: 8, kvHeads: 2, vocab: 32000, ropeTheta: 1e6, mropeSection: [8, 12, 12] as [number, number, number] },
  vision: { depth: 2, hidden: 128, heads: 2, intermediate: 256 },
};
const PROMPTS = 4;
const SAMPLES = 4;
const NEW_TOKENS = 24;
const STEPS = 2;

interface RankTiming {
  generateSeconds: number;
  updateSeconds: number;
  allReduceShare?: number;
}

/** One rank: generation of its share of the prompts and one update over its share of the sequences, timed per step. */
async function rank(dir: string): Promise<void> {
  const rankIndex = Number(process.env['RANK'] ?? 0);
  const world = Number(process.env['WORLD_SIZE'] ?? 1);
  const model = await Model.load(dir);
  if (world > 1) {
    const group = await initProcessGroup({ device: 'cpu', timeoutMs: 120_000 });
    await model.attachProcessGroup({ processGroup: group, zero1: true });
  }
  const vocab = model.config.text.vocab;
  const tok = randomCheckpointTokens(vocab);
  let s = 7;
  const images: ImageInput = { pixels: Float32Array.from({ length: 16 * 1176 }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5), gridThw: [[1, 4, 4]] };
  const prompts = Array.from({ length: PROMPTS }, (_, p) => {
    const ids = [tok.imStart, tok.visionStart, ...new Array<number>(4).fill(tok.imagePad), tok.visionEnd];
    while (ids.length < 64) ids.push((ids.length * 13 + p * 17) % (vocab - 16));
    return { ids, images };
  }).filter((_, p) => p % world === rankIndex);
  const timings: RankTiming[] = [];
  for (let step = 0; step <= STEPS; step++) {
    const t0 = performance.now();
    const completions = await model.generate(prompts, { samples: SAMPLES, maxNewTokens: NEW_TOKENS, seed: step, temperature: 1, stopTokenIds: [], promptIndex: { first: rankIndex, stride: world } });
    const t1 = performance.now();
    const batch = completions.map((c, i) => ({
      ids: [...(prompts[c.prompt]?.ids ?? []), ...c.tokens],
      promptLength: prompts[c.prompt]?.ids.length ?? 0,
      images,
      advantage: i % 2 ? 1 : -1,
      oldLogprobs: c.logprobs,
    }));
    const tokens = (await model.reduceScalars([batch.reduce((a, b) => a + b.ids.length - b.promptLength, 0)], 'sum'))[0] ?? 0;
    await model.zeroGradients();
    for (const sequence of batch) await model.trainGradients([sequence], { batchTokens: tokens, batchSequences: PROMPTS * SAMPLES, klCoef: 0 });
    await model.optimizerStep({ lr: 1e-6 });
    const t2 = performance.now();
    if (step > 0) timings.push({ generateSeconds: (t1 - t0) / 1000, updateSeconds: (t2 - t1) / 1000 }); // step 0 warms up
  }
  if (rankIndex === 0) process.stdout.write(JSON.stringify(timings) + '\n');
  await model.dispose();
  process.exit(0);
}

/** Runs `world` ranks with `threads` engine threads each; rank 0's per-step timings (mean over steps). */
async function configuration(dir: string, world: number, threads: number): Promise<RankTiming | string> {
  const port = await freePort();
  const outputs = await Promise.all(
    Array.from(
      { length: world },
      (_, r) =>
        new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
          const child = spawn(process.execPath, ['--import', 'tsx', 'bench/distributed-grpo.ts', '--rank', dir], {
            env: { ...process.env, SPATIALTHINKER_THREADS: String(threads), RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: String(world), LOCAL_WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) },
          });
          let out = '';
          let err = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.stderr.on('data', (d: Buffer) => (err += d.toString()));
          child.on('close', (code) => resolve({ code, out, err }));
        }),
    ),
  );
  const failed = outputs.find((o) => o.code !== 0);
  if (failed) return `failed: ${failed.err.trim().split('\n').slice(-2).join(' ')}`;
  const timings = JSON.parse((outputs[0]?.out ?? '').trim().split('\n').pop() ?? '[]') as RankTiming[];
  const mean = (f: (t: RankTiming) => number) => timings.reduce((a, t) => a + f(t), 0) / Math.max(1, timings.length);
  return { generateSeconds: mean((t) => t.generateSeconds), updateSeconds: mean((t) => t.updateSeconds) };
}

export async function benchDistributedGrpo(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'st-bench-dp-'));
  try {
    console.log(`\n## Data-parallel GRPO step on the CPU: ${PROMPTS} prompts x ${SAMPLES} samples x ${NEW_TOKENS} new tokens, then one update (${STEPS} steps after a warm-up)\n`);
    const dir = join(root, 'model');
    await writeRandomCheckpoint(dir, { seed: 3, ...MODEL });
    const rows: (string | number)[][] = [];
    let base: number | undefined;
    for (const [label, world, threads] of [
      ['1 process x 1 thread', 1, 1],
      ['2 processes x 1 thread (Gloo, ZeRO-1)', 2, 1],
      ['1 process x 2 threads', 1, 2],
    ] as const) {
      const r = await configuration(dir, world, threads);
      if (typeof r === 'string') {
        rows.push([label, r, '', '', '']);
        continue;
      }
      const step = r.generateSeconds + r.updateSeconds;
      base ??= step;
      rows.push([label, r.generateSeconds.toFixed(2), r.updateSeconds.toFixed(2), step.toFixed(2), `${(base / step).toFixed(2)}x`]);
    }
    console.log(table(['configuration', 'generation s', 'update s', 'step s', 'speed-up'], rows));
    console.log(`\n(about ${((MODEL.text.vocab * MODEL.text.hidden + MODEL.text.layers * (2 * MODEL.text.hidden * MODEL.text.hidden + 2 * MODEL.text.hidden * 128 + 3 * MODEL.text.hidden * MODEL.text.intermediate)) / 1e6).toFixed(0)}M-parameter text model; the machine's other load counts, so compare rows of one run only.)`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--rank') await rank(process.argv[3] as string);
