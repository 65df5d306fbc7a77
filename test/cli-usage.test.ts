/** Usage errors: one line, exit code 2, and the closest known command, flag or configuration key. */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { editDistance, suggestions, didYouMean } from '../lib/util/suggest.js';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function usageLine(t: Test, r: ReturnType<typeof cli>, pattern: RegExp) {
  t.equal(r.code, 2, `exit code 2: ${r.stderr}`);
  t.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
  t.match(r.stderr.trimEnd(), pattern);
}

t.test('edit distance and suggestions', async (t) => {
  t.equal(editDistance('train', 'trian'), 1, 'a transposition is one edit');
  t.equal(editDistance('', 'abc'), 3);
  t.equal(editDistance('kitten', 'sitting'), 3);
  t.same(suggestions('trian', ['train', 'sft', 'report']), ['train']);
  t.same(suggestions('xyz', ['train', 'sft', 'report']), [], 'nothing close, nothing offered');
  t.same(suggestions('x', ['h', 'y']), [], 'nor for one letter');
  t.same(suggestions('max', ['max-steps', 'min-steps']), ['max-steps'], 'an abbreviation');
  t.same(suggestions('lrr', ['lr', 'lr_scheduler', 'betas']), ['lr']);
  t.equal(didYouMean('seeds', ['seed', 'seeds2'], (n) => `--${n}`), '; did you mean --seed or --seeds2?');
  t.equal(didYouMean('zzz', ['seed']), '');
});

t.test('an unknown command', async (t) => {
  usageLine(t, cli('trian'), /^spatialthinker: unknown command "trian"; did you mean train\? \(spatialthinker --help lists the commands\)$/);
  usageLine(t, cli('--verison'), /unknown option "--verison"; did you mean --version\?/);
  usageLine(t, cli('frobnicate'), /^spatialthinker: unknown command "frobnicate" \(spatialthinker --help/);
});

t.test('an unknown flag, in every command the same way', async (t) => {
  usageLine(t, cli('score', '--inptu', 'a.jsonl'), /^spatialthinker score: unknown option --inptu; did you mean --input\? \(--help lists the options\)$/);
  usageLine(t, cli('demo', '--quik'), /^spatialthinker demo: unknown option --quik; did you mean --quick\?/);
  usageLine(t, cli('train', '--prest', 'spatialthinker-3b'), /^spatialthinker train: unknown option --prest; did you mean --preset\?/);
  usageLine(t, cli('data', 'inspect', '--rowz', '3', 'x'), /^spatialthinker data: unknown option --rowz; did you mean --rows\?/);
  usageLine(t, cli('doctor', '-x'), /^spatialthinker doctor: unknown option -x \(--help/);
});

t.test('an unknown configuration key', async (t) => {
  // A heading, then one line per problem: each unknown key on its own line with its suggestion.
  const r = cli('train', '--preset', 'spatialthinker-3b', '--print-config', 'worker.actor.optim.lrr=1e-6', 'data.shufle=false');
  t.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  t.match(lines[0], /^spatialthinker train: the configuration \(with overrides\) is invalid:$/);
  t.same(lines.slice(1).map((l) => l.trim()).sort(), [
    'data.shufle: unknown key; did you mean data.shuffle?',
    'worker.actor.optim.lrr: unknown key; did you mean worker.actor.optim.lr?',
  ]);
});

t.test('a bad value and a missing argument are usage errors too', async (t) => {
  usageLine(t, cli('score', '--input', 'a', '--output', 'b', '--device', 'gpu'), /--device must be cpu or cuda/);
  usageLine(t, cli('generate', '--question', 'hi'), /--model and --question are required/);
  usageLine(t, cli('eval', '--out'), /option '--out <value>' argument missing/);
  t.equal(cli().code, 2, 'no command at all');
});

t.test('--version and -V print the package version', async (t) => {
  const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
  for (const flag of ['--version', '-V']) {
    const r = cli(flag);
    t.equal(r.code, 0);
    t.equal(r.stdout, `${version}\n`);
  }
});

t.test('doctor shows the package version and the CPU kernels', async (t) => {
  const r = cli('doctor');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^Package: +spatialthinker \d+\.\d+\.\d+/m);
  t.match(r.stdout, /(AVX-512|AVX2|portable \(no AVX2\)) kernels/);
  const capped = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'doctor', '--json'], { encoding: 'utf8', env: { ...process.env, SPATIALTHINKER_CPU_ISA: 'portable' } });
  t.equal((JSON.parse(capped.stdout) as { cpuIsa: string }).cpuIsa, 'portable', 'SPATIALTHINKER_CPU_ISA caps it');
});
