/**
 * Every benchmark fixture end to end on the native engine with a random tiny
 * Qwen2.5-VL (real tokenizer): its text is noise, so the checks are that
 * each question is answered once, every record's verdict is the matching
 * function's, the tables agree with the records, and an interrupted run
 * resumes. Also the `spatialthinker eval` command.
 */
import './helpers-parquet-resolve.js';
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchmarkByName } from '../lib/eval/benchmarks/index.js';
import { evaluateBenchmarks } from '../lib/eval/evaluate.js';
import { EngineGenerator } from '../lib/eval/generators/engine.js';
import { benchmarkFiles } from '../lib/eval/load.js';
import { scoreCompletion } from '../lib/eval/matching.js';
import type { BenchmarkSource } from '../lib/eval/runner.js';
import { SPATIAL_THINKER_TEMPLATE } from '../lib/eval/templates.js';
import type { EvalRecord } from '../lib/eval/types.js';
import { writeBenchmarkFixtures } from './helpers-eval.js';
import { writeQwenTestModel } from './helpers-model.js';

const root = mkdtempSync(join(tmpdir(), 'st-eval-engine-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const data = join(root, 'data');
const modelDir = join(root, 'model');
const [fixtures] = await Promise.all([writeBenchmarkFixtures(data), writeQwenTestModel(modelDir)]);
const MAX_NEW_TOKENS = 8;
const generator = await EngineGenerator.load(modelDir, { maxNewTokens: MAX_NEW_TOKENS, batchSize: 6 });
t.teardown(() => generator.close());

async function sources(names = fixtures.map((f) => f.name)): Promise<BenchmarkSource[]> {
  return Promise.all(names.map(async (name) => ({ definition: benchmarkByName(name)!, files: await benchmarkFiles(benchmarkByName(name)!, data) })));
}

function readRecords(outDir: string, benchmark: string): EvalRecord[] {
  return readFileSync(join(outDir, 'samples', `${benchmark}.jsonl`), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as EvalRecord);
}

t.test('every benchmark through the engine: records, verdicts and tables agree', async (t) => {
  const outDir = join(root, 'all');
  const result = await evaluateBenchmarks({ benchmarks: await sources(), generator, outDir, failuresPerBenchmark: 1 });
  t.same(generator.identity, { backend: 'engine', model: modelDir, weights: generator.identity['weights'], decoding: 'greedy', maxNewTokens: MAX_NEW_TOKENS });
  for (const fixture of fixtures) {
    const records = readRecords(outDir, fixture.name);
    const summary = result.summaries.find((s) => s.benchmark === fixture.name)!;
    t.equal(records.length, fixture.rows.length, `${fixture.name}: every question answered once`);
    t.equal(new Set(records.map((r) => r.id)).size, records.length);
    for (const r of records) {
      t.ok(r.tokens! >= 1 && r.tokens! <= MAX_NEW_TOKENS, `${r.id}: at most ${MAX_NEW_TOKENS} tokens`);
      t.ok(r.finishReason === 'length' || r.finishReason === 'stop');
      t.ok(r.prompt.startsWith(SPATIAL_THINKER_TEMPLATE), 'the spatial_thinker prompt');
      const scored = scoreCompletion(r, r.completion, 'corrected');
      t.same([r.extracted, r.prediction, r.groundTruth, r.correct], [scored.extracted, scored.prediction, scored.groundTruth, scored.correct], `${r.id}: scored by the matching function`);
    }
    t.equal(summary.evaluated, records.length);
    t.equal(summary.correct, records.filter((r) => r.correct).length, `${fixture.name}: correct count`);
    t.equal(summary.otherMatching.correct, records.filter((r) => scoreCompletion(r, r.completion, 'reference').correct).length, `${fixture.name}: reference count`);
    t.equal(summary.truncated, records.filter((r) => r.finishReason === 'length').length);
    t.equal(
      summary.tasks.reduce((n, task) => n + task.accuracy.n, 0),
      records.filter((r) => r.task !== undefined).length,
      `${fixture.name}: tasks partition the records`,
    );
  }
  const md = readFileSync(result.files.markdown, 'utf8');
  for (const s of result.summaries) t.ok(md.includes(`| ${s.title} | ${s.evaluated} |`), `${s.title} in the markdown table`);
  t.match(md, /## Against the paper\n\n\| Paper column \| Ours % ± SE \| Qwen2\.5-VL-7B \|/);
  t.ok(existsSync(result.files.html) && existsSync(result.files.summary));
});

t.test('an engine run aborted between batches resumes without duplicates or losses', async (t) => {
  const outDir = join(root, 'resume');
  const all = await sources(['cv-bench-2d', '3dsrbench', 'spatialbench']);
  // Two prompts per engine call, so 3DSRBench's four questions take two calls.
  const pairs = await EngineGenerator.load(modelDir, { maxNewTokens: MAX_NEW_TOKENS, batchSize: 2 });
  t.teardown(() => pairs.close());
  const controller = new AbortController();
  await t.rejects(
    evaluateBenchmarks({
      benchmarks: all,
      generator: pairs,
      outDir,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.benchmark === '3dsrbench' && p.answered >= 1) controller.abort();
      },
    }),
    { name: 'AbortError' },
  );
  t.equal(readRecords(outDir, '3dsrbench').length, 2, 'the answers of the call in progress are kept, the next call is not made');
  t.equal(existsSync(join(outDir, 'samples', 'spatialbench.jsonl')), false, 'the next benchmark was not started');
  const resumed = await evaluateBenchmarks({ benchmarks: all, generator: pairs, outDir, failuresPerBenchmark: 0 });
  t.same(
    resumed.runs.map((r) => [r.definition.name, r.resumed, r.answered]),
    [
      ['cv-bench-2d', 3, 0],
      ['3dsrbench', 2, 2],
      ['spatialbench', 0, 2],
    ],
  );
  for (const name of ['cv-bench-2d', '3dsrbench', 'spatialbench']) {
    const ids = readRecords(outDir, name).map((r) => r.id);
    t.equal(new Set(ids).size, ids.length, `${name}: no duplicates`);
  }
  t.equal(readRecords(outDir, '3dsrbench').length, 4, 'nothing lost');
});

t.test('an abort during generation delivers only finished answers', async (t) => {
  const long = await EngineGenerator.load(modelDir, { maxNewTokens: 3000, batchSize: 4 });
  t.teardown(() => long.close());
  const [source] = await sources(['3dsrbench']);
  const requests = [];
  for await (const sample of (await import('../lib/eval/load.js')).loadSamples(source!.definition, source!.files))
    requests.push({ id: sample.id, images: sample.images, text: sample.question });
  const controller = new AbortController();
  const delivered: { tokens?: number; finishReason?: string }[] = [];
  const started = Date.now();
  setTimeout(() => controller.abort(), 100);
  await long.generate(requests, { signal: controller.signal, onResult: (g) => void delivered.push(g), onError: () => t.fail('no request errors') });
  t.ok(Date.now() - started < 20_000, 'generation stopped early');
  t.ok(controller.signal.aborted);
  t.ok(
    delivered.every((g) => g.finishReason === 'stop' || g.tokens === 3000),
    `every delivered answer is complete (${delivered.length} delivered: ${delivered.map((g) => `${g.finishReason}/${g.tokens}`).join(', ')})`,
  );
});

t.test('spatialthinker eval', async (t) => {
  const out = join(root, 'cli');
  const common = ['--model', modelDir, '--data', data, '--out', out, '--max-new-tokens', '4', '--batch-size', '4', '--failures', '1'];
  // The installed command, once; the rest in-process (same code, without paying for a new process each time).
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'eval', ...common, '--benchmarks', 'cv-bench-2d,blink-multi-view', '--limit', '2'], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  t.match(run.stdout, /CV-Bench 2D\s+\S+ ± \S+\s+\(\d\/2; reference matching \S+\)/);
  t.match(run.stdout, /BLINK Multi-view Reasoning/);
  t.equal(readRecords(out, 'cv-bench-2d').length, 2, '--limit 2');

  const { evalCommand } = await import('../lib/cli/eval.js');
  const { CliError } = await import('../lib/cli/errors.js');
  const captured = async (args: string[]) => {
    const write = process.stdout.write.bind(process.stdout);
    let text = '';
    process.stdout.write = ((chunk: string | Uint8Array) => {
      text += String(chunk);
      return true;
    }) as typeof process.stdout.write;
    try {
      await evalCommand(args);
    } finally {
      process.stdout.write = write;
    }
    return text;
  };
  await captured([...common, '--benchmarks', 'cv-bench-2d,blink-multi-view']);
  t.equal(readRecords(out, 'cv-bench-2d').length, 3, 'without the limit the run adds the rest');
  await captured(['--out', out, '--data', data, '--benchmarks', 'cv-bench-2d,blink-multi-view', '--report-only', '--paper-model', 'SpatialThinker-3B']);
  t.match(readFileSync(join(out, 'report.md'), 'utf8'), /\| Paper column \| Ours % ± SE \| SpatialThinker-3B \| Δ vs SpatialThinker-3B \|/);
  t.match(await captured(['--list']), /cv-bench-2d\s+CV-Bench 2D\s+nyu-visionx\/CV-Bench \(2D\) -> DATA\/CV-Bench\/test_2d\.parquet/);

  const fails = async (args: string[], pattern: RegExp) => {
    const error = await captured(args).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(error instanceof CliError, `${args.join(' ')}: a CLI error`);
    t.match((error as Error | undefined)?.message, pattern);
  };
  await fails([...common, '--benchmarks', 'cv-bench-2d', '--template', 'no_reasoning'], /holds results of another configuration \(template spatial_thinker -> no_reasoning\)/);
  await fails([...common, '--benchmarks', 'mmvp', '--bench', `mmvp=${join(root, 'nope')}`], /MMVP: no folder .*nope; get it with `huggingface-cli download hunarbatra\/MMVP --repo-type dataset/);
  await fails(['--out', out, '--benchmarks', 'cvbench', '--data', data], /unknown benchmark "cvbench"; run with --list/);
  await fails(['--data', data], /--out is required/);
  await fails(['--out', out, '--data', data, '--paper-model', 'GPT-6'], /the paper has no row "GPT-6"/);
  await fails(['--out', out, '--data', data, '--template', 'fancy'], /--template must be one of spatial_thinker, reasoning, no_reasoning/);
  await fails(['--out', out, '--data', data, '--benchmarks', 'mmvp'], /give one of --model DIR or --api-model NAME/);
});
