/**
 * Non-finite losses and gradients: the optimiser skips such a step (the
 * weights do not move); this guard reports each skip and stops the run with
 * a clear message when too many happen in a row, instead of training on.
 */
export class NonFiniteStepError extends Error {
  override name = 'NonFiniteStepError';
}

export interface SkippedStep {
  step: number;
  loss: number;
  gradNorm: number;
  consecutive: number;
}

export class StepGuard {
  private consecutive = 0;
  private total = 0;

  /** `maxConsecutive` skipped steps in a row stop the run (default 5). */
  constructor(
    readonly maxConsecutive = 5,
    private readonly onSkip: (skipped: SkippedStep) => void = () => {},
  ) {
    if (!Number.isInteger(maxConsecutive) || maxConsecutive < 1) throw new RangeError(`maxConsecutive must be a positive integer, got ${maxConsecutive}`);
  }

  /** Records a step's outcome; throws NonFiniteStepError after too many skipped steps in a row. */
  record(step: number, loss: number, gradNorm: number, skipped: boolean): void {
    if (!skipped && Number.isFinite(loss) && Number.isFinite(gradNorm)) {
      this.consecutive = 0;
      return;
    }
    this.consecutive++;
    this.total++;
    this.onSkip({ step, loss, gradNorm, consecutive: this.consecutive });
    if (this.consecutive >= this.maxConsecutive)
      throw new NonFiniteStepError(
        `${this.consecutive} optimiser steps in a row had a non-finite loss or gradient norm (last: step ${step}, loss ${loss}, ` +
          `grad norm ${gradNorm}); stopping. Lower the learning rate, check the data, or resume from the last checkpoint.`,
      );
  }

  get skippedSteps(): number {
    return this.total;
  }
}
