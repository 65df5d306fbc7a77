import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WORKED } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'st-cli-'));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const problem = 'Look at the image.\nImage size: (640 x 480)\nQ. What is the man doing?';
const row = { prediction: WORKED.completion, ground_truth: WORKED.groundTruth, problem, id: 'keep-me' };

t.test('scores a file and keeps every input field', async (t) => {
  const input = join(dir, 'in.jsonl');
  const output = join(dir, 'out.jsonl');
  writeFileSync(input, [row, { ...row, prediction: 'nonsense' }, { ...row, problem: 'no size', image_size: [640, 480] }].map((r) => JSON.stringify(r)).join('\n') + '\n\n');
  const r = cli('score', '--input', input, '--output', output, '--similarity', 'exact');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /scored 3 rows/);
  const lines = readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.equal(lines.length, 3);
  t.equal(lines[0].id, 'keep-me');
  t.ok(Math.abs(lines[0].reward.overall - 0.915203) < 1e-6, `worked example: ${lines[0].reward.overall}`);
  t.same(Object.keys(lines[0].reward), ['overall', 'format', 'count', 'accuracy', 'spatial']);
  t.same(lines[1].reward, { overall: 0, format: 0, count: 0, accuracy: 0, spatial: 0 });
  t.equal(lines[2].reward.overall, lines[0].reward.overall, 'image_size field stands in for the prompt line');
});

t.test('sparse reward and custom weights', async (t) => {
  const input = join(dir, 'w.jsonl');
  writeFileSync(input, JSON.stringify(row) + '\n');
  const weighted = join(dir, 'weighted.jsonl');
  t.equal(cli('score', '--input', input, '--output', weighted, '--similarity', 'exact', '--weights', 'format=1,count=0,accuracy=0,spatial=0').code, 0);
  t.equal(JSON.parse(readFileSync(weighted, 'utf8')).reward.overall, 1);
  const sparse = join(dir, 'sparse.jsonl');
  t.equal(cli('score', '--input', input, '--output', sparse, '--reward', 'sparse').code, 0);
  t.same(JSON.parse(readFileSync(sparse, 'utf8')).reward, { overall: 0.5, format: 0, accuracy: 1 });
  const bad = cli('score', '--input', input, '--output', sparse, '--weights', 'format=x');
  t.equal(bad.code, 2, 'a malformed --weights is a usage error');
  t.match(bad.stderr, /--weights: "format=x" is not name=number/);
});

t.test('a bad line is named by its number; --skip-invalid counts it', async (t) => {
  const input = join(dir, 'bad.jsonl');
  const output = join(dir, 'bad-out.jsonl');
  writeFileSync(
    input,
    [
      JSON.stringify(row),
      '{not json',
      JSON.stringify({ ...row, problem: 'no size here' }),
      JSON.stringify({ ...row, ground_truth: '<answer>x</answer>' }),
      JSON.stringify({ prediction: 'x', problem: problem }),
      JSON.stringify(row),
    ].join('\n') + '\n',
  );
  const stop = cli('score', '--input', input, '--output', output);
  t.equal(stop.code, 1);
  t.match(stop.stderr, new RegExp(`${input.replace(/[/.]/g, '\\$&')}:2: not valid JSON`));
  t.notOk(existsSync(output), 'no partial output is left behind');
  const skip = cli('score', '--input', input, '--output', output, '--skip-invalid', '--similarity', 'exact');
  t.equal(skip.code, 0, skip.stderr);
  t.match(skip.stderr, /scored 2 rows .* skipped 4 invalid lines/);
  t.equal(readFileSync(output, 'utf8').trim().split('\n').length, 2);
  for (const [lineNo, message] of [
    [3, /no image size/],
    [4, /ground truth has no <scene>/],
    [5, /"ground_truth" is missing/],
  ] as const) {
    const single = join(dir, `single-${lineNo}.jsonl`);
    writeFileSync(single, readFileSync(input, 'utf8').split('\n')[lineNo - 1] + '\n');
    const r = cli('score', '--input', single, '--output', join(dir, 'x.jsonl'));
    t.match(r.stderr, message, `line ${lineNo}`);
  }
});

t.test('usage errors', async (t) => {
  t.match(cli('score').stderr, /--input and --output are required/);
  t.match(cli('score', '--input', join(dir, 'missing.jsonl'), '--output', join(dir, 'o.jsonl')).stderr, /cannot read .*missing.jsonl: no such file/);
  t.match(cli('score', '--input', 'a', '--output', 'b', '--reward', 'dense').stderr, /unknown --reward "dense"/);
  t.match(cli('frobnicate').stderr, /unknown command "frobnicate"/);
  t.match(cli('score', '--help').stdout, /--skip-invalid/);
  t.match(cli('doctor').stdout, /CPU backend: +\d+ threads/);
});

t.test('--output into a missing folder is one clear line, not an unhandled error event (issue 19 defect 9)', async (t) => {
  const input = join(dir, 'one.jsonl');
  writeFileSync(input, JSON.stringify(row) + '\n');
  const output = join(dir, 'no-such-folder', 'out.jsonl');
  const r = cli('score', '--input', input, '--output', output, '--similarity', 'exact');
  t.equal(r.code, 1, r.stderr);
  t.match(r.stderr, /cannot write --output .*no-such-folder.*does not exist/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.notOk(existsSync(output));
});
