/**
 * `npm run bench [-- --only hungarian,reward,cuda,matmul,inference,training,synth,tokenizer,gpu,scale,distributed]`: speed figures, side by
 * side with the Python stack on the same inputs in the same run. Targets are
 * checked here, never in tests.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { native, parseImageSize, SpatialReward, type RewardInput } from '../lib/index.js';
import { makeRollouts } from './rollouts.js';
import { benchInference, benchMatmul, table } from './engine.js';
import { benchTraining } from './train.js';
import { benchSynthesis } from './synth.js';
import { benchTokenizer } from './tokenizer.js';
import { benchGpu } from './gpu.js';
import { benchScale } from './scale.js';
import { benchDistributed } from './distributed.js';
import { mulberry32 } from '../lib/random.js';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    // The GPU model benchmarks (bench/gpu.ts); defaults are the workload.
    'gpu-sizes': { type: 'string' },
    'gpu-prompts': { type: 'string' },
    'gpu-samples': { type: 'string' },
    'gpu-prompt-tokens': { type: 'string' },
    'gpu-new-tokens': { type: 'string' },
    'gpu-max-batch': { type: 'string' },
    'gpu-train-sequences': { type: 'string' },
    'gpu-train-length': { type: 'string' },
    'gpu-attention-repeat': { type: 'string' },
    // The scale section's 3B checkpoint folder (written once, then reused).
    'scale-dir': { type: 'string' },
  },
});
const sections = new Set((values.only ?? 'hungarian,reward,cuda,matmul,inference,training,synth,tokenizer,gpu,scale,distributed').split(','));
const positive = (name: string, v: string | undefined) => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got "${v}"`);
  return n;
};
const work = mkdtempSync(join(tmpdir(), 'st-bench-'));
const info = native().runtimeInfo();

function python(args: string[]): Record<string, unknown> | string {
  const r = spawnSync('python3', args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) return `python3 not runnable (${r.error.message})`;
  if (r.status !== 0) return `python3 failed: ${r.stderr.trim().split('\n').pop()}`;
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  return typeof out['error'] === 'string' ? out['error'] : out;
}

/** Runs fn until at least `seconds` have passed; returns seconds per call. */
async function timeIt(fn: () => Promise<unknown>, seconds = 1): Promise<number> {
  await fn(); // warm-up
  let calls = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < seconds) {
    await fn();
    calls++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  return elapsed / calls;
}

async function benchHungarian(): Promise<void> {
  console.log(`\n## Hungarian: n x n problems, ${info.threads} engine threads vs scipy.optimize.linear_sum_assignment (1 thread)\n`);
  const rows: (string | number)[][] = [];
  for (const [n, count] of [[8, 4096], [32, 512], [128, 32], [512, 2]] as const) {
    const random = mulberry32(n);
    const costs = Float64Array.from({ length: n * n * count }, () => random());
    const file = join(work, `lsa-${n}.bin`);
    writeFileSync(file, Buffer.from(costs.buffer));
    const shape = { rows: new Int32Array(count).fill(n), cols: new Int32Array(count).fill(n), costs, device: 'cpu' as const };
    const ours = (await timeIt(() => native().linearSumAssignment(shape))) / count;
    const { rowToCol } = await native().linearSumAssignment(shape);
    const sha = createHash('sha256').update(Buffer.from(rowToCol.buffer)).digest('hex');
    const scipy = python(['bench/reference/lsa_scipy.py', file, '--n', String(n), '--count', String(count)]);
    if (typeof scipy === 'string') {
      rows.push([n, count, (ours * 1e6).toFixed(1), `skipped: ${scipy}`, '', '']);
      continue;
    }
    const scipyPer = scipy['seconds_per_problem'] as number;
    rows.push([n, count, (ours * 1e6).toFixed(1), (scipyPer * 1e6).toFixed(1), `${(scipyPer / ours).toFixed(1)}x`, scipy['assignments_sha'] === sha ? 'yes' : 'NO']);
  }
  console.log(table(['n', 'problems', 'ours µs/problem', 'scipy µs/problem', 'speed-up', 'same assignments'], rows));
}

