/** The CPU matrix product against a float64 computation, on shapes that hit every tail path. */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { linear, runOp } from '../lib/native/testing.js';
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

// The log-prob pass and its backward (native/backend/cpu/row_math.*: a
// vectorised double exp, 64-row tiles, 4096-entry vocabulary tiles) against
// float64, on shapes with row and vocabulary tails, a temperature, and
// logits spanning up to a few hundred (exp arguments far below -100).
// Integer hidden states and a head of multiples of 1/2 make every logit
// exact in float whatever the product's order, so what is compared is the
// exp, the sums and the log: the outputs are float, hence 2e-7 relative
// (a wrong term, or an exp off by more than rounding, is far beyond it).
t.test('token_logprobs and its backward = float64 log-softmax of the same logits', async (t) => {
  const random = rng(21);
  for (const [rows, dim, vocab, temperature, spread] of [
    [5, 16, 300, 1, 2],
    [70, 24, 4096 + 257, 0.7, 6],
    [130, 8, 1031, 1.3, 20],
  ] as const) {
    const hidden = Float32Array.from({ length: rows * dim }, () => Math.round((random() * 2 - 1) * spread));
    const head = Float32Array.from({ length: vocab * dim }, () => Math.round((random() * 2 - 1) * 2) / 2);
    const targets = Int32Array.from({ length: rows }, () => Math.floor(random() * vocab));
    const { y: logits } = await linear({ x: hidden, w: head, m: rows, k: dim, n: vocab });
    const r = await runOp({ op: 'token_logprobs', tensors: { hidden, head }, ints: { targets }, scalars: { rows, dim, vocab, temperature }, outputs: ['entropy'] });
    const dlogp = Float32Array.from({ length: rows }, () => random() * 2 - 1);
    const b = await runOp({ op: 'token_logprobs_backward', tensors: { hidden, head, dlogp }, ints: { targets }, scalars: { rows, dim, vocab, temperature } });
    let worstLogp = 0;
    let worstEntropy = 0;
    let range = 0;
    const dhidden = new Float64Array(rows * dim);
    for (let i = 0; i < rows; i++) {
      const z = Array.from(logits.subarray(i * vocab, (i + 1) * vocab), (v) => v / temperature);
      const m = Math.max(...z);
      range = Math.max(range, m - Math.min(...z));
      let sum = 0;
      let weighted = 0;
      for (const v of z) {
        sum += Math.exp(v - m);
        weighted += Math.exp(v - m) * v;
      }
      const lse = m + Math.log(sum);
      const logp = (z[targets[i] as number] as number) - lse;
      worstLogp = Math.max(worstLogp, Math.abs((r.outputs['logp']![i] as number) - logp) / Math.max(1, Math.abs(logp)));
      const entropy = lse - weighted / sum;
      worstEntropy = Math.max(worstEntropy, Math.abs((r.outputs['entropy']![i] as number) - entropy) / Math.max(1, entropy));
      // d logp / d hidden = (onehot - softmax) head / T, times dlogp.
      for (let v = 0; v < vocab; v++) {
        const g = ((dlogp[i] as number) * ((v === targets[i] ? 1 : 0) - Math.exp((z[v] as number) - lse))) / temperature;
        if (g !== 0) for (let d = 0; d < dim; d++) dhidden[i * dim + d]! += g * (head[v * dim + d] as number);
      }
    }
    let worstGrad = 0;
    let gradScale = 0;
    for (let i = 0; i < dhidden.length; i++) {
      worstGrad = Math.max(worstGrad, Math.abs((b.outputs['dhidden']![i] as number) - (dhidden[i] as number)));
      gradScale = Math.max(gradScale, Math.abs(dhidden[i] as number));
    }
    const label = `${rows} rows, vocab ${vocab}, T ${temperature}, logits spanning ${range.toFixed(0)}`;
    t.ok(worstLogp <= 2e-7, `${label}: log-probs within ${worstLogp.toExponential(2)} (relative, float outputs)`);
    t.ok(worstEntropy <= 2e-7, `${label}: entropies within ${worstEntropy.toExponential(2)}`);
    t.ok(worstGrad <= 1e-5 * gradScale, `${label}: dhidden within ${(worstGrad / gradScale).toExponential(2)} of its largest entry`);
  }
});
