/**
 * The optimiser step and GRPO policy loss of the native engine on host
 * arrays (tests, fixtures, tools); the trainer's step keeps its state native.
 */
import { native } from '../native/binding.js';

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global gradient-norm clip; 0 disables it. Default 1. */
  maxGradNorm?: number;
  /** Where the step runs: 'cpu' (default) or 'cuda' (the CUDA backend, copying the arrays in and out). */
  device?: 'cpu' | 'cuda';
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

export type KlEstimator = 'k1' | 'abs' | 'mse' | 'k2' | 'k3' | 'low_var_kl';
export type LossAggregation = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum';

export interface PolicyLossOptions {
  clipLow?: number;
  clipHigh?: number;
  /** Dual-clip constant for negative advantages; <= 1 disables it. Default 3. */
  dualClip?: number;
  klCoef?: number;
  klEstimator?: KlEstimator;
  aggregation?: LossAggregation;
  /** The whole mini-batch's counts, when this call scores one micro-batch of it. */
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

export interface PolicyLossResult {
  loss: number;
  pgLoss: number;
  klLoss: number;
  /** d loss / d logp per token. */
  dlogp: Float32Array;
  ratio: Float32Array;
  kl: Float32Array;
  clipfracHigh: number;
  clipfracLow: number;
  clipfracDual: number;
  ppoKl: number;
  klMean: number;
}

declare module '../native/binding.js' {
  interface NativeBinding {
    adamwStep(args: Record<string, unknown>): Promise<{ params: Float32Array[]; m: Float32Array[]; v: Float32Array[]; gradNorm: number; clipCoef: number; skipped: boolean }>;
    policyLoss(args: Record<string, unknown>): Promise<PolicyLossResult>;
  }
}

export function freshAdamWState(params: readonly Float32Array[]): AdamWState {
  return { params: params.map((p) => p.slice()), m: params.map((p) => new Float32Array(p.length)), v: params.map((p) => new Float32Array(p.length)), step: 0 };
}

/** Clips the gradients jointly by their global norm, then takes one AdamW step. */
export async function adamwStep(state: AdamWState, grads: readonly Float32Array[], options: AdamWOptions): Promise<AdamWResult> {
  const r = await native().adamwStep({
    params: state.params,
    grads,
    m: state.m,
    v: state.v,
    step: state.step + 1,
    lr: options.lr,
    beta1: options.beta1 ?? 0.9,
    beta2: options.beta2 ?? 0.999,
    eps: options.eps ?? 1e-8,
    weightDecay: options.weightDecay ?? 0.01,
    maxGradNorm: options.maxGradNorm ?? 1,
    device: options.device ?? 'cpu',
  });
  return { ...r, step: r.skipped ? state.step : state.step + 1 };
}

export function policyLoss(input: PolicyLossInput, options: PolicyLossOptions = {}): Promise<PolicyLossResult> {
  return native().policyLoss({ ...input, ...options });
}
