/**
 * CPU engine benchmarks: matrix products on the model's shapes beside numpy
 * (its BLAS) on the same machine, and prefill / decode throughput of a
 * 0.5B-class Qwen2.5-VL text size with random weights.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../lib/engine/model.js';
import { writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';
import { native } from '../lib/native/binding.js';
import { linear } from '../lib/native/testing.js';

export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => '| ' + r.map((v, c) => v.padEnd(widths[c] as number)).join(' | ') + ' |';
  return [line(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...cells.slice(1).map(line)].join('\n');
}

/** Qwen2.5-0.5B's text size (hidden 896, 24 layers, 14/2 heads, 4864 MLP, 151936 vocabulary). */
const HALF_B = { hidden: 896, intermediate: 4864, layers: 24, heads: 14, kvHeads: 2, vocab: 151936, ropeTheta: 1e6, mropeSection: [8, 12, 12] as [number, number, number] };

export async function benchMatmul(): Promise<void> {
  const shapes: [string, number, number, number][] = [
    ['prefill 512: q/o proj', 512, 896, 896],
    ['prefill 512: k/v proj', 512, 896, 128],
    ['prefill 512: gate/up', 512, 896, 4864],
    ['prefill 512: down', 512, 4864, 896],
    ['decode 16: gate/up', 16, 896, 4864],
    ['decode 16: down', 16, 4864, 896],
    ['decode 16: lm head', 16, 896, 151936],
    ['decode 1: gate/up', 1, 896, 4864],
  ];
  const py = spawnSync('python3', ['bench/reference/matmul_numpy.py', ...shapes.map(([, m, k, n]) => `${m},${k},${n}`)], { encoding: 'utf8' });
  let numpy: { blas?: string; error?: string; results?: { gflops: number }[] } = { error: py.error?.message ?? py.stderr.trim() };
  if (py.status === 0) numpy = JSON.parse(py.stdout);
  console.log(`\n## CPU matrix products y = x w^T (fp32), ${native().runtimeInfo().threads} threads, beside numpy (${numpy.blas ?? numpy.error})\n`);
  const rows: (string | number)[][] = [];
  for (const [i, [name, m, k, n]] of shapes.entries()) {
    const x = Float32Array.from({ length: m * k }, (_, j) => ((j * 7919) % 1000) / 1000 - 0.5);
    const w = Float32Array.from({ length: n * k }, (_, j) => ((j * 104729) % 1000) / 1000 - 0.5);
    const flops = 2 * m * k * n;
    // The fastest of many products on the same operands, as numpy's side
    // times them: on a shared 2-core machine the mean mostly measures the
    // neighbours, and operands copied in just before a call are cold in a way
    // the model's weights and activations are not.
    const repeat = Math.max(5, Math.round(5e10 / flops)); // about half a second at 100 GFLOP/s
    const seconds = (await linear({ x, w, m, k, n, repeat })).bestSeconds;
    const ours = flops / seconds / 1e9;
    const theirs = numpy.results?.[i]?.gflops;
    rows.push([name, `${m}x${k} . ${n}x${k}^T`, ours.toFixed(1), theirs ? theirs.toFixed(1) : 'skipped', theirs ? `${(ours / theirs).toFixed(2)}x` : '']);
  }
  console.log(table(['use', 'shape', 'ours GFLOP/s (best call)', 'numpy GFLOP/s (best call)', 'ours / numpy'], rows));
  console.log('\nOur kernels are our own (packed AVX-512 / AVX2 register tiles, no BLAS): target at least 0.8x numpy.');
}

interface InferenceResult {
  parameters: number;
  rows: (string | number)[][];
  peakRssGiB: number;
}

/** The measured part, in a child process of its own so its peak memory is its own. */
async function inferenceWorker(dir: string): Promise<void> {
  const model = await Model.load(dir);
  const promptLen = 256;
  const newTokens = 32;
  const rows: (string | number)[][] = [];
  for (const sequences of [1, 16]) {
    const prompts = Array.from({ length: sequences }, (_, s) => ({ ids: Array.from({ length: promptLen }, (_, i) => (i * 31 + s * 7) % 150000) }));
    const t0 = process.hrtime.bigint();
    await model.generate(prompts, { greedy: true, maxNewTokens: 1, stopTokenIds: [] });
    const prefill = Number(process.hrtime.bigint() - t0) / 1e9;
    const t1 = process.hrtime.bigint();
    await model.generate(prompts, { greedy: true, maxNewTokens: newTokens, stopTokenIds: [] });
    const total = Number(process.hrtime.bigint() - t1) / 1e9;
    const decode = Math.max(total - prefill, 1e-9);
    rows.push([sequences, promptLen, ((sequences * promptLen) / prefill).toFixed(0), ((sequences * (newTokens - 1)) / decode).toFixed(1)]);
  }
  const result: InferenceResult = { parameters: model.parameterCount, rows, peakRssGiB: (process.resourceUsage().maxRSS * 1024) / 2 ** 30 };
  process.stdout.write(JSON.stringify(result) + '\n');
  await model.dispose();
}

export async function benchInference(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'st-bench-model-'));
  try {
    console.log(`\n## Inference on the CPU: Qwen2.5-VL with a 0.5B-class text size (random weights), ${native().runtimeInfo().threads} threads\n`);
    await writeRandomCheckpoint(dir, { text: HALF_B, vision: { depth: 2, hidden: 128, heads: 2, intermediate: 256 }, tieEmbeddings: true, dtype: 'BF16' });
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/engine.ts', '--inference-worker', dir], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) {
      console.log(`failed: ${(r.stderr || '').trim().split('\n').slice(-3).join(' ')}`);
      return;
    }
    const result = JSON.parse(r.stdout.trim().split('\n').pop() as string) as InferenceResult;
    const weights = (result.parameters * 4) / 2 ** 30;
    console.log(`model: ${(result.parameters / 1e6).toFixed(0)}M parameters, fp32 in memory: ${weights.toFixed(2)} GiB\n`);
    console.log(table(['sequences', 'prompt tokens', 'prefill tokens/s', 'decode tokens/s'], result.rows));
    const kvBytes = 16 * (256 + 32) * HALF_B.layers * 2 * HALF_B.kvHeads * (HALF_B.hidden / HALF_B.heads) * 4;
    console.log(
      `\npeak RSS of the generating process ${result.peakRssGiB.toFixed(2)} GiB = weights ${weights.toFixed(2)} GiB + KV cache of 16 sequences ${(kvBytes / 2 ** 20).toFixed(0)} MiB` +
        ` + the rest (Node and its libraries, the checkpoint read during loading, activations, logits).`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--inference-worker') await inferenceWorker(process.argv[3] as string);
