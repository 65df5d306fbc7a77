/**
 * The memory plan against the peak resident set a run really reaches on the
 * CPU, each run in a child process of its own (measured here, not recorded):
 * within 25% for the trainer tests' fixture model and the quick demo. And the
 * plan's figures by themselves: the device's memory, phases, refusals that
 * name the items and the switch that fixes them.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseModelConfig } from '../lib/engine/config.js';
import { validateConfig } from '../lib/rl/config.js';
import { formatMemoryPlan, parameterCount, planMemory, type DeviceMemory } from '../lib/rl/memory-plan.js';
import { planPeak } from './helpers-memory-plan.js';

const child = fileURLToPath(new URL('./helpers-memory-plan.ts', import.meta.url));

function measure(mode: 'fixture' | 'demo'): { plannedBytes: number; measuredBytes: number } {
  const work = mkdtempSync(join(tmpdir(), `st-plan-${mode}-`));
  try {
    const run = spawnSync(process.execPath, [...process.execArgv, child, mode, work], { encoding: 'utf8', env: { ...process.env, SPATIALTHINKER_THREADS: '2' } });
    if (run.status !== 0) throw new Error(`${mode} run failed: ${run.stderr.slice(-2000)}`);
    return JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as { plannedBytes: number; measuredBytes: number };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

for (const mode of ['fixture', 'demo'] as const) {
  t.test(`CPU plan within 25% of the measured peak: ${mode}`, async (t) => {
    const { plannedBytes, measuredBytes } = measure(mode);
    const ratio = plannedBytes / measuredBytes;
    t.ok(plannedBytes > 0, 'the run printed a plan with a peak');
    t.ok(Math.abs(ratio - 1) <= 0.25, `planned ${(plannedBytes / 2 ** 20).toFixed(0)} MiB, measured ${(measuredBytes / 2 ** 20).toFixed(0)} MiB (x${ratio.toFixed(2)})`);
  });
}

// Qwen2.5-VL-3B's shape (../shared/spec/qwen25vl.md §1.2).
const qwen3b = parseModelConfig({
  model_type: 'qwen2_5_vl', hidden_size: 2048, intermediate_size: 11008, num_hidden_layers: 36, num_attention_heads: 16, num_key_value_heads: 2,
  vocab_size: 151936, rms_norm_eps: 1e-6, rope_theta: 1e6, rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] }, tie_word_embeddings: true,
  image_token_id: 151655, video_token_id: 151656, vision_start_token_id: 151652, vision_end_token_id: 151653, eos_token_id: 151645,
  vision_config: { depth: 32, hidden_size: 1280, intermediate_size: 3420, num_heads: 16, in_chans: 3, out_hidden_size: 2048, patch_size: 14, spatial_merge_size: 2, temporal_patch_size: 2, window_size: 112, fullatt_block_indexes: [7, 15, 23, 31] },
});
// As the runtime reports it once the policy's fp32 weights are loaded, with 600 MiB of context and libraries.
const fp32Weights = parameterCount(qwen3b) * 4;
const h100: DeviceMemory = { device: 'cuda', name: 'GPU 0 (H100)', totalBytes: 80 * 2 ** 30, freeBytes: 80 * 2 ** 30 - fp32Weights - 600 * 2 ** 20 };
// fp32 weights, gradients, moments and a reference model of 3B need 70 GiB: the fitting runs have no KL term.
const runConfig = (overrides: { checkpointing: boolean; micro: number; kl?: number }) =>
  validateConfig({
    data: { train_files: 'x', max_prompt_length: 2048, max_response_length: 1024, rollout_batch_size: 16, max_pixels: 1024 * 1024 },
    algorithm: { kl_coef: overrides.kl ?? 0 },
    worker: {
      actor: { global_batch_size: 16, micro_batch_size_per_device_for_update: overrides.micro, model: { model_path: 'm', enable_gradient_checkpointing: overrides.checkpointing } },
      rollout: { n: 8 },
    },
    trainer: { device: 'cuda' },
  });

t.test('CUDA: planned against the device, in the backend dtype, refused with the switch that fixes it', async (t) => {
  t.same(
    planMemory({ config: runConfig({ checkpointing: true, micro: 1 }), model: qwen3b, device: h100 }).precision,
    process.env['SPATIALTHINKER_CUDA_DTYPE'] === 'fp32' ? { weights: 'fp32', activations: 'fp32' } : { weights: 'bf16', activations: 'bf16' },
    'by default the plan is in the CUDA backend\'s storage type',
  );
  // The rest plans the fp32 storage (SPATIALTHINKER_CUDA_DTYPE=fp32).
  const fp32 = { weights: 'fp32', activations: 'fp32' } as const;
  const ok = planMemory({ config: runConfig({ checkpointing: true, micro: 1 }), model: qwen3b, device: h100, precision: fp32 });
  t.equal(ok.availableBytes, h100.totalBytes, 'the device memory, not host RAM');
  t.same(ok.precision, fp32, 'the precision asked');
  const weights = ok.items.find((i) => i.name === 'weights')?.bytes ?? 0;
  t.ok(Math.abs(weights - 3.75e9 * 4) < 0.05 * 3.75e9 * 4, `fp32 weights of the 3B model (${(weights / 2 ** 30).toFixed(1)} GiB)`);
  t.equal(ok.items.find((i) => i.name === 'runtime')?.bytes, 600 * 2 ** 20, 'what the device uses beside the weights is the runtime');
  t.ok(ok.fits, formatMemoryPlan(ok));
  t.ok(ok.updatePeakBytes > ok.items.filter((i) => i.phase === 'resident').reduce((a, b) => a + b.bytes, 0), 'update adds activations');
  t.match(formatMemoryPlan(ok), /rollout peak[\s\S]*update peak[\s\S]*peak .* of 80\.00 GiB available/);

  const heavy = planMemory({ config: runConfig({ checkpointing: false, micro: 8 }), model: qwen3b, device: h100, precision: fp32 });
  t.notOk(heavy.fits, 'every layer of 8 x 3072 tokens kept does not fit in 80 GiB');
  t.match(heavy.messages[0], /the update needs .* but GPU 0 \(H100\).*largest: activations/);
  t.match(heavy.messages[0], /worker\.actor\.model\.enable_gradient_checkpointing=true/);
  t.match(heavy.messages[0], /worker\.actor\.micro_batch_size_per_device_for_update/);
  const checkpointed = planMemory({ config: runConfig({ checkpointing: true, micro: 8 }), model: qwen3b, device: h100, precision: fp32 });
  const activations = (p: typeof heavy) => p.items.find((i) => i.name === 'activations')?.bytes ?? 0;
  t.ok(activations(checkpointed) < activations(heavy) / 4, 'checkpointing keeps a fraction of the activations');

  const withKl = planMemory({ config: runConfig({ checkpointing: true, micro: 1, kl: 0.01 }), model: qwen3b, device: h100, precision: fp32 });
  t.notOk(withKl.fits, 'a fp32 reference model on top does not fit in 80 GiB');
  t.match(withKl.messages.join('\n'), /algorithm\.kl_coef=0/);

  const small: DeviceMemory = { ...h100, name: 'GPU 0 (40 GB)', totalBytes: 40 * 2 ** 30, freeBytes: 40 * 2 ** 30 - fp32Weights - 600 * 2 ** 20 };
  const tooBig = planMemory({ config: runConfig({ checkpointing: true, micro: 1, kl: 0.01 }), model: qwen3b, device: small, precision: fp32 });
  t.notOk(tooBig.fits, 'fp32 weights, gradients and moments of 3B exceed 40 GiB');
  t.match(tooBig.messages[0], /worker\.actor\.offload\.offload_optimizer=true .*resident state alone/);
  t.match(tooBig.messages[0], /algorithm\.kl_coef=0/);
});

t.test('the plan figure the runs print is the one the test reads', async (t) => {
  const plan = planMemory({ config: runConfig({ checkpointing: true, micro: 1 }), model: qwen3b, device: h100 });
  const read = planPeak(formatMemoryPlan(plan)) as number;
  t.ok(Math.abs(read - plan.peakBytes) / plan.peakBytes < 0.01, 'peak read back within rounding');
});
