/**
 * Calls on one model from concurrent callers: they run one at a time in the
 * order they were made, a call waiting for the model holds no libuv thread
 * (file reads go on meanwhile), and an abort reaches only the call whose
 * signal fired.
 */
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, type PromptInput } from '../lib/engine/model.js';
import { randomCheckpointTokens, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';

const root = mkdtempSync(join(tmpdir(), 'st-model-calls-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const dir = join(root, 'model');
await writeRandomCheckpoint(dir, { seed: 11 });
const model = await Model.load(dir);
t.teardown(() => model.dispose());
const tok = randomCheckpointTokens(1024);

const prompt = (seed: number): PromptInput => ({ ids: [tok.imStart, 5 + seed, 17, 40 + seed, 9, 3 * seed + 1] });
const greedy = (tokens: number) => ({ greedy: true, maxNewTokens: tokens, stopTokenIds: [] });
const LONG = 48;

t.test('concurrent calls queue on the JS thread: a file read is not stuck behind them, results come back right and in order', async (t) => {
  const libuvThreads = Number(process.env['UV_THREADPOOL_SIZE'] ?? 4);
  const count = libuvThreads + 2;
  // Long enough (about 0.1 s here) that a read stuck behind a call shows.
  const heavy = { ...greedy(150), samples: 8 };
  // What each call returns when it runs alone.
  const alone: (Int32Array | Float32Array)[] = [];
  for (let i = 0; i < count; i++) {
    if (i % 2 === 0) alone.push((await model.generate([prompt(i)], heavy))[0]!.tokens);
    else alone.push((await model.logprobs([prompt(i)], [alone[i - 1] as Int32Array]))[0]!);
  }

  const settled: number[] = [];
  let readDoneAfter = -1;
  const calls = Array.from({ length: count }, (_, i) =>
    (i % 2 === 0
      ? model.generate([prompt(i)], heavy).then((c) => c[0]!.tokens as Int32Array | Float32Array)
      : model.logprobs([prompt(i)], [alone[i - 1] as Int32Array]).then((rows) => rows[0]!)
    ).then((value) => {
      settled.push(i);
      return value;
    }),
  );
  // Queued behind every model call on the libuv pool if waiting calls held its threads.
  const read = readFile(new URL(import.meta.url)).then(() => (readDoneAfter = settled.length));
  const results = await Promise.all(calls);
  await read;
  t.equal(readDoneAfter, 0, `the file read finished before the first of ${count} model calls (${libuvThreads} libuv threads)`);
  t.same(settled, Array.from({ length: count }, (_, i) => i), 'the calls settled in the order they were made');
  results.forEach((r, i) => t.same(Array.from(r), Array.from(alone[i]!), `call ${i} (${i % 2 === 0 ? 'generate' : 'logprobs'}) equals the same call alone`));
});

t.test('aborting one generate leaves the other calls on the model alone', async (t) => {
  const [reference] = await model.generate([prompt(1)], greedy(LONG));
  // A is running when it is aborted; B waits behind it.
  const a = new AbortController();
  const first = model.generate([prompt(0)], { ...greedy(100_000), signal: a.signal, onToken: () => a.abort() });
  const second = model.generate([prompt(1)], greedy(LONG));
  const [cancelled] = await first;
  const [other] = await second;
  t.equal(cancelled!.finishReason, 'cancelled', 'the aborted call is cancelled');
  t.ok(cancelled!.tokens.length >= 1 && cancelled!.tokens.length < 100_000, `with the tokens sampled before the abort (${cancelled!.tokens.length})`);
  t.equal(other!.finishReason, 'length', 'the other call runs to its end');
  t.same(Array.from(other!.tokens), Array.from(reference!.tokens), 'with all its tokens, as when run alone');

  // Aborting a call still waiting for the model: it never starts, the running one finishes.
  const b = new AbortController();
  const running = model.generate([prompt(2)], greedy(LONG));
  const waiting = model.generate([prompt(3), prompt(4)], { ...greedy(LONG), samples: 2, signal: b.signal });
  b.abort();
  const [done] = await running;
  const never = await waiting;
  t.equal(done!.tokens.length, LONG, 'the running call finishes');
  t.same(
    never.map((c) => [c.prompt, c.sample, c.finishReason, c.tokens.length]),
    [
      [0, 0, 'cancelled', 0],
      [0, 1, 'cancelled', 0],
      [1, 0, 'cancelled', 0],
      [1, 1, 'cancelled', 0],
    ],
    'the waiting call resolves with every completion cancelled and empty, each with its prompt and sample',
  );
  const already = await model.generate([prompt(5)], { ...greedy(4), signal: AbortSignal.abort() });
  t.same(already.map((c) => [c.finishReason, c.tokens.length]), [['cancelled', 0]], 'an already aborted signal resolves at once');
});

t.test('aborting one logprobs call leaves the others alone', async (t) => {
  const completion = Int32Array.from([7, 8, 9, 10, 11]);
  const [reference] = await model.logprobs([prompt(6)], [completion]);
  const a = new AbortController();
  const blocker = model.generate([prompt(7)], greedy(LONG));
  const aborted = model.logprobs([prompt(6)], [completion], { signal: a.signal });
  const kept = model.logprobs([prompt(6)], [completion]);
  a.abort();
  await blocker;
  t.same(await aborted, [], 'the aborted call, still waiting, resolves with no rows');
  const [row] = await kept;
  t.same(Array.from(row!), Array.from(reference!), 'the other call returns its full result');
  // A generate aborted while a logprobs call waits behind it: the logprobs call is untouched.
  const g = new AbortController();
  const gen = model.generate([prompt(8)], { ...greedy(100_000), signal: g.signal, onToken: () => g.abort() });
  const after = model.logprobs([prompt(6)], [completion]);
  t.equal((await gen)[0]!.finishReason, 'cancelled');
  t.same(Array.from((await after)[0]!), Array.from(reference!), 'logprobs after an aborted generate is complete');
});

t.test('a stop request reaches only its own call', async (t) => {
  const [reference] = await model.generate([prompt(9)], greedy(12));
  // The request travels from the JS thread while the engine decodes: it lands a few tokens late.
  const stopped = model.generate([prompt(9)], { ...greedy(100_000), onToken: (_p, _s, _token, stop) => stop() });
  const other = model.generate([prompt(9)], greedy(12));
  const [s] = await stopped;
  const [o] = await other;
  t.equal(s!.finishReason, 'stop');
  t.ok(s!.tokens.length < 100_000, `the stopped completion ended early (${s!.tokens.length} tokens)`);
  t.same(Array.from(o!.tokens), Array.from(reference!.tokens), 'the other call is untouched');
});

t.test('the addon requires every option: defaults live in TypeScript', async (t) => {
  const { native } = await import('../lib/native/binding.js');
  const { readModelConfig } = await import('../lib/engine/config.js');
  const config = await readModelConfig(dir);
  const raw = await native().loadModel({ dir, config, device: 'cpu', imageCacheBytes: 0 });
  const args = { call: 1, prompts: [{ ids: Int32Array.of(1, 2, 3) }], samples: 1, maxNewTokens: 2, maxBatch: 1, seed: 0, firstPromptIndex: 0, promptIndexStride: 1, greedy: true, temperature: 1, topK: 0, topP: 1, stopTokenIds: new Int32Array(0), keepStepLogits: false };
  const { topP: _omitted, ...withoutTopP } = args;
  t.throws(() => raw.generate(withoutTopP as typeof args), /generate: `topP` is required/);
  const { temperature: _t, ...withoutTemperature } = { call: 2, prompts: [{ ids: Int32Array.of(1) }], completions: [Int32Array.of(2)], temperature: 1 };
  t.throws(() => raw.logprobs(withoutTemperature as { call: number; prompts: { ids: Int32Array }[]; completions: Int32Array[]; temperature: number }), /logprobs: `temperature` is required/);
  t.equal((await raw.generate(args))[0]!.tokens.length, 2, 'with every field the call runs');
  await raw.dispose();
  t.equal(raw.info(), null, 'a disposed model says so');
});
