/**
 * Training throughput on the CPU: tokens/s of a full GRPO update step
 * (forward, backward, AdamW), the share of time in matrix products, and peak
 * memory with and without gradient checkpointing. Each configuration runs in
 * a child process of its own so its peak memory is its own.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, type ImageInput } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint, TINY } from '../lib/engine/random-checkpoint.js';
import { native } from '../lib/native/binding.js';
import { table } from './engine.js';
import { pythonWith } from './python-env.js';

interface WorkerResult {
  tokensPerSecond: number;
  stepSeconds: number;
  matmulShare: number;
  peakRssGiB: number;
  tokensPerStep: number;
}

/**
 * This process's peak RSS. Not resourceUsage().maxRSS: Linux carries
 * ru_maxrss across exec, so a worker started by a bench process that had
 * just written a 2 GB checkpoint would report the parent's peak; VmHWM
 * belongs to the new address space.
 */
function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

/** The timed batch: `sequences` of `length` tokens, each an image (4 tokens) and text prompt of length / 2 and a completion. */
function benchBatch(vocab: number, sequences: number, length: number) {
  const tok = randomCheckpointTokens(vocab);
  let s = 7;
  const images: ImageInput = { pixels: Float32Array.from({ length: 16 * 1176 }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5), gridThw: [[1, 4, 4]] };
  const prompt = [tok.imStart, tok.visionStart, ...new Array<number>(4).fill(tok.imagePad), tok.visionEnd];
  while (prompt.length < length / 2) prompt.push((prompt.length * 13) % (vocab - 16));
  return Array.from({ length: sequences }, (_, i) => {
    const completion = Array.from({ length: length - prompt.length }, (_, j) => (i * 101 + j * 7) % (vocab - 16));
    return { ids: [...prompt, ...completion], promptLength: prompt.length, images, advantage: i % 2 ? 1 : -1, oldLogprobs: new Float32Array(completion.length).fill(-12), refLogprobs: new Float32Array(completion.length).fill(-12) };
  });
}

/** One configuration, in this process: prints a WorkerResult as JSON. */
async function worker(dir: string, sequences: number, length: number, checkpointLayers: boolean, steps: number): Promise<void> {
  const model = await Model.load(dir);
  const batch = benchBatch(model.config.text.vocab, sequences, length);
  const step = async () => {
    await model.zeroGradients();
    await model.trainGradients(batch, { checkpointLayers });
    await model.optimizerStep({ lr: 1e-6 });
  };
  await step(); // warm-up
  native().engineCounters(true);
  const started = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) await step();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const tokens = sequences * length;
  const result: WorkerResult = {
    tokensPerSecond: (tokens * steps) / seconds,
    stepSeconds: seconds / steps,
    matmulShare: native().engineCounters().matmulSeconds / seconds,
    peakRssGiB: peakRssBytes() / 2 ** 30,
    tokensPerStep: tokens,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  await model.dispose();
}

function runWorker(dir: string, sequences: number, length: number, checkpointLayers: boolean, steps: number): WorkerResult | string {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/train.ts', '--worker', dir, String(sequences), String(length), String(checkpointLayers), String(steps)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) return `failed: ${(r.stderr || '').trim().split('\n').slice(-3).join(' ')}`;
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as WorkerResult;
}

function runTorch(python: string, dir: string, batchFile: string, threads: number, steps: number, checkpointLayers: boolean): { tokens_per_second: number } | string {
  // --keep-grads: PyTorch's faster setting here (zeroing gradients in place
  // rather than allocating them afresh each step: 13.9 s against 17.1 s a
  // 0.5B-class step on the 2-core VM), so the column is its best.
  const r = spawnSync(python, ['bench/reference/cpu_train_step.py', dir, batchFile, '--threads', String(threads), '--steps', String(steps), '--keep-grads', ...(checkpointLayers ? ['--checkpoint-layers'] : [])], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !last.startsWith('{')) return `failed: ${(r.stderr || '').trim().split('\n').slice(-1).join(' ')}`;
  const parsed = JSON.parse(last) as { tokens_per_second?: number; error?: string };
  return parsed.error ?? (parsed.tokens_per_second !== undefined ? { tokens_per_second: parsed.tokens_per_second } : 'no result');
}

