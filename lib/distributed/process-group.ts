/**
 * A process group: the collectives of one distributed job, over Gloo (CPU) or
 * NCCL (CUDA) in the native engine. `initProcessGroup()` joins the group the
 * environment describes (launcher variables, lib/distributed/env.ts); a
 * process started without a launcher is a world of one, where every
 * collective is the identity.
 *
 * The Float32Array collectives here are for metrics and tests; a model's
 * gradients never cross into JavaScript: native model methods take the group
 * (`nativeGroup`) and call the same communicator from C++.
 */
import { native, type Device, type NativeProcessGroup, type NativeReduceOp } from '../native/binding.js';
import { readDistributedEnv, stopWhenLauncherDies, type DistributedEnv } from './env.js';

export type ReduceOp = NativeReduceOp;

/** How long the rendezvous and each collective wait for the other ranks by default. */
export const DEFAULT_TIMEOUT_MS = 60_000;

export interface ProcessGroupOptions {
  /** cpu (Gloo, the default) or cuda (NCCL). */
  device?: Device;
  /** Default: SPATIALTHINKER_DIST_TIMEOUT_MS (set by `launch --timeout`), else 60 s. */
  timeoutMs?: number;
}

export interface CreateProcessGroupOptions extends ProcessGroupOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  localRank?: number;
  localWorldSize?: number;
}

/** Its methods always return promises: a call on a destroyed group rejects, never throws. */
export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly device: Device;
  readonly timeoutMs: number;

  /** @internal use createProcessGroup or initProcessGroup */
  constructor(
    /** The native group, for native methods that take one (a model's collectives). */
    readonly nativeGroup: NativeProcessGroup,
    placement: { localRank: number; localWorldSize: number; device: Device; timeoutMs: number },
  ) {
    this.rank = nativeGroup.rank;
    this.worldSize = nativeGroup.worldSize;
    this.localRank = placement.localRank;
    this.localWorldSize = placement.localWorldSize;
    this.device = placement.device;
    this.timeoutMs = placement.timeoutMs;
  }

  /** "gloo", "nccl" or "single" (a world of one). */
  get backend(): string {
    return this.nativeGroup.backend;
  }

  async allReduce(data: Float32Array, op: ReduceOp = 'sum'): Promise<Float32Array> {
    return this.nativeGroup.allReduce(data, op);
  }

  /** data holds worldSize equal blocks; returns the reduction of every rank's block `rank`. */
  async reduceScatter(data: Float32Array, op: ReduceOp = 'sum'): Promise<Float32Array> {
    return this.nativeGroup.reduceScatter(data, op);
  }

  /** Every rank's data, rank r's at r * data.length. */
  async allGather(data: Float32Array): Promise<Float32Array> {
    return this.nativeGroup.allGather(data);
  }

  /** root's data on every rank; every rank passes an array of the same length. */
  async broadcast(data: Float32Array, root = 0): Promise<Float32Array> {
    return this.nativeGroup.broadcast(data, root);
  }

  async barrier(): Promise<void> {
    return this.nativeGroup.barrier();
  }

  /** Leaves the group after the calls already made (a model holding it keeps it until it lets go). */
  async destroy(): Promise<void> {
    return this.nativeGroup.destroy();
  }
}

export async function createProcessGroup(options: CreateProcessGroupOptions): Promise<ProcessGroup> {
  const device = options.device ?? 'cpu';
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new RangeError(`process group: timeoutMs must be > 0, got ${timeoutMs}`);
  const nativeGroup = await native().createProcessGroup({
    rank: options.rank,
    worldSize: options.worldSize,
    masterAddr: options.masterAddr,
    masterPort: options.masterPort,
    device,
    timeoutMs: Math.round(timeoutMs),
  });
  return new ProcessGroup(nativeGroup, {
    localRank: options.localRank ?? options.rank,
    localWorldSize: options.localWorldSize ?? options.worldSize,
    device,
    timeoutMs,
  });
}

/**
 * Joins the group the environment describes (RANK, WORLD_SIZE, MASTER_ADDR, ...); none set: a world of one.
 * A worker of `spatialthinker launch` also stops itself (SIGTERM) if the launcher dies.
 */
export async function initProcessGroup(options: ProcessGroupOptions = {}, env: DistributedEnv = readDistributedEnv()): Promise<ProcessGroup> {
  stopWhenLauncherDies();
  return createProcessGroup({
    rank: env.rank,
    worldSize: env.worldSize,
    localRank: env.localRank,
    localWorldSize: env.localWorldSize,
    masterAddr: env.masterAddr,
    masterPort: env.masterPort,
    ...(options.device !== undefined ? { device: options.device } : {}),
    timeoutMs: options.timeoutMs ?? env.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
}
