/** The GRPO policy loss and AdamW: against the golden fixtures, by finite differences, and across micro-batches. */
import t from 'tap';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { readSafetensors } from '../lib/io/safetensors.js';
import { adamwStep, freshAdamWState, policyLoss, type PolicyLossInput, type PolicyLossOptions } from '../lib/native/testing.js';
import { rng } from './helpers.js';

const FIXTURES = resolve('..', 'shared', 'fixtures', 'qwen25vl-tiny');
const skip = existsSync(FIXTURES) ? false : `the golden fixtures are not at ${FIXTURES}`;

t.test('GRPO loss, ratio and KL of the golden grpo case (from its log-probs)', { skip }, async (t) => {
  const { tensors } = await readSafetensors(`${FIXTURES}/cases/grpo_image_150x200.safetensors`);
  const [G, L] = tensors['completion_mask']!.shape as [number, number];
  const mask = Array.from(tensors['completion_mask']!.data as BigInt64Array, Number);
  const pick = (name: string) => Float32Array.from((tensors[name]!.data as Float32Array).filter((_, i) => mask[i] === 1));
  const adv = tensors['advantages']!.data as Float32Array;
  const sequence = Int32Array.from(mask.flatMap((m, i) => (m === 1 ? [Math.floor(i / L)] : [])));
  const r = await policyLoss(
    { logp: pick('logprobs'), oldLogp: pick('old_logprobs'), refLogp: pick('ref_logprobs'), advantages: Float32Array.from(sequence, (s) => adv[s] as number), sequence },
    { clipLow: 0.2, clipHigh: 0.28, dualClip: 0, klCoef: 0.01, klEstimator: 'k3', aggregation: 'token-mean' },
  );
  const expectedLoss = (tensors['loss']!.data as Float64Array)[0] as number;
  t.ok(Math.abs(r.loss - expectedLoss) <= 1e-4 + 1e-3 * Math.abs(expectedLoss), `loss ${r.loss} vs ${expectedLoss}`);
  const worst = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);
  t.ok(worst(r.ratio, pick('ratio')) < 1e-5, 'ratio');
  t.ok(worst(r.kl, pick('kl')) < 1e-5, 'k3 KL');
  t.equal(sequence.length, mask.reduce((a, b) => a + b, 0), `${G} completions, ${sequence.length} tokens`);
});

function randomInput(seed: number, tokens: number, sequences: number): PolicyLossInput {
  const random = rng(seed);
  const sequence = Int32Array.from({ length: tokens }, (_, i) => Math.min(sequences - 1, Math.floor((i * sequences) / tokens)));
  const advBySeq = Array.from({ length: sequences }, () => random() * 4 - 2);
  const logp = Float32Array.from({ length: tokens }, () => -random() * 3);
  return {
    logp,
    oldLogp: Float32Array.from(logp, (v) => v + (random() - 0.5) * 0.8),
    refLogp: Float32Array.from(logp, (v) => v + (random() - 0.5) * 0.5),
    advantages: Float32Array.from(sequence, (s) => advBySeq[s] as number),
    sequence,
  };
}

const SETTINGS: [string, PolicyLossOptions][] = [
  ['token-mean k3 dual clip', { klEstimator: 'k3', aggregation: 'token-mean', dualClip: 3 }],
  ['seq-mean-token-mean k1', { klEstimator: 'k1', aggregation: 'seq-mean-token-mean', dualClip: 0 }],
  ['seq-mean-token-sum mse', { klEstimator: 'mse', aggregation: 'seq-mean-token-sum', klCoef: 0.1 }],
  ['token-mean abs', { klEstimator: 'abs', aggregation: 'token-mean', klCoef: 0.05 }],
];

t.test('d loss / d logp matches finite differences', async (t) => {
  for (const [name, options] of SETTINGS) {
    const input = randomInput(11, 40, 5);
    const base = await policyLoss(input, options);
    let worst = 0;
    let checked = 0;
    for (let i = 0; i < 40; i++) {
      // Tokens within the step of a kink (a clip boundary) are not differentiable there.
      const ratio = Math.exp((input.logp[i] as number) - (input.oldLogp[i] as number));
      const a = input.advantages[i] as number;
      const kinks = [0.8, 1.3, ...(a < 0 && (options.dualClip ?? 3) > 1 ? [options.dualClip ?? 3] : [])];
      if (kinks.some((k) => Math.abs(ratio - k) < 0.01)) continue;
      const h = 1e-3;
      const plus = { ...input, logp: input.logp.slice() };
      const minus = { ...input, logp: input.logp.slice() };
      (plus.logp[i] as number) += h;
      (minus.logp[i] as number) -= h;
      const fd = ((await policyLoss(plus, options)).loss - (await policyLoss(minus, options)).loss) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - (base.dlogp[i] as number)));
      checked++;
    }
    t.ok(checked > 30, `${checked} tokens checked`);
    t.ok(worst < 2e-4, `${name}: max |fd - analytic| = ${worst.toExponential(2)}`);
  }
});

