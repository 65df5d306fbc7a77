/**
 * The GRPO loop (shared/spec/grpo.md, method.md §3.2): per step, draw
 * prompts, sample n completions each, score them, normalise advantages within
 * each group, recompute old and reference log-probs, update the policy in
 * mini-batches of micro-batches, then log, validate and checkpoint.
 */
import { Model, type TrainSequence } from '../engine/model.js';
import { answersMatch, extractAnswer } from '../rewards/spatial-format.js';
import { parseGroundTruth } from '../rewards/ground-truth.js';
import type { RewardScores } from '../rewards/types.js';
import { hash32 } from '../random.js';
import { groupAdvantages, informativeGroups } from './advantages.js';
import type { TrainConfig } from './config.js';
import type { PreparedRow } from './prompts.js';
import { sampleCompletions, type Rollout } from './rollout.js';
import { TrainingRun, type RunOptions, type TrainResult } from './run.js';
import type { Metrics } from './run-log.js';
import { combineMetrics } from './data-parallel.js';

export type { TrainResult } from './run.js';

const KL_ESTIMATORS = { low_var_kl: 'low_var_kl', k3: 'k3', kl: 'k1', k1: 'k1', abs: 'abs', mse: 'mse', k2: 'k2' } as const;
/** worker.actor.loss_avg_mode as the engine's loss aggregation (EasyR1's 'seq' averages each sequence's tokens, then the sequences). */
export const AGGREGATIONS = { token: 'token-mean', seq: 'seq-mean-token-mean', 'seq-mean-token-mean': 'seq-mean-token-mean', 'seq-mean-token-sum': 'seq-mean-token-sum' } as const;

interface Experience {
  /** The group's index among the step's kept groups of every rank (its place in the global batch). */
  group: number;
  row: PreparedRow;
  rollout: Rollout;
  reward: RewardScores;
  advantage: number;
  oldLogprobs?: Float32Array;
  refLogprobs?: Float32Array;
}

export class GrpoTrainer extends TrainingRun {
  protected readonly kind = 'grpo' as const;
  private reference: Model | undefined;

  constructor(config: TrainConfig, options: RunOptions = {}) {
    super(config, options);
  }

  protected rowsPerStep(): number {
    return this.config.data.rollout_batch_size;
  }

  protected optimizerStepsPerStep(): number {
    const { actor } = this.config.worker;
    return Math.ceil(this.config.data.rollout_batch_size / actor.global_batch_size) * actor.ppo_epochs;
  }

  private get klActive(): boolean {
    const a = this.config.algorithm;
    return !a.disable_kl && a.use_kl_loss && a.kl_coef > 0;
  }

  /** Runs to the last step (or until the signal aborts: then the last completed step is checkpointed). */
  async train(): Promise<TrainResult> {
    const { config } = this;
    await this.setUp();
    const plan = await this.checkMemory(this.klActive);
    this.decodeBatch = Math.max(1, Math.min(plan.rolloutSequences, config.worker.rollout.max_num_seqs));
    if (this.klActive) {
      this.say(`loading the reference model from ${this.sourceDir}`);
      this.reference = await Model.load(this.sourceDir, { device: config.trainer.device });
    }
    return this.runSteps();
  }

