/**
 * `npm run bench -- --only scale`: checkpoints at the users' scale.
 *  - A random checkpoint of the real Qwen2.5-VL-3B config (bf16, 2 shards,
 *    written by transformers: bench/scale-checkpoint.ts), kept in
 *    --scale-dir (default .scratch/scale-3b) and reused by later runs.
 *  - Loading it: seconds, GB/s of checkpoint read and peak RSS, ours beside
 *    transformers' from_pretrained in fp32, each in a fresh process; target
 *    at least as fast as transformers, peak RSS <= 1.25 x the fp32 weights.
 *  - `export` to bf16 through the trainer's native writer: save GB/s, peak
 *    RSS, and every tensor of the export compared with the source bit for bit.
 *  - Real-size fidelity: log-probs of a fixed image+text completion beside
 *    transformers'.
 *  - A 0.5B-class GRPO run whose optimiser state (fp32 master, m, v: about
 *    5.9 GB) exceeds 4 GiB: it saves, resumes from its first checkpoint in a
 *    fresh run folder, and its second checkpoint equals the uninterrupted
 *    run's byte for byte.
 * Python (torch, transformers, safetensors) comes from bench/python-env.ts;
 * without it the 3B parts are skipped, saying why.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Model } from '../lib/engine/model.js';
import { writeTinyModelDirectory } from '../lib/engine/tiny-model.js';
import { writeModelDirectory } from '../lib/rl/checkpoint.js';
import { deepMerge, validateConfig } from '../lib/rl/config.js';
import { goldTrace } from '../lib/rl/gold-trace.js';
import { GrpoTrainer } from '../lib/rl/grpo-trainer.js';
import { writeShapesSplits } from '../lib/shapes/dataset.js';
import { pythonWith } from './python-env.js';
import { measureLoad, realSizeFidelity, writeScaleCheckpoint } from './scale-checkpoint.js';

const GB = 1e9;
const GiB = 2 ** 30;
const fmt = (bytes: number) => `${(bytes / GiB).toFixed(2)} GiB`;

/** Runs this file in a child process and returns the JSON object it prints last. */
async function child(args: string[]): Promise<Record<string, unknown>> {
  const proc = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((done) => proc.on('close', done));
  const last = out.trim().split('\n').at(-1) ?? '';
  if (code !== 0) throw new Error(`scale bench child ${args[0]} exited ${code}`);
  return JSON.parse(last) as Record<string, unknown>;
}

/** Loads a model directory and writes it as a bf16 model directory: what `spatialthinker export` does, timed. */
async function exportChild(src: string, out: string): Promise<void> {
  const started = performance.now();
  const model = await Model.load(src);
  const loaded = performance.now();
  await mkdir(out, { recursive: true });
  const files = await writeModelDirectory(model, src, out, { dtype: 'bf16' });
  const saved = performance.now();
  await model.dispose();
  console.log(JSON.stringify({ loadSeconds: (loaded - started) / 1000, saveSeconds: (saved - loaded) / 1000, files, peakRssBytes: process.resourceUsage().maxRSS * 1024 }));
}

interface TensorSpan {
  file: string;
  dtype: string;
  shape: number[];
  start: number;
  end: number;
}

