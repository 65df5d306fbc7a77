/** The trainers (`spatialthinker/train`): GRPO with group-normalised advantages, the SFT warm start, their configuration, checkpoints, logs, evaluation and run report. */
export { GrpoTrainer } from './grpo-trainer.js';
export { SftTrainer } from './sft-trainer.js';
export { TrainingRun, AbortedRun, createReward, readRunState, type TrainerEvents, type RunState, type RunOptions, type Phase, type TrainResult } from './run.js';
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
} from './config.js';
export { configJsonSchema, configReferenceMarkdown } from './config-reference.js';
export { planMemory, formatMemoryPlan, type MemoryPlan } from './memory-plan.js';
export { DataLoader, loadRows, type LoaderState, type TrainingRow, type LoadRowsOptions, type LoadedRows } from './loader.js';
export { PromptBuilder, type PreparedRow, type PromptFields } from './prompts.js';
export { sampleCompletions, type Rollout, type Sampling, type RolloutOptions } from './rollout.js';
export { evaluatePolicy, type Evaluation, type EvaluatedSample, type EvaluateOptions } from './evaluate.js';
export { groupAdvantages } from './advantages.js';
export { RunLog, type Metrics, type SampleRecord, type Split } from './run-log.js';
export { saveCheckpoint, restoreCheckpoint, listCheckpoints, latestCheckpoint, type SaveOptions } from './checkpoint.js';
export { learningRate, type ScheduleOptions, type ScheduleName } from './schedule.js';
export { StepGuard, NonFiniteStepError, type SkippedStep } from './step-guard.js';
export { buildRunReport, renderRunReport, writeRunReport, type RunReport, type RunReportOptions } from '../report/run-report.js';
export { TensorBoardWriter } from '../report/tensorboard.js';
