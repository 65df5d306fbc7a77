#!/usr/bin/env node
/**
 * `npm pack` / `npm publish` (prepack): puts the compiled engine into
 * prebuilds/<platform>-<arch>/ where node-gyp-build finds it, so that
 * `npm install` of the tarball needs no compiler where a prebuild fits.
 *
 * - This machine's platform: build/Release when it is newer than every native
 *   source (the build `npm ci` made), else an incremental `cmake-js compile`.
 *   On linux-x64 that is the CUDA build wherever nvcc is found (sm_80, sm_90;
 *   `npm publish` refuses a linux-x64 prebuild without it). The CPU kernels
 *   pick AVX-512, AVX2 or portable code at run time, so a build whose flags
 *   tie it to one CPU (-march=..., -mavx...) is refused.
 * - linux-arm64 (CPU) from linux-x64 when the cross compiler
 *   aarch64-linux-gnu-g++ is on PATH (Debian: g++-aarch64-linux-gnu), into
 *   build-arm64/; skipped with a note otherwise.
 *
 * SPATIALTHINKER_PREBUILDS=linux-x64,linux-arm64 chooses the targets
 * (default: this machine's, and linux-arm64 where it can be cross-built).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const ADDON = 'spatialthinker_native.node';
const host = `${process.platform}-${process.arch}`;

/** node-gyp-build's name for a Node-API build: any Node version, and on Linux only glibc (musl systems compile). */
const prebuildName = (platform) => `spatialthinker.napi${platform === 'linux' ? '.glibc' : ''}.node`;

function fail(message) {
  console.error(`prebuild: ${message}`);
  process.exit(1);
}

function newestSourceTime() {
  let newest = 0;
  const visit = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (path !== join(root, 'native', 'tests')) visit(path);
      } else newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  visit(join(root, 'native'));
  for (const file of ['CMakeLists.txt', 'package.json']) newest = Math.max(newest, statSync(join(root, file)).mtimeMs);
  return newest;
}

function isFresh(buildDir) {
  const addon = join(buildDir, 'Release', ADDON);
  return existsSync(addon) && statSync(addon).mtimeMs >= newestSourceTime();
}

/** Flags that would make the binary require this machine's CPU. */
function checkPortableFlags(buildDir) {
  const cache = join(buildDir, 'CMakeCache.txt');
  if (!existsSync(cache)) return;
  for (const line of readFileSync(cache, 'utf8').split('\n')) {
    if (!/^CMAKE_(CXX|CUDA)_FLAGS(_RELEASE)?:/.test(line)) continue;
    const tied = /(^|[\s=])(-march=\S+|-mtune=native|-mavx\S*|-mfma|-xHost)/.exec(line);
    if (tied) fail(`${cache}: ${line.split(':')[0]} holds ${tied[2]}, which ties the binary to one CPU; rebuild without it (the kernels choose AVX-512/AVX2/portable at run time)`);
  }
}

function cmakeJs(buildDir, extra) {
  const bin = require.resolve('cmake-js/bin/cmake-js');
  // Flags from the environment would be baked into the shipped binary.
  const env = { ...process.env, CXXFLAGS: '', CFLAGS: '', CUDAFLAGS: '' };
  const run = spawnSync(process.execPath, [bin, 'compile', '--out', buildDir, ...extra], { cwd: root, stdio: 'inherit', env });
  if (run.status !== 0) fail(`cmake-js compile --out ${buildDir} ${extra.join(' ')} failed (exit ${run.status ?? run.signal})`);
}

/** The build's runtimeInfo(), read in a child process (a build for this machine only). */
function describe(file) {
  const script = `const i = require(${JSON.stringify(file)}).runtimeInfo(); console.log(JSON.stringify({ cuda: i.cuda.compiled, architectures: i.cuda.architectures, cpuIsa: i.cpuIsa }))`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (run.status !== 0) fail(`${file} does not load: ${run.stderr.trim().split('\n').pop()}`);
  return JSON.parse(run.stdout);
}

function place(file, target) {
  const dir = join(root, 'prebuilds', target);
  mkdirSync(dir, { recursive: true });
  const out = join(dir, prebuildName(target.split('-')[0]));
  copyFileSync(file, out);
  return out;
}

