/**
 * The GPU benchmarks, on random weights of the real Qwen2.5-VL-3B and 7B
 * configurations (nothing can be downloaded on the benchmark machines):
 *  - generation tokens/s: G samples of each image+text prompt, a fixed number
 *    of new tokens (EOS ignored), beside transformers' generate on the same
 *    checkpoint in the same run;
 *  - a full GRPO update step (reference log-probs, policy forward and
 *    backward, AdamW): tokens/s and model FLOPs utilisation, beside a plain
 *    PyTorch implementation of the same step;
 *  - peak GPU memory of both, sampled with nvidia-smi while each runs (and
 *    PyTorch's own allocator peak for its side);
 *  - the attention kernel's TFLOP/s at the 3B text decoder's and the vision
 *    tower's shapes (the backend's attention op, through the test-only
 *    timeAttention entry point), beside PyTorch's scaled_dot_product_attention
 *    (bench/reference/gpu_sdpa.py) at the same shapes.
 * Each measurement runs in a child process so its memory is its own.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, type ImageInput } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint, type RandomCheckpointOptions } from '../lib/engine/random-checkpoint.js';
import { native } from '../lib/native/binding.js';
import { timeAttention } from '../lib/native/testing.js';
import { table } from './engine.js';

const VISION = { depth: 32, hidden: 1280, heads: 16, intermediate: 3420, windowSize: 112, fullAttentionBlocks: [7, 15, 23, 31] };
/** ../shared/spec/qwen25vl.md §1.2. */
export const QWEN25VL_CONFIGS: Record<string, RandomCheckpointOptions> = {
  '3b': {
    text: { hidden: 2048, intermediate: 11008, layers: 36, heads: 16, kvHeads: 2, vocab: 151936, ropeTheta: 1e6, mropeSection: [16, 24, 24] },
    vision: VISION,
    tieEmbeddings: true,
  },
  '7b': {
    text: { hidden: 3584, intermediate: 18944, layers: 28, heads: 28, kvHeads: 4, vocab: 152064, ropeTheta: 1e6, mropeSection: [16, 24, 24] },
    vision: VISION,
    tieEmbeddings: false,
  },
};

export interface GpuBenchOptions {
  sizes: string[];
  prompts: number;
  samples: number;
  promptTokens: number;
  newTokens: number;
  /** Sequences decoded at once (continuous batching refills the batch); 0: all of them. */
  maxBatch: number;
  trainSequences: number;
  trainLength: number;
  /** Timed calls per attention shape. */
  attentionRepeat: number;
}

export const GPU_BENCH_DEFAULTS: GpuBenchOptions = {
  sizes: ['3b'],
  prompts: 64,
  samples: 8,
  promptTokens: 1024,
  newTokens: 1024,
  maxBatch: 0,
  trainSequences: 16,
  trainLength: 2048,
  attentionRepeat: 10,
};

/**
 * Attention shapes: the 3B text decoder's training/prefill attention (GQA
 * 16/2, head dim 128, causal) and the vision tower's full-attention blocks
 * (16 heads, head dim 80, one image's 1,024 patches, no mask).
 */
const ATTENTION_SHAPES = [
  { name: '3B decoder, causal, 4 x 2048 tokens', sequences: 4, seqLen: 2048, heads: 16, kvHeads: 2, headDim: 128, causal: true },
  { name: 'vision, full, 8 x 1024 patches', sequences: 8, seqLen: 1024, heads: 16, kvHeads: 16, headDim: 80, causal: false },
];

/** Multiply-adds x 2 of QK^T and PV; causal masks skip about half. */
function attentionFlops(s: (typeof ATTENTION_SHAPES)[number]): number {
  const full = 4 * s.sequences * s.heads * s.seqLen * s.seqLen * s.headDim;
  return s.causal ? full / 2 : full;
}

