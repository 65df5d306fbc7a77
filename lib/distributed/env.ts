/**
 * Where this process sits in a distributed job, from torchrun's environment
 * contract: RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and
 * MASTER_PORT. `spatialthinker launch` sets them, and so do torchrun and
 * SLURM wrappers. None set: a world of one. Some set: an error naming the
 * missing ones (half a launch is a mistake, never a silent world of one).
 */

export interface DistributedEnv {
  rank: number;
  localRank: number;
  worldSize: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  /** Whether a launcher set the variables (false: the world of one by default). */
  launched: boolean;
  /** SPATIALTHINKER_DIST_TIMEOUT_MS, which `launch --timeout` sets; undefined when not set. */
  timeoutMs?: number;
}

export const DISTRIBUTED_VARIABLES = ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'] as const;

/** The collectives' timeout `launch --timeout` hands its workers. */
export const TIMEOUT_VARIABLE = 'SPATIALTHINKER_DIST_TIMEOUT_MS';

/** The pid of the `spatialthinker launch` that started this worker. */
export const LAUNCHER_PID_VARIABLE = 'SPATIALTHINKER_LAUNCHER_PID';

let watchingLauncher = false;

/**
 * A worker of `spatialthinker launch` whose launcher is gone (killed with
 * SIGKILL, its SSH session lost) sends itself SIGTERM, as the launcher would
 * have on Ctrl-C: a trainer then saves a checkpoint and stops instead of
 * running on with nobody to end the job. Checked every second, off the event
 * loop's critical path (the timer does not keep the process alive).
 */
export function stopWhenLauncherDies(env: NodeJS.ProcessEnv = process.env): void {
  const pid = Number(env[LAUNCHER_PID_VARIABLE]);
  if (watchingLauncher || !Number.isInteger(pid) || pid <= 1) return;
  watchingLauncher = true;
  const timer = setInterval(() => {
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') return;
      clearInterval(timer);
      process.stderr.write(`the launcher (pid ${pid}) is gone: stopping this worker\n`);
      process.kill(process.pid, 'SIGTERM');
    }
  }, 1000);
  timer.unref();
}

export class DistributedEnvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DistributedEnvError';
  }
}

export const SINGLE_PROCESS: DistributedEnv = Object.freeze({
  rank: 0,
  localRank: 0,
  worldSize: 1,
  localWorldSize: 1,
  masterAddr: '127.0.0.1',
  masterPort: 29500,
  launched: false,
});

export function readDistributedEnv(env: NodeJS.ProcessEnv = process.env): DistributedEnv {
  const timeoutMs = readTimeout(env);
  const present = DISTRIBUTED_VARIABLES.filter((name) => env[name] !== undefined && env[name] !== '');
  if (present.length === 0) return timeoutMs === undefined ? { ...SINGLE_PROCESS } : { ...SINGLE_PROCESS, timeoutMs };
  const missing = DISTRIBUTED_VARIABLES.filter((name) => !present.includes(name));
  if (missing.length > 0)
    throw new DistributedEnvError(
      `the environment sets ${present.join(', ')} but not ${missing.join(', ')}: a distributed launch sets all six ` +
        `(spatialthinker launch and torchrun do); unset them all to run as one process`,
    );
  const integer = (name: string, min: number) => {
    const text = env[name]!;
    const value = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min)
      throw new DistributedEnvError(`${name}="${text}" is not an integer >= ${min}`);
    return value;
  };
  const worldSize = integer('WORLD_SIZE', 1);
  const rank = integer('RANK', 0);
  const localWorldSize = integer('LOCAL_WORLD_SIZE', 1);
  const localRank = integer('LOCAL_RANK', 0);
  const masterPort = integer('MASTER_PORT', 1);
  const masterAddr = env['MASTER_ADDR']!.trim();
  if (rank >= worldSize) throw new DistributedEnvError(`RANK=${rank} is not below WORLD_SIZE=${worldSize}`);
  if (localRank >= localWorldSize) throw new DistributedEnvError(`LOCAL_RANK=${localRank} is not below LOCAL_WORLD_SIZE=${localWorldSize}`);
  if (localWorldSize > worldSize) throw new DistributedEnvError(`LOCAL_WORLD_SIZE=${localWorldSize} exceeds WORLD_SIZE=${worldSize}`);
  if (masterPort > 65535) throw new DistributedEnvError(`MASTER_PORT=${masterPort} is not a TCP port (1..65535)`);
  if (masterAddr === '') throw new DistributedEnvError('MASTER_ADDR is empty');
  return { rank, localRank, worldSize, localWorldSize, masterAddr, masterPort, launched: true, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
}

function readTimeout(env: NodeJS.ProcessEnv): number | undefined {
  const text = env[TIMEOUT_VARIABLE];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new DistributedEnvError(`${TIMEOUT_VARIABLE}="${text}" is not a positive number of milliseconds`);
  return Math.round(value);
}
