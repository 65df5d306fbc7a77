/** The trainers: GRPO with group-normalised advantages, the SFT warm start, their configuration, logs and evaluation. */
export * from './config.js';
export * from './advantages.js';
export { DataLoader, loadRows, type LoaderState, type TrainingRow, type LoadRowsOptions, type LoadedRows } from './loader.js';
export * from './memory-plan.js';
export { PromptBuilder, RowError, fitPixels, type PreparedRow, type PromptFields } from './prompts.js';
export { sampleCompletions, type Rollout, type Sampling, type RolloutOptions } from './rollout.js';
export { evaluatePolicy, scoreRollouts, summarise, type Evaluation, type EvaluatedSample, type EvaluateOptions } from './evaluate.js';
export { goldTrace, sftTarget } from './gold-trace.js';
export { RunLog, type Metrics, type SampleRecord, type Split } from './run-log.js';
export { TrainingRun, AbortedRun, createReward, readRunState, type TrainerEvents, type RunState, type RunOptions, type Phase, type TrainResult } from './run.js';
export { GrpoTrainer } from './grpo-trainer.js';
export { SftTrainer } from './sft-trainer.js';