/** Every tensor of a model directory's safetensors files: its file and byte span. */
async function tensorSpans(dir: string): Promise<Map<string, TensorSpan>> {
  const spans = new Map<string, TensorSpan>();
  for (const name of (await readdir(dir)).filter((f) => f.endsWith('.safetensors'))) {
    const file = join(dir, name);
    const handle = await open(file, 'r');
    try {
      const length = Buffer.alloc(8);
      await handle.read(length, 0, 8, 0);
      const headerBytes = Number(length.readBigUInt64LE(0));
      const header = Buffer.alloc(headerBytes);
      await handle.read(header, 0, headerBytes, 8);
      const entries = JSON.parse(header.toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
      for (const [tensor, e] of Object.entries(entries)) {
        if (tensor === '__metadata__') continue;
        spans.set(tensor, { file, dtype: e.dtype, shape: e.shape, start: 8 + headerBytes + e.data_offsets[0], end: 8 + headerBytes + e.data_offsets[1] });
      }
    } finally {
      await handle.close();
    }
  }
  return spans;
}

/** Compares every tensor of `a` with the one of the same name in `b`, bytes and all; returns the differences. */
async function compareTensors(a: string, b: string): Promise<{ tensors: number; bytes: number; differences: string[] }> {
  const [left, right] = await Promise.all([tensorSpans(a), tensorSpans(b)]);
  const differences: string[] = [];
  for (const name of right.keys()) if (!left.has(name)) differences.push(`${name}: only in ${b}`);
  const chunk = 64 << 20;
  const bufA = Buffer.alloc(chunk);
  const bufB = Buffer.alloc(chunk);
  let bytes = 0;
  for (const [name, x] of left) {
    const y = right.get(name);
    if (!y) {
      differences.push(`${name}: missing from ${b}`);
      continue;
    }
    if (x.dtype !== y.dtype || x.shape.join() !== y.shape.join() || x.end - x.start !== y.end - y.start) {
      differences.push(`${name}: ${x.dtype}[${x.shape}] vs ${y.dtype}[${y.shape}]`);
      continue;
    }
    const [fa, fb] = await Promise.all([open(x.file, 'r'), open(y.file, 'r')]);
    try {
      for (let at = 0; at < x.end - x.start; at += chunk) {
        const n = Math.min(chunk, x.end - x.start - at);
        await Promise.all([fa.read(bufA, 0, n, x.start + at), fb.read(bufB, 0, n, y.start + at)]);
        if (bufA.compare(bufB, 0, n, 0, n) !== 0) {
          differences.push(`${name}: bytes differ in [${at}, ${at + n})`);
          break;
        }
      }
      bytes += x.end - x.start;
    } finally {
      await Promise.all([fa.close(), fb.close()]);
    }
  }
  return { tensors: left.size, bytes, differences };
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(dir)) total += (await stat(join(dir, f))).size;
  return total;
}

