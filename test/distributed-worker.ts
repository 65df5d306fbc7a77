/**
 * A worker of the distributed tests, started by `spatialthinker launch`: joins
 * the group its environment describes and does what its first argument says.
 *   collectives  every collective on known inputs; prints one JSON line of results
 *   exit-rank R CODE   rank R exits with CODE after joining; the others wait in a barrier
 *   hang-rank R  rank R sleeps before the all-reduce the others enter
 *   wait         prints "ready", then waits for SIGTERM and prints "rank N got SIGTERM"
 */
import { initProcessGroup } from '../lib/distributed/process-group.js';

const [mode, ...rest] = process.argv.slice(2);
const pg = await initProcessGroup({ device: 'cpu' });
const { rank, worldSize } = pg;

function print(value: unknown): void {
  process.stdout.write(`RESULT ${JSON.stringify(value)}\n`);
}

try {
  if (mode === 'collectives') {
    const arr = (a: Float32Array) => Array.from(a);
    // Rank r's values: r + 1 and 10^r, so sums and maxima are exact in fp32.
    const sum = await pg.allReduce(new Float32Array([rank + 1, 10 ** rank, -rank]), 'sum');
    const max = await pg.allReduce(new Float32Array([rank + 1, -(rank + 1), 0.5 * rank]), 'max');
    const min = await pg.allReduce(new Float32Array([rank + 1, -(rank + 1)]), 'min');
    // Block b of rank r holds 100 b + r (two values per block).
    const blocks = new Float32Array(2 * worldSize);
    for (let b = 0; b < worldSize; b++) blocks.set([100 * b + rank, 100 * b + rank + 0.25], 2 * b);
    const scattered = await pg.reduceScatter(blocks, 'sum');
    const gathered = await pg.allGather(new Float32Array([rank, rank + 0.5, -rank]));
    const fromLast = await pg.broadcast(new Float32Array([rank === worldSize - 1 ? 42 : -1, rank === worldSize - 1 ? 7.5 : -1]), worldSize - 1);
    await pg.barrier();
    // A payload larger than Gloo's 1 MiB segment, so the ring runs in several pieces.
    const big = new Float32Array(600_000).map((_, i) => (i % 1000) + rank);
    const bigSum = await pg.allReduce(big, 'sum');
    let bigErrors = 0;
    for (let i = 0; i < big.length; i++) if (bigSum[i] !== worldSize * (i % 1000) + (worldSize * (worldSize - 1)) / 2) bigErrors++;
    print({ rank, worldSize, backend: pg.backend, sum: arr(sum), max: arr(max), min: arr(min), scattered: arr(scattered), gathered: arr(gathered), broadcast: arr(fromLast), bigErrors });
  } else if (mode === 'exit-rank') {
    const [who, code] = rest.map(Number);
    if (rank === who) {
      process.stderr.write(`rank ${rank} exits with code ${code}\n`);
      process.exit(code);
    }
    await pg.barrier();
    print({ rank, unexpected: 'the barrier returned without the rank that exited' });
  } else if (mode === 'hang-rank') {
    const who = Number(rest[0]);
    if (rank === who) await new Promise((resolve) => setTimeout(resolve, 120_000));
    const started = Date.now();
    try {
      await pg.allReduce(new Float32Array([1, 2, 3]), 'sum');
      print({ rank, unexpected: 'the all-reduce returned without the hung rank' });
    } catch (error) {
      process.stderr.write(`rank ${rank} failed after ${Date.now() - started} ms: ${(error as Error).message}\n`);
      process.exit(1);
    }
  } else if (mode === 'wait') {
    process.on('SIGTERM', () => {
      process.stdout.write(`rank ${rank} got SIGTERM\n`);
      process.exit(0);
    });
    process.stdout.write(`ready pid ${process.pid}\n`);
    setInterval(() => {}, 1 << 30);
  } else {
    throw new Error(`distributed-worker: unknown mode "${mode}"`);
  }
} finally {
  if (mode !== 'wait') await pg.destroy();
}
