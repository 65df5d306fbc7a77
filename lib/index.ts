/** spatialthinker: the library API. */
export * from './rewards/index.js';
export * from './match/index.js';
export { native, type RuntimeInfo, type Device, type CudaDeviceInfo } from './native/binding.js';
export * from './io/safetensors.js';
export * from './vision/index.js';
export * from './tokenizer/index.js';
export { Model } from './engine/model.js';
export type {
  Completion,
  ForwardResult,
  GenerateOptions,
  ImageInput,
  LoadOptions,
  PromptInput,
  SamplingOptions,
  VisionResult,
  TrainSequence,
  TrainLossOptions,
  TrainGradientsResult,
  OptimizerOptions,
  OptimizerState,
  FreezeOptions,
} from './engine/model.js';
export { parseModelConfig, readModelConfig, ModelConfigError, type ModelConfig } from './engine/config.js';
export { writeRandomCheckpoint, randomCheckpointTokens, QWEN_TOKEN_IDS, TINY, type RandomCheckpointOptions } from './engine/random-checkpoint.js';
export { writeTinyModelDirectory, type TinyModelOptions, type TinyModelDirectory } from './engine/tiny-model.js';
export { VisionLanguageModel, type VisionRequest, type TextCompletion, type TextGenerateOptions, type PreparedPrompt } from './engine/pipeline.js';
export { checkFixtures, type CaseResult, type QuantityResult } from './fixtures/check.js';
export { saveCheckpoint, restoreCheckpoint, listCheckpoints, latestCheckpoint, type SaveOptions } from './rl/checkpoint.js';
export { learningRate, type ScheduleOptions, type ScheduleName } from './rl/schedule.js';
export { StepGuard, NonFiniteStepError, type SkippedStep } from './rl/step-guard.js';
export type { KlEstimator, LossAggregation } from './native/binding.js';
export * from './data/index.js';
export * from './synth/index.js';
export * as shapes from './shapes/index.js';
export * from './report/index.js';
export * from './rl/index.js';
export * from './eval/index.js';
