/** `spatialthinker eval`: the paper's spatial benchmarks, from local files, with the engine or an API model. */
import { stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { parseArgs } from './args.js';
import { DataError } from '../data/schema.js';
import { readModelConfig } from '../engine/config.js';
import { BENCHMARKS, PAPER_BENCHMARKS, benchmarkByName, genericBenchmark } from '../eval/benchmarks/index.js';
import { evaluateBenchmarks, reportFromOutput, type EvaluationResult } from '../eval/evaluate.js';
import { ApiGenerator } from '../eval/generators/api.js';
import { EngineGenerator } from '../eval/generators/engine.js';
import { benchmarkFiles } from '../eval/load.js';
import { PAPER_FAMILIES, PAPER_RESULTS, familyOfHiddenSize } from '../eval/paper.js';
import { percent } from '../eval/report.js';
import { RunConfigError, type BenchmarkSource } from '../eval/runner.js';
import { TEMPLATE_NAMES, type BenchmarkDefinition, type Generator, type TemplateName } from '../eval/types.js';
import { LlmError, endpointFromEnv } from '../synth/llm.js';
import { CliError, UsageError } from './errors.js';
import { modelDirectory } from './model-arg.js';
import { Progress } from './progress.js';

const HELP = `usage: spatialthinker eval (--model DIR | --api-model NAME) --data DIR --out DIR [options]

Evaluates a model on the spatial benchmarks of the SpatialThinker paper from
local copies of their Hugging Face files (nothing is downloaded; the README's
"Evaluation" section says where to get each), with the paper's prompts,
greedy decoding and answer matching. Writes per-sample results
(OUT/samples/<benchmark>.jsonl), OUT/summary.json, OUT/report.md and
OUT/report.html (failures with their images). Running again with the same
--out continues where the last run stopped.

model (one of):
  --model DIR|ID          a Qwen2.5-VL model directory, or a Hub id (Org/Name) in
                          the local Hugging Face cache, run on the engine
  --api-model NAME        a model behind an OpenAI-compatible endpoint
    --api-base URL        its base URL (default $SPATIALTHINKER_LLM_BASE_URL,
                          else https://api.openai.com/v1); key: $OPENAI_API_KEY
    --concurrency N       requests in flight (default 8)
    --cache DIR           reply cache (default OUT/api-cache)

benchmarks:
  --data DIR              one sub-folder per benchmark, as downloaded
  --benchmarks LIST       comma-separated names, "paper" (the default, unless
                          --generic is given) or "all"
  --bench NAME=PATH       a benchmark's files or folder elsewhere (repeatable)
  --skip-missing          leave out benchmarks whose files are not there
  --limit N               the first N questions of each benchmark
  --generic PATH          also evaluate a .parquet/.jsonl file or folder:
    --question-field F --answer-field F --image-field F (repeatable)
    [--choices-field F] [--task-field F] [--id-field F] [--generic-name NAME]
  --list                  list the benchmarks, their repositories and folders

prompts, decoding, scoring:
  --template T            spatial_thinker (default), reasoning, no_reasoning
  --max-new-tokens N      default 2048
  --batch-size N          engine prompts decoded together (default 16)
  --threads N             engine threads (default: all cores)
  --device NAME           the engine backend: cpu (default) or cuda
  --reference-matching    score as the reference script does: a multiple-choice
                          answer that is not exactly an option's text counts
                          as "A" (default: it is wrong unless it names an
                          option by text or letter)

report:
  --paper-model NAME      paper row to compare with (repeatable; default: the
                          Qwen2.5-VL-3B or -7B rows by the checkpoint's size,
                          else 7B)
  --failures N            wrong answers shown per benchmark (default 50)
  --report-only           rebuild the reports of --out without generating
`;

function integer(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${text}"`);
  return n;
}

function listing(): string {
  const lines = BENCHMARKS.map((b) => `  ${b.name.padEnd(17)} ${b.title.padEnd(28)} ${b.repo}${b.config ? ` (${b.config})` : ''} -> DATA/${b.folder}/${b.files[0]}`);
  return `benchmarks (${PAPER_BENCHMARKS.length} in "paper": ${PAPER_BENCHMARKS.join(', ')}):\n${lines.join('\n')}\n`;
}

async function isFolder(path: string): Promise<boolean | undefined> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return undefined;
  }
}

