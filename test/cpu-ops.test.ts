/** The CPU matrix product against a float64 computation, on shapes that hit every tail path. */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { linear } from '../lib/native/testing.js';
import { rng } from './helpers.js';

t.test('linear = x w^T + bias on awkward shapes', async (t) => {
  const random = rng(9);
  const shapes: [number, number, number][] = [
    [1, 1, 1], [1, 7, 5], [3, 8, 3], [4, 9, 2], [5, 17, 7], [7, 33, 10], [13, 64, 29], [64, 100, 65], [130, 31, 200], [1, 896, 300],
    // The packed path (m >= 32, m k n >= 2^20): row and column tails of the
    // register tile, k-blocks of unequal depth, k not a multiple of 8, too
    // few columns for one block per thread, and x in two passes (> 4M floats).
    [37, 900, 130], [49, 1001, 97], [100, 300, 70], [33, 4865, 40], [512, 17, 200], [1100, 4000, 33],
  ];
  for (const [m, k, n] of shapes) {
    const x = Float32Array.from({ length: m * k }, () => random() * 2 - 1);
    const w = Float32Array.from({ length: n * k }, () => random() * 2 - 1);
    const bias = Float32Array.from({ length: n }, () => random());
    const { y } = await linear({ x, w, bias, m, k, n });
    let worst = 0;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = bias[j] as number;
        for (let l = 0; l < k; l++) s += (x[i * k + l] as number) * (w[j * k + l] as number);
        worst = Math.max(worst, Math.abs(s - (y[i * n + j] as number)) / Math.sqrt(k));
      }
    t.ok(worst < 1e-5, `${m}x${k} . ${n}x${k}^T: max error / sqrt(k) = ${worst.toExponential(2)}`);
  }
  const { y } = await linear({ x: new Float32Array(0), w: new Float32Array(0), m: 0, k: 0, n: 0 });
  t.equal(y.length, 0, 'an empty product');
  await t.rejects(async () => linear({ x: new Float32Array(3), w: new Float32Array(4), m: 1, k: 2, n: 2 }), /x must be m x k/);
  const operands = { x: Float32Array.from({ length: 64 * 48 }, (_, i) => Math.sin(i)), w: Float32Array.from({ length: 40 * 48 }, (_, i) => Math.cos(i)), bias: new Float32Array(40).fill(1), m: 64, k: 48, n: 40 };
  const once = await linear(operands);
  const repeated = await linear({ ...operands, repeat: 4 });
  t.same(repeated.y, once.y, 'repeated runs recompute y (the bias is not added twice)');
  t.ok(repeated.bestSeconds > 0 && repeated.bestSeconds <= repeated.seconds, `fastest run ${repeated.bestSeconds} s <= mean ${repeated.seconds} s`);
});

// The AVX2 and portable kernels, which this machine's AVX-512 would otherwise
// bypass: this file again in a child process with the instruction set capped.
if (!process.env['SPATIALTHINKER_CPU_ISA'])
  for (const isa of ['avx2', 'portable'])
    t.test(`the same products with SPATIALTHINKER_CPU_ISA=${isa}`, async (t) => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/cpu-ops.test.ts'], { encoding: 'utf8', env: { ...process.env, SPATIALTHINKER_CPU_ISA: isa } });
      const failures = r.stdout.split('\n').filter((l) => /^\s*not ok/.test(l));
      t.equal(r.status, 0, `exit status; failures: ${failures.join('; ') || 'none'} ${r.stderr.slice(-500)}`);
      t.match(r.stdout, /ok \d+ - 1100x4000 \. 33x4000\^T/, 'the packed shapes ran');
    });
