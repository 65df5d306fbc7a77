/** `spatialthinker launch`: one node's workers of a distributed job, torchrun's contract. */
import { parseArgs } from './args.js';
import { CliError, UsageError } from './errors.js';
import { native } from '../native/binding.js';
import { DEFAULT_MASTER_ADDR, DEFAULT_MASTER_PORT, describeExit, launch } from '../distributed/launcher.js';
import { DEFAULT_TIMEOUT_MS } from '../distributed/process-group.js';

const HELP = `usage: spatialthinker launch --nproc-per-node N [--nnodes M --node-rank R --master-addr HOST --master-port P]
                            [--timeout SECONDS] -- COMMAND [ARGS ...]

Starts N workers of COMMAND on this node, as torchrun does: each gets RANK,
LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (and its
share of the CPU threads in SPATIALTHINKER_THREADS and OMP_NUM_THREADS unless
they are set). Rank 0 hosts the rendezvous store at MASTER_ADDR:MASTER_PORT.
Each output line is prefixed with its worker's rank. On several nodes, run the
same command on each with its own --node-rank and node 0's address.

The first worker that fails ends the job: the others get SIGTERM, then
SIGKILL after 30 s, and launch exits 1 naming the rank and its exit code or
signal. Ctrl-C sends SIGTERM to every worker (a trainer then saves a
checkpoint and stops) and waits for them; a second Ctrl-C kills them.

  spatialthinker launch --nproc-per-node 2 -- spatialthinker train --config run.yaml trainer.n_gpus_per_node=2

options:
  --nproc-per-node N   workers on this node (one per GPU; trainer.n_gpus_per_node)
  --nnodes M           nodes in the job (default 1; trainer.nnodes)
  --node-rank R        this node's index, 0..M-1 (default 0)
  --master-addr HOST   node 0's address (default ${DEFAULT_MASTER_ADDR})
  --master-port P      the rendezvous port on node 0 (default ${DEFAULT_MASTER_PORT})
  --timeout SECONDS    how long the rendezvous and each collective wait for
                       the other ranks before failing (default ${DEFAULT_TIMEOUT_MS / 1000})
`;

export async function launchCommand(argv: string[]): Promise<void> {
  const split = argv.indexOf('--');
  const own = split < 0 ? argv : argv.slice(0, split);
  const command = split < 0 ? [] : argv.slice(split + 1);
  const { values } = parseArgs({
    args: own,
    options: {
      'nproc-per-node': { type: 'string' },
      nnodes: { type: 'string' },
      'node-rank': { type: 'string' },
      'master-addr': { type: 'string' },
      'master-port': { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const integer = (flag: string, text: string | undefined, fallback: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (text === undefined) {
      if (fallback === undefined) throw new UsageError(`--${flag} is required (--help shows the usage)`);
      return fallback;
    }
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < min || value > max) throw new UsageError(`--${flag} must be an integer in ${min}..${max === Number.MAX_SAFE_INTEGER ? '' : max}, got "${text}"`);
    return value;
  };
  const nprocPerNode = integer('nproc-per-node', values['nproc-per-node'], undefined, 1, 1024);
  const nnodes = integer('nnodes', values.nnodes, 1, 1);
  const nodeRank = integer('node-rank', values['node-rank'], 0, 0, nnodes - 1);
  const masterPort = integer('master-port', values['master-port'], DEFAULT_MASTER_PORT, 1, 65535);
  const masterAddr = values['master-addr'] ?? DEFAULT_MASTER_ADDR;
  const timeoutSeconds = values.timeout === undefined ? DEFAULT_TIMEOUT_MS / 1000 : Number(values.timeout);
  if (!(Number.isFinite(timeoutSeconds) && timeoutSeconds > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got "${values.timeout}"`);
  if (command.length === 0)
    throw new UsageError(`give the workers' command after --, e.g. spatialthinker launch --nproc-per-node ${nprocPerNode} -- spatialthinker train --config run.yaml`);

  const world = nnodes * nprocPerNode;
  if (world > 1) {
    // CPU workers need Gloo to form a group; refuse before starting any when
    // this build cannot make a group on either device.
    const info = native().runtimeInfo();
    if (!info.distributed.gloo && !info.cuda.available)
      throw new CliError(
        `cannot run ${world} processes on the CPU: ${info.distributed.glooReason ?? 'this build has no Gloo'} ` +
          `(and CUDA is unavailable: ${info.cuda.reason ?? 'no usable GPU'})`,
      );
  }

  const job = launch({
    nprocPerNode,
    nnodes,
    nodeRank,
    masterAddr,
    masterPort,
    timeoutMs: Math.round(timeoutSeconds * 1000),
    command: command[0]!,
    args: command.slice(1),
  });
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    process.stderr.write(
      signals === 1
        ? `\nspatialthinker launch: ${signal}: sent SIGTERM to every worker, waiting for them to stop (again to kill them at once)\n`
        : `\nspatialthinker launch: ${signal}: killing every worker\n`,
    );
    job.interrupt();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const result = await job.result;
    if (result.failure) {
      const f = result.failure;
      const stopped = result.exits.length - 1;
      throw new CliError(
        `rank ${f.rank}${nnodes > 1 ? ` (node ${nodeRank}, local rank ${f.localRank})` : ''} ${describeExit(f)}` +
          (stopped > 0 ? `; stopped the other ${stopped === 1 ? 'worker' : `${stopped} workers`} on this node` : ''),
      );
    }
    if (result.interrupted) throw new CliError(`interrupted: every worker on this node stopped (${result.exits.map((e) => `rank ${e.rank} ${describeExit(e)}`).join(', ')})`, 130);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
