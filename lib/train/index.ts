/** `spatialthinker/train`: the GRPO and SFT trainers, their configuration, checkpoints and run report. */
export { GrpoTrainer } from '../rl/grpo-trainer.js';
export { SftTrainer } from '../rl/sft-trainer.js';
export { TrainingRun, AbortedRun, createReward, readRunState, type TrainerEvents, type RunState, type RunOptions, type Phase, type TrainResult } from '../rl/run.js';
export {
  loadConfig,
  validateConfig,
  parseOverrides,
  configToYaml,
  configurationNotes,
  runDirectory,
  trainConfigSchema,
  PRESETS,
  ConfigError,
  type TrainConfig,
  type TrainConfigInput,
  type LoadConfigOptions,
} from '../rl/config.js';
export { configJsonSchema, configReferenceMarkdown } from '../rl/config-reference.js';
export { planMemory, formatMemoryPlan, type MemoryPlan } from '../rl/memory-plan.js';
export { DataLoader, loadRows, type LoaderState, type TrainingRow, type LoadRowsOptions, type LoadedRows } from '../rl/loader.js';
export { PromptBuilder, type PreparedRow, type PromptFields } from '../rl/prompts.js';
export { sampleCompletions, type Rollout, type Sampling, type RolloutOptions } from '../rl/rollout.js';
export { evaluatePolicy, type Evaluation, type EvaluatedSample, type EvaluateOptions } from '../rl/evaluate.js';
export { groupAdvantages } from '../rl/advantages.js';
export { RunLog, type Metrics, type SampleRecord, type Split } from '../rl/run-log.js';
export { saveCheckpoint, restoreCheckpoint, listCheckpoints, latestCheckpoint, type SaveOptions } from './checkpoint.js';
export { learningRate, type ScheduleOptions, type ScheduleName } from './schedule.js';
export { StepGuard, NonFiniteStepError, type SkippedStep } from './step-guard.js';
export { buildRunReport, renderRunReport, writeRunReport, type RunReport, type RunReportOptions } from '../report/run-report.js';
export { TensorBoardWriter } from '../report/tensorboard.js';
