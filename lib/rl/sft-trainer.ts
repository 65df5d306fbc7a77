/**
 * Supervised warm start through the same loader, prompts, engine and
 * checkpoints as GRPO: token cross-entropy on each row's target completion
 * (by default the gold reasoning trace written from its ground truth),
 * mini-batches of `worker.actor.global_batch_size` rows.
 */
import type { TrainSequence } from '../engine/model.js';
import { learningRate } from '../train/schedule.js';
import { hash32 } from '../synth/random.js';
import type { TrainConfig } from './config.js';
import { evaluatePolicy } from './evaluate.js';
import { sftTarget } from './gold-trace.js';
import { RowError } from './prompts.js';
import { AbortedRun, createReward, TrainingRun, type RunOptions } from './run.js';
import type { Metrics } from './run-log.js';
import type { TrainResult } from './grpo-trainer.js';
import type { BatchReward } from '../rewards/types.js';

export class SftTrainer extends TrainingRun {
  protected readonly kind = 'sft' as const;
  private reward!: BatchReward;
  private lastValidation: Metrics | undefined;

  constructor(config: TrainConfig, options: RunOptions = {}) {
    super(config, options);
  }

  protected rowsPerStep(): number {
    return this.config.worker.actor.global_batch_size;
  }

  async train(): Promise<TrainResult> {
    const { config } = this;
    await this.setUp();
    this.reward = await createReward(config.worker.reward, this.options.rewards);
    this.checkMemory(false);
    let lastCheckpoint = this.resumedFrom;
    const validate = this.valRows.length > 0 && config.trainer.val_freq !== 0;
    if (validate && config.trainer.val_before_train && this.step === 0) await this.validate();
    while (this.step < this.totalSteps) {
      const loaderAtStart = this.loader.state();
      try {
        await this.trainStep();
      } catch (error) {
        if (!(error instanceof AbortedRun)) throw error;
        lastCheckpoint = await this.saveCheckpoint({}, loaderAtStart);
        return { dir: this.dir, steps: this.step, lastCheckpoint, validation: this.lastValidation };
      }
      const last = this.step === this.totalSteps;
      if (validate && config.trainer.val_freq > 0 && (this.step % config.trainer.val_freq === 0 || last)) await this.validate();
      if ((config.trainer.save_freq > 0 && this.step % config.trainer.save_freq === 0) || last) lastCheckpoint = await this.saveCheckpoint();
    }
    return { dir: this.dir, steps: this.step, lastCheckpoint, validation: this.lastValidation };
  }

  private async trainStep(): Promise<void> {
    const { actor } = this.config.worker;
    const step = this.step + 1;
    const t0 = performance.now();
    const rows = this.loader.take(actor.global_batch_size);
    const endOfTurn = this.vlm.tokenizer.tokenToId('<|im_end|>');
    const sequences: TrainSequence[] = [];
    for (const row of rows) {
      const prepared = await this.prompts.prepare(row);
      let target: string;
      try {
        target = sftTarget(row.row, this.config.data.sft_target);
      } catch (error) {
        throw new RowError(row.where, (error as Error).message);
      }
      const ids = this.vlm.tokenizer.encode(target);
      const completion = endOfTurn === undefined ? ids : [...ids, endOfTurn];
      sequences.push({
        ids: [...prepared.input.ids, ...completion],
        promptLength: prepared.input.ids.length,
        ...(prepared.input.images ? { images: prepared.input.images } : {}),
        advantage: 0,
      });
    }
    const batchTokens = sequences.reduce((a, s) => a + s.ids.length - s.promptLength, 0);
    await this.vlm.model.zeroGradients();
    let loss = 0;
    const micro = actor.micro_batch_size_per_device_for_update;
    for (let i = 0; i < sequences.length; i += micro) {
      if (this.signal?.aborted) throw new AbortedRun(this.step);
      const result = await this.vlm.model.trainGradients(sequences.slice(i, i + micro), {
        objective: 'sft',
        batchTokens,
        batchSequences: sequences.length,
        checkpointLayers: actor.model.enable_gradient_checkpointing,
        freezeVision: actor.model.freeze_vision_tower,
        maxSequenceLength: this.config.data.max_prompt_length + this.config.data.max_response_length,
      });
      loss += result.loss;
      this.emit('progress', { step, phase: 'update', done: Math.min(i + micro, sequences.length), total: sequences.length });
    }
    const o = actor.optim;
    const optimizerStep = (await this.vlm.model.optimizerState()).step + 1;
    const lr = learningRate(
      { name: o.lr_scheduler, lr: o.lr, warmupSteps: Math.round(o.lr_warmup_ratio * this.totalSteps), totalSteps: this.totalSteps, minLrRatio: o.min_lr_ratio },
      optimizerStep,
    );
    const r = await this.vlm.model.optimizerStep({
      lr,
      beta1: o.betas[0],
      beta2: o.betas[1],
      eps: o.eps,
      weightDecay: o.weight_decay,
      maxGradNorm: actor.max_grad_norm,
      freezeVision: actor.model.freeze_vision_tower,
    });
    this.step = step;
    const seconds = (performance.now() - t0) / 1000;
    await this.logMetrics('train', {
      'sft/loss': loss,
      'actor/grad_norm': r.gradNorm,
      'actor/lr': lr,
      'training/epoch': this.loader.epoch,
      'timing/update': seconds,
      'timing/step': seconds,
      'perf/tokens_per_second': sequences.reduce((a, s) => a + s.ids.length, 0) / seconds,
    });
  }

  async validate(): Promise<Metrics> {
    const step = this.step;
    const r = this.config.worker.rollout;
    const o = r.val_override_config;
    const rows = await Promise.all(this.valRows.map((row) => this.prompts.prepare(row)));
    const evaluation = await evaluatePolicy(
      this.vlm,
      rows,
      {
        n: 1,
        temperature: o.temperature ?? r.temperature,
        topP: o.top_p ?? r.top_p,
        topK: o.top_k ?? r.top_k,
        maxNewTokens: this.config.data.max_response_length,
        seed: hash32('rollout', this.config.trainer.seed, step, 'val'),
        maxBatch: r.max_num_seqs,
      },
      this.reward,
      { batchSize: r.max_num_seqs, onProgress: (done, total) => this.emit('progress', { step, phase: 'validation', done, total }) },
    );
    this.lastValidation = evaluation.metrics;
    await this.logMetrics('val', evaluation.metrics);
    return evaluation.metrics;
  }
}