async function benchAttention(o: GpuBenchOptions, device: string): Promise<void> {
  console.log(`\nAttention kernel on ${device}: the backend's attention op (what the model calls) beside PyTorch SDPA (bf16; flash or memory-efficient kernel as PyTorch picks)\n`);
  const rows: string[][] = [];
  for (const shape of ATTENTION_SHAPES) {
    const flops = attentionFlops(shape);
    let ours: string[];
    try {
      const r = await timeAttention({ ...shape, device: 'cuda', repeat: o.attentionRepeat });
      ours = [(flops / r.bestSeconds / 1e12).toFixed(1), (r.bestSeconds * 1e3).toFixed(2)];
    } catch (error) {
      ours = [`failed: ${error instanceof Error ? error.message : String(error)}`, ''];
    }
    const py = spawnSync('python3', ['bench/reference/gpu_sdpa.py', '--batch', String(shape.sequences), '--seq', String(shape.seqLen), '--heads', String(shape.heads), '--kv-heads', String(shape.kvHeads), '--head-dim', String(shape.headDim), ...(shape.causal ? ['--causal'] : []), '--repeat', String(o.attentionRepeat)], { encoding: 'utf8' });
    const last = (py.stdout ?? '').trim().split('\n').pop() ?? '';
    let theirs = ['n/a', ''];
    if (py.status === 0 && last.startsWith('{')) {
      const j = JSON.parse(last) as Record<string, unknown>;
      theirs = typeof j['error'] === 'string' ? [j['error'], ''] : [(flops / (j['best_seconds'] as number) / 1e12).toFixed(1), ((j['best_seconds'] as number) * 1e3).toFixed(2)];
    } else theirs = [`failed (exit ${py.status})`, ''];
    rows.push([`attention ${shape.name}`, ...ours, ...theirs]);
  }
  console.log(table(['shape', 'spatialthinker TFLOP/s', 'ms', 'PyTorch SDPA TFLOP/s', 'ms'], rows));
}

/** Dense bf16 tensor-core peak, for MFU; undefined for GPUs not listed. */
function peakBf16Flops(name: string): number | undefined {
  if (/H100/.test(name) && /PCIe/i.test(name)) return 756e12;
  if (/H100|H200|GH200/.test(name)) return 989e12;
  if (/A100/.test(name)) return 312e12;
  return undefined;
}

const IMAGE_SIDE = 28; // patches per side: 196 image tokens per prompt

function imageInput(seed: number): ImageInput {
  let s = seed;
  const pixels = Float32Array.from({ length: IMAGE_SIDE * IMAGE_SIDE * 1176 }, () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5);
  return { pixels, gridThw: [[1, IMAGE_SIDE, IMAGE_SIDE]] };
}

async function generateWorker(dir: string, o: GpuBenchOptions): Promise<void> {
  const model = await Model.load(dir, { device: 'cuda' });
  const tok = randomCheckpointTokens(model.config.text.vocab);
  const imageTokens = (IMAGE_SIDE / 2) ** 2;
  const prompts = Array.from({ length: o.prompts }, (_, p) => {
    const ids = [tok.visionStart, ...new Array<number>(imageTokens).fill(tok.imagePad), tok.visionEnd];
    while (ids.length < o.promptTokens) ids.push((ids.length * 31 + p * 7) % (model.config.text.vocab - 16));
    return { ids, images: imageInput(p + 1) };
  });
  const run = (newTokens: number) => model.generate(prompts, { samples: o.samples, maxNewTokens: newTokens, maxBatch: o.maxBatch || o.prompts * o.samples, stopTokenIds: [], temperature: 1, seed: 1 });
  await run(2); // warm-up
  const started = process.hrtime.bigint();
  const completions = await run(o.newTokens);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const generated = completions.reduce((sum, c) => sum + c.tokens.length, 0);
  process.stdout.write(JSON.stringify({ seconds, generated_tokens: generated, tokens_per_second: generated / seconds }) + '\n');
  await model.dispose();
}