async function benchThreeB(dir: string, work: string): Promise<void> {
  const env = pythonWith(['torch', 'transformers', 'safetensors', 'numpy'], ['torch', 'transformers', 'safetensors', 'numpy']);
  if ('skipped' in env) {
    console.log(`3B checkpoint: skipped (${env.skipped})`);
    return;
  }
  process.env['SPATIALTHINKER_PYTHON'] = env.python;
  if (existsSync(join(dir, 'model.safetensors.index.json'))) console.log(`3B checkpoint: reusing ${dir}`);
  else {
    console.log(`3B checkpoint: writing random weights of the real Qwen2.5-VL-3B config to ${dir} (bf16, 2 shards, via transformers)`);
    const made = await writeScaleCheckpoint(dir, '3b');
    console.log(`  ${(made.parameters / 1e9).toFixed(3)}B parameters, ${(made.bytes / GB).toFixed(2)} GB in ${made.files.length} files, ${made.seconds.toFixed(0)} s`);
  }
  const bytes = (await readdir(dir)).filter((f) => f.endsWith('.safetensors')).length > 0 ? await directoryBytes(dir) : 0;

  console.log('\n### Loading (fresh process each, page cache as it is)\n');
  const ours = await measureLoad(dir, 'ours');
  const fp32 = ours.parameters * 4;
  const theirs = await measureLoad(dir, 'transformers').catch((e: Error) => e);
  console.log('| loader | seconds | checkpoint GB/s | peak RSS | peak / fp32 weights |');
  console.log('|---|---|---|---|---|');
  console.log(`| ours (Model.load) | ${ours.seconds.toFixed(1)} | ${(bytes / GB / ours.seconds).toFixed(2)} | ${fmt(ours.peakRssBytes)} | ${(ours.peakRssBytes / fp32).toFixed(2)}x |`);
  if (theirs instanceof Error) console.log(`| transformers | skipped: ${theirs.message} | | | |`);
  else console.log(`| transformers from_pretrained (fp32) | ${theirs.seconds.toFixed(1)} | ${(bytes / GB / theirs.seconds).toFixed(2)} | ${fmt(theirs.peakRssBytes)} | ${(theirs.peakRssBytes / fp32).toFixed(2)}x |`);
  const faster = theirs instanceof Error ? 'n/a' : ours.seconds <= theirs.seconds ? 'met' : 'NOT met';
  console.log(`\ntargets: load at least as fast as transformers: ${faster}; peak RSS <= 1.25 x fp32 weights (${fmt(1.25 * fp32)}): ${ours.peakRssBytes <= 1.25 * fp32 ? 'met' : 'NOT met'}`);

  console.log('\n### export to bf16 through the native writer\n');
  const out = join(work, 'export-3b');
  const exported = await child(['export-child', dir, out]);
  const written = await directoryBytes(out);
  const same = await compareTensors(dir, out);
  console.log(`load ${(exported['loadSeconds'] as number).toFixed(1)} s; save ${(exported['saveSeconds'] as number).toFixed(1)} s = ${(written / GB / (exported['saveSeconds'] as number)).toFixed(2)} GB/s (${(written / GB).toFixed(2)} GB, ${(exported['files'] as string[]).join(', ')}); peak RSS ${fmt(exported['peakRssBytes'] as number)} (${((exported['peakRssBytes'] as number) / fp32).toFixed(2)}x fp32 weights)`);
  console.log(`bit for bit: ${same.tensors} tensors, ${(same.bytes / GB).toFixed(2)} GB compared, ${same.differences.length === 0 ? 'all identical' : `${same.differences.length} differ: ${same.differences.slice(0, 3).join('; ')}`}`);
  await rm(out, { recursive: true, force: true });

  console.log('\n### Real-size fidelity: log-probs of a fixed image+text completion beside transformers\n');
  const fidelity = await realSizeFidelity(dir);
  console.log(`${fidelity.tokens} completion tokens after a ${fidelity.promptTokens}-token prompt (${fidelity.imageTokens} image tokens): max |ours - transformers| ${fidelity.maxAbsDiff.toExponential(2)}, mean ${fidelity.meanAbsDiff.toExponential(2)}`);
}

/** Runs a 0.5B-class GRPO run for `steps` steps into runDir, from `resumeFrom` when given. */
async function halfBRun(modelDir: string, dataDir: string, runDir: string, steps: number, resumeFrom?: string): Promise<number> {
  const config = validateConfig(
    deepMerge(
      {
        data: { train_files: join(dataDir, 'train.jsonl'), val_files: join(dataDir, 'val.jsonl'), max_prompt_length: 2048, max_response_length: 6, rollout_batch_size: 2, min_pixels: 56 * 56, max_pixels: 56 * 56 },
        algorithm: { disable_kl: true },
        worker: {
          actor: { global_batch_size: 2, micro_batch_size_per_device_for_update: 2, micro_batch_size_per_device_for_experience: 4, model: { model_path: modelDir }, optim: { lr: 1e-5 } },
          rollout: { n: 2, temperature: 1 },
          reward: { similarity: 'exact' },
        },
        trainer: { max_steps: steps, val_freq: -1, val_before_train: false, save_freq: 1, save_dtype: 'bf16', save_limit: -1, save_checkpoint_path: runDir, logger: ['file'], stall_steps: 0 },
      },
      resumeFrom ? { trainer: { load_checkpoint_path: resumeFrom } } : {},
    ),
  );
  const trainer = new GrpoTrainer(config);
  trainer.on('log', (m) => /saved|resumed/.test(m) && console.log(`  ${m}`));
  const started = performance.now();
  await trainer.train();
  await trainer.dispose();
  return (performance.now() - started) / 1000;
}

