/** Evaluation on the paper's spatial benchmarks: loaders, prompts, matching, runner, tables and reports. */
export * from './types.js';
export { BENCHMARKS, PAPER_BENCHMARKS, benchmarkByName, genericBenchmark, type GenericBenchmarkOptions, REALWORLDQA_LETTER_ONLY } from './benchmarks/index.js';
export { benchmarkFiles, loadSamples, downloadHint, type LoadOptions as SampleLoadOptions } from './load.js';
export { readRecords, type RecordReadOptions } from './records.js';
export { parseListLiteral } from './fields.js';
export { SPATIAL_THINKER_TEMPLATE, REASONING_INSTRUCTION, applyTemplate, renderPrompt, askForAnswerTags, type ImageSize } from './templates.js';
export { extractFinalAnswer, scoreCompletion, resolveOption, answerKeyLetter, referenceEqual, parenthesisedMatch, type ScoredAnswer, type AnswerKey } from './matching.js';
export { gradeAnswer } from './grade-answer.js';
export { ResultsLog, readRecordsFile } from './results-log.js';
export { runEvaluation, claimOutputFolder, promptOf, recordOf, samplesPath, imageSize, RunConfigError, type EvalRunOptions, type RunSettings, type BenchmarkRun, type BenchmarkSource, type EvalProgress } from './runner.js';
export { EngineGenerator, type EngineGeneratorOptions } from './generators/engine.js';
export { ApiGenerator, type ApiGeneratorOptions } from './generators/api.js';
export { summarizeBenchmark, paperColumnEstimates, proportion, meanOf, AVERAGE_KEY, type Estimate, type BenchmarkSummary, type TaskSummary } from './aggregate.js';
export { PAPER_METRICS, PAPER_SUBTASK_METRICS, PAPER_AVERAGE_KEYS, PAPER_RESULTS, PAPER_FAMILIES, paperValue, familyOfHiddenSize, type PaperMetric } from './paper.js';
export { markdownReport, comparisonTable, benchmarkTable, taskTables, markdownTable, percent, type Table, type ReportInput } from './report.js';
export { htmlReport, collectFailures, type FailureExample } from './report-html.js';
export { evaluateBenchmarks, writeReports, reportFromOutput, type BenchmarkEvaluationOptions, type EvaluationResult, type ReportOptions } from './evaluate.js';
