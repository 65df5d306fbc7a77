#!/usr/bin/env node
/**
 * `npm install` (the package's install script): use the prebuild for this
 * platform when one fits and loads; otherwise compile the engine, with
 * cmake-js (CMakeLists.txt, the CUDA backend where nvcc is found) or, when
 * cmake >= 3.25 is missing, with node-gyp (binding.gyp, CPU only).
 *
 * In a git checkout the sources are compiled (they are what is being worked
 * on); SPATIALTHINKER_BUILD_FROM_SOURCE=1 (or npm's --build-from-source)
 * compiles anywhere.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const log = (line) => console.log(`spatialthinker: ${line}`);

/** The prebuild node-gyp-build would load, if it loads here; else why not. */
function loadablePrebuild() {
  // Only prebuilds/: build/Release is what this script may be about to make.
  process.env.PREBUILDS_ONLY = '1';
  let file;
  try {
    file = require('node-gyp-build').resolve(root);
  } catch {
    return { reason: `no prebuild for ${process.platform}-${process.arch} in this package` };
  }
  const probe = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)}).runtimeInfo()`], { encoding: 'utf8' });
  if (probe.status !== 0) return { reason: `the prebuild ${file} does not load here: ${probe.stderr.trim().split('\n').pop()}` };
  return { file };
}

function cmakeVersion() {
  const run = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
  if (run.status !== 0) return undefined;
  const m = /version (\d+)\.(\d+)/.exec(run.stdout);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

function run(command, args) {
  log(`${[command, ...args].join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  return result.status === 0;
}

function buildWithCmakeJs() {
  return run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', 'build']);
}

/** node-gyp: npm's own (npm_config_node_gyp) or one on PATH; the headers of this Node where installed beside it, else node-gyp fetches them. */
function buildWithNodeGyp() {
  const nodeGyp = process.env.npm_config_node_gyp;
  const [command, args] = nodeGyp ? [process.execPath, [nodeGyp]] : ['node-gyp', []];
  const nodedir = dirname(dirname(process.execPath));
  if (existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
  return run(command, [...args, 'rebuild']);
}

function compile(reason) {
  log(`compiling the native engine (${reason})`);
  const cmake = cmakeVersion();
  if (cmake && (cmake[0] > 3 || (cmake[0] === 3 && cmake[1] >= 25))) {
    if (buildWithCmakeJs()) return;
    fail('cmake-js could not build the native engine (see above)');
  }
  log(`${cmake ? `cmake ${cmake.join('.')} is older than 3.25` : 'cmake is not on PATH'}: building the CPU engine with node-gyp instead`);
  if (buildWithNodeGyp()) return;
  fail('node-gyp could not build the native engine (see above): it needs Python 3, make and a C++17 compiler; or install cmake >= 3.25');
}

function fail(message) {
  console.error(`spatialthinker: ${message}`);
  process.exit(1);
}

const fromSource = process.env.SPATIALTHINKER_BUILD_FROM_SOURCE === '1' || process.env.npm_config_build_from_source === 'true';
if (fromSource) compile('SPATIALTHINKER_BUILD_FROM_SOURCE / --build-from-source');
else if (existsSync(join(root, '.git'))) compile('a git checkout builds its own sources');
else {
  const prebuild = loadablePrebuild();
  if (prebuild.file) log(`using the prebuilt engine ${prebuild.file.slice(root.length + 1)}`);
  else compile(prebuild.reason);
}
