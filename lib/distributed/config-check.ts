/**
 * `trainer.n_gpus_per_node` and `trainer.nnodes` mean what they mean in
 * EasyR1: the job's processes per node and nodes. A trainer checks them
 * against how it was started: a configuration that asks for several
 * processes in a process started alone says how to launch it, and a launcher
 * that started a different number says both numbers.
 */
import { DistributedEnvError, type DistributedEnv } from './env.js';

export interface ConfiguredWorld {
  n_gpus_per_node?: number | undefined;
  nnodes?: number | undefined;
}

/** Throws a DistributedEnvError saying what to change; `rerun` is the command line to put after `launch ... --`. */
export function checkWorldMatchesConfig(trainer: ConfiguredWorld, env: DistributedEnv, rerun: string): void {
  const perNode = trainer.n_gpus_per_node;
  const nodes = trainer.nnodes;
  if (perNode === undefined && nodes === undefined) return;
  const wanted = (perNode ?? 1) * (nodes ?? 1);
  const asked = [perNode !== undefined ? `trainer.n_gpus_per_node=${perNode}` : '', nodes !== undefined ? `trainer.nnodes=${nodes}` : '']
    .filter(Boolean)
    .join(', ');
  if (!env.launched) {
    if (wanted === 1) return;
    const multiNode = (nodes ?? 1) > 1 ? ` --nnodes ${nodes} --node-rank <this node's index> --master-addr <node 0's address>` : '';
    const oneProcess = [perNode !== undefined ? 'trainer.n_gpus_per_node=1' : '', nodes !== undefined ? 'trainer.nnodes=1' : ''].filter(Boolean).join(' ');
    throw new DistributedEnvError(
      `the configuration asks for ${wanted} processes (${asked}) but this process was started alone; ` +
        `start one per device with: spatialthinker launch --nproc-per-node ${perNode ?? 1}${multiNode} -- ${rerun} ` +
        `(or train in this one process with ${oneProcess}: batch sizes are global, so the update is the same)`,
    );
  }
  if (perNode !== undefined && env.localWorldSize !== perNode)
    throw new DistributedEnvError(
      `the launcher started ${env.localWorldSize} processes on this node (LOCAL_WORLD_SIZE=${env.localWorldSize}) but the configuration has trainer.n_gpus_per_node=${perNode}: make them equal`,
    );
  if (env.worldSize !== wanted)
    throw new DistributedEnvError(
      `the launcher started ${env.worldSize} processes in all (WORLD_SIZE=${env.worldSize}) but the configuration asks for ${wanted} (${asked}): make them equal`,
    );
}