async function trainWorker(dir: string, o: GpuBenchOptions): Promise<void> {
  const policy = await Model.load(dir, { device: 'cuda' });
  const reference = await Model.load(dir, { device: 'cuda' });
  const vocab = policy.config.text.vocab;
  const promptLength = o.trainLength / 2;
  const sequences = Array.from({ length: o.trainSequences }, (_, i) => Array.from({ length: o.trainLength }, (_, j) => (i * 101 + j * 7) % (vocab - 16)));
  const prompts = sequences.map((ids) => ({ ids: ids.slice(0, promptLength) }));
  const completions = sequences.map((ids) => Int32Array.from(ids.slice(promptLength)));
  const step = async () => {
    const refLogprobs = await reference.logprobs(prompts, completions);
    const batch = sequences.map((ids, i) => ({
      ids,
      promptLength,
      advantage: i % 2 ? 1 : -1,
      oldLogprobs: new Float32Array(ids.length - promptLength).fill(-12),
      refLogprobs: refLogprobs[i] as Float32Array,
    }));
    await policy.zeroGradients();
    await policy.trainGradients(batch, { checkpointLayers: true, freezeVision: true, freezeMerger: true });
    await policy.optimizerStep({ lr: 1e-6, maxGradNorm: 1, freezeVision: true, freezeMerger: true });
  };
  await step(); // warm-up: allocates gradients and the optimizer state
  const steps = 3;
  const started = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) await step();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9 / steps;
  const tokens = o.trainSequences * o.trainLength;
  process.stdout.write(JSON.stringify({ step_seconds: seconds, tokens_per_step: tokens, tokens_per_second: tokens / seconds }) + '\n');
  await Promise.all([policy.dispose(), reference.dispose()]);
}

/** Runs a command while sampling the GPU's used memory; returns its last stdout line as JSON and the peak in GiB. */
async function runSampled(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ result: Record<string, unknown> | string; peakGiB?: number }> {
  const used = () => {
    const r = spawnSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', '0'], { encoding: 'utf8' });
    return r.status === 0 ? Number(r.stdout.trim()) / 1024 : undefined;
  };
  const baseline = used();
  let peak: number | undefined;
  const timer = setInterval(() => {
    const u = used();
    if (u !== undefined) peak = Math.max(peak ?? 0, u);
  }, 250);
  try {
    const { status, stdout, stderr } = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        process.stderr.write(d);
      });
      child.on('close', (code) => resolve({ status: code, stdout, stderr }));
    });
    const last = stdout.trim().split('\n').pop() ?? '';
    if (status !== 0 || !last.startsWith('{')) return { result: `failed (exit ${status}): ${stderr.trim().split('\n').slice(-3).join(' ')}` };
    const parsed = JSON.parse(last) as Record<string, unknown>;
    return { result: typeof parsed['error'] === 'string' ? parsed['error'] : parsed, peakGiB: peak !== undefined && baseline !== undefined ? peak - baseline : undefined };
  } finally {
    clearInterval(timer);
  }
}

const fmt = (v: unknown, digits = 0) => (typeof v === 'number' ? v.toFixed(digits) : '');
const gib = (v: number | undefined) => (v === undefined ? 'n/a (no nvidia-smi)' : v.toFixed(1));

