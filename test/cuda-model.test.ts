/**
 * The model on the CUDA backend: every golden fixture case through
 * `check-fixtures --device cuda` (the manifest's own tolerances), and the
 * log-probs returned by generation against those of the log-prob gather and
 * of the training forward on the same tokens (mean absolute difference at
 * most 1e-3), plus the same tokens' log-probs on the CPU and CUDA backends
 * (max absolute difference at most 1e-3).
 *
 * The generation/training agreement runs on the CPU backend too, so the
 * check itself is exercised everywhere; the CUDA cases skip, saying why,
 * without a usable GPU and cuBLAS. `npm run test:cuda-emulated` runs this
 * file against the CUDA kernels under a CPU emulation of the CUDA execution
 * model (native/tests/cuda_emulation): a check of their logic, not of a GPU.
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Model, type ImageInput } from '../lib/engine/model.js';
import { checkFixtures } from '../lib/fixtures/check.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { native } from '../lib/native/binding.js';

const FIXTURES = resolve('..', 'shared', 'fixtures', 'qwen25vl-tiny');
const CHECKPOINT = join(FIXTURES, 'checkpoint');
const noFixtures = existsSync(FIXTURES) ? false : `the golden fixtures are not at ${FIXTURES}`;
const info = native().runtimeInfo();
const noGpu = !info.cuda.available
  ? `no usable CUDA device: ${info.cuda.reason ?? 'unknown'}`
  : !info.cuda.cublas.found
    ? `cuBLAS not found: ${info.cuda.cublas.error ?? 'unknown'}`
    : false;
const skipCuda = noFixtures || noGpu;
if (skipCuda) t.comment(`CUDA model tests skipped: ${skipCuda}`);

const GENERATION_VS_TRAINING = 1e-3; // mean |difference| per token
const CPU_VS_CUDA = 1e-3; // max |difference| per token

/** The image prompt of the fixtures' log-prob case. */
async function imagePrompt(): Promise<{ ids: number[]; images: ImageInput }> {
  const { tensors } = await readSafetensors(join(FIXTURES, 'cases', 'logprobs_image_150x200.safetensors'));
  const ids = Array.from(tensors['prompt_ids']!.data as ArrayLike<number | bigint>, Number);
  const grid = Array.from(tensors['image_grid_thw']!.data as ArrayLike<number | bigint>, Number);
  const gridThw: [number, number, number][] = [];
  for (let i = 0; i < grid.length; i += 3) gridThw.push([grid[i] as number, grid[i + 1] as number, grid[i + 2] as number]);
  return { ids, images: { pixels: tensors['pixel_values']!.data as Float32Array, gridThw } };
}

function meanAbs(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs((a[i] as number) - (b[i] as number));
  return a.length ? s / a.length : 0;
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Samples completions, then scores the same tokens with the log-prob gather and the training forward. */
async function generationAgreement(t: Test, device: 'cpu' | 'cuda') {
  const model = await Model.load(CHECKPOINT, { device });
  try {
    const prompt = await imagePrompt();
    const completions = await model.generate([prompt], { temperature: 1, samples: 3, seed: 11, maxNewTokens: 24, stopTokenIds: [] });
    t.equal(completions.length, 3);
    const sampled = concat(completions.map((c) => c.logprobs));
    const gathered = concat(await model.logprobs(completions.map(() => prompt), completions.map((c) => c.tokens)));
    const trained = await model.trainGradients(
      completions.map((c) => ({
        ids: [...prompt.ids, ...c.tokens],
        promptLength: prompt.ids.length,
        images: prompt.images,
        advantage: 0,
        oldLogprobs: c.logprobs,
      })),
      { klCoef: 0, temperature: 1 },
    );
    const gap = meanAbs(sampled, gathered);
    t.ok(gap <= GENERATION_VS_TRAINING, `${device}: generation vs log-prob gather, mean |diff| ${gap.toExponential(2)} over ${sampled.length} tokens`);
    const trainGap = meanAbs(sampled, trained.logp);
    t.ok(trainGap <= GENERATION_VS_TRAINING, `${device}: generation vs training forward, mean |diff| ${trainGap.toExponential(2)}`);
    return { prompt, tokens: completions.map((c) => c.tokens), gathered };
  } finally {
    await model.dispose();
  }
}

t.test('generation log-probs agree with the training forward on the CPU backend', { skip: noFixtures }, async (t) => {
  await generationAgreement(t, 'cpu');
});

t.test('generation log-probs agree with the training forward on the CUDA backend, and with the CPU', { skip: skipCuda }, async (t) => {
  const { prompt, tokens, gathered } = await generationAgreement(t, 'cuda');
  const cpu = await Model.load(CHECKPOINT, { device: 'cpu' });
  try {
    const onCpu = concat(await cpu.logprobs(tokens.map(() => prompt), tokens));
    const gap = maxAbs(gathered, onCpu);
    t.ok(gap <= CPU_VS_CUDA, `the same tokens' log-probs, CUDA vs CPU: max |diff| ${gap.toExponential(2)}`);
  } finally {
    await cpu.dispose();
  }
});

t.test('every golden fixture case passes on the CUDA backend', { skip: skipCuda }, async (t) => {
  const results = await checkFixtures(FIXTURES, { device: 'cuda' });
  const ran = results.filter((r) => !r.skipped);
  t.ok(ran.length >= 10, `${ran.length} cases ran`);
  for (const r of ran) {
    t.equal(r.error, undefined, `${r.name} ran`);
    for (const q of r.quantities) t.ok(q.pass, `${r.name}: ${q.name} (max abs ${q.maxAbs.toExponential(2)}; ${q.detail})`);
  }
  for (const kind of ['vision', 'forward', 'generate', 'logprobs', 'adamw', 'grpo'])
    t.ok(ran.some((r) => r.kind === kind), `a ${kind} case is covered`);
});

t.test('spatialthinker check-fixtures --device cuda', { skip: noFixtures }, async (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'check-fixtures', FIXTURES, '--device', 'cuda', '--only', 'forward_text,logprobs'], { encoding: 'utf8' });
  if (noGpu) {
    // Refused up front, with the runtime's reason.
    t.not(r.status, 0, 'exits non-zero');
    t.match(r.stderr, /--device cuda: /, r.stderr);
    return;
  }
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /PASS forward_text_only/);
  t.match(r.stdout, /2 passed, 0 failed, 0 skipped/);
});
