/**
 * Starts one node's workers of a distributed job, as torchrun does: each
 * worker gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and
 * MASTER_PORT, and its output lines come back prefixed with its rank. The
 * first worker that fails (a non-zero exit or a signal) ends the job: the
 * others get SIGTERM, then SIGKILL after a grace period, and the result names
 * the failed rank. interrupt() forwards SIGTERM to every worker and waits for
 * them (the trainers save a checkpoint on it); a second interrupt() kills.
 *
 * Each worker runs in its own process group, so a terminal's Ctrl-C reaches
 * the launcher alone and every worker gets exactly one signal from it, never
 * one from the terminal and one forwarded (a trainer's second signal quits
 * without its checkpoint). Signals go to the whole group: a worker started
 * through a shell or npx takes its children with it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { LAUNCHER_PID_VARIABLE, TIMEOUT_VARIABLE } from './env.js';

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  /** Handed to the workers' process groups (SPATIALTHINKER_DIST_TIMEOUT_MS). */
  timeoutMs?: number;
  command: string;
  args: string[];
  /** The workers' base environment (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** After a failure, how long the other workers get between SIGTERM and SIGKILL. */
  killGraceMs?: number;
  /** Where the prefixed lines go (default process.stdout / process.stderr). */
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** CPU threads to split across the workers (default: os.availableParallelism()). */
  cpus?: number;
}

export interface WorkerExit {
  rank: number;
  localRank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why the worker could not be started at all. */
  spawnError?: string;
}

export interface LaunchResult {
  ok: boolean;
  /** interrupt() was called. */
  interrupted: boolean;
  /** The first worker that failed on its own (not one stopped by the launcher). */
  failure?: WorkerExit;
  exits: WorkerExit[];
}

export const DEFAULT_MASTER_ADDR = '127.0.0.1';
export const DEFAULT_MASTER_PORT = 29500;
export const DEFAULT_KILL_GRACE_MS = 30_000;