export async function benchGpu(options: Partial<GpuBenchOptions> = {}): Promise<void> {
  const o = { ...GPU_BENCH_DEFAULTS, ...options };
  console.log('\n## The model on the GPU: generation and a GRPO update step, beside transformers / PyTorch\n');
  const info = native().runtimeInfo();
  if (!info.cuda.available) {
    console.log(`skipped: ${info.cuda.reason}`);
    return;
  }
  const device = info.cuda.devices[0]?.name ?? 'unknown GPU';
  const peak = peakBf16Flops(device);
  await benchAttention(o, device);
  for (const size of o.sizes) {
    const config = QWEN25VL_CONFIGS[size];
    if (!config) throw new Error(`unknown model size "${size}" (known: ${Object.keys(QWEN25VL_CONFIGS).join(', ')})`);
    const dir = mkdtempSync(join(tmpdir(), `st-bench-${size}-`));
    try {
      process.stderr.write(`writing a random Qwen2.5-VL-${size.toUpperCase()} checkpoint (bf16) to ${dir} ...\n`);
      await writeRandomCheckpoint(dir, { ...config, dtype: 'BF16', shards: 8 });
      const text = config.text as Required<NonNullable<RandomCheckpointOptions['text']>>;
      const tsx = (worker: string) => [process.execPath, ['--import', 'tsx', 'bench/gpu.ts', worker, dir, JSON.stringify(o)]] as const;

      const [genCmd, genArgs] = tsx('--generate-worker');
      const oursGen = await runSampled(genCmd, [...genArgs]);
      // The same run with every decode step launched op by op: what the captured graphs save.
      const eagerGen = await runSampled(genCmd, [...genArgs], { ...process.env, SPATIALTHINKER_DECODE_GRAPHS: '0' });
      const theirsGen = await runSampled('python3', ['bench/reference/gpu_transformers.py', 'generate', dir, '--prompts', String(o.prompts), '--samples', String(o.samples), '--prompt-tokens', String(o.promptTokens), '--new-tokens', String(o.newTokens), '--image-side', String(IMAGE_SIDE)]);
      console.log(`Qwen2.5-VL-${size.toUpperCase()} generation on ${device}: ${o.prompts} prompts x ${o.samples} samples, ${o.promptTokens}-token image+text prompts, ${o.newTokens} new tokens (EOS ignored), sampling at T=1\n`);
      const genRow = (name: string, r: { result: Record<string, unknown> | string; peakGiB?: number }) =>
        typeof r.result === 'string' ? [name, r.result, '', ''] : [name, fmt(r.result['tokens_per_second']), fmt(r.result['seconds'], 1), gib(r.peakGiB)];
      console.log(table(['engine', 'tokens/s', 'seconds', 'peak GPU GiB (nvidia-smi)'], [genRow('spatialthinker (CUDA, decode steps as CUDA graphs)', oursGen), genRow('spatialthinker (CUDA, eager decode: SPATIALTHINKER_DECODE_GRAPHS=0)', eagerGen), genRow('transformers generate (bf16, sdpa)', theirsGen)]));
      console.log('\ntarget for 3B: at least 10,000 tokens/s (memory-bandwidth ceiling about 34,000)\n');

      const [trainCmd, trainArgs] = tsx('--train-worker');
      const oursTrain = await runSampled(trainCmd, [...trainArgs]);
      const theirsTrain = await runSampled('python3', ['bench/reference/gpu_transformers.py', 'train', dir, '--sequences', String(o.trainSequences), '--length', String(o.trainLength)]);
      // Model FLOPs per token of the timed step: the policy's forward and
      // backward (6 N) and the reference's forward (2 N), N the text model's
      // matrix parameters (the LM head included, the embedding lookup not);
      // causal attention adds 2 d s per layer forward (d = heads x head dim,
      // s the sequence length), so (6 + 2) L d s.
      const hd = text.hidden / text.heads;
      const n = text.layers * (text.hidden * (text.heads + 2 * text.kvHeads) * hd + text.heads * hd * text.hidden + 3 * text.hidden * text.intermediate) + text.vocab * text.hidden;
      const flopsPerToken = 8 * n + 8 * text.layers * text.heads * hd * o.trainLength;
      const trainRow = (name: string, r: { result: Record<string, unknown> | string; peakGiB?: number }) => {
        if (typeof r.result === 'string') return [name, r.result, '', '', ''];
        const tps = r.result['tokens_per_second'] as number;
        const torchPeak = typeof r.result['peak_memory_gib'] === 'number' ? ` (torch allocator ${fmt(r.result['peak_memory_gib'], 1)})` : '';
        return [name, fmt(tps), fmt(r.result['step_seconds'], 2), peak ? `${((tps * flopsPerToken) / peak * 100).toFixed(1)}%` : 'n/a', gib(r.peakGiB) + torchPeak];
      };
      console.log(`Qwen2.5-VL-${size.toUpperCase()} GRPO update step: ${o.trainSequences} sequences x ${o.trainLength} tokens (half completion), reference log-probs + forward + backward + AdamW, vision frozen, activation checkpointing\n`);
      console.log(table(['implementation', 'tokens/s', 'seconds/step', `MFU (of ${peak ? (peak / 1e12).toFixed(0) : '?'} TFLOP/s bf16)`, 'peak GPU GiB'], [trainRow('spatialthinker (CUDA)', oursTrain), trainRow('plain PyTorch (bf16, fused AdamW)', theirsTrain)]));
      console.log('\ntargets for 3B: MFU at least 40%; peak memory of the step with the reference model at most 70 GB');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

if (process.argv[2] === '--generate-worker') await generateWorker(process.argv[3] as string, JSON.parse(process.argv[4] as string) as GpuBenchOptions);
if (process.argv[2] === '--train-worker') await trainWorker(process.argv[3] as string, JSON.parse(process.argv[4] as string) as GpuBenchOptions);
