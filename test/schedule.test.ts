import t from 'tap';
import { learningRate } from '../lib/rl/schedule.js';

t.test('learning-rate schedules', async (t) => {
  t.equal(learningRate({ name: 'constant', lr: 1e-6 }, 1), 1e-6);
  t.equal(learningRate({ name: 'constant', lr: 1e-6 }, 500), 1e-6);
  t.same([1, 2, 4, 5, 9].map((s) => learningRate({ name: 'linear-warmup', lr: 1, warmupSteps: 4 }, s)), [0.25, 0.5, 1, 1, 1]);
  const cos = (s: number) => learningRate({ name: 'cosine', lr: 1, warmupSteps: 2, totalSteps: 12, minLrRatio: 0.1 }, s);
  t.equal(cos(1), 0.5, 'warm-up first');
  t.equal(cos(2), 1, 'peak at the end of warm-up');
  t.ok(Math.abs(cos(7) - 0.55) < 1e-12, 'half way: the mean of peak and floor');
  t.ok(Math.abs(cos(12) - 0.1) < 1e-12, 'the floor at the last step');
  t.ok(Math.abs(cos(20) - 0.1) < 1e-12, 'and after it');
  t.throws(() => learningRate({ name: 'cosine', lr: 1 }, 1), /needs totalSteps/);
  t.throws(() => learningRate({ name: 'constant', lr: 1 }, 0), /count from 1/);
  t.throws(() => learningRate({ name: 'step' as 'constant', lr: 1 }, 1), /unknown learning-rate schedule "step"/);
});
