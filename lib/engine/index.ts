/** `spatialthinker/engine`: the model, the vision-language pipeline, and what they read. */
export { Model } from './model.js';
export type {
  Completion,
  ForwardResult,
  GenerateOptions,
  ImageInput,
  LoadOptions,
  LoadProgress,
  LoadPhase,
  PromptInput,
  SamplingOptions,
  VisionResult,
  TrainSequence,
  TrainLossOptions,
  TrainGradientsResult,
  OptimizerOptions,
  OptimizerState,
  FreezeOptions,
} from './model.js';
export { VisionLanguageModel, type VisionRequest, type TextCompletion, type TextGenerateOptions, type PreparedPrompt } from './pipeline.js';
export { parseModelConfig, readModelConfig, ModelConfigError, type ModelConfig } from './config.js';
export { writeRandomCheckpoint, type RandomCheckpointOptions } from './random-checkpoint.js';
export { writeTinyModelDirectory, type TinyModelOptions, type TinyModelDirectory } from './tiny-model.js';
export { native, type RuntimeInfo, type Device, type CudaDeviceInfo, type KlEstimator, type LossAggregation } from '../native/binding.js';
export { Tokenizer, type DecodeOptions } from '../tokenizer/tokenizer.js';
export { loadImage, type RgbImage } from '../vision/image.js';
export { ImageProcessor, QWEN2VL_PROCESSOR_DEFAULTS, type ImageProcessorConfig, type ProcessedImages } from '../vision/processor.js';
export { readSafetensors, inspectSafetensors, inspectModelWeights } from '../io/safetensors.js';