function buildHost() {
  const buildDir = join(root, 'build');
  if (isFresh(buildDir)) console.log(`prebuild: ${host}: build/Release is newer than the native sources, reusing it`);
  else {
    console.log(`prebuild: ${host}: building the engine (cmake-js compile --out build)`);
    cmakeJs(buildDir, []);
  }
  checkPortableFlags(buildDir);
  const file = join(buildDir, 'Release', ADDON);
  const info = describe(file);
  if (host === 'linux-x64' && !info.cuda) {
    const publishing = process.env.npm_command === 'publish' || process.env.SPATIALTHINKER_PREBUILD_CUDA === 'required';
    const note = `${host}: this build has no CUDA backend (no nvcc when build/ was configured)`;
    if (publishing) fail(`${note}; a published linux-x64 prebuild must have it: build with SPATIALTHINKER_CUDA=ON`);
    console.warn(`prebuild: warning: ${note}; the prebuild is CPU-only`);
  }
  checkNoGlooDependency(file);
  const out = place(file, host);
  console.log(`prebuild: ${host}: ${out} (CUDA ${info.cuda ? `sm_${info.architectures.split(',').join(', sm_')}` : 'not built'}; CPU kernels chosen at run time, ${info.cpuIsa} here)`);
}

/**
 * Gloo (multi-process CPU groups) is a shared library the engine links when
 * libgloo-dev is installed at build time; a prebuild linked to it does not
 * load where libgloo.so.0 is missing (most machines), and npm install then
 * falls back to compiling. Publishing refuses such a prebuild: build it with
 * SPATIALTHINKER_GLOO=OFF (CPU process groups then need a source build).
 */
function checkNoGlooDependency(file) {
  // The dynamic section's NEEDED names live in .dynstr as plain strings.
  if (!readFileSync(file).includes('libgloo.so.')) return;
  const note = `${file} needs libgloo.so.0 at run time (it was built where libgloo-dev is installed)`;
  if (process.env.npm_command === 'publish')
    fail(`${note}; a published prebuild must load without it: rebuild with SPATIALTHINKER_GLOO=OFF`);
  console.warn(`prebuild: warning: ${note}; where it is missing, npm install compiles the engine instead`);
}

function buildLinuxArm64() {
  const compiler = 'aarch64-linux-gnu-g++';
  if (spawnSync(compiler, ['--version']).status !== 0) {
    console.log(`prebuild: linux-arm64: skipped, no ${compiler} on PATH (Debian/Ubuntu: apt install g++-aarch64-linux-gnu)`);
    return false;
  }
  const buildDir = join(root, 'build-arm64');
  if (isFresh(buildDir)) console.log('prebuild: linux-arm64: build-arm64/Release is newer than the native sources, reusing it');
  else {
    console.log(`prebuild: linux-arm64: cross-compiling the CPU engine with ${compiler} (cmake-js compile --out build-arm64)`);
    cmakeJs(buildDir, [
      '--CDCMAKE_SYSTEM_NAME=Linux',
      '--CDCMAKE_SYSTEM_PROCESSOR=aarch64',
      `--CDCMAKE_CXX_COMPILER=${compiler}`,
      '--CDSPATIALTHINKER_CUDA=OFF',
    ]);
  }
  checkPortableFlags(buildDir);
  const out = place(join(buildDir, 'Release', ADDON), 'linux-arm64');
  console.log(`prebuild: linux-arm64: ${out} (CPU only; cross-compiled, not loaded here)`);
  return true;
}

// Only what this run builds ships: no prebuild left from an earlier pack.
rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
const requested = process.env.SPATIALTHINKER_PREBUILDS?.split(',').map((t) => t.trim()).filter(Boolean);
const targets = requested ?? [host, ...(host === 'linux-x64' ? ['linux-arm64?'] : [])];
for (const target of targets) {
  if (target === host) buildHost();
  else if (target === 'linux-arm64?') buildLinuxArm64();
  else if (target === 'linux-arm64' && host === 'linux-x64') {
    if (!buildLinuxArm64()) fail('linux-arm64 was requested (SPATIALTHINKER_PREBUILDS) but cannot be cross-built here');
  } else fail(`cannot build a prebuild for ${target} on ${host} (SPATIALTHINKER_PREBUILDS)`);
}
