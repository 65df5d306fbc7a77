/**
 * The whole evaluation path (loaders, prompts, API generator, matching,
 * results log, aggregation, reports) against a local OpenAI-compatible
 * server that answers each fixture question with a scripted reply, so every
 * count and table is known in advance.
 */
import './helpers-parquet-resolve.js';
import t from 'tap';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCHMARKS, benchmarkByName } from '../lib/eval/benchmarks/index.js';
import { evaluateBenchmarks, reportFromOutput } from '../lib/eval/evaluate.js';
import { ApiGenerator } from '../lib/eval/generators/api.js';
import { benchmarkFiles } from '../lib/eval/load.js';
import { scoreCompletion } from '../lib/eval/matching.js';
import { RunConfigError, claimOutputFolder, type BenchmarkSource } from '../lib/eval/runner.js';
import type { EvalRecord } from '../lib/eval/types.js';
import { writeBenchmarkFixtures, type BenchmarkFixture, type FixtureRow } from './helpers-eval.js';

const root = mkdtempSync(join(tmpdir(), 'st-eval-api-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const data = join(root, 'data');
const fixtures = await writeBenchmarkFixtures(data);
const rows: FixtureRow[] = fixtures.flatMap((f) => f.rows);
const KEY = 'sk-eval-test-secret';

interface Seen {
  text: string;
  images: number;
  textFirst: boolean;
  model: string;
  maxTokens: number;
  temperature: number;
}

/** A chat-completions endpoint that replies with the fixture row whose key is in the prompt. */
async function startServer(behaviour: (row: FixtureRow, n: number) => { status: number; reply?: string } = (row) => ({ status: 200, reply: row.reply }), delayMs = 0) {
  const seen: Seen[] = [];
  const calls = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const content = body.messages[0].content as { type: string; text?: string; image_url?: { url: string } }[];
      const text = content.find((c) => c.type === 'text')?.text ?? '';
      seen.push({
        text,
        images: content.filter((c) => c.type === 'image_url' && /^data:image\/(png|jpeg);base64,/.test(c.image_url?.url ?? '')).length,
        textFirst: content[0]?.type === 'text',
        model: body.model,
        maxTokens: body.max_tokens,
        temperature: body.temperature,
      });
      const row = rows.find((r) => text.includes(r.key));
      const n = calls.get(row?.key ?? '?') ?? 0;
      calls.set(row?.key ?? '?', n + 1);
      const { status, reply } = row ? behaviour(row, n) : { status: 404, reply: undefined };
      setTimeout(() => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify(
            status === 200
              ? { id: 'x', object: 'chat.completion', created: 0, model: body.model, choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: reply } }] }
              : { error: { message: `refused (status ${status}) for key ${req.headers.authorization}` } },
          ),
        );
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return { server, baseURL, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

async function sources(names = fixtures.map((f) => f.name)): Promise<BenchmarkSource[]> {
  return Promise.all(names.map(async (name) => ({ definition: benchmarkByName(name)!, files: await benchmarkFiles(benchmarkByName(name)!, data) })));
}

function readRecords(outDir: string, benchmark: string): EvalRecord[] {
  return readFileSync(join(outDir, 'samples', `${benchmark}.jsonl`), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as EvalRecord);
}

const expectedCorrect = (f: BenchmarkFixture, mode: 'corrected' | 'reference') => f.rows.filter((r) => r[mode]).length;

t.test('scripted answers: per-sample records, accuracies, tasks and tables are exactly as scripted', async (t) => {
  const api = await startServer();
  t.teardown(api.close);
  const outDir = join(root, 'corrected');
  const generator = new ApiGenerator({ endpoint: { baseURL: api.baseURL, model: 'scripted-vlm', apiKey: KEY }, concurrency: 3, cacheDir: join(root, 'cache') });
  const result = await evaluateBenchmarks({ benchmarks: await sources(), generator, outDir, paperModels: ['Qwen2.5-VL-7B', 'SpatialThinker-7B'], failuresPerBenchmark: 2 });

  t.equal(api.seen.length, rows.length, 'one request per question');
  for (const row of rows) t.equal(api.seen.filter((s) => s.text.includes(row.key)).length, 1, `the key "${row.key}" picks out one question`);
  t.ok(api.seen.every((s) => s.textFirst && s.model === 'scripted-vlm' && s.maxTokens === 2048 && s.temperature === 0), 'text first, then images; max_tokens 2048; temperature 0');
  t.equal(api.seen.find((s) => s.text.includes('Is the camera moving'))?.images, 2, 'both BLINK multi-view images sent');
  t.equal(api.seen.find((s) => s.text.includes('Is the mug'))?.images, 2, 'RoboSpatial rgb + depth');
  t.equal(api.seen.find((s) => s.text.includes('closer to the vehicle'))?.images, 1, 'a WebP-named PNG goes as an image');

  for (const fixture of fixtures) {
    const summary = result.summaries.find((s) => s.benchmark === fixture.name)!;
    const records = readRecords(outDir, fixture.name);
    t.equal(records.length, fixture.rows.length, `${fixture.name}: one record per question`);
    t.equal(summary.evaluated, fixture.rows.length);
    t.equal(summary.total, fixture.rows.length);
    t.equal(summary.correct, expectedCorrect(fixture, 'corrected'), `${fixture.name}: correct (corrected matching)`);
    t.equal(summary.otherMatching.correct, expectedCorrect(fixture, 'reference'), `${fixture.name}: correct under reference matching`);
    for (const record of records) {
      const row = fixture.rows.find((r) => record.prompt.includes(r.key))!;
      t.equal(record.completion, row.reply);
      t.equal(record.correct, row.corrected, `${record.id}: verdict`);
      t.equal(record.correct, scoreCompletion(record, record.completion, 'corrected').correct, 'the record agrees with the matching function');
      t.equal(record.matching, 'corrected');
    }
    for (const task of summary.tasks) {
      const taskRows = fixture.rows.filter((r) => r.task === task.task);
      t.equal(task.accuracy.n, taskRows.length, `${fixture.name}/${task.task}: n`);
      t.equal(task.correct, taskRows.filter((r) => r.corrected).length, `${fixture.name}/${task.task}: correct`);
    }
  }

  const md = readFileSync(result.files.markdown, 'utf8');
  t.match(md, /- template: spatial_thinker\n- matching: corrected/);
  t.match(md, /\| CV-Bench 2D \| 3 \| 66\.7 ± 27\.2 \| 66\.7 \|/, 'benchmark row: n, accuracy ± SE, reference-matching accuracy');
  // CV-Bench 2D = mean(Count 2/2, Relation 0/1) = 50; 3D = mean(Depth 1/1, Distance 1/1) = 100; Avg = 75.
  t.match(md, /\| CV-Bench 2D \| 50\.0 ± 0\.0 \| 69\.1 \| 77\.7 \| −19\.1 \|/, 'paper column: unweighted mean of Count and Relation, next to the paper');
  t.match(md, /\| CV-Bench 3D \| 100\.0 ± 0\.0 \| 68\.0 \| 78\.7 \| \+32\.0 \|/);
  t.match(md, /\| CV-Bench Avg \| 75\.0 ± 0\.0 \|/);
  t.match(md, /\| BLINK Avg \| 50\.0 ± 25\.0 \|/, 'BLINK Avg = mean of 1/2 and 1/2, SE = sqrt(se1² + se2²) / 2');
  t.match(md, /\| CV-Bench Count \| 100\.0 ± 0\.0 \| – \| 68\.7 \|/, 'sub-task columns the paper reports for some rows');
  t.match(md, /\| RoboSpatial-Home \| 100\.0 ± 0\.0 \| 70\.6 \| 76\.3 \|/, 'configuration + compatibility');
  t.match(md, /\| Mean of these 10 of the paper's 14 \|/, '10 of the Table 4 columns have loaders');
  const summaryJson = JSON.parse(readFileSync(result.files.summary, 'utf8'));
  t.equal(summaryJson.paper.columns['cv-bench'].ours.value, 0.75);
  t.equal(summaryJson.paper.columns['cv-bench'].paper['SpatialThinker-7B'], 78.2);
  const html = readFileSync(result.files.html, 'utf8');
  t.match(html, /<h2 id="failures-cv-bench-2d">CV-Bench 2D: 1 of 1 wrong answers<\/h2>/, 'failures section per benchmark');
  t.match(html, /<img src="data:image\/jpeg;base64,/, 'failure images inlined');
  t.match(html, /cv-bench-2d\/test_2d\.parquet#1/, 'the failing sample is named');
  t.notOk(html.includes(KEY) || md.includes(KEY), 'no key in the reports');

  await t.test('a second run in the same folder has nothing left to do', async (t) => {
    const again = await evaluateBenchmarks({ benchmarks: await sources(), generator, outDir, failuresPerBenchmark: 0 });
    t.equal(api.seen.length, rows.length, 'no new requests');
    t.same(
      again.runs.map((r) => [r.answered, r.resumed]),
      fixtures.map((f) => [0, f.rows.length]),
    );
  });

  await t.test('reference matching in a new folder: replies from the cache, scores as the reference', async (t) => {
    const refOut = join(root, 'reference');
    const ref = await evaluateBenchmarks({ benchmarks: await sources(), generator, outDir: refOut, matching: 'reference', failuresPerBenchmark: 0 });
    t.equal(api.seen.length, rows.length, 'every reply came from the cache');
    t.equal(generator.counts.cached, rows.length);
    for (const fixture of fixtures) {
      const s = ref.summaries.find((x) => x.benchmark === fixture.name)!;
      t.equal(s.correct, expectedCorrect(fixture, 'reference'), `${fixture.name}: reference verdicts`);
      t.equal(s.otherMatching.correct, expectedCorrect(fixture, 'corrected'));
    }
    t.ok(readRecords(refOut, 'cv-bench-2d').every((r) => r.matching === 'reference'));
  });

  await t.test('an output folder refuses another configuration', async (t) => {
    await t.rejects(evaluateBenchmarks({ benchmarks: await sources(['mmvp']), generator, outDir, template: 'reasoning' }), RunConfigError);
    await t.rejects(
      evaluateBenchmarks({ benchmarks: await sources(['mmvp']), generator, outDir, matching: 'reference' }),
      /another configuration \(matching corrected -> reference\); use a new output folder \(the report of a run already shows accuracy under both matching modes\)/,
    );
    const fresh = join(root, 'fresh');
    await claimOutputFolder(fresh, { template: 'spatial_thinker', matching: 'corrected', generator: generator.identity });
    await claimOutputFolder(fresh, { template: 'reasoning', matching: 'corrected', generator: generator.identity });
    t.equal(JSON.parse(readFileSync(join(fresh, 'run.json'), 'utf8')).template, 'reasoning', 'a folder without answers takes the new configuration');
  });

  await t.test('reports rebuilt from the folder alone', async (t) => {
    const rebuilt = await reportFromOutput(outDir, await sources(), { paperModels: ['SpatialThinker-3B'], failuresPerBenchmark: 0 });
    t.same(
      rebuilt.summaries.map((s) => [s.benchmark, s.correct]),
      result.summaries.map((s) => [s.benchmark, s.correct]),
    );
    t.match(readFileSync(rebuilt.files.markdown, 'utf8'), /\| CV-Bench Count \| 100\.0 ± 0\.0 \| 68\.5 \| \+31\.5 \|/, 'Table 9 (SpatialThinker-3B)');
  });
});

t.test('an interrupted run continues where it stopped: nothing duplicated, nothing lost', async (t) => {
  const api = await startServer(undefined, 15);
  t.teardown(api.close);
  const outDir = join(root, 'resume');
  const cacheDir = join(root, 'resume-cache');
  const all = await sources();
  const total = rows.length;
  const controller = new AbortController();
  let answered = 0;
  const generator = new ApiGenerator({ endpoint: { baseURL: api.baseURL, model: 'scripted-vlm' }, concurrency: 2, cacheDir });
  await t.rejects(
    evaluateBenchmarks({
      benchmarks: all,
      generator,
      outDir,
      signal: controller.signal,
      onProgress: (p) => {
        // Stop in the middle of the third benchmark.
        if (p.benchmark === all[2]!.definition.name && p.answered >= 1) controller.abort();
        answered = p.answered;
      },
    }),
    { name: 'AbortError' },
  );
  t.ok(answered >= 1);
  const partial = all.map((s) => {
    try {
      return readRecords(outDir, s.definition.name).length;
    } catch {
      return 0;
    }
  });
  const written = partial.reduce((a, b) => a + b, 0);
  t.ok(written > 0 && written < total, `stopped part way (${written} of ${total})`);
  t.equal(partial[0], fixtures[0]!.rows.length, 'the first benchmark was finished');

  const resumed = await evaluateBenchmarks({ benchmarks: all, generator: new ApiGenerator({ endpoint: { baseURL: api.baseURL, model: 'scripted-vlm' }, concurrency: 2, cacheDir }), outDir, failuresPerBenchmark: 0 });
  t.equal(
    resumed.runs.reduce((n, r) => n + r.resumed, 0),
    written,
    'the second run skips what the first wrote',
  );
  for (const fixture of fixtures) {
    const records = readRecords(outDir, fixture.name);
    const ids = records.map((r) => r.id);
    t.equal(ids.length, fixture.rows.length, `${fixture.name}: every question once`);
    t.equal(new Set(ids).size, ids.length, `${fixture.name}: no duplicates`);
    t.equal(resumed.summaries.find((s) => s.benchmark === fixture.name)!.correct, expectedCorrect(fixture, 'corrected'), `${fixture.name}: same scores as an uninterrupted run`);
  }
});

t.test('request failures', async (t) => {
  await t.test('a refused request fails its sample only; a later run retries it', async (t) => {
    const api = await startServer((row, n) => (row.key === 'How many cups' && n === 0 ? { status: 400 } : { status: 200, reply: row.reply }));
    t.teardown(api.close);
    const outDir = join(root, 'refused');
    const generator = new ApiGenerator({ endpoint: { baseURL: api.baseURL, model: 'scripted-vlm', apiKey: KEY }, cacheDir: join(root, 'refused-cache') });
    const first = await evaluateBenchmarks({ benchmarks: await sources(['cv-bench-2d']), generator, outDir, failuresPerBenchmark: 0 });
    t.equal(first.runs[0]!.failures.length, 1);
    t.match(first.runs[0]!.failures[0]!.id, /test_2d\.parquet#2$/);
    t.notOk(first.runs[0]!.failures[0]!.error.includes(KEY), 'the key is redacted from the error');
    t.equal(readRecords(outDir, 'cv-bench-2d').length, 2, 'the failed sample is not recorded');
    t.match(readFileSync(join(outDir, 'report.md'), 'utf8'), /\| CV-Bench 2D \| 2 \|[^\n]*\| 2 of 3, 1 failed requests \|/);
    const second = await evaluateBenchmarks({ benchmarks: await sources(['cv-bench-2d']), generator, outDir, failuresPerBenchmark: 0 });
    t.same([second.runs[0]!.answered, second.runs[0]!.resumed, second.runs[0]!.failures.length], [1, 2, 0]);
    t.equal(readRecords(outDir, 'cv-bench-2d').length, 3);
  });

  await t.test('an authentication failure stops the run, key redacted', async (t) => {
    const api = await startServer(() => ({ status: 401 }));
    t.teardown(api.close);
    const generator = new ApiGenerator({ endpoint: { baseURL: api.baseURL, model: 'scripted-vlm', apiKey: KEY }, cacheDir: join(root, 'auth-cache') });
    const error = await evaluateBenchmarks({ benchmarks: await sources(['mmvp']), generator, outDir: join(root, 'auth'), failuresPerBenchmark: 0 }).then(
      () => undefined,
      (e: Error) => e,
    );
    t.match(error?.message, /HTTP 401/);
    t.notOk(error?.message.includes(KEY), 'no key in the message');
  });
});

t.test('the registry covers every fixture', async (t) => {
  t.same(new Set(fixtures.map((f) => f.name)), new Set(BENCHMARKS.map((b) => b.name).filter((n) => n !== 'robospatial-rgb')));
});