async function benchReward(): Promise<void> {
  const count = 8192;
  const rollouts = makeRollouts(count, 7, 8, 8);
  const file = join(work, 'rollouts.jsonl');
  writeFileSync(file, rollouts.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const inputs: RewardInput[] = rollouts.map((r) => ({
    completion: r.prediction,
    groundTruth: r.ground_truth,
    prompt: r.problem,
    image: parseImageSize(r.problem) ?? { width: 1, height: 1 },
  }));
  console.log(`\n## Spatial reward throughput: ${count} completions, 1-8 objects each, this machine (${info.threads} engine threads)\n`);
  const py = python(['bench/reference/spatial_reward.py', file, '--repeat', '2']);
  const pyRate = typeof py === 'string' ? undefined : (py['completions_per_second'] as number);
  const rows: (string | number)[][] = [];
  for (const similarity of ['exact', 'wordnet'] as const) {
    // A fresh reward per call: its ground-truth cache would otherwise turn repeats into cache hits.
    const perBatch = await timeIt(() => new SpatialReward({ similarity }).scoreBatch(inputs), 2);
    const rate = count / perBatch;
    rows.push([`spatialthinker (${similarity} labels)`, Math.round(rate), pyRate ? `${(rate / pyRate).toFixed(1)}x` : '']);
  }
  rows.push(['Python reference restatement (exact labels, scipy)', pyRate ? Math.round(pyRate) : `skipped: ${String(py)}`, '1.0x']);
  console.log(table(['scorer', 'completions/s', 'vs Python'], rows));
  console.log('\nTarget: at least 10x the Python figure.');
}

async function benchCuda(): Promise<void> {
  console.log('\n## Matching kernels: CUDA vs CPU\n');
  if (!info.cuda.available) {
    console.log(`skipped: ${info.cuda.reason}`);
    return;
  }
  const random = mulberry32(5);
  const problems = 4096;
  const predCounts = Int32Array.from({ length: problems }, () => 1 + Math.floor(random() * 50));
  const gtCounts = Int32Array.from({ length: problems }, () => 1 + Math.floor(random() * 50));
  const sum = (a: Int32Array) => a.reduce((s, v) => s + v, 0);
  const boxes = (n: number) => Float64Array.from({ length: 4 * n }, (_, i) => (i % 4 < 2 ? random() * 0.5 : 0.5 + random() * 0.5));
  let pairs = 0;
  for (let i = 0; i < problems; i++) pairs += (predCounts[i] as number) * (gtCounts[i] as number);
  const input = { predBoxes: boxes(sum(predCounts)), predCounts, gtBoxes: boxes(sum(gtCounts)), gtCounts };
  const similarity = Float64Array.from({ length: pairs }, () => random());
  const rows: (string | number)[][] = [];
  for (const [name, call] of [
    ['CIoU matrices', (device: 'cpu' | 'cuda') => native().ciouMatrices({ ...input, device })],
    ['spatial scores (CIoU + Hungarian)', (device: 'cpu' | 'cuda') => native().spatialScores({ ...input, similarity, semanticWeight: 2, iouWeight: 1, device })],
  ] as const) {
    const cpu = await timeIt(() => call('cpu'));
    const gpu = await timeIt(() => call('cuda'));
    rows.push([name, Math.round(problems / cpu), Math.round(problems / gpu), `${(cpu / gpu).toFixed(1)}x`]);
  }
  console.log(`${problems} problems of 1-50 x 1-50 boxes on ${info.cuda.devices[0]?.name}\n`);
  console.log(table(['kernel', 'CPU problems/s', 'CUDA problems/s', 'speed-up'], rows));
}

console.log(`# spatialthinker bench (${new Date().toISOString()}, node ${process.version}, ${info.threads} threads, CUDA: ${info.cuda.available ? info.cuda.devices[0]?.name : info.cuda.reason})`);
if (sections.has('hungarian')) await benchHungarian();
if (sections.has('reward')) await benchReward();
if (sections.has('cuda')) await benchCuda();
if (sections.has('matmul')) await benchMatmul();
if (sections.has('inference')) await benchInference();
if (sections.has('training')) await benchTraining();
if (sections.has('synth')) await benchSynthesis();
if (sections.has('tokenizer')) await benchTokenizer();
if (sections.has('gpu'))
  await benchGpu({
    ...(values['gpu-sizes'] ? { sizes: values['gpu-sizes'].split(',') } : {}),
    ...Object.fromEntries(
      (
        [
          ['prompts', 'gpu-prompts'],
          ['samples', 'gpu-samples'],
          ['promptTokens', 'gpu-prompt-tokens'],
          ['newTokens', 'gpu-new-tokens'],
          ['maxBatch', 'gpu-max-batch'],
          ['trainSequences', 'gpu-train-sequences'],
          ['trainLength', 'gpu-train-length'],
          ['attentionRepeat', 'gpu-attention-repeat'],
        ] as const
      )
        .map(([key, flag]) => [key, positive(flag, values[flag])])
        .filter(([, v]) => v !== undefined),
    ),
  });
if (sections.has('scale')) await benchScale(values['scale-dir'] ? { dir: values['scale-dir'] } : {});
if (sections.has('distributed')) await benchDistributed();
