/** The rate and time-left text of the CLI's progress lines. */
import t from 'tap';
import { etaText, formatDuration, rateText } from '../lib/cli/progress.js';

t.test('durations', async (t) => {
  t.equal(formatDuration(4.24), '4.2s');
  t.equal(formatDuration(42.4), '42s');
  t.equal(formatDuration(185), '3m05s');
  t.equal(formatDuration(3725), '1h02m');
});

t.test('rates', async (t) => {
  t.equal(rateText(5, 2), '2.50');
  t.equal(rateText(50, 2), '25.0');
  t.equal(rateText(5000, 2), '2500');
});

t.test('time left from the rate so far', async (t) => {
  t.equal(etaText(25, 100, 10), ', ETA 30s', '25 of 100 in 10 s: 75 more take 30 s');
  t.equal(etaText(1, 1000, 2), ', ETA 33m18s');
  t.equal(etaText(100, 100, 10), '', 'done');
  t.equal(etaText(0, 100, 10), '', 'nothing done yet: no estimate');
  t.equal(etaText(10, undefined, 10), '', 'no total: no estimate');
});
