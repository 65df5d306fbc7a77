/**
 * Op graphs (Backend::capture): a sequence of device-resident ops recorded
 * once and replayed, a CUDA graph on the CUDA backend (one launch instead of
 * one per kernel: the decode step's launch overhead), the recorded callback
 * on the CPU backend.
 *
 * Checked on both backends (the CUDA one on a GPU, or under the CPU
 * emulation, which records launches, device copies, memsets and cuBLAS
 * products during a stream capture and replays them): a decoder MLP block
 * plus the LM head gives BIT-IDENTICAL logits replayed and run directly (the
 * same kernels on the same arrays in the same order), capture itself runs
 * nothing, and a replay after the input array is overwritten computes from
 * the new contents (a graph reads memory at replay time). On CUDA, capturing
 * an op that takes host arrays (an embedding's ids) is refused with an error
 * instead of replaying stale ids.
 *
 * The model's decode step, captured with its inputs in backend index
 * arrays, is test/decode-graphs.test.ts.
 */
import t from 'tap';
import { native } from '../lib/native/binding.js';
import { runOp } from '../lib/native/testing.js';
import { rng } from './helpers.js';

const info = native().runtimeInfo();
const cudaSkip = !info.cuda.available
  ? `no usable CUDA device: ${info.cuda.reason ?? 'unknown'}`
  : !info.cuda.cublas.found
    ? `cuBLAS not found: ${info.cuda.cublas.error ?? 'unknown'}`
    : false;
if (cudaSkip) t.comment(`CUDA graph checks skipped: ${cudaSkip}`);

const random = rng(20261208);
const uniform = (n: number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * random());

const bitsEqual = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

for (const device of ['cpu', 'cuda'] as const) {
  t.test(`${device}: a captured MLP block + LM head replays bit for bit, and reads its inputs at replay time`, { skip: device === 'cuda' && cudaSkip }, async (t) => {
    const rows = 6, dim = 32, inter = 48, vocab = 70;
    const r = await runOp({
      op: 'graph_replay',
      device,
      tensors: {
        x: uniform(rows * dim, -2, 2),
        x2: uniform(rows * dim, -2, 2),
        norm: uniform(dim, 0.5, 1.5),
        gate: uniform(inter * dim, -0.3, 0.3),
        up: uniform(inter * dim, -0.3, 0.3),
        down: uniform(dim * inter, -0.3, 0.3),
        head: uniform(vocab * dim, -0.3, 0.3),
      },
      scalars: { rows, dim, inter, vocab },
    });
    const o = r.outputs as Record<string, Float32Array>;
    t.ok((o['direct'] as Float32Array).every(Number.isFinite), 'the direct run writes every logit');
    t.ok((o['afterCapture'] as Float32Array).every(Number.isNaN), 'capture runs nothing');
    t.ok(bitsEqual(o['replayed'] as Float32Array, o['direct'] as Float32Array), 'replay = direct run, bit for bit');
    t.notOk(bitsEqual(o['direct2'] as Float32Array, o['direct'] as Float32Array), 'the new input changes the logits');
    t.ok(bitsEqual(o['replayed2'] as Float32Array, o['direct2'] as Float32Array), 'replay after the input changed = direct run on it');
  });
}

t.test('cuda: capturing an op that takes host arrays is refused', { skip: cudaSkip }, async (t) => {
  await t.rejects(
    runOp({ op: 'graph_with_host_ids', device: 'cuda', tensors: { table: uniform(10 * 4) }, ints: { ids: Int32Array.from([1, 3, 3]) }, scalars: { dim: 4 } }),
    /capture/,
  );
});
