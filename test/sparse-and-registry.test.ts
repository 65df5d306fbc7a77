import t from 'tap';
import { RewardRegistry, SparseReward, isOrderedSpatialFormat, isThinkAnswerFormat, rewards, sparseSceneScore, sparseScore } from '../lib/index.js';
import { WORKED } from './helpers.js';

t.test('sparse format: the whole completion is <think>...</think> <answer>...</answer>', async (t) => {
  t.ok(isThinkAnswerFormat('<think>a</think><answer>b</answer>'));
  t.ok(isThinkAnswerFormat('<think>a\nb</think> \n\t<answer>c\nd</answer>'), 'newlines inside, whitespace between');
  t.ok(isThinkAnswerFormat('<think></think><answer></answer>'), 'empty blocks');
  t.ok(isThinkAnswerFormat('<think>x</think>y</think> <answer>z</answer>'), 'a later </think> can close the block');
  t.notOk(isThinkAnswerFormat(' <think>a</think><answer>b</answer>'), 'leading text');
  t.notOk(isThinkAnswerFormat('<think>a</think><answer>b</answer>\n'), 'trailing newline');
  t.notOk(isThinkAnswerFormat('<think>a</think>x<answer>b</answer>'), 'text between the blocks');
  t.notOk(isThinkAnswerFormat('<answer>b</answer><think>a</think>'), 'wrong order');
  t.notOk(isThinkAnswerFormat('<think>a</think><answer>'), 'unclosed answer');
  t.notOk(isThinkAnswerFormat('<think></think><answer</answer>'), 'the answer tag must be complete');
});

t.test('sparse accuracy and overall (ungated)', async (t) => {
  const gt = WORKED.groundTruth;
  t.same(sparseScore('<think>r</think><answer>(a) SITTING ON</answer>', gt), { overall: 1, format: 1, accuracy: 1 });
  t.same(sparseScore('garbage <answer>(A) sitting on</answer> more', gt), { overall: 0.5, format: 0, accuracy: 1 }, 'accuracy without format');
  t.same(sparseScore('<think>r</think><answer>(B) x</answer>', gt), { overall: 0.5, format: 1, accuracy: 0 });
  t.equal(sparseScore('(A) sitting on', '(A) sitting on').accuracy, 1, 'a bare ground truth and no tags: whole strings compare');
  t.equal(sparseScore('<think>r</think><answer>(A)\nsitting on</answer>', gt).accuracy, 0, 'a multi-line answer falls back to the whole completion');
  const [s] = await new SparseReward().scoreBatch([{ completion: '<think>r</think><answer>(A) sitting on</answer>', groundTruth: gt, prompt: '' }]);
  t.equal(s?.overall, 1, 'needs no image size');
});

t.test('the registry holds the built-ins and user rewards, sync or async', async (t) => {
  t.same(rewards.names().slice(0, 3), ['spatial', 'sparse', 'sparse_scene']);
  const registry = new RewardRegistry()
    .register('length', ({ completion }) => ({ overall: Math.min(1, completion.length / 100), length: completion.length }))
    .register('remote', async ({ groundTruth }) => ({ overall: groundTruth.includes('sitting') ? 1 : 0 }));
  const input = { completion: 'x'.repeat(50), groundTruth: WORKED.groundTruth, prompt: 'p', image: { width: 10, height: 10 } };
  t.same(await registry.create('length').scoreBatch([input]), [{ overall: 0.5, length: 50 }]);
  t.same(await registry.create('remote').scoreBatch([input, input]), [{ overall: 1 }, { overall: 1 }]);
  t.throws(() => registry.register('length', () => ({ overall: 0 })), /already registered/);
  t.throws(() => registry.register('bad name', () => ({ overall: 0 })), /must be letters/);
  t.throws(() => registry.create('nope'), /unknown reward "nope" \(registered: length, remote\)/);
});

t.test('a user reward that throws or returns NaN names the batch item', async (t) => {
  const registry = new RewardRegistry()
    .register('throws', ({ completion }) => {
      if (completion === 'bad') throw new Error('boom');
      return { overall: 1 };
    })
    .register('nan', () => ({ overall: 1, extra: Number.NaN }))
    .register('nothing', () => undefined as never);
  const input = (completion: string) => ({ completion, groundTruth: '', prompt: '' });
  await t.rejects(registry.create('throws').scoreBatch([input('ok'), input('bad')]), /reward "throws" failed on batch item 1: boom/);
  await t.rejects(registry.create('nan').scoreBatch([input('a')]), /non-finite "extra" for batch item 0/);
  await t.rejects(registry.create('nothing').scoreBatch([input('a')]), /no finite "overall" for batch item 0/);
});

t.test('built-in factories take options', async (t) => {
  const spatial = rewards.create('spatial', { similarity: 'exact', weights: { accuracy: 1 } });
  const [s] = await spatial.scoreBatch([{ completion: WORKED.completion, groundTruth: WORKED.groundTruth, prompt: '', image: WORKED.image }]);
  t.ok(Math.abs((s?.overall as number) - (0.1 + 0.2 * 0.65 + 1 + 0.2 * 0.926015)) < 1e-6);
  t.throws(() => rewards.create('spatial', { similarity: 'glove' }), /unknown label similarity "glove"/);
});

t.test('sparse_scene (r1v_scene): the four blocks in order and nothing else, then 0.5 + 0.5 accuracy', async (t) => {
  const gt = WORKED.groundTruth;
  const blocks = (answer: string, sep = '\n') => `<observe>o</observe>${sep}<scene>{}</scene>${sep}<think>t</think>${sep}<answer>${answer}</answer>`;
  t.same(sparseSceneScore(blocks('\n(a) SITTING ON\n'), gt), { overall: 1, format: 1, accuracy: 1 }, 'a multi-line answer is extracted (dot matches newlines)');
  t.same(sparseSceneScore(blocks('(B) x'), gt), { overall: 0.5, format: 1, accuracy: 0 });
  t.same(sparseSceneScore(blocks('(A) sitting on', ''), gt).format, 1, 'no whitespace between blocks');
  t.same(sparseSceneScore(`x${blocks('(A) sitting on')}`, gt), { overall: 0, format: 0, accuracy: 0 }, 'leading text zeroes everything, accuracy too');
  t.equal(sparseSceneScore(`${blocks('(A) sitting on')}\n`, gt).format, 0, 'trailing newline');
  t.equal(sparseSceneScore('<scene>{}</scene><observe>o</observe><think>t</think><answer>(A) sitting on</answer>', gt).format, 0, 'wrong order');
  t.equal(sparseSceneScore('<observe>o</observe><scene>{}</scene><answer>(A) sitting on</answer>', gt).format, 0, 'a missing block');
  t.ok(isOrderedSpatialFormat('<observe>a</observe> <scene>b</observe> <scene>c</scene><think></think><answer></answer>'), 'a later closing tag can end a block');
  t.notOk(isOrderedSpatialFormat('<observe></observe>x<scene></scene><think></think><answer></answer>'), 'text between blocks');
  t.ok(rewards.has('sparse_scene'));
  const many = `<observe>${'</observe> '.repeat(200_000)}<scene></scene><think></think><answer>z</answer>`;
  const t0 = performance.now();
  t.equal(isOrderedSpatialFormat(many), true, '200k closing tags');
  t.ok(performance.now() - t0 < 5000, 'linear, not a backtracking regex');
});
