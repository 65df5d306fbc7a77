/** Data-parallel jobs: the launcher's environment, process groups and the launcher itself. */
export { readDistributedEnv, DistributedEnvError, DISTRIBUTED_VARIABLES, TIMEOUT_VARIABLE, SINGLE_PROCESS, type DistributedEnv } from './env.js';
export {
  ProcessGroup,
  createProcessGroup,
  initProcessGroup,
  DEFAULT_TIMEOUT_MS,
  type ReduceOp,
  type ProcessGroupOptions,
  type CreateProcessGroupOptions,
} from './process-group.js';
export { launch, Launch, describeExit, workerEnvironment, type LaunchOptions, type LaunchResult, type WorkerExit } from './launcher.js';
export { checkWorldMatchesConfig, type ConfiguredWorld } from './config-check.js';