async function benchHalfBResume(work: string): Promise<void> {
  console.log('\n### 0.5B-class GRPO: optimiser state over 4 GiB saves, resumes and continues bit-exactly\n');
  const dataDir = join(work, 'half-data');
  const modelDir = join(work, 'half-model');
  const { train, val } = await writeShapesSplits({ outDir: dataDir, trainRows: 8, valRows: 2, seed: 1, width: 112, height: 112 });
  await writeTinyModelDirectory(modelDir, {
    corpus: [...train, ...val].flatMap((r) => [r.problem, goldTrace(r.answer_option_text)]),
    vocabSize: 700,
    seed: 3,
    // Qwen2.5-0.5B's text size (its padded vocabulary too), a small vision tower.
    text: { hidden: 896, intermediate: 4864, layers: 24, heads: 14, kvHeads: 2, vocab: 151936, ropeTheta: 1e6, mropeSection: [8, 12, 12] },
    vision: { depth: 2, hidden: 128, heads: 2, intermediate: 256 },
    tieEmbeddings: true,
  });
  const straight = join(work, 'run-straight');
  const resumed = join(work, 'run-resumed');
  const straightSeconds = await halfBRun(modelDir, dataDir, straight, 2);
  const first = join(straight, 'checkpoints', 'step-000001');
  const optimizerBytes = await directoryBytes(join(first, 'trainer'));
  const resumedSeconds = await halfBRun(modelDir, dataDir, resumed, 2, first);
  const a = join(straight, 'checkpoints', 'step-000002');
  const b = join(resumed, 'checkpoints', 'step-000002');
  const weights = await compareTensors(a, b);
  const optimizer = await compareTensors(join(a, 'trainer'), join(b, 'trainer'));
  const state = (dir: string) => readFile(join(dir, 'trainer', 'trainer_state.json'), 'utf8').then((s) => JSON.parse(s) as { step: number; optimizerStep: number });
  const [sa, sb] = await Promise.all([state(a), state(b)]);
  console.log(`optimiser state of step 1 (trainer/): ${fmt(optimizerBytes)} ${optimizerBytes > 4 * GiB ? '(> 4 GiB)' : '(NOT over 4 GiB)'}`);
  console.log(`uninterrupted 2 steps: ${straightSeconds.toFixed(0)} s; resumed at step 1 in a fresh run folder, 1 more step: ${resumedSeconds.toFixed(0)} s`);
  console.log(`step-2 weights: ${weights.tensors} tensors, ${weights.differences.length === 0 ? 'identical bit for bit' : `${weights.differences.length} differ: ${weights.differences.slice(0, 3).join('; ')}`}`);
  console.log(`step-2 optimiser state: ${optimizer.tensors} tensors (${fmt(optimizer.bytes)}), ${optimizer.differences.length === 0 ? 'identical bit for bit' : `${optimizer.differences.length} differ: ${optimizer.differences.slice(0, 3).join('; ')}`}`);
  console.log(`trainer state: step ${sa.step}/${sb.step}, optimiser steps ${sa.optimizerStep}/${sb.optimizerStep}`);
}

export async function benchScale(options: { dir?: string } = {}): Promise<void> {
  console.log('\n## Scale: a real-size checkpoint and optimiser state beyond 4 GiB (CPU)\n');
  await mkdir(resolve('.scratch'), { recursive: true });
  const work = await mkdtemp(join(resolve('.scratch'), 'scale-'));
  try {
    await benchThreeB(resolve(options.dir ?? join('.scratch', 'scale-3b')), work);
    await benchHalfBResume(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url) && process.argv[2] === 'export-child') {
  await exportChild(resolve(process.argv[3] as string), resolve(process.argv[4] as string));
}