export async function benchTraining(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'st-bench-train-'));
  try {
    console.log(`\n## Training on the CPU: one GRPO update step (forward, backward, AdamW), ${native().runtimeInfo().threads} threads\n`);
    const tiny = join(root, 'tiny');
    await writeRandomCheckpoint(tiny, { seed: 3 });
    const half = join(root, 'half');
    await writeRandomCheckpoint(half, {
      text: { hidden: 896, intermediate: 4864, layers: 24, heads: 14, kvHeads: 2, vocab: 151936, ropeTheta: 1e6, mropeSection: [8, 12, 12] },
      vision: { depth: 2, hidden: 128, heads: 2, intermediate: 256 },
      tieEmbeddings: true,
      dtype: 'BF16',
    });
    const threads = native().runtimeInfo().threads;
    const py = pythonWith(['torch', 'transformers'], ['torch', 'transformers']);
    if ('skipped' in py) console.log(`(the PyTorch eager column is skipped: ${py.skipped})`);
    const rows: (string | number)[][] = [];
    for (const [name, dir, vocab, sequences, length, steps] of [
      ['tiny (fixture size)', tiny, TINY.text.vocab, 8, 128, 5],
      ['0.5B-class text', half, 151936, 2, 128, 2],
    ] as const) {
      const batchFile = join(root, `batch-${sequences}x${length}.json`);
      const batch = benchBatch(vocab, sequences, length);
      writeFileSync(batchFile, JSON.stringify({ ids: batch.map((b) => b.ids), prompt_length: batch[0]!.promptLength, pixels: Array.from(batch[0]!.images.pixels), grid: batch[0]!.images.gridThw[0] }));
      for (const checkpointLayers of [false, true]) {
        const r = runWorker(dir, sequences, length, checkpointLayers, steps);
        const torch = 'python' in py ? runTorch(py.python, dir, batchFile, threads, steps, checkpointLayers) : undefined;
        const torchCells = (ours: number | undefined) =>
          torch === undefined ? ['skipped', ''] : typeof torch === 'string' ? [torch, ''] : [torch.tokens_per_second.toFixed(1), ours === undefined ? '' : `${(ours / torch.tokens_per_second).toFixed(2)}x`];
        if (typeof r === 'string') rows.push([name, checkpointLayers ? 'on' : 'off', r, '', ...torchCells(undefined), '', '']);
        else
          rows.push([name, checkpointLayers ? 'on' : 'off', `${sequences} x ${length}`, r.tokensPerSecond.toFixed(1), ...torchCells(r.tokensPerSecond), `${(r.matmulShare * 100).toFixed(0)}%`, r.peakRssGiB.toFixed(2)]);
      }
    }
    console.log(table(['model', 'checkpointing', 'batch (seq x tokens)', 'tokens/s', `PyTorch eager tokens/s (${threads} threads)`, 'ours / PyTorch', 'time in matmul', 'peak RSS GiB'], rows));
    console.log('\n(PyTorch eager: bench/reference/cpu_train_step.py, the same step in transformers fp32 with sdpa attention: forward with the image, GRPO loss, backward, grad-norm clip, torch.optim.AdamW(fused=True), gradients zeroed in place; target for ours / PyTorch: at least 1.5x.)');
    console.log(`\n(${TINY.text.hidden}-wide tiny model; the 0.5B-class model holds fp32 weights, gradients and two AdamW moments: 16 bytes per parameter.)`);
    console.log('No GPU figures here: training on the GPU is the CUDA backend issue.');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--worker') {
  const [dir, sequences, length, checkpoint, steps] = process.argv.slice(3);
  await worker(dir as string, Number(sequences), Number(length), checkpoint === 'true', Number(steps));
}
