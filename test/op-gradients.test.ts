/**
 * Finite-difference checks of every backward op of the CPU backend, run by
 * the C++ program native/tests/op_gradients.cpp (built by CMake with the addon).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const BINARY = 'build/tests/st_op_gradients';
const skip = existsSync(BINARY) ? false : `${BINARY} is not built (it comes with the CMake build: npm run build:native)`;

t.test('every backward op agrees with central differences', { skip }, async (t) => {
  const r = spawnSync(BINARY, { encoding: 'utf8' });
  t.equal(r.status, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n');
  for (const line of lines.slice(0, -1)) t.match(line, /^ok /, line);
  t.match(lines[lines.length - 1], /^\d+ passed, 0 failed$/);
  t.ok(lines.length >= 18, `${lines.length - 1} gradient checks`);
});
