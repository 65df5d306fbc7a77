import t from 'tap';
import { NonFiniteStepError, StepGuard, type SkippedStep } from '../lib/rl/step-guard.js';

t.test('skipped steps are reported and too many in a row stop the run', async (t) => {
  const seen: SkippedStep[] = [];
  const guard = new StepGuard(3, (s) => seen.push(s));
  guard.record(1, 0.5, 1.2, false);
  guard.record(2, Number.NaN, Number.NaN, true);
  guard.record(3, 0.4, Number.POSITIVE_INFINITY, true);
  guard.record(4, 0.4, 0.9, false); // a good step resets the count
  guard.record(5, Number.NaN, 1, true);
  guard.record(6, Number.NaN, 1, true);
  t.throws(() => guard.record(7, Number.NaN, 1, true), NonFiniteStepError);
  t.throws(() => guard.record(8, Number.NaN, 1, true), /4 optimiser steps in a row had a non-finite loss or gradient norm \(last: step 8/);
  t.same(seen.map((s) => [s.step, s.consecutive]), [[2, 1], [3, 2], [5, 1], [6, 2], [7, 3], [8, 4]]);
  t.equal(guard.skippedSteps, 6);
  t.throws(() => new StepGuard(0), /positive integer/);
});
