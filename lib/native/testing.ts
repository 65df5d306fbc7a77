/**
 * The engine's test-only entry points: one backend op at a time (kernel
 * tests), one timed matrix product (benchmarks), and the GRPO policy loss and
 * AdamW step on host arrays (op tests and the fixture checks' AdamW case).
 * The trainer never uses these: its loss and optimiser state stay native.
 * Not exported from the library root.
 */
import {
  DEFAULT_ADAMW_SETTINGS,
  DEFAULT_LOSS_SETTINGS,
  withDefaults,
  testingEntryPoints,
  type Device,
  type KlEstimator,
  type LossAggregation,
  type PolicyLossMetrics,
  type RunOpArgs,
  type AdamWSettings,
} from './binding.js';

export type { KlEstimator, LossAggregation } from './binding.js';

/** One op of the backend interface on `device` (default 'cpu'); see native/addon/ops_workers.cpp for each op's fields. */
export function runOp(
  args: Omit<RunOpArgs, 'device'> & { device?: Device },
): Promise<{ outputs: Record<string, Float32Array>; scalar?: number; backend: string; dtype: 'bf16' | 'fp32' }> {
  return testingEntryPoints().runOp({ ...args, device: args.device ?? 'cpu' });
}

/** y = x w^T + bias on the CPU backend; `repeat` (default 1) runs on the same operands, their mean and fastest time. */
export function linear(args: { x: Float32Array; w: Float32Array; bias?: Float32Array; m: number; k: number; n: number; repeat?: number }): Promise<{
  y: Float32Array;
  seconds: number;
  bestSeconds: number;
}> {
  return testingEntryPoints().linear({ ...args, repeat: args.repeat ?? 1 });
}

/** The AdamW settings, and where the host-array step runs. */
export interface AdamWOptions extends AdamWSettings {
  /** Where the step runs: 'cpu' (default) or 'cuda' (the CUDA backend, copying the arrays in and out). */
  device?: Device;
}

export interface AdamWState {
  params: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
  /** Steps taken so far. */
  step: number;
}

export interface AdamWResult extends AdamWState {
  gradNorm: number;
  clipCoef: number;
  /** True when the gradient norm was not finite: nothing changed. */
  skipped: boolean;
}

export interface PolicyLossOptions {
  /** Default 0.2. */
  clipLow?: number;
  /** Default 0.3. */
  clipHigh?: number;
  /** Dual-clip constant for negative advantages; <= 1 disables it. Default 3. */
  dualClip?: number;
  /** Default 0.01. */
  klCoef?: number;
  /** Default 'k3'. */
  klEstimator?: KlEstimator;
  /** Default 'token-mean'. */
  aggregation?: LossAggregation;
  /** The whole mini-batch's counts, when this call scores one micro-batch of it (default 0: this call's own). */
  batchTokens?: number;
  batchSequences?: number;
}

export interface PolicyLossInput {
  logp: Float32Array;
  oldLogp: Float32Array;
  refLogp?: Float32Array;
  /** Per token: its completion's advantage. */
  advantages: Float32Array;
  /** Per token: its completion's index in this call. */
  sequence: Int32Array;
}

export interface PolicyLossResult extends PolicyLossMetrics {
  /** d loss / d logp per token. */
  dlogp: Float32Array;
}

export function freshAdamWState(params: readonly Float32Array[]): AdamWState {
  return { params: params.map((p) => p.slice()), m: params.map((p) => new Float32Array(p.length)), v: params.map((p) => new Float32Array(p.length)), step: 0 };
}

/** Clips the gradients jointly by their global norm, then takes one AdamW step. */
export async function adamwStep(state: AdamWState, grads: readonly Float32Array[], options: AdamWOptions): Promise<AdamWResult> {
  const r = await testingEntryPoints().adamwStep({
    params: state.params,
    grads: [...grads],
    m: state.m,
    v: state.v,
    step: state.step + 1,
    lr: options.lr,
    ...withDefaults(options, DEFAULT_ADAMW_SETTINGS),
    device: options.device ?? 'cpu',
  });
  return { ...r, step: r.skipped ? state.step : state.step + 1 };
}

/** The GRPO policy loss of per-token log-probs, with its gradient d loss / d logp. */
export function policyLoss(input: PolicyLossInput, options: PolicyLossOptions = {}): Promise<PolicyLossResult> {
  return testingEntryPoints().policyLoss({
    ...input,
    ...withDefaults(options, DEFAULT_LOSS_SETTINGS),
  });
}
