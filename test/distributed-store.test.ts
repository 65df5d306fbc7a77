/**
 * The rendezvous store and the rendezvous (native/tests/tcp_store_test.cpp,
 * built by CMake with the addon), the launcher's environment contract
 * (lib/distributed/env.ts) and the check of trainer.n_gpus_per_node and
 * trainer.nnodes against the launch (lib/distributed/config-check.ts).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { DistributedEnvError, readDistributedEnv, SINGLE_PROCESS } from '../lib/distributed/env.js';
import { checkWorldMatchesConfig } from '../lib/distributed/config-check.js';
import { workerEnvironment } from '../lib/distributed/launcher.js';

const BINARY = 'build/tests/st_tcp_store';
const skip = existsSync(BINARY) ? false : `${BINARY} is not built (it comes with the CMake build: npm run build:native)`;
if (skip) t.comment(`skipping the store's checks: ${skip}`);

t.test('the store: set/get/add/wait, timeouts naming the missing ranks, a store that goes away', { skip }, async (t) => {
  const r = spawnSync(BINARY, { encoding: 'utf8', timeout: 120_000 });
  const lines = r.stdout.trim().split('\n');
  for (const line of lines) t.match(line, /^ok /, line);
  t.equal(r.status, 0, r.stdout + r.stderr);
  for (const name of ['rendezvous timeout names the ranks that did not arrive', 'wait returns the missing keys at its timeout', 'a store that goes away ends a waiting client at once'])
    t.ok(lines.includes(`ok ${name}`), name);
});

const launched = { RANK: '1', LOCAL_RANK: '1', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '10.0.0.5', MASTER_PORT: '29600' };

t.test('the environment: none set is a world of one; all six are read', async (t) => {
  t.same(readDistributedEnv({}), SINGLE_PROCESS);
  t.same(readDistributedEnv(launched), { rank: 1, localRank: 1, worldSize: 4, localWorldSize: 2, masterAddr: '10.0.0.5', masterPort: 29600, launched: true });
  t.equal(readDistributedEnv({ ...launched, SPATIALTHINKER_DIST_TIMEOUT_MS: '3000' }).timeoutMs, 3000);
});

t.test('the environment: partial or invalid settings are one-line errors naming the variable', async (t) => {
  const error = (env: NodeJS.ProcessEnv, pattern: RegExp) =>
    t.throws(() => readDistributedEnv(env), { name: 'DistributedEnvError', message: pattern }, String(pattern));
  error({ RANK: '0', WORLD_SIZE: '2' }, /sets RANK, WORLD_SIZE but not LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT/);
  error({ ...launched, RANK: '4' }, /RANK=4 is not below WORLD_SIZE=4/);
  error({ ...launched, RANK: '-1' }, /RANK="-1" is not an integer >= 0/);
  error({ ...launched, WORLD_SIZE: '2.5' }, /WORLD_SIZE="2.5" is not an integer >= 1/);
  error({ ...launched, LOCAL_RANK: '2' }, /LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2/);
  error({ ...launched, LOCAL_WORLD_SIZE: '8' }, /LOCAL_WORLD_SIZE=8 exceeds WORLD_SIZE=4/);
  error({ ...launched, MASTER_PORT: '70000' }, /MASTER_PORT=70000 is not a TCP port/);
  error({ ...launched, MASTER_PORT: 'http' }, /MASTER_PORT="http"/);
  error({ SPATIALTHINKER_DIST_TIMEOUT_MS: '0' }, /SPATIALTHINKER_DIST_TIMEOUT_MS="0" is not a positive number/);
});

t.test("the launcher's worker environment follows torchrun's contract", async (t) => {
  const options = { nprocPerNode: 2, nnodes: 2, nodeRank: 1, masterAddr: 'node0', masterPort: 29700, timeoutMs: 5000, command: 'x', args: [], cpus: 16 };
  const env = workerEnvironment({ ...options, env: { PATH: '/bin' } }, 1);
  t.match(env, { RANK: '3', LOCAL_RANK: '1', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'node0', MASTER_PORT: '29700', SPATIALTHINKER_DIST_TIMEOUT_MS: '5000', PATH: '/bin' });
  t.equal(env['SPATIALTHINKER_THREADS'], '8', 'the CPU threads are split across the local workers');
  t.equal(env['OMP_NUM_THREADS'], '8');
  t.equal(workerEnvironment({ ...options, env: { SPATIALTHINKER_THREADS: '3' } }, 0)['SPATIALTHINKER_THREADS'], '3', 'an explicit thread count is kept');
  t.same(readDistributedEnv(env), { rank: 3, localRank: 1, worldSize: 4, localWorldSize: 2, masterAddr: 'node0', masterPort: 29700, launched: true, timeoutMs: 5000 });
});

t.test('trainer.n_gpus_per_node / trainer.nnodes against the launch', async (t) => {
  const alone = readDistributedEnv({});
  const rerun = 'spatialthinker train --config run.yaml';
  t.doesNotThrow(() => checkWorldMatchesConfig({}, alone, rerun), 'unset: nothing to check');
  t.doesNotThrow(() => checkWorldMatchesConfig({ n_gpus_per_node: 1, nnodes: 1 }, alone, rerun), 'one process asked, one started');
  t.throws(() => checkWorldMatchesConfig({ n_gpus_per_node: 4, nnodes: 1 }, alone, rerun), {
    message: /asks for 4 processes \(trainer\.n_gpus_per_node=4, trainer\.nnodes=1\) but this process was started alone; start one per device with: spatialthinker launch --nproc-per-node 4 -- spatialthinker train --config run\.yaml \(or train in this one process with trainer\.n_gpus_per_node=1 trainer\.nnodes=1: batch sizes are global, so the update is the same\)$/,
  });
  t.throws(() => checkWorldMatchesConfig({ n_gpus_per_node: 8, nnodes: 2 }, alone, rerun), { message: /--nproc-per-node 8 --nnodes 2 --node-rank/ });
  const two = readDistributedEnv({ RANK: '0', LOCAL_RANK: '0', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' });
  t.doesNotThrow(() => checkWorldMatchesConfig({ n_gpus_per_node: 2 }, two, rerun));
  t.throws(() => checkWorldMatchesConfig({ n_gpus_per_node: 4 }, two, rerun), {
    message: /started 2 processes on this node \(LOCAL_WORLD_SIZE=2\) but the configuration has trainer\.n_gpus_per_node=4/,
  });
  t.throws(() => checkWorldMatchesConfig({ n_gpus_per_node: 2, nnodes: 2 }, two, rerun), { message: /started 2 processes in all \(WORLD_SIZE=2\) but the configuration asks for 4/ });
  t.type(new DistributedEnvError('x'), Error);
});
