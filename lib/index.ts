/**
 * spatialthinker: the library API. The root holds what a user of the library
 * needs; each area is also a subpath with more of its pieces:
 * `spatialthinker/engine`, `/train`, `/rewards`, `/data`, `/eval`, `/synth`.
 */
export * from './engine/index.js';
export * from './rl/index.js';
export * from './rewards/index.js';
export {
  initProcessGroup,
  createProcessGroup,
  ProcessGroup,
  readDistributedEnv,
  DistributedEnvError,
  launch,
  type DistributedEnv,
  type ProcessGroupOptions,
  type LaunchOptions,
  type LaunchResult,
  type ReduceOp,
} from './distributed/index.js';
export {
  readRows,
  dataFiles,
  countRows,
  writeJsonl,
  writeParquet,
  writeParquetShards,
  StvqaParquetWriter,
  validateRow,
  isStvqaRow,
  imagesOf,
  DataError,
  STVQA_FIELDS,
  describeParquet,
  inspectDataset,
  formatReport,
  type StvqaRow,
  type StvqaImage,
  type ReadOptions,
  type ReadStats,
  type RowItem,
  type RowStream,
  type ParquetWriteOptions,
  type ShardOptions,
  type JsonlWriteOptions,
  type InspectOptions,
  type InspectReport,
} from './data/index.js';
export {
  BENCHMARKS,
  PAPER_BENCHMARKS,
  benchmarkByName,
  loadSamples,
  runEvaluation,
  evaluateBenchmarks,
  writeReports,
  EngineGenerator,
  ApiGenerator,
  summarizeBenchmark,
  markdownReport,
  htmlReport,
  type EvalRunOptions,
  type BenchmarkEvaluationOptions,
  type EvaluationResult,
  type BenchmarkSummary,
} from './eval/index.js';
export {
  synthesizeDataset,
  synthesizeRows,
  synthesizeLlmCandidateDataset,
  generateQuestions,
  readVisualGenome,
  readVg150Jsonl,
  LlmSession,
  type SynthOptions,
  type SynthStats,
  type SynthDataset,
  type SceneGraph,
} from './synth/index.js';
