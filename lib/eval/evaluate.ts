/**
 * An evaluation end to end: run the benchmarks (resuming what the output
 * folder has), summarise, and write `summary.json`, `report.md` and
 * `report.html` beside `samples/*.jsonl`. `reportFromOutput` rebuilds the
 * reports of a folder without generating anything.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { paperColumnEstimates, summarizeBenchmark, type BenchmarkSummary } from './aggregate.js';
import { loadSamples } from './load.js';
import { PAPER_FAMILIES, paperValue } from './paper.js';
import { collectFailures, htmlReport } from './report-html.js';
import { markdownReport } from './report.js';
import { readRecordsFile } from './results-log.js';
import { RunConfigError, runEvaluation, samplesPath, type BenchmarkRun, type BenchmarkSource, type EvalRunOptions, type RunSettings } from './runner.js';

export interface ReportOptions {
  /** Paper rows in the comparison table (default: the Qwen2.5-VL-7B family). */
  paperModels?: readonly string[];
  /** Wrong answers shown with their images per benchmark in report.html (default 50; 0 for none). */
  failuresPerBenchmark?: number;
}

export interface BenchmarkEvaluationOptions extends EvalRunOptions, ReportOptions {}

export interface EvaluationResult {
  settings: RunSettings;
  runs: BenchmarkRun[];
  summaries: BenchmarkSummary[];
  files: { summary: string; markdown: string; html: string };
}

export async function evaluateBenchmarks(options: BenchmarkEvaluationOptions): Promise<EvaluationResult> {
  const runs = await runEvaluation(options);
  const settings: RunSettings = { template: options.template ?? 'spatial_thinker', matching: options.matching ?? 'corrected', generator: options.generator.identity };
  return writeReports(options.outDir, settings, options.benchmarks, runs, options, options.limit);
}

/** Summaries and report files of finished (or partial) runs. */
export async function writeReports(
  outDir: string,
  settings: RunSettings,
  sources: readonly BenchmarkSource[],
  runs: BenchmarkRun[],
  options: ReportOptions = {},
  limit?: number,
): Promise<EvaluationResult> {
  const paperModels = options.paperModels ?? PAPER_FAMILIES['7b'];
  const summaries = runs.map((run) => summarizeBenchmark({ definition: run.definition, records: run.records, total: run.total, failures: run.failures }, settings.matching));
  const ours = paperColumnEstimates(summaries);
  const input = { settings, summaries, paperModels };
  const files = { summary: join(outDir, 'summary.json'), markdown: join(outDir, 'report.md'), html: join(outDir, 'report.html') };
  const summary = {
    settings,
    generated: new Date().toISOString(),
    benchmarks: summaries,
    paper: {
      models: paperModels,
      columns: Object.fromEntries(
        [...ours].map(([key, e]) => [key, { ours: e, paper: Object.fromEntries(paperModels.map((m) => [m, paperValue(m, key) ?? null])) }]),
      ),
    },
    failures: Object.fromEntries(runs.filter((r) => r.failures.length > 0).map((r) => [r.definition.name, r.failures])),
  };
  await writeFile(files.summary, JSON.stringify(summary, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
  await writeFile(files.markdown, markdownReport(input));
  const perBenchmark = options.failuresPerBenchmark ?? 50;
  const failures =
    perBenchmark > 0 ? await collectFailures(sources, new Map(runs.map((r) => [r.definition.name, r.records])), perBenchmark, limit) : new Map();
  await writeFile(files.html, await htmlReport(input, failures));
  return { settings, runs, summaries, files };
}

/** Reads an output folder's settings and records, and writes its reports again. */
export async function reportFromOutput(outDir: string, sources: readonly BenchmarkSource[], options: ReportOptions & { limit?: number } = {}): Promise<EvaluationResult> {
  let settings: RunSettings;
  try {
    settings = JSON.parse(await readFile(join(outDir, 'run.json'), 'utf8')) as RunSettings;
  } catch (error) {
    throw new RunConfigError(`${join(outDir, 'run.json')}: ${(error as Error).message}; is ${outDir} the output folder of an evaluation?`);
  }
  const runs: BenchmarkRun[] = [];
  for (const { definition, files } of sources) {
    const byId = new Map((await readRecordsFile(samplesPath(outDir, definition.name))).map((r) => [r.id, r]));
    const run: BenchmarkRun = { definition, records: [], total: 0, answered: 0, resumed: 0, failures: [] };
    for await (const sample of loadSamples(definition, files, options.limit !== undefined ? { limit: options.limit } : {})) {
      run.total++;
      const record = byId.get(sample.id);
      if (record) {
        run.records.push(record);
        run.resumed++;
      }
    }
    runs.push(run);
  }
  return writeReports(outDir, settings, sources, runs, options, options.limit);
}