  protected async trainStep(): Promise<void> {
    const { config } = this;
    const step = this.step + 1;
    const n = config.worker.rollout.n;
    const timing: Record<string, number> = {};
    const time = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await work();
      } finally {
        timing[`timing/${name}`] = (timing[`timing/${name}`] ?? 0) + (performance.now() - t0) / 1000;
      }
    };
    const stepStart = performance.now();

    // Rollout and reward, drawing more prompts while groups are filtered out (DAPO), within the retry budget.
    // Every rank draws the same global prompts and generates and scores its share of whole groups
    // (prompts r, r + W, ...), so advantages need no communication.
    const dp = this.dataParallel;
    const wanted = config.data.rollout_batch_size;
    const kept: Experience[][] = [];
    let keptGlobal = 0;
    let tries = 0;
    let generatedGroups = 0;
    let droppedGroups = 0;
    const rewardsSeen: RewardScores[] = [];
    const rolloutsSeen: { row: PreparedRow; rollout: Rollout }[] = [];
    while (keptGlobal < wanted) {
      tries++;
      const drawn = this.loader.take(wanted - keptGlobal);
      const rows = dp.share(drawn);
      const prepared = await time('prepare', () => Promise.all(rows.map((r) => this.prompts.prepare(r))));
      this.throwIfAborted();
      const sampling = {
        ...this.sampling(false),
        seed: hash32('rollout', config.trainer.seed, step, tries),
        ...(dp.distributed ? { promptIndex: { first: dp.rank, stride: dp.worldSize } } : {}),
      };
      const rollouts = await time('generation', () =>
        sampleCompletions(this.vlm, prepared, sampling, {
          ...(this.signal ? { signal: this.signal } : {}),
          onProgress: (done, total) => this.emit('progress', { step, phase: 'rollout', done, total }),
        }),
      );
      this.throwIfAborted();
      this.emit('progress', { step, phase: 'reward', done: 0, total: rollouts.length });
      const scores = await time('reward', () =>
        this.reward.scoreBatch(
          rollouts.map((r) => {
            const row = prepared[r.prompt] as PreparedRow;
            return { completion: r.text, groundTruth: row.groundTruth, prompt: row.prompt, image: row.image };
          }),
        ),
      );
      rewardsSeen.push(...scores);
      rollouts.forEach((r) => rolloutsSeen.push({ row: prepared[r.prompt] as PreparedRow, rollout: r }));
      const overall = scores.map((s) => s.overall);
      const advantages = groupAdvantages(overall, n, { normaliseByStd: config.algorithm.norm_adv_by_std_in_grpo });
      const keep = config.algorithm.online_filtering
        ? informativeGroups(scores.map((s) => s[config.algorithm.filter_key] ?? s.overall), n, config.algorithm.filter_low, config.algorithm.filter_high)
        : prepared.map(() => true);
      // Which of the drawn prompts every rank kept, in the global order: each kept group's place in the global batch.
      const keptFlags = new Array<number>(drawn.length).fill(0);
      keep.forEach((k, j) => (keptFlags[dp.globalIndex(j)] = k ? 1 : 0));
      const globalFlags = await dp.sum(keptFlags);
      const placeOf = new Map<number, number>();
      globalFlags.forEach((flag, i) => {
        if (flag > 0) placeOf.set(i, keptGlobal + placeOf.size);
      });
      generatedGroups += drawn.length;
      droppedGroups += drawn.length - placeOf.size;
      prepared.forEach((row, g) => {
        if (!keep[g]) return;
        const group = placeOf.get(dp.globalIndex(g)) as number;
        kept.push(
          Array.from({ length: n }, (_, s) => ({
            group,
            row,
            rollout: rollouts[g * n + s] as Rollout,
            reward: scores[g * n + s] as RewardScores,
            advantage: advantages[g * n + s] as number,
          })),
        );
      });
      keptGlobal += placeOf.size;
      if (!config.algorithm.online_filtering || tries >= config.trainer.max_try_make_batch) break;
    }
    if (keptGlobal === 0) {
      this.say(`step ${step}: every group was filtered out after ${tries} tries; no update`);
    }
    const experiences = kept.flat();

    // Old and reference log-probs of the sampled tokens, in micro-batches.
    await time('old_logprobs', () => this.fillLogprobs(experiences, this.vlm.model, 'oldLogprobs', step, 'old_logprobs'));
    this.throwIfAborted();
    if (this.reference) await time('ref_logprobs', () => this.fillLogprobs(experiences, this.reference as Model, 'refLogprobs', step, 'ref_logprobs'));
    this.throwIfAborted();

    const update = await time('update', () => this.update(kept, keptGlobal, step));
    this.step = step;

    // Timings are the slowest rank's (the step waits for it).
    const timings = await combineMetrics(dp, {}, { ...timing, 'timing/step': (performance.now() - stepStart) / 1000 });
    const metrics: Metrics = {
      ...(await this.rolloutMetrics(rewardsSeen, rolloutsSeen)),
      ...update,
      'batch/groups': generatedGroups,
      'batch/groups_kept': keptGlobal,
      'batch/groups_filtered': droppedGroups,
      'batch/zero_variance_groups': (await dp.sum([countZeroVariance(rewardsSeen.map((s) => s.overall), n)]))[0] as number,
      'training/epoch': this.loader.epoch,
      ...timings,
    };
    await this.logMetrics('train', metrics);
    if (dp.main) await this.logSamples(experiences, 'train', config.trainer.train_generations_to_log);
    this.checkStall(step, metrics);
  }

  private stalledSteps = 0;

  /** Warns when a step could teach nothing, and stops after trainer.stall_steps such steps in a row. */
  private checkStall(step: number, metrics: Metrics): void {
    const groups = metrics['batch/groups'] as number;
    const why =
      groups > 0 && metrics['batch/zero_variance_groups'] === groups
        ? `every group's ${this.config.worker.rollout.n} rewards were equal (mean reward ${(metrics['reward/overall'] ?? 0).toFixed(3)}), so every advantage was 0`
        : metrics['response_length/clip_ratio'] === 1
          ? `every response hit data.max_response_length (${this.config.data.max_response_length} tokens)`
          : undefined;
    if (!why) {
      this.stalledSteps = 0;
      return;
    }
    this.stalledSteps++;
    const limit = this.config.trainer.stall_steps;
    this.say(`warning: step ${step} learned nothing: ${why} (${this.stalledSteps} such step${this.stalledSteps > 1 ? 's' : ''} in a row${limit > 0 ? `; stopping at ${limit}` : ''})`);
    if (limit > 0 && this.stalledSteps >= limit)
      throw new StalledRunError(
        `stopped after ${this.stalledSteps} steps in a row that learned nothing (${why}); check the reward against the data and the prompt format, ` +
          `or set trainer.stall_steps=0 to keep going`,
      );
  }

  /** Means over every rank's rollouts (and the longest response of any). */
  private async rolloutMetrics(scores: readonly RewardScores[], rollouts: readonly { row: PreparedRow; rollout: Rollout }[]): Promise<Metrics> {
    const total = (values: number[]): [number, number] => [values.reduce((a, b) => a + b, 0), values.length];
    const components = [...new Set(scores.flatMap((s) => Object.keys(s)))];
    const means: Record<string, [number, number]> = {};
    for (const c of components) means[`reward/${c}`] = total(scores.map((s) => s[c] ?? 0));
    means['accuracy'] = total(rollouts.map(({ row, rollout }) => (answersMatch(extractAnswer(rollout.text), parseGroundTruth(row.groundTruth).answer) ? 1 : 0)));
    const lengths = rollouts.map((r) => r.rollout.tokens.length);
    means['response_length/mean'] = total(lengths);
    means['response_length/clip_ratio'] = total(rollouts.map((r) => (r.rollout.finishReason === 'length' ? 1 : 0)));
    return combineMetrics(this.dataParallel, means, { 'response_length/max': Math.max(0, ...lengths) });
  }

  private async fillLogprobs(experiences: Experience[], model: Model, field: 'oldLogprobs' | 'refLogprobs', step: number, phase: 'old_logprobs' | 'ref_logprobs'): Promise<void> {
    const micro = this.config.worker.actor.micro_batch_size_per_device_for_experience;
    const temperature = this.config.worker.rollout.temperature || 1;
    for (let i = 0; i < experiences.length; i += micro) {
      this.throwIfAborted();
      const chunk = experiences.slice(i, i + micro);
      const logprobs = await model.logprobs(
        chunk.map((e) => e.row.input),
        chunk.map((e) => e.rollout.tokens),
        { temperature, ...(this.signal ? { signal: this.signal } : {}) },
      );
      this.throwIfAborted();
      chunk.forEach((e, k) => (e[field] = logprobs[k]));
      this.emit('progress', { step, phase, done: Math.min(i + micro, experiences.length), total: experiences.length });
    }
  }

  /**
   * The policy update over the step's kept groups, `globalGroups` of them on
   * every rank together: mini-batch m is the groups whose global place is in
   * [m G, (m + 1) G) (G = worker.actor.global_batch_size); each rank
   * computes the gradients of its groups of it, divided by the global
   * mini-batch's token and sequence counts, and the engine sums them over
   * the ranks in the optimiser step.
   */
  private async update(groups: readonly Experience[][], globalGroups: number, step: number): Promise<Metrics> {
    const { actor, rollout } = this.config.worker;
    const algorithm = this.config.algorithm;
    const model = this.vlm.model;
    const dp = this.dataParallel;
    const n = rollout.n;
    const perMiniBatch = actor.global_batch_size;
    const miniBatchCount = Math.ceil(globalGroups / perMiniBatch);
    const miniBatches: Experience[][] = Array.from({ length: miniBatchCount }, () => []);
    for (const group of groups) (miniBatches[Math.floor((group[0] as Experience).group / perMiniBatch)] as Experience[]).push(...group);
    const globalTokens = await dp.sum(miniBatches.map((batch) => batch.reduce((a, e) => a + e.rollout.tokens.length, 0)));
    const sum: Record<string, number> = {};
    let tokensSeen = 0;
    let optimizerSteps = 0;
    let lr = 0;
    const add = (name: string, value: number, weight = 1) => (sum[name] = (sum[name] ?? 0) + value * weight);
    const micro = actor.micro_batch_size_per_device_for_update;
    const totalMicro = miniBatches.reduce((a, mb) => a + Math.ceil(mb.length / micro), 0) * actor.ppo_epochs;
    let microDone = 0;
    for (let epoch = 0; epoch < actor.ppo_epochs; epoch++) {
      for (const [m, batch] of miniBatches.entries()) {
        const batchTokens = globalTokens[m] as number;
        if (batchTokens === 0) continue;
        const batchSequences = Math.min(perMiniBatch, globalGroups - m * perMiniBatch) * n;
        await model.zeroGradients();
        let loss = 0;
        for (let i = 0; i < batch.length; i += micro) {
          // An abort abandons the step only while it has changed nothing.
          if (optimizerSteps === 0) this.throwIfAborted();
          const chunk = batch.slice(i, i + micro);
          const sequences: TrainSequence[] = chunk.map((e) => ({
            ids: concatIds(e.row.input.ids, e.rollout.tokens),
            promptLength: e.row.input.ids.length,
            ...(e.row.input.images ? { images: e.row.input.images } : {}),
            advantage: e.advantage,
            ...(e.oldLogprobs ? { oldLogprobs: e.oldLogprobs } : {}),
            ...(e.refLogprobs ? { refLogprobs: e.refLogprobs } : {}),
          }));
          const result = await model.trainGradients(sequences, {
            objective: 'grpo',
            clipLow: actor.clip_ratio_low,
            clipHigh: actor.clip_ratio_high,
            dualClip: actor.clip_ratio_dual,
            klCoef: this.klActive ? algorithm.kl_coef : 0,
            klEstimator: KL_ESTIMATORS[algorithm.kl_penalty],
            aggregation: AGGREGATIONS[actor.loss_avg_mode],
            temperature: rollout.temperature || 1,
            batchTokens,
            batchSequences,
            checkpointLayers: actor.model.enable_gradient_checkpointing,
            freezeVision: actor.model.freeze_vision_tower,
            maxSequenceLength: this.config.data.max_prompt_length + this.config.data.max_response_length,
          });
          const tokens = chunk.reduce((a, e) => a + e.rollout.tokens.length, 0);
          loss += result.loss;
          add('actor/pg_loss', result.pgLoss);
          add('actor/kl_loss', result.klMean, tokens);
          add('actor/ppo_kl', result.ppoKl, tokens);
          add('actor/pg_clipfrac_higher', result.clipfracHigh, tokens);
          add('actor/pg_clipfrac_lower', result.clipfracLow, tokens);
          add('actor/pg_clipfrac_dual', result.clipfracDual, tokens);
          add('actor/entropy_loss', result.entropy, tokens);
          tokensSeen += tokens;
          this.emit('progress', { step, phase: 'update', done: ++microDone, total: totalMicro });
        }
        // Each rank's loss is its share of the mini-batch's: their sum is the mini-batch's loss.
        const [miniBatchLoss = 0] = await dp.sum([loss]);
        const r = await this.optimizerStep(miniBatchLoss);
        lr = r.lr;
        add('actor/grad_norm', r.gradNorm / dp.worldSize);
        add('actor/loss', miniBatchLoss / dp.worldSize);
        add('actor/skipped_updates', r.skipped ? 1 / dp.worldSize : 0);
        optimizerSteps++;
      }
    }
    // Sums over ranks: per-token metrics are token-weighted means over every rank's tokens; the
    // global quantities above were divided by the world size so that their sum is themselves.
    const names = Object.keys(sum).sort();
    const [globalTokensSeen = 0, ...totals] = await dp.sum([tokensSeen, ...names.map((k) => sum[k] as number)]);
    const m: Metrics = { 'actor/lr': lr, 'actor/optimizer_steps': optimizerSteps };
    names.forEach((k, i) => {
      const v = totals[i] as number;
      const perToken = ['actor/kl_loss', 'actor/ppo_kl', 'actor/pg_clipfrac_higher', 'actor/pg_clipfrac_lower', 'actor/pg_clipfrac_dual', 'actor/entropy_loss'].includes(k);
      m[k] = perToken ? v / Math.max(1, globalTokensSeen) : k === 'actor/skipped_updates' ? Math.round(v) : v / Math.max(1, optimizerSteps);
    });
    return m;
  }

  private async logSamples(experiences: readonly Experience[], split: 'train' | 'val', count: number): Promise<void> {
    const picked = experiences.slice(0, count);
    await this.log.samples(await Promise.all(picked.map((e, index) => this.sampleRecord(e.row, e.rollout, e.reward, split, index, e.advantage))));
  }

  override async dispose(): Promise<void> {
    await this.reference?.dispose();
    await super.dispose();
  }
}

function concatIds(prompt: Int32Array | readonly number[], completion: Int32Array): Int32Array {
  const out = new Int32Array(prompt.length + completion.length);
  out.set(prompt instanceof Int32Array ? prompt : Int32Array.from(prompt), 0);
  out.set(completion, prompt.length);
  return out;
}

function countZeroVariance(rewards: readonly number[], n: number): number {
  let count = 0;
  for (let g = 0; g < rewards.length; g += n) {
    const group = rewards.slice(g, g + n);
    if (group.every((r) => r === group[0])) count++;
  }
  return count;
}

/** A run stopped because its last trainer.stall_steps steps could not change the policy. */
export class StalledRunError extends Error {
  override name = 'StalledRunError';
}