export async function evalCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      'api-model': { type: 'string' },
      'api-base': { type: 'string' },
      concurrency: { type: 'string' },
      cache: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      benchmarks: { type: 'string' },
      bench: { type: 'string', multiple: true },
      'skip-missing': { type: 'boolean' },
      limit: { type: 'string' },
      generic: { type: 'string' },
      'generic-name': { type: 'string' },
      'question-field': { type: 'string' },
      'answer-field': { type: 'string' },
      'choices-field': { type: 'string' },
      'image-field': { type: 'string', multiple: true },
      'task-field': { type: 'string' },
      'id-field': { type: 'string' },
      template: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      'batch-size': { type: 'string' },
      threads: { type: 'string' },
      device: { type: 'string' },
      'reference-matching': { type: 'boolean' },
      'paper-model': { type: 'string', multiple: true },
      failures: { type: 'string' },
      'report-only': { type: 'boolean' },
      list: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (values.list) {
    process.stdout.write(listing());
    return;
  }
  if (!values.out) throw new UsageError(`--out is required (--help shows the usage)`);
  const outDir = resolve(values.out);
  const template = (values.template ?? 'spatial_thinker') as TemplateName;
  if (!TEMPLATE_NAMES.includes(template)) throw new UsageError(`--template must be one of ${TEMPLATE_NAMES.join(', ')}, got "${values.template}"`);
  const limit = values.limit === undefined ? undefined : integer('limit', values.limit, 0, 1);
  const failuresPerBenchmark = integer('failures', values.failures, 50, 0);
  for (const model of values['paper-model'] ?? [])
    if (!PAPER_RESULTS.has(model)) throw new UsageError(`--paper-model: the paper has no row "${model}"; rows: ${[...PAPER_RESULTS.keys()].join(', ')}`);

  const sources = await benchmarkSources(values);
  if (sources.length === 0) throw new CliError('no benchmark to evaluate');
  if (values['report-only']) {
    const result = await guard(() => reportFromOutput(outDir, sources, { paperModels: values['paper-model'] ?? PAPER_FAMILIES['7b'], failuresPerBenchmark, ...(limit !== undefined ? { limit } : {}) }));
    printResult(result);
    return;
  }

  if ((values.model === undefined) === (values['api-model'] === undefined)) throw new UsageError(`give one of --model DIR or --api-model NAME (--help shows the usage)`);
  let generator: Generator;
  let paperModels: readonly string[] | undefined = values['paper-model'];
  if (values.model !== undefined) {
    const dir = resolve(modelDirectory(values.model, '--model'));
    const threads = values.threads === undefined ? undefined : integer('threads', values.threads, 1, 1);
    const device = values.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') throw new UsageError(`--device must be cpu or cuda, got "${device}"`);
    generator = await guard(() =>
      EngineGenerator.load(dir, {
        maxNewTokens: integer('max-new-tokens', values['max-new-tokens'], 2048, 1),
        batchSize: integer('batch-size', values['batch-size'], 16, 1),
        ...(threads !== undefined ? { threads } : {}),
        device,
      }),
    );
    if (!paperModels) {
      const family = familyOfHiddenSize((await readModelConfig(dir)).text.hidden);
      paperModels = PAPER_FAMILIES[family ?? '7b'];
    }
  } else {
    const endpoint = endpointFromEnv({ model: values['api-model'], ...(values['api-base'] ? { baseURL: values['api-base'] } : {}) });
    generator = new ApiGenerator({
      endpoint,
      maxTokens: integer('max-new-tokens', values['max-new-tokens'], 2048, 1),
      concurrency: integer('concurrency', values.concurrency, 8, 1),
      cacheDir: resolve(values.cache ?? join(outDir, 'api-cache')),
    });
  }

  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write('\nstopping after the answers in flight; run the same command again to continue\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  const progress = new Map<string, Progress>();
  try {
    const result = await guard(() =>
      evaluateBenchmarks({
        benchmarks: sources,
        generator,
        outDir,
        template,
        matching: values['reference-matching'] ? 'reference' : 'corrected',
        ...(limit !== undefined ? { limit } : {}),
        signal: controller.signal,
        paperModels: paperModels ?? PAPER_FAMILIES['7b'],
        failuresPerBenchmark,
        onProgress: (p) => {
          let bar = progress.get(p.benchmark);
          if (!bar) progress.set(p.benchmark, (bar = new Progress(`${p.benchmark}: answered`, 'questions')));
          bar.update(p.answered);
        },
      }),
    );
    for (const [name, bar] of progress) bar.done(result.runs.find((r) => r.definition.name === name)?.answered ?? 0);
    printResult(result);
    const failed = result.runs.reduce((n, r) => n + r.failures.length, 0);
    if (failed > 0) throw new CliError(`${failed} requests failed (listed in summary.json); run the same command again to retry them`);
  } catch (error) {
    if (controller.signal.aborted) throw new CliError(`interrupted; results so far are in ${outDir}/samples; run the same command again to continue`, 130);
    throw error;
  } finally {
    process.off('SIGINT', onSigint);
    await generator.close?.();
  }
}