/** "exited with code 3", "was killed by SIGKILL", "could not start: ...". */
export function describeExit(exit: WorkerExit): string {
  if (exit.spawnError !== undefined) return `could not start: ${exit.spawnError}`;
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code}`;
}

/** The environment of one worker: the torchrun variables, the timeout and its share of the CPU threads. */
export function workerEnvironment(options: LaunchOptions, localRank: number): NodeJS.ProcessEnv {
  const base = options.env ?? process.env;
  const nnodes = options.nnodes ?? 1;
  const env: NodeJS.ProcessEnv = {
    ...base,
    RANK: String((options.nodeRank ?? 0) * options.nprocPerNode + localRank),
    LOCAL_RANK: String(localRank),
    WORLD_SIZE: String(nnodes * options.nprocPerNode),
    LOCAL_WORLD_SIZE: String(options.nprocPerNode),
    MASTER_ADDR: options.masterAddr ?? DEFAULT_MASTER_ADDR,
    MASTER_PORT: String(options.masterPort ?? DEFAULT_MASTER_PORT),
    [LAUNCHER_PID_VARIABLE]: String(process.pid),
  };
  if (options.timeoutMs !== undefined) env[TIMEOUT_VARIABLE] = String(options.timeoutMs);
  // N workers each sizing a pool to every core would oversubscribe the node
  // N times over; an explicit setting is kept.
  const share = String(Math.max(1, Math.floor((options.cpus ?? availableParallelism()) / options.nprocPerNode)));
  if (!base['SPATIALTHINKER_THREADS']) env['SPATIALTHINKER_THREADS'] = share;
  if (!base['OMP_NUM_THREADS']) env['OMP_NUM_THREADS'] = share;
  return env;
}

/** Writes a stream's lines with a prefix; a last line without its newline is written when the stream ends. */
class LinePrefixer {
  private pending = '';
  constructor(
    private readonly prefix: string,
    private readonly out: NodeJS.WritableStream,
  ) {}
  write(chunk: string): void {
    const text = this.pending + chunk;
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      this.pending = text;
      return;
    }
    this.pending = text.slice(end + 1);
    this.out.write(
      text
        .slice(0, end)
        .split('\n')
        .map((line) => `${this.prefix}${line}\n`)
        .join(''),
    );
  }
  flush(): void {
    if (this.pending !== '') this.out.write(`${this.prefix}${this.pending}\n`);
    this.pending = '';
  }
}

interface Worker {
  rank: number;
  localRank: number;
  child: ChildProcess;
  exit?: WorkerExit;
  streamsOpen: number;
}

export class Launch {
  readonly result: Promise<LaunchResult>;
  private readonly workers: Worker[] = [];
  private stopping: 'no' | 'failure' | 'interrupt' = 'no';
  private interrupts = 0;
  private failure: WorkerExit | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private settle!: (result: LaunchResult) => void;

  constructor(private readonly options: LaunchOptions) {
    const { nprocPerNode } = options;
    const nnodes = options.nnodes ?? 1;
    const nodeRank = options.nodeRank ?? 0;
    if (!(Number.isInteger(nprocPerNode) && nprocPerNode >= 1)) throw new RangeError(`launch: nprocPerNode must be an integer >= 1, got ${nprocPerNode}`);
    if (!(Number.isInteger(nnodes) && nnodes >= 1)) throw new RangeError(`launch: nnodes must be an integer >= 1, got ${nnodes}`);
    if (!(Number.isInteger(nodeRank) && nodeRank >= 0 && nodeRank < nnodes))
      throw new RangeError(`launch: nodeRank must be an integer in 0..${nnodes - 1}, got ${nodeRank}`);
    this.result = new Promise((resolve) => (this.settle = resolve));
    const stdout = options.stdout ?? process.stdout;
    const stderr = options.stderr ?? process.stderr;
    for (let localRank = 0; localRank < nprocPerNode; localRank++) {
      const rank = nodeRank * nprocPerNode + localRank;
      const child = spawn(options.command, options.args, {
        env: workerEnvironment(options, localRank),
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      const worker: Worker = { rank, localRank, child, streamsOpen: 2 };
      this.workers.push(worker);
      for (const [stream, out] of [
        [child.stdout!, stdout],
        [child.stderr!, stderr],
      ] as const) {
        const prefixer = new LinePrefixer(`[rank ${rank}] `, out);
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => prefixer.write(chunk));
        stream.on('close', () => {
          prefixer.flush();
          worker.streamsOpen--;
          this.maybeDone();
        });
      }
      child.on('error', (error) => {
        // Spawning failed (no such command): no 'exit' follows.
        if (worker.exit) return;
        this.onExit(worker, { rank, localRank, code: null, signal: null, spawnError: error.message });
      });
      child.on('exit', (code, signal) => this.onExit(worker, { rank, localRank, code, signal }));
    }
  }

  /** Ctrl-C: SIGTERM to every worker, then wait for them; a second call kills them at once. */
  interrupt(): void {
    this.interrupts++;
    if (this.stopping === 'no') this.stopping = 'interrupt';
    this.signalAll(this.interrupts === 1 ? 'SIGTERM' : 'SIGKILL');
  }

  get pids(): number[] {
    return this.workers.map((w) => w.child.pid ?? -1);
  }

  private onExit(worker: Worker, exit: WorkerExit): void {
    if (worker.exit) return;
    worker.exit = exit;
    if (exit.spawnError !== undefined) worker.streamsOpen = 0;
    const failed = exit.spawnError !== undefined || exit.signal !== null || exit.code !== 0;
    if (failed && this.stopping === 'no') {
      this.stopping = 'failure';
      this.failure = exit;
      this.signalAll('SIGTERM');
      this.killTimer = setTimeout(() => this.signalAll('SIGKILL'), this.options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
      this.killTimer.unref();
    }
    // The worker is gone; whatever it started in its group goes with it.
    if (failed || this.stopping !== 'no') signalGroup(worker, 'SIGKILL');
    this.maybeDone();
  }

  private signalAll(signal: NodeJS.Signals): void {
    for (const worker of this.workers) if (!worker.exit) signalGroup(worker, signal);
  }

  private maybeDone(): void {
    if (!this.workers.every((w) => w.exit && w.streamsOpen <= 0)) return;
    if (this.killTimer) clearTimeout(this.killTimer);
    const exits = this.workers.map((w) => w.exit!);
    this.settle({
      ok: this.stopping === 'no' && exits.every((e) => e.code === 0),
      interrupted: this.stopping === 'interrupt',
      ...(this.failure ? { failure: this.failure } : {}),
      exits,
    });
  }
}

function signalGroup(worker: Worker, signal: NodeJS.Signals): void {
  const pid = worker.child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

/** Starts the workers; see Launch. */
export function launch(options: LaunchOptions): Launch {
  return new Launch(options);
}
