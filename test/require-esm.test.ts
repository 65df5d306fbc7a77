/**
 * require('spatialthinker'): the package is an ES module. Where Node cannot
 * require() an ES module, the error says how to load it; where it can, the
 * package loads. (The package requires itself by name: Node resolves a
 * package's own name through its "exports".)
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const built = existsSync(resolve(root, 'dist', 'index.js'));
const node = (...args: string[]) => spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
const supportsFlag = node('--no-experimental-require-module', '-e', '0').status === 0;

t.test('without require(esm), one line says to use import', { skip: !built ? 'dist/ is not built (npm run prepare)' : !supportsFlag ? `node ${process.version} has no --no-experimental-require-module` : false }, async (t) => {
  const r = node('--no-experimental-require-module', '-e', "require('spatialthinker')");
  t.not(r.status, 0);
  t.match(r.stderr, /^Error: spatialthinker is an ES module: use `import \{ \.\.\. \} from 'spatialthinker'`, or `const st = await import\('spatialthinker'\)` from CommonJS$/m);
  t.notMatch(r.stderr, /No "exports" main defined|ERR_PACKAGE_PATH_NOT_EXPORTED/);
});

t.test('with require(esm), the package loads', { skip: built ? false : 'dist/ is not built (npm run prepare)' }, async (t) => {
  const r = node('-e', "process.stdout.write(typeof require('spatialthinker').SpatialReward)");
  if (r.status === 0) t.equal(r.stdout, 'function');
  else t.match(r.stderr, /spatialthinker is an ES module: use `import/, 'or, on a Node that cannot, the same message');
});
