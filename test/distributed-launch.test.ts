/**
 * `spatialthinker launch` with 2 worker processes on 127.0.0.1 through Gloo
 * (test/distributed-worker.ts): the collectives' exact values, a rank that
 * exits non-zero, a rank that hangs before a collective, Ctrl-C on the
 * launcher; and the CLI's usage errors. Skips, saying why, when the engine
 * was built without Gloo.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { native } from '../lib/native/binding.js';
import { createProcessGroup } from '../lib/distributed/process-group.js';

const info = native().runtimeInfo();
const skip = info.distributed.gloo ? false : `the engine was built without Gloo: ${info.distributed.glooReason ?? 'no reason given'}`;
if (skip) t.comment(`skipping the multi-process tests: ${skip}`);

const CLI = ['--import', 'tsx', 'lib/cli/main.ts'];
const WORKER = ['--import', 'tsx', 'test/distributed-worker.ts'];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function launchWorkers(mode: string[], timeoutSeconds = 20) {
  const port = await freePort();
  const started = Date.now();
  const r = spawnSync(
    process.execPath,
    [...CLI, 'launch', '--nproc-per-node', '2', '--master-port', String(port), '--timeout', String(timeoutSeconds), '--', process.execPath, ...WORKER, ...mode],
    { encoding: 'utf8', timeout: 180_000 },
  );
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, seconds: (Date.now() - started) / 1000 };
}

function results(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((line) => / RESULT /.test(line))
    .map((line) => JSON.parse(line.slice(line.indexOf('RESULT ') + 7)) as Record<string, unknown>)
    .sort((a, b) => (a['rank'] as number) - (b['rank'] as number));
}

t.test('2 processes: all-reduce (sum, max, min), reduce-scatter, all-gather, broadcast, barrier, exact', { skip }, async (t) => {
  const r = await launchWorkers(['collectives']);
  t.equal(r.code, 0, r.stderr);
  const [r0, r1] = results(r.stdout);
  t.ok(r0 && r1, `both ranks reported: ${r.stdout}`);
  t.match(r.stdout, /^\[rank 0\] RESULT /m, "rank 0's lines carry its prefix");
  t.match(r.stdout, /^\[rank 1\] RESULT /m, "rank 1's lines carry its prefix");
  for (const [rank, out] of [r0!, r1!].entries()) {
    t.equal(out['backend'], 'gloo');
    t.equal(out['worldSize'], 2);
    t.same(out['sum'], [3, 11, -1], `rank ${rank}: sum`);
    t.same(out['max'], [2, -1, 0.5], `rank ${rank}: max`);
    t.same(out['min'], [1, -2], `rank ${rank}: min`);
    t.same(out['gathered'], [0, 0.5, 0, 1, 1.5, -1], `rank ${rank}: all-gather in rank order`);
    t.same(out['broadcast'], [42, 7.5], `rank ${rank}: broadcast from rank 1`);
    t.equal(out['bigErrors'], 0, `rank ${rank}: a 2.4 MB all-reduce, every element exact`);
  }
  // Block b of rank r is [100 b + r, 100 b + r + 0.25]: rank b gets the sum over r of its block.
  t.same(r0!['scattered'], [1, 1.5], 'rank 0: reduce-scatter, block 0');
  t.same(r1!['scattered'], [201, 201.5], 'rank 1: reduce-scatter, block 1');
});

t.test('two launchers as two nodes (--nnodes 2, --node-rank 0 and 1) form one world', { skip }, async (t) => {
  const port = await freePort();
  const node = (nodeRank: number) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [...CLI, 'launch', '--nproc-per-node', '1', '--nnodes', '2', '--node-rank', String(nodeRank), '--master-port', String(port), '--timeout', '60', '--', process.execPath, ...WORKER, 'collectives'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  const [first, second] = await Promise.all([node(1), node(0)]);
  t.equal(first.code, 0, first.stderr);
  t.equal(second.code, 0, second.stderr);
  const [r1] = results(first.stdout);
  const [r0] = results(second.stdout);
  t.match(r0, { rank: 0, worldSize: 2, sum: [3, 11, -1], scattered: [1, 1.5] }, 'node 0 runs rank 0');
  t.match(r1, { rank: 1, worldSize: 2, sum: [3, 11, -1], scattered: [201, 201.5] }, 'node 1 runs rank 1');
});

t.test('a rank that exits non-zero ends the job, naming the rank and its exit code', { skip }, async (t) => {
  const r = await launchWorkers(['exit-rank', '1', '3'], 60);
  t.equal(r.code, 1, r.stderr);
  t.match(r.stderr, /^spatialthinker launch: rank 1 exited with code 3; stopped the other worker on this node$/m);
  t.notMatch(r.stdout, /unexpected/, 'rank 0 never got past the barrier');
  t.ok(r.seconds < 45, `rank 0 was stopped, not left to its 60 s timeout (${r.seconds.toFixed(1)} s)`);
});

t.test('a rank that hangs before a collective makes the others fail within the timeout, naming it', { skip }, async (t) => {
  const r = await launchWorkers(['hang-rank', '1'], 3);
  t.equal(r.code, 1, r.stderr);
  const failed = /\[rank 0\] rank 0 failed after (\d+) ms: (.*)$/m.exec(r.stderr);
  t.ok(failed, `rank 0 reported its failure: ${r.stderr}`);
  const ms = Number(failed?.[1]);
  // The timeout, then at most 0.75 s (a quarter of it) for the other ranks to say they reached the collective.
  t.ok(ms >= 2900 && ms < 3000 + 750 + 1500, `rank 0 failed after ${ms} ms with a 3 s timeout`);
  t.match(failed?.[2], /^gloo all_reduce #1 \(3 fp32, sum\) on rank 0 of 2 failed \(timeout 3 s\): .*; rank 1 did not reach all_reduce #1$/);
  t.match(r.stderr, /spatialthinker launch: rank 0 exited with code 1; stopped the other worker on this node/);
  t.ok(r.seconds < 40, `the hung rank was killed, not waited for (${r.seconds.toFixed(1)} s)`);
});

t.test('Ctrl-C on the launcher sends SIGTERM to every worker, waits for them and exits 130', { skip }, async (t) => {
  const port = await freePort();
  const launcher = spawn(process.execPath, [...CLI, 'launch', '--nproc-per-node', '2', '--master-port', String(port), '--', process.execPath, ...WORKER, 'wait'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  launcher.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const pids: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the workers did not start: ${stdout}${stderr}`)), 120_000);
    launcher.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      pids.splice(0, pids.length, ...[...stdout.matchAll(/ready pid (\d+)/g)].map((m) => Number(m[1])));
      if (pids.length === 2) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  launcher.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => launcher.on('close', (c) => resolve(c)));
  t.equal(code, 130, stderr);
  t.match(stdout, /^\[rank 0\] rank 0 got SIGTERM$/m);
  t.match(stdout, /^\[rank 1\] rank 1 got SIGTERM$/m);
  t.match(stderr, /interrupted: every worker on this node stopped/);
  for (const pid of pids) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker ${pid} is gone`);
});

t.test('workers whose launcher is killed (SIGKILL) stop themselves', { skip }, async (t) => {
  const port = await freePort();
  const launcher = spawn(process.execPath, [...CLI, 'launch', '--nproc-per-node', '2', '--master-port', String(port), '--', process.execPath, ...WORKER, 'wait'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let stdout = '';
  const pids = await new Promise<number[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the workers did not start: ${stdout}`)), 120_000);
    launcher.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const found = [...stdout.matchAll(/ready pid (\d+)/g)].map((m) => Number(m[1]));
      if (found.length === 2) {
        clearTimeout(timer);
        resolve(found);
      }
    });
  });
  launcher.kill('SIGKILL');
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + 15_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  t.same(pids.filter(alive), [], 'no worker runs on without its launcher');
  for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
});

t.test('a rendezvous that not every rank reaches fails within its timeout, naming the missing ranks', { skip }, async (t) => {
  const port = await freePort();
  const started = Date.now();
  await t.rejects(createProcessGroup({ rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 1000 }), {
    message: `rendezvous at 127.0.0.1:${port} timed out after 1 s: rank 1 of 2 did not arrive`,
  });
  t.ok(Date.now() - started < 5000);
});

t.test('a CUDA group of several ranks needs a CUDA build and NCCL, and says which is missing', async (t) => {
  const port = await freePort();
  const request = { rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 1000, device: 'cuda' as const };
  if (!info.distributed.nccl.compiled) {
    await t.rejects(createProcessGroup(request), { message: /^a CUDA process group needs a CUDA build of spatialthinker/ });
    return;
  }
  // A CUDA build: NCCL named by SPATIALTHINKER_NCCL is opened once per process, so ask a fresh one.
  const probe = spawnSync(
    process.execPath,
    ['--import', 'tsx', '-e', `import('./lib/distributed/process-group.js').then((m) => m.createProcessGroup(${JSON.stringify(request)})).then(() => console.log('made'), (e) => console.log(e.message))`],
    { encoding: 'utf8', env: { ...process.env, SPATIALTHINKER_NCCL: '/nonexistent/libnccl.so.2' } },
  );
  t.match(probe.stdout, /^a CUDA process group needs NCCL: cannot open the NCCL library \/nonexistent\/libnccl\.so\.2 /m, probe.stderr);
});

t.test('a world of one is the identity, with no store', async (t) => {
  const pg = await createProcessGroup({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: 1, timeoutMs: 1000 });
  t.equal(pg.backend, 'single');
  t.same(Array.from(await pg.allReduce(new Float32Array([1, -2]), 'max')), [1, -2]);
  t.same(Array.from(await pg.reduceScatter(new Float32Array([3, 4]))), [3, 4]);
  t.same(Array.from(await pg.allGather(new Float32Array([5]))), [5]);
  await pg.destroy();
  await t.rejects(pg.barrier(), { message: /destroyed/ });
});

t.test('usage errors: one line, exit code 2', async (t) => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
  const usage = (r: ReturnType<typeof cli>, pattern: RegExp) => {
    t.equal(r.status, 2, r.stderr);
    t.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    t.match(r.stderr, pattern);
  };
  usage(cli('launch', '--nproc-per-node', '2'), /give the workers' command after --/);
  usage(cli('launch', '--nproc-per-node', '0', '--', 'true'), /--nproc-per-node must be an integer in 1\.\.1024, got "0"/);
  usage(cli('launch', '--nproc-per-nod', '2', '--', 'true'), /unknown option --nproc-per-nod; did you mean --nproc-per-node/);
  usage(cli('launch', '--nproc-per-node', '2', '--nnodes', '2', '--node-rank', '2', '--', 'true'), /--node-rank must be an integer in 0\.\.1, got "2"/);
  usage(cli('launch', '--', 'true'), /--nproc-per-node is required/);
  usage(cli('lanch'), /unknown command "lanch"; did you mean launch/);
  usage(cli('train', '--preset', 'spatialthinker-3b', 'trainer.n_gpus_per_node=2'), /asks for 2 processes .* started alone; start one per device with: spatialthinker launch --nproc-per-node 2 -- spatialthinker train --preset spatialthinker-3b trainer\.n_gpus_per_node=2/);
});
