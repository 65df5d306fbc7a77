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

/**
 * Case shapes the fixture format allows beyond the shipped cases, built from
 * the shipped cases' inputs and independent expected values: several rows,
 * each with its own image, left padding, a row that stops early, batched
 * log-probs. Rows repeat a shipped case, so the expected values per row are
 * that case's; the padded rows' rope deltas follow the spec's
 * max(position) + 1 - S with S the padded length.
 */
t.test('check-fixtures runs multi-row cases with images in several rows, padding and early stops', { skip }, async (t) => {
  const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join, relative } = await import('node:path');
  const { readSafetensors, encodeSafetensors } = await import('../lib/io/safetensors.js');
  const dir = mkdtempSync(join(tmpdir(), 'st-fixture-shapes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'cases'));
  const manifest = JSON.parse(await (await import('node:fs/promises')).readFile(join(FIXTURES, 'manifest.json'), 'utf8'));
  const shipped = (name: string) => manifest.cases.find((c: { name: string }) => c.name === name);
  const read = async (name: string) => (await readSafetensors(join(FIXTURES, 'cases', `${name}.safetensors`))).tensors;
  const i64 = (values: ArrayLike<number>, shape: number[]) => ({ dtype: 'I64' as const, shape, data: BigInt64Array.from(Array.from(values), (v) => BigInt(v)) });
  const f32 = (values: ArrayLike<number>, shape: number[]) => ({ dtype: 'F32' as const, shape, data: Float32Array.from(values) });
  const nums = (x: { data: ArrayLike<number | bigint> }) => Array.from(x.data as ArrayLike<number | bigint>, Number);
  const twice = (values: number[]) => [...values, ...values];

  const gen = await read('generate_image_150x200');
  const [, S] = gen['input_ids']!.shape as [number, number];
  const PAD = 2;
  const padId = Number(shipped('generate_image_150x200').params.pad_token_id);
  const paddedIds = [...new Array<number>(PAD).fill(padId), ...nums(gen['input_ids']!)];
  const paddedMask = [...new Array<number>(PAD).fill(0), ...nums(gen['attention_mask']!)];
  const pixels = nums(gen['pixel_values']!);
  const grid = nums(gen['image_grid_thw']!);
  const steps = gen['tokens']!.shape[1] as number;
  const expectedTokens = nums(gen['tokens']!);
  const genInputs = {
    input_ids: i64(twice(paddedIds), [2, S + PAD]),
    attention_mask: i64(twice(paddedMask), [2, S + PAD]),
    pixel_values: f32(twice(pixels), [2 * (gen['pixel_values']!.shape[0] as number), 1176]),
    image_grid_thw: i64(twice(grid), [2, 3]),
  };
  writeFileSync(
    join(dir, 'cases', 'generate_two_image_rows.safetensors'),
    encodeSafetensors({
      ...genInputs,
      tokens: i64(twice(expectedTokens), [2, steps]),
      step_logits: f32(twice(nums(gen['step_logits']!)), [2, steps, 1024]),
      rope_deltas: i64(twice(nums(gen['rope_deltas']!).map((d) => d - PAD)), [2, 1]),
      decode_positions: i64(twice(nums(gen['decode_positions']!)), [2, steps - 1]),
    }),
  );
  // Row 1 stops at the first token not seen before step 3: the reference emits pad_token_id after it.
  const stopAt = expectedTokens.findIndex((tok, i) => i >= 3 && !expectedTokens.slice(0, i).includes(tok));
  t.ok(stopAt > 0 && stopAt < steps - 1, `a stop token inside the completion (step ${stopAt})`);
  const stopped = expectedTokens.map((tok, i) => (i <= stopAt ? tok : padId));
  writeFileSync(
    join(dir, 'cases', 'generate_row_stops_early.safetensors'),
    encodeSafetensors({
      ...genInputs,
      tokens: i64([...stopped, ...stopped], [2, steps]),
      decode_positions: i64(twice(nums(gen['decode_positions']!)), [2, steps - 1]),
    }),
  );
  const lp = await read('logprobs_image_150x200');
  const P = lp['prompt_ids']!.shape[1] as number;
  const L = lp['completion_ids']!.shape[1] as number;
  writeFileSync(
    join(dir, 'cases', 'logprobs_two_image_rows.safetensors'),
    encodeSafetensors({
      prompt_ids: i64(twice(nums(lp['prompt_ids']!)), [2, P]),
      completion_ids: i64(twice(nums(lp['completion_ids']!)), [2, L]),
      pixel_values: f32(twice(nums(lp['pixel_values']!)), [2 * (lp['pixel_values']!.shape[0] as number), 1176]),
      image_grid_thw: i64(twice(nums(lp['image_grid_thw']!)), [2, 3]),
      logprobs: f32(twice(nums(lp['logprobs']!)), [2, L]),
    }),
  );
  // Two rows of image tokens but one image: a case the checker must refuse by name.
  writeFileSync(
    join(dir, 'cases', 'generate_missing_image.safetensors'),
    encodeSafetensors({ ...genInputs, pixel_values: f32(pixels, [gen['pixel_values']!.shape[0] as number, 1176]), image_grid_thw: i64(grid, [1, 3]), tokens: i64(twice(expectedTokens), [2, steps]) }),
  );
  const genCase = shipped('generate_image_150x200');
  const cases = [
    { ...genCase, name: 'generate_two_image_rows', file: 'cases/generate_two_image_rows.safetensors' },
    {
      ...genCase,
      name: 'generate_row_stops_early',
      file: 'cases/generate_row_stops_early.safetensors',
      params: { ...genCase.params, eos_token_ids: [expectedTokens[stopAt]] },
      outputs: { tokens: genCase.outputs.tokens, decode_positions: genCase.outputs.decode_positions },
    },
    { ...shipped('logprobs_image_150x200'), name: 'logprobs_two_image_rows', file: 'cases/logprobs_two_image_rows.safetensors' },
    { ...genCase, name: 'generate_missing_image', file: 'cases/generate_missing_image.safetensors', outputs: { tokens: genCase.outputs.tokens } },
  ];
  const checkpoints = { 'tiny-f32': { ...manifest.checkpoints['tiny-f32'], path: relative(dir, join(FIXTURES, manifest.checkpoints['tiny-f32'].path)) } };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, checkpoints, cases }));

  const results = await checkFixtures(dir);
  for (const name of ['generate_two_image_rows', 'generate_row_stops_early', 'logprobs_two_image_rows']) {
    const r = results.find((x) => x.name === name);
    t.equal(r?.error, undefined, `${name} ran`);
    t.ok((r?.quantities.length ?? 0) > 0, `${name} compared its outputs`);
    for (const q of r?.quantities ?? []) t.ok(q.pass, `${name}: ${q.name} (max abs ${q.maxAbs.toExponential(2)}; ${q.detail})`);
  }
  t.match(results.find((x) => x.name === 'generate_missing_image')?.error, /row 1 holds \d+ image tokens but the case's images run out/);
});
