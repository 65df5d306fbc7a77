/**
 * The launcher (lib/distributed/launcher.ts) on plain shell workers: no
 * engine, so it runs on every build. Failures by signal, a command that does
 * not start, a worker that ignores SIGTERM, partial output lines, interrupt.
 */
import t from 'tap';
import { Writable } from 'node:stream';
import { describeExit, launch, type LaunchOptions } from '../lib/distributed/launcher.js';

function capture() {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

async function run(script: string, options: Partial<LaunchOptions> = {}) {
  const out = capture();
  const err = capture();
  const started = Date.now();
  const job = launch({ nprocPerNode: 2, command: 'sh', args: ['-c', script], stdout: out.stream, stderr: err.stream, ...options });
  const result = await job.result;
  return { result, stdout: out.text(), stderr: err.text(), seconds: (Date.now() - started) / 1000, job };
}

t.test('every worker exits 0: the job succeeds; lines are prefixed, a last line without its newline too', async (t) => {
  const r = await run('printf "hello from $RANK of $WORLD_SIZE\\nno newline"; echo "err $LOCAL_RANK" >&2');
  t.ok(r.result.ok);
  t.equal(r.result.failure, undefined);
  for (const rank of [0, 1]) {
    t.match(r.stdout, new RegExp(`^\\[rank ${rank}\\] hello from ${rank} of 2$`, 'm'));
    t.match(r.stdout, new RegExp(`^\\[rank ${rank}\\] no newline$`, 'm'));
    t.match(r.stderr, new RegExp(`^\\[rank ${rank}\\] err ${rank}$`, 'm'));
  }
});

t.test('a worker killed by a signal ends the job: the failure names the rank and the signal; the others are stopped', async (t) => {
  const r = await run('if [ "$RANK" = 1 ]; then sleep 0.2; kill -9 $$; fi; sleep 60');
  t.notOk(r.result.ok);
  t.match(r.result.failure, { rank: 1, localRank: 1, code: null, signal: 'SIGKILL' });
  t.equal(describeExit(r.result.failure!), 'was killed by SIGKILL');
  t.equal(r.result.exits[0]?.signal, 'SIGTERM', 'rank 0 was sent SIGTERM');
  t.ok(r.seconds < 20, `rank 0 did not sleep out its 60 s (${r.seconds.toFixed(1)} s)`);
});

t.test('a worker that ignores SIGTERM is killed after the grace period', async (t) => {
  const r = await run('trap "" TERM; if [ "$RANK" = 0 ]; then exit 5; fi; sleep 60 & wait; sleep 60', { killGraceMs: 500 });
  t.match(r.result.failure, { rank: 0, code: 5 });
  t.equal(describeExit(r.result.failure!), 'exited with code 5');
  t.equal(r.result.exits[1]?.signal, 'SIGKILL');
  t.ok(r.seconds < 20, `${r.seconds.toFixed(1)} s`);
});

t.test('a command that cannot be started is a failure naming why', async (t) => {
  const out = capture();
  const job = launch({ nprocPerNode: 2, command: '/nonexistent/worker', args: [], stdout: out.stream, stderr: out.stream });
  const result = await job.result;
  t.notOk(result.ok);
  t.match(describeExit(result.failure!), /^could not start: spawn \/nonexistent\/worker ENOENT$/);
});

t.test('interrupt sends SIGTERM to every worker and waits for them', async (t) => {
  const out = capture();
  const job = launch({
    nprocPerNode: 2,
    command: 'sh',
    args: ['-c', 'trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.1; done'],
    stdout: out.stream,
    stderr: out.stream,
  });
  const deadline = Date.now() + 20_000;
  while ((out.text().match(/ready/g) ?? []).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  job.interrupt();
  const result = await job.result;
  t.ok(result.interrupted);
  t.equal(result.failure, undefined, 'workers stopped by the launcher are not failures');
  t.match(out.text(), /^\[rank 0\] got TERM$/m);
  t.match(out.text(), /^\[rank 1\] got TERM$/m);
});

t.test('options out of range are refused', async (t) => {
  t.throws(() => launch({ nprocPerNode: 0, command: 'true', args: [] }), /nprocPerNode must be an integer >= 1/);
  t.throws(() => launch({ nprocPerNode: 1, nnodes: 2, nodeRank: 2, command: 'true', args: [] }), /nodeRank must be an integer in 0\.\.1/);
});
