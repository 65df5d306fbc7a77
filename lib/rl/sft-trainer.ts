/**
 * Supervised warm start through the same loader, prompts, engine and
 * checkpoints as GRPO: token cross-entropy on each row's target completion
 * (by default the gold reasoning trace written from its ground truth),
 * mini-batches of `worker.actor.global_batch_size` rows.
 */
import type { TrainSequence } from '../engine/model.js';
import type { TrainConfig } from './config.js';
import { sftTarget } from './gold-trace.js';
import { RowError } from './prompts.js';
import { TrainingRun, type RunOptions, type TrainResult } from './run.js';

export class SftTrainer extends TrainingRun {
  protected readonly kind = 'sft' as const;

  constructor(config: TrainConfig, options: RunOptions = {}) {
    super(config, options);
  }

  protected rowsPerStep(): number {
    return this.config.worker.actor.global_batch_size;
  }

  protected optimizerStepsPerStep(): number {
    return 1;
  }

  async train(): Promise<TrainResult> {
    await this.setUp();
    await this.checkMemory(false);
    return this.runSteps();
  }

  protected async trainStep(): Promise<void> {
    const { actor } = this.config.worker;
    const dp = this.dataParallel;
    const step = this.step + 1;
    const t0 = performance.now();
    // The global batch, the same on every rank; this rank trains on its share.
    const rows = dp.share(this.loader.take(actor.global_batch_size));
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
    // Each rank's loss is divided by the global batch's token count, so the summed gradients are the global batch's.
    const [batchTokens = 0] = await dp.sum([sequences.reduce((a, s) => a + s.ids.length - s.promptLength, 0)]);
    await this.vlm.model.zeroGradients();
    let loss = 0;
    const micro = actor.micro_batch_size_per_device_for_update;
    for (let i = 0; i < sequences.length; i += micro) {
      this.throwIfAborted();
      const result = await this.vlm.model.trainGradients(sequences.slice(i, i + micro), {
        objective: 'sft',
        batchTokens,
        batchSequences: actor.global_batch_size,
        checkpointLayers: actor.model.enable_gradient_checkpointing,
        freezeVision: actor.model.freeze_vision_tower,
        maxSequenceLength: this.config.data.max_prompt_length + this.config.data.max_response_length,
      });
      loss += result.loss;
      this.emit('progress', { step, phase: 'update', done: Math.min(i + micro, sequences.length), total: sequences.length });
    }
    const [globalLoss = 0, tokensSeen = 0] = await dp.sum([loss, sequences.reduce((a, s) => a + s.ids.length, 0)]);
    const r = await this.optimizerStep(globalLoss);
    this.step = step;
    const [seconds = 0] = await dp.max([(performance.now() - t0) / 1000]);
    await this.logMetrics('train', {
      'sft/loss': globalLoss,
      'actor/grad_norm': r.gradNorm,
      'actor/lr': r.lr,
      'training/epoch': this.loader.epoch,
      'timing/update': seconds,
      'timing/step': seconds,
      'perf/tokens_per_second': tokensSeen / seconds,
    });
  }
}
