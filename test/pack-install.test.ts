/**
 * The npm tarball installs and runs where there is no compiler: the prepack
 * script (scripts/prebuild.mjs, which puts this machine's engine into
 * prebuilds/) and `npm pack`, then `npm install` of the tarball in a fresh folder with a
 * PATH that holds node, npm and a shell's basic tools but neither cmake nor a
 * C++ compiler, then a native call through the installed package: the CLI's
 * `score` (box matching in the engine) and `doctor --json`.
 * Dependencies come from the npm registry; without it the test skips.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { WORKED } from './helpers.js';

const root = resolve(import.meta.dirname, '..');
const target = `${process.platform}-${process.arch}`;
const work = mkdtempSync(join(tmpdir(), 'st-pack-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** The environment without npm's lifecycle variables (tap may run under `npm test`): the install must find its own way. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!/^npm_/i.test(key) && key !== 'INIT_CWD' && key !== 'SPATIALTHINKER_ADDON') env[key] = value;
  return { ...env, ...extra };
}

/** Where `name` is on the current PATH, if anywhere. */
function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const file = join(dir, name);
    if (dir && existsSync(file)) return file;
  }
  return undefined;
}

/** A bin folder with node, npm and basic tools only; cmake and compilers are left out on purpose. */
function bareBin(): string {
  const bin = join(work, 'bin');
  mkdirSync(bin);
  const tools = ['node', 'npm', 'npx', 'sh', 'bash', 'dash', 'env', 'cat', 'ls', 'cp', 'mv', 'rm', 'mkdir', 'chmod', 'tar', 'gzip', 'uname', 'sed', 'grep', 'dirname', 'basename', 'readlink', 'which'];
  for (const tool of tools) {
    const file = tool === 'node' ? process.execPath : which(tool);
    if (file) symlinkSync(file, join(bin, tool));
  }
  return bin;
}

const built = existsSync(join(root, 'dist', 'index.js')) && existsSync(join(root, 'dist', 'cli', 'main.js'));
const registry = spawnSync('npm', ['ping'], { encoding: 'utf8', timeout: 30_000, env: cleanEnv({}) });
if (!built) {
  t.test('the packed tarball installs without cmake or a compiler', { skip: 'dist/ is not built (npm ci or npm run prepare builds it), so there is nothing to pack' }, () => {});
} else if (registry.status !== 0) {
  t.test('the packed tarball installs without cmake or a compiler', { skip: `the npm registry is not reachable (npm ping: ${(registry.stderr || registry.error?.message || '').trim().split('\n').pop()}), so the tarball's dependencies cannot be installed` }, () => {});
} else {
  t.test('the packed tarball installs without cmake or a compiler and reaches the engine', async (t) => {
    const started = Date.now();
    // The package's prepack script, run here rather than by `npm pack` so that
    // `npm pack` does not also rerun prepare, which rewrites dist/ while other
    // test files read it. This machine's target only: a cross build would add minutes.
    const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    t.equal(scripts['prepack'], 'node scripts/prebuild.mjs', 'npm pack runs scripts/prebuild.mjs');
    const prebuilt = spawnSync(process.execPath, ['scripts/prebuild.mjs'], { cwd: root, encoding: 'utf8', env: cleanEnv({ SPATIALTHINKER_PREBUILDS: target }) });
    t.equal(prebuilt.status, 0, prebuilt.status === 0 ? prebuilt.stdout.trim().split('\n').pop() ?? 'prepack' : `prepack: ${(prebuilt.stdout + prebuilt.stderr).slice(-2000)}`);
    if (prebuilt.status !== 0) return;
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {
      cwd: root,
      encoding: 'utf8',
      env: cleanEnv({}),
      maxBuffer: 64 << 20,
    });
    t.equal(pack.status, 0, pack.status === 0 ? 'npm pack' : `npm pack: ${pack.stderr.slice(-2000)}`);
    const packedAt = Date.now();
    if (pack.status !== 0) return;
    const packed = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const tarball = join(work, packed[0]!.filename);
    const prebuild = `prebuilds/${target}/spatialthinker.napi${process.platform === 'linux' ? '.glibc' : ''}.node`;
    const paths = packed[0]!.files.map((f) => f.path);
    t.ok(paths.includes(prebuild), `the tarball holds ${prebuild}`);
    t.ok(paths.includes('dist/index.js') && paths.includes('scripts/install-native.mjs'), 'and the compiled library and the install script');
    t.notOk(paths.some((p) => p.startsWith('build/')), 'but no build folder');

    const bin = bareBin();
    const env = cleanEnv({ PATH: bin });
    for (const tool of ['cmake', 'c++', 'g++', 'gcc', 'cc', 'clang++', 'make']) {
      const found = spawnSync('sh', ['-c', `command -v ${tool}`], { env, encoding: 'utf8' });
      t.not(found.status, 0, `${tool} is not on the install's PATH`);
    }
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-install-check', private: true, type: 'module' }));
    const install = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball], { cwd: app, env, encoding: 'utf8', timeout: 240_000 });
    t.equal(install.status, 0, install.status === 0 ? 'npm install' : `npm install: ${(install.stdout + install.stderr).slice(-3000)}`);
    const installedAt = Date.now();
    if (install.status !== 0) return;
    t.match(install.stdout + install.stderr, `using the prebuilt engine ${prebuild}`, 'the install script took the prebuild');
    t.notOk(existsSync(join(app, 'node_modules', 'spatialthinker', 'build')), 'and compiled nothing');

    const cli = join(app, 'node_modules', '.bin', 'spatialthinker');
    const version = spawnSync(cli, ['--version'], { cwd: app, env, encoding: 'utf8' });
    t.equal(version.stdout.trim(), JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version, '--version');

    const doctor = spawnSync(cli, ['doctor', '--json'], { cwd: app, env, encoding: 'utf8' });
    t.equal(doctor.status, 0, doctor.stderr);
    const info = JSON.parse(doctor.stdout) as { cpuIsa: string; cuda: { compiled: boolean } };
    t.match(info.cpuIsa, /^(avx512|avx2|portable)$/, `the engine runs, with ${info.cpuIsa} kernels here`);

    const problem = 'Look at the image.\nImage size: (640 x 480)\nQ. What is the man doing?';
    writeFileSync(join(app, 'in.jsonl'), JSON.stringify({ prediction: WORKED.completion, ground_truth: WORKED.groundTruth, problem }) + '\n');
    const score = spawnSync(cli, ['score', '--input', 'in.jsonl', '--output', 'out.jsonl', '--similarity', 'exact'], { cwd: app, env, encoding: 'utf8' });
    t.equal(score.status, 0, score.stderr);
    const reward = JSON.parse(readFileSync(join(app, 'out.jsonl'), 'utf8')).reward as { overall: number };
    t.ok(Math.abs(reward.overall - 0.915203) < 1e-6, `the worked example scores 0.915203 through the installed engine (got ${reward.overall})`);

    const imported = spawnSync('node', ['--input-type=module', '-e', "const m = await import('spatialthinker'); console.log(typeof m.SpatialReward)"], { cwd: app, env, encoding: 'utf8' });
    t.equal(imported.stdout.trim(), 'function', `import('spatialthinker'): ${imported.stderr}`);
    const seconds = (from: number, to: number) => `${((to - from) / 1000).toFixed(0)} s`;
    t.comment(`npm pack ${seconds(started, packedAt)}, npm install ${seconds(packedAt, installedAt)}, checks ${seconds(installedAt, Date.now())}`);
  });
}
