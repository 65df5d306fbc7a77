/** Learning-rate schedules: constant, linear warm-up, cosine decay (after an optional warm-up). */
export type ScheduleName = 'constant' | 'linear-warmup' | 'cosine';

export interface ScheduleOptions {
  name: ScheduleName;
  /** Peak learning rate. */
  lr: number;
  /** Steps of linear warm-up from 0 (default 0). */
  warmupSteps?: number;
  /** Total optimiser steps (cosine decays to minLr at this step). */
  totalSteps?: number;
  /** Floor of the cosine decay, as a fraction of lr (default 0). */
  minLrRatio?: number;
}

/** The learning rate of optimiser step `step` (1-based, as the optimiser counts). */
export function learningRate(options: ScheduleOptions, step: number): number {
  const { lr, name } = options;
  const warmup = options.warmupSteps ?? 0;
  if (!(lr >= 0) || !Number.isFinite(lr)) throw new RangeError(`learning rate must be a finite number >= 0, got ${lr}`);
  if (step < 1) throw new RangeError(`optimiser steps count from 1, got ${step}`);
  if (warmup > 0 && step <= warmup) return (lr * step) / warmup;
  switch (name) {
    case 'constant':
    case 'linear-warmup':
      return lr;
    case 'cosine': {
      const total = options.totalSteps;
      if (!total || total <= warmup) throw new RangeError('a cosine schedule needs totalSteps greater than warmupSteps');
      const progress = Math.min(1, (step - warmup) / (total - warmup));
      const floor = lr * (options.minLrRatio ?? 0);
      return floor + (lr - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
    default:
      throw new RangeError(`unknown learning-rate schedule "${String(name)}" (constant, linear-warmup, cosine)`);
  }
}
