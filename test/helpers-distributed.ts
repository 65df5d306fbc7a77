/**
 * Data-parallel test runs: the toy dataset and model of helpers-rl, one
 * configuration for every world size, and workers started as a launcher
 * starts them (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment).
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { deepMerge, validateConfig, type TrainConfig } from '../lib/rl/config.js';
import { RewardRegistry } from '../lib/rewards/registry.js';

export interface Job {
  kind: 'sft' | 'grpo';
  dataDir: string;
  modelDir: string;
  runDir: string;
  overrides?: Record<string, unknown>;
  /** This rank exits (as if killed) when this step begins. */
  dieAtStep?: { rank: number; step: number };
  /** Collective timeout of the process group, ms. */
  timeoutMs?: number;
}

/** The built-in rewards and `by-length`, which varies within every group (so GRPO has advantages to learn from). */
export function testRewards(): RewardRegistry {
  return new RewardRegistry().register('by-length', (input) => ({ overall: (input.completion.length % 5) / 4, length: input.completion.length }));
}

export function trainConfig(job: Job): TrainConfig {
  const base = {
    data: {
      train_files: `${job.dataDir}/train.jsonl`,
      val_files: null,
      max_prompt_length: 2048,
      max_response_length: job.kind === 'sft' ? 200 : 12,
      rollout_batch_size: 4,
      min_pixels: 56 * 56,
      max_pixels: 56 * 56,
    },
    worker: {
      actor: { global_batch_size: 4, micro_batch_size_per_device_for_update: 1, micro_batch_size_per_device_for_experience: 2, model: { model_path: job.modelDir }, optim: { lr: 1e-3 } },
      rollout: { n: 2 },
      reward: { similarity: 'exact' },
    },
    trainer: { max_steps: 2, val_freq: 0, val_before_train: false, save_freq: 1, save_dtype: 'bf16', save_checkpoint_path: job.runDir, logger: ['file'], threads: 1 },
  };
  return validateConfig(deepMerge(base, job.overrides ?? {}));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface WorkerResult {
  rank: number;
  code: number | null;
  stderr: string;
  seconds: number;
}

/** Starts `world` workers on 127.0.0.1 and waits for all of them. */
export async function runWorkers(job: Job, world: number, limitMs = 120_000): Promise<WorkerResult[]> {
  const port = await freePort();
  const worker = fileURLToPath(new URL('./data-parallel-worker.ts', import.meta.url));
  const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));
  return Promise.all(
    Array.from({ length: world }, (_, rank) => {
      const started = performance.now();
      const child = spawn(tsx, [worker, JSON.stringify(job)], {
        env: { ...process.env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(world), LOCAL_WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
      return new Promise<WorkerResult>((resolve) =>
        child.on('close', (code) => {
          clearTimeout(timer);
          resolve({ rank, code, stderr, seconds: (performance.now() - started) / 1000 });
        }),
      );
    }),
  );
}
