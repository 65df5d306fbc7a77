/** Held-out metrics from sampled completions: accuracy, format, CIoU, whether the answer is an option at all, per category. */
import t from 'tap';
import { scoreRollouts, summarise } from '../lib/rl/evaluate.js';
import { SpatialReward } from '../lib/rewards/spatial-reward.js';
import type { PreparedRow } from '../lib/rl/prompts.js';
import type { Rollout } from '../lib/rl/rollout.js';
import { WORKED } from './helpers.js';

function row(category: string, options: string[] | undefined): PreparedRow {
  return {
    source: { row: { category, ...(options ? { options } : {}) } as never, where: `val.jsonl row ${category}` },
    input: { ids: [] },
    prompt: '',
    groundTruth: WORKED.groundTruth,
    image: WORKED.image,
    tokens: 0,
  };
}

function rollout(prompt: number, sample: number, text: string): Rollout {
  return { prompt, sample, tokens: new Int32Array(3), logprobs: new Float32Array(3), text, finishReason: 'stop' };
}

t.test('n completions per row are scored against their own row, and answer_is_option counts valid options, right or wrong', async (t) => {
  const rows = [row('relation', ['sitting on', 'under']), row('depth', ['sitting on', 'behind']), row('count', undefined)];
  const right = WORKED.completion;
  const validWrong = right.replace('(a) Sitting on', '(B) under');
  const madeUp = right.replace('(a) Sitting on', '(B) sitting near');
  const rollouts = [rollout(0, 0, right), rollout(0, 1, validWrong), rollout(1, 0, madeUp), rollout(1, 1, 'garbage'), rollout(2, 0, right), rollout(2, 1, right)];
  const scored = await scoreRollouts(rows, rollouts, new SpatialReward({ similarity: 'exact' }));
  t.same(scored.map((s) => s.correct), [true, false, false, false, true, true]);
  t.same(scored.map((s) => s.answerIsOption), [true, true, false, false, undefined, undefined], 'rows without options are left out');
  t.same(scored.map((s) => s.wellFormed), [true, true, true, false, true, true]);
  const m = summarise(scored);
  t.equal(m['val/samples'], 6);
  t.equal(m['val/accuracy'], 0.5);
  t.equal(m['val/answer_is_option'], 0.5, '2 of the 4 completions whose rows list options');
  t.equal(m['val/accuracy/relation'], 0.5);
  t.equal(m['val/accuracy/depth'], 0);
  t.equal(m['val/accuracy/count'], 1);
  t.ok((m['val/ciou'] as number) > 0.5 && (m['val/ciou'] as number) < 1, `mean CIoU ${m['val/ciou']}: five completions with boxes, one without`);
});
