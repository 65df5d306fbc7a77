/**
 * `npm run bench -- --only distributed`: the distributed path's pieces, one
 * exported function per measurement so that later ones (the GRPO step's
 * scaling from 1 to 2 processes) join the same section.
 *  - benchAllReduceBandwidth: Gloo's all-reduce of fp32 host buffers between
 *    2 processes on 127.0.0.1, 4 KiB .. 256 MiB, through the engine's own
 *    communicator (native/tests/allreduce_bench.cpp, started by
 *    `spatialthinker launch`): no JavaScript in the timed loop.
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { launch } from '../lib/distributed/launcher.js';
import { native } from '../lib/native/binding.js';
import { table } from './engine.js';
import { benchDistributedGrpo } from './distributed-grpo.js';

const BENCH_BINARY = 'build/tests/st_allreduce_bench';

export const ALL_REDUCE_SIZES = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20];

export interface AllReduceFigure {
  bytes: number;
  iterations: number;
  /** Mean seconds per all-reduce. */
  seconds: number;
  /** bytes / seconds. */
  algorithmGBps: number;
  /** What each rank's link carried: algorithm bandwidth x 2 (n - 1) / n (the NCCL tests' bus bandwidth). */
  busGBps: number;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs the all-reduce bench on `processes` local ranks; undefined (after saying why) when it cannot run here. */
export async function benchAllReduceBandwidth(options: { processes?: number; sizes?: number[] } = {}): Promise<AllReduceFigure[] | undefined> {
  const processes = options.processes ?? 2;
  const sizes = options.sizes ?? ALL_REDUCE_SIZES;
  console.log(`\n## Gloo all-reduce bandwidth: ${processes} processes on 127.0.0.1, fp32 sum, host memory\n`);
  const info = native().runtimeInfo();
  if (!info.distributed.gloo) {
    console.log(`skipped: ${info.distributed.glooReason}`);
    return undefined;
  }
  if (!existsSync(BENCH_BINARY)) {
    console.log(`skipped: ${BENCH_BINARY} is not built (it comes with the CMake build: npm run build:native)`);
    return undefined;
  }
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        append(chunk.toString());
        done();
      },
    });
  const job = launch({
    nprocPerNode: processes,
    masterPort: await freePort(),
    command: BENCH_BINARY,
    args: sizes.map(String),
    stdout: sink((s) => (out += s)),
    stderr: sink((s) => (err += s)),
  });
  const result = await job.result;
  if (!result.ok) throw new Error(`the all-reduce bench failed: ${err.trim() || JSON.stringify(result.failure)}`);
  const figures = out
    .split('\n')
    .filter((line) => line.startsWith('[rank 0] {'))
    .map((line) => JSON.parse(line.slice('[rank 0] '.length)) as { bytes: number; iterations: number; seconds: number })
    .map((f) => ({
      ...f,
      algorithmGBps: f.bytes / f.seconds / 1e9,
      busGBps: ((f.bytes / f.seconds) * (2 * (processes - 1))) / processes / 1e9,
    }));
  const size = (b: number) => (b >= 1 << 20 ? `${b / (1 << 20)} MiB` : `${b / 1024} KiB`);
  console.log(
    table(
      ['payload', 'iterations', 'ms per all-reduce', 'algorithm GB/s', 'bus GB/s'],
      figures.map((f) => [size(f.bytes), f.iterations, (f.seconds * 1e3).toFixed(3), f.algorithmGBps.toFixed(3), f.busGBps.toFixed(3)]),
    ),
  );
  return figures;
}

/** The section `--only distributed` runs. */
export async function benchDistributed(): Promise<void> {
  await benchAllReduceBandwidth();
  await benchDistributedGrpo();
}
