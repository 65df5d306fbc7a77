/**
 * The engine against the golden fixtures of an independent PyTorch reference
 * (../shared/fixtures/qwen25vl-tiny): every inference case must pass within
 * its manifest's tolerances.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { checkFixtures } from '../lib/fixtures/check.js';
import { compare, maskSelector } from '../lib/fixtures/compare.js';

const FIXTURES = resolve('..', 'shared', 'fixtures', 'qwen25vl-tiny');
const skip = existsSync(FIXTURES) ? false : `the golden fixtures are not at ${FIXTURES}`;

t.test('every case of the golden fixtures passes', { skip }, async (t) => {
  const results = await checkFixtures(FIXTURES);
  const inference = results.filter((r) => !r.skipped);
  t.ok(inference.length >= 10, `${inference.length} cases ran`);
  for (const r of inference) {
    t.equal(r.error, undefined, `${r.name} ran`);
    for (const q of r.quantities) t.ok(q.pass, `${r.name}: ${q.name} (max abs ${q.maxAbs.toExponential(2)}; ${q.detail})`);
  }
  for (const kind of ['processor', 'vision', 'forward', 'generate', 'logprobs', 'adamw', 'grpo'])
    t.ok(inference.some((r) => r.kind === kind), `a ${kind} case is covered`);
  for (const r of results.filter((r) => r.skipped)) t.comment(`not yet checked: ${r.name} (${r.skipped})`);
});

t.test('spatialthinker check-fixtures prints per-quantity errors and exits 0', { skip }, async (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'check-fixtures', FIXTURES, '--only', 'forward_text,logprobs'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /PASS forward_text_only/);
  t.match(r.stdout, /ok +logits +max abs \d/);
  t.match(r.stdout, /2 passed, 0 failed, 0 skipped/);
});

t.test('the tolerance rules fail when they should', async (t) => {
  const shape = [2, 2];
  t.ok(compare({ rule: 'exact' }, [1, 2, 3, 4], [1, 2, 3, 4], shape).pass);
  t.notOk(compare({ rule: 'exact' }, [1, 2, 3, 5], [1, 2, 3, 4], shape).pass);
  t.ok(compare({ rule: 'allclose', atol: 0.1, rtol: 0 }, [1.05, 2], [1, 2], [2]).pass);
  t.notOk(compare({ rule: 'allclose', atol: 0.01, rtol: 0 }, [1.05, 2], [1, 2], [2]).pass);
  t.notOk(compare({ rule: 'allclose', atol: 1, rtol: 1 }, [Number.NaN, 2], [1, 2], [2]).pass, 'NaN fails');
  const masked = maskSelector([2, 2], { shape: [2], data: [1, 0] });
  t.ok(compare({ rule: 'exact' }, [1, 2, 9, 9], [1, 2, 3, 4], shape, masked).pass, 'masked rows are ignored');
  const trailing = maskSelector([3, 1, 2], { shape: [1, 2], data: [1, 0] });
  t.ok(compare({ rule: 'exact' }, [1, 9, 2, 9, 3, 9], [1, 0, 2, 0, 3, 0], [3, 1, 2], trailing).pass, 'trailing-dims masks broadcast');
  t.ok(compare({ rule: 'rel_maxabs', rel: 0.01, abs: 0 }, [100.5, 1], [100, 1], [2]).pass);
  t.notOk(compare({ rule: 'rel_maxabs', rel: 0.001, abs: 0 }, [100.5, 1], [100, 1], [2]).pass);
  t.notOk(compare({ rule: 'rel_l2', rel: 0.01 }, [1, 1], [1, 0.5], [2]).pass);
  t.ok(compare({ rule: 'argmax_agree', min_frac: 1 }, [0, 1, 1, 0], [0.1, 0.9, 0.8, 0.2], shape).pass);
  t.notOk(compare({ rule: 'argmax_agree', min_frac: 1 }, [0, 1, 0, 1], [0.1, 0.9, 0.8, 0.2], shape).pass);
  t.notOk(compare({ rule: 'nope' }, [1], [1], [1]).pass, 'an unknown rule fails');
});