t.test('micro-batches sum to the mini-batch loss and gradient', async (t) => {
  for (const [name, options] of SETTINGS) {
    const whole = randomInput(5, 60, 6);
    const all = await policyLoss(whole, options);
    let loss = 0;
    const dlogp: number[] = [];
    for (const [lo, hi] of [[0, 20], [20, 40], [40, 60]] as const) {
      const part: PolicyLossInput = {
        logp: whole.logp.slice(lo, hi),
        oldLogp: whole.oldLogp.slice(lo, hi),
        refLogp: whole.refLogp!.slice(lo, hi),
        advantages: whole.advantages.slice(lo, hi),
        sequence: Int32Array.from(whole.sequence.slice(lo, hi), (s) => s - (whole.sequence[lo] as number)),
      };
      const r = await policyLoss(part, { ...options, batchTokens: 60, batchSequences: 6 });
      loss += r.loss;
      dlogp.push(...r.dlogp);
    }
    t.ok(Math.abs(loss - all.loss) < 1e-9, `${name}: loss ${loss} = ${all.loss}`);
    t.ok(dlogp.every((g, i) => Math.abs(g - (all.dlogp[i] as number)) < 1e-9), `${name}: same per-token gradients`);
  }
});

t.test('metrics and bad options', async (t) => {
  const input: PolicyLossInput = {
    logp: Float32Array.of(0, Math.log(2), Math.log(0.5), Math.log(5)),
    oldLogp: Float32Array.of(0, 0, 0, 0),
    refLogp: Float32Array.of(0, 0, 0, 0),
    advantages: Float32Array.of(1, 1, -1, -1),
    sequence: Int32Array.of(0, 0, 1, 1),
  };
  const r = await policyLoss(input, { clipLow: 0.2, clipHigh: 0.3, dualClip: 3, klCoef: 0 });
  t.equal(r.clipfracHigh, 0.25, 'ratio 2 with A > 0 is clipped above');
  t.equal(r.clipfracLow, 0.25, 'ratio 0.5 with A < 0 is clipped below');
  t.equal(r.clipfracDual, 0.25, 'ratio 5 with A < 0 hits the dual clip');
  t.equal(r.dlogp[1], 0, 'no gradient through the upper clip');
  t.ok(Math.abs(r.ppoKl - -(Math.log(2) + Math.log(0.5) + Math.log(5)) / 4) < 1e-6, 'ppo_kl = mean(old - new)');
  await t.rejects(async () => policyLoss(input, { klEstimator: 'k9' as 'k1' }), /unknown KL estimator "k9"/);
  await t.rejects(async () => policyLoss(input, { aggregation: 'sum' as 'token-mean' }), /unknown loss aggregation "sum"/);
});

t.test('AdamW: clipping, decoupled decay and a non-finite norm skipping the step', async (t) => {
  const params = [Float32Array.of(1, -2, 3)];
  const state = freshAdamWState(params);
  const r = await adamwStep(state, [Float32Array.of(3, 4, 0)], { lr: 0.1, weightDecay: 0.5, maxGradNorm: 1 });
  t.ok(Math.abs(r.gradNorm - 5) < 1e-9, 'the norm before clipping');
  t.ok(Math.abs(r.clipCoef - 1 / (5 + 1e-6)) < 1e-12, 'torch clip coefficient');
  // step 1 moves each weight by about lr sign(g) after decay
  t.ok(Math.abs((r.params[0]![0] as number) - (1 * (1 - 0.05) - 0.1)) < 1e-6);
  t.ok(Math.abs((r.params[0]![2] as number) - 3 * (1 - 0.05)) < 1e-6, 'zero gradient: decay only');
  const bad = await adamwStep(state, [Float32Array.of(Number.NaN, 0, 0)], { lr: 0.1 });
  t.ok(bad.skipped, 'a NaN gradient skips the step');
  t.same(Array.from(bad.params[0]!), Array.from(params[0]!), 'and leaves the weights');
  t.equal(bad.step, 0);
});