/** Library errors that are the user's to fix become one-line CLI errors. */
async function guard<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof DataError || error instanceof RunConfigError || error instanceof LlmError) throw new CliError(error.message);
    throw error;
  }
}

type Values = Record<string, string | boolean | string[] | undefined>;

async function benchmarkSources(values: Values): Promise<BenchmarkSource[]> {
  const overrides = new Map<string, string>();
  for (const spec of (values['bench'] as string[] | undefined) ?? []) {
    const at = spec.indexOf('=');
    if (at <= 0) throw new UsageError(`--bench takes NAME=PATH, got "${spec}"`);
    overrides.set(spec.slice(0, at), resolve(spec.slice(at + 1)));
  }
  const list = (values['benchmarks'] as string | undefined) ?? (values['generic'] ? '' : 'paper');
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .flatMap((n) => (n === 'paper' ? PAPER_BENCHMARKS : n === 'all' ? BENCHMARKS.map((b) => b.name) : [n]));
  const definitions: BenchmarkDefinition[] = [];
  for (const name of new Set(names)) {
    const definition = benchmarkByName(name);
    if (!definition) throw new UsageError(`unknown benchmark "${name}"; run with --list to see them`);
    definitions.push(definition);
  }
  for (const name of overrides.keys())
    if (!definitions.some((d) => d.name === name)) throw new UsageError(`--bench ${name}=...: "${name}" is not among the benchmarks evaluated`);
  const generic = values['generic'] as string | undefined;
  if (generic !== undefined) {
    const path = resolve(generic);
    const folder = await isFolder(path);
    if (folder === undefined) throw new CliError(`--generic: no such file or folder: ${path}`);
    const question = values['question-field'] as string | undefined;
    const answer = values['answer-field'] as string | undefined;
    const images = (values['image-field'] as string[] | undefined) ?? [];
    if (!question || !answer || images.length === 0) throw new UsageError('--generic needs --question-field, --answer-field and at least one --image-field');
    const choices = values['choices-field'] as string | undefined;
    const task = values['task-field'] as string | undefined;
    const id = values['id-field'] as string | undefined;
    const name = (values['generic-name'] as string | undefined) ?? basename(path, extname(path));
    if (benchmarkByName(name)) throw new UsageError(`--generic-name "${name}" is a built-in benchmark's name; choose another`);
    definitions.push(
      genericBenchmark({ name, path, isFolder: folder, question, answer, images, ...(choices ? { choices } : {}), ...(task ? { task } : {}), ...(id ? { id } : {}) }),
    );
  }
  const needsData = definitions.some((d) => d.repo !== undefined && !overrides.has(d.name));
  const data = values['data'] as string | undefined;
  if (needsData && !data) throw new UsageError(`--data DIR is required (the folder with one sub-folder per benchmark) (--help shows the usage)`);
  const dataDir = resolve(data ?? '.');
  const sources: BenchmarkSource[] = [];
  for (const definition of definitions) {
    try {
      sources.push({ definition, files: await benchmarkFiles(definition, dataDir, overrides.get(definition.name)) });
    } catch (error) {
      if (!(error instanceof DataError)) throw error;
      if (!values['skip-missing']) throw new CliError(`${error.message}\n(--skip-missing leaves missing benchmarks out)`);
      process.stderr.write(`skipping ${definition.name}: ${error.message}\n`);
    }
  }
  return sources;
}

function printResult(result: EvaluationResult): void {
  const width = Math.max(...result.summaries.map((s) => s.title.length), 9);
  const lines = result.summaries.map(
    (s) => `${s.title.padEnd(width)}  ${percent(s.accuracy).padStart(12)}  (${s.correct}/${s.evaluated}${s.evaluated < s.total ? ` of ${s.total}` : ''}; ${s.otherMatching.mode} matching ${percent(s.otherMatching.accuracy, false)})`,
  );
  process.stdout.write(`${lines.join('\n')}\n\nwrote ${result.files.markdown}, ${result.files.html} and ${result.files.summary}\n`);
}
