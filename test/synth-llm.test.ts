import t from 'tap';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endpointFromEnv, LlmError, Semaphore } from '../lib/synth/llm.js';
import { groundTruthLetter, parseMcLetter, validateMultipleChoice, type McRow } from '../lib/synth/llm-validate.js';
import { LlmCache } from '../lib/synth/llm-cache.js';

const KEY = 'sk-test-secret';
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
const JPEG = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 4, 5, 6]);

interface Mock {
  server: Server;
  baseURL: string;
  requests: number;
  inFlight: number;
  maxInFlight: number;
  perRow: Map<string, number>;
  statuses: number[];
  bodies: any[];
  auth: Set<string>;
}

/** Scripted behaviour per row tag `[tag]` found in the prompt; `n` = 0-based call index for that tag. */
type Script = (tag: string, n: number, res: ServerResponse, reply: (content: string) => void) => void;

async function startMock(script: Script): Promise<Mock> {
  const m: Mock = {
    server: undefined as unknown as Server,
    baseURL: '',
    requests: 0,
    inFlight: 0,
    maxInFlight: 0,
    perRow: new Map(),
    statuses: [],
    bodies: [],
    auth: new Set(),
  };
  m.server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      m.requests++;
      m.inFlight++;
      m.maxInFlight = Math.max(m.maxInFlight, m.inFlight);
      m.auth.add(String(req.headers.authorization ?? ''));
      const finish = (status: number, body: unknown) => {
        setTimeout(() => {
          m.inFlight--;
          m.statuses.push(status);
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        }, 15);
      };
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        finish(404, { error: { message: 'not found' } });
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      m.bodies.push(body);
      const text: string = body.messages[0].content[0].text;
      const tag = /\[([a-z0-9-]+)\]/.exec(text)?.[1] ?? '?';
      const n = m.perRow.get(tag) ?? 0;
      m.perRow.set(tag, n + 1);
      const reply = (content: string) =>
        finish(200, {
          id: 'cmpl-1',
          object: 'chat.completion',
          created: 0,
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
        });
      // stash the real `finish` on res for scripts that send errors
      (res as any).finish = finish;
      script(tag, n, res, reply);
    });
  });
  await new Promise<void>((resolve) => m.server.listen(0, '127.0.0.1', resolve));
  const port = (m.server.address() as AddressInfo).port;
  m.baseURL = `http://127.0.0.1:${port}/v1`;
  return m;
}

const fail = (res: ServerResponse, status: number, body: unknown = { error: { message: 'nope' } }) =>
  (res as any).finish(status, body);

function row(id: string, answer: string, image: Uint8Array = JPEG): McRow {
  return {
    id,
    imageBytes: image,
    question_with_options: `[${id}] Where is the cup relative to the table?\n(A) on\n(B) under\n(C) left of\n(D) right of`,
    answer_only: answer,
  };
}

const ROWS: McRow[] = [
  row('r0', 'A'),
  row('r1', 'B', PNG),
  row('r2', '(C)'),
  row('r3', 'A'), // always wrong -> dropped after 4 attempts
  row('r4', 'D'), // 429 then right
  row('r5', 'B'), // 500, 500, then right
  row('r6', 'C'), // wrong twice, right on the 3rd attempt (second phase) -> kept
  row('r7', 'A'), // always wrong -> dropped
  row('r8', 'B'), // right
  row('r9', 'D'), // right
];
const GT = new Map(ROWS.map((r) => [r.id, groundTruthLetter(r.answer_only)!]));
const wrong = (l: string) => (l === 'A' ? 'B' : 'A');

const mainScript: Script = (tag, n, res, reply) => {
  const gt = GT.get(tag) ?? 'A';
  switch (tag) {
    case 'r3':
    case 'r7':
      return reply(` ${wrong(gt)}.`);
    case 'r4':
      return n === 0 ? fail(res, 429, { error: { message: 'rate limited' } }) : reply(gt);
    case 'r5':
      return n < 2 ? fail(res, 500) : reply(`${gt}`);
    case 'r6':
      return n < 2 ? reply(wrong(gt)) : reply(`${gt})`);
    default:
      return reply(gt);
  }
};

t.test('helpers', async (t) => {
  t.equal(parseMcLetter('  B.'), 'B');
  t.equal(parseMcLetter('(C) left'), 'C');
  t.equal(parseMcLetter('none'), null);
  t.equal(groundTruthLetter('(B)'), 'B');
  t.equal(groundTruthLetter('d'), 'D');
  t.equal(groundTruthLetter('(A) on'), 'A');
  const ep = endpointFromEnv({}, {
    SPATIALTHINKER_LLM_BASE_URL: 'http://127.0.0.1:1/v1',
    SPATIALTHINKER_LLM_MODEL: 'm',
    OPENAI_API_KEY: 'k',
  });
  t.same(ep, { baseURL: 'http://127.0.0.1:1/v1', model: 'm', apiKey: 'k' });
  t.same(endpointFromEnv({ model: 'x', baseURL: 'http://h/v1' }, {}), { baseURL: 'http://h/v1', model: 'x' });
  t.equal(endpointFromEnv({}, {}).model, 'gpt-4o');

  const sem = new Semaphore(2);
  let active = 0;
  let peak = 0;
  await Promise.all(
    Array.from({ length: 8 }, () =>
      sem.run(async () => {
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setTimeout(r, 5));
        active--;
      }),
    ),
  );
  t.equal(peak, 2);
});

t.test('cache is atomic JSON under hashed names', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'st-llm-cache-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const c = new LlmCache<{ v: number }>(dir);
  t.equal(await c.get(['a', 1]), undefined);
  await c.set(['a', 1], { v: 3 });
  t.same(await c.get(['a', 1]), { v: 3 });
  const files = await readdir(dir);
  t.equal(files.length, 1);
  t.match(files[0], /^[0-9a-f]{64}\.json$/);
});

t.test('validateMultipleChoice against a scripted local server', async (t) => {
  const mock = await startMock(mainScript);
  t.teardown(() => new Promise<void>((r) => mock.server.close(() => r())));
  const cacheDir = await mkdtemp(join(tmpdir(), 'st-llm-'));
  t.teardown(() => rm(cacheDir, { recursive: true, force: true }));
  const endpoint = { baseURL: mock.baseURL, model: 'gpt-4o', apiKey: KEY };
  const progress: number[] = [];

  const res = await validateMultipleChoice(ROWS, {
    endpoint,
    concurrency: 3,
    cacheDir,
    retry: { baseDelayMs: 5, maxDelayMs: 50 },
    onProgress: (p) => progress.push(p.done),
  });
  t.same(res.kept.sort(), ['r0', 'r1', 'r2', 'r4', 'r5', 'r6', 'r8', 'r9']);
  t.same(res.dropped.sort(), ['r3', 'r7']);
  t.equal(res.passRate, 0.8);
  t.equal(res.cached, 0);
  t.equal(res.retries, 3, 'one 429 retry + two 500 retries');
  t.equal(mock.perRow.get('r4'), 2);
  t.equal(mock.perRow.get('r5'), 3);
  t.equal(mock.perRow.get('r3'), 4, 'dropped rows use all 2+2 attempts');
  t.equal(mock.perRow.get('r6'), 3, 'stops at the first matching answer');
  t.equal(mock.perRow.get('r0'), 1);
  t.ok(mock.statuses.includes(429) && mock.statuses.includes(500));
  t.ok(mock.maxInFlight <= 3, `max in flight ${mock.maxInFlight} <= 3`);
  t.ok(mock.maxInFlight >= 2, 'requests actually overlap');
  t.same(mock.auth, new Set([`Bearer ${KEY}`]));
  t.equal(progress.length, ROWS.length);
  const b = mock.bodies[0];
  t.equal(b.temperature, 0);
  t.equal(b.max_tokens, 10);
  t.equal(b.model, 'gpt-4o');
  t.match(b.messages[0].content[0].text, /^Answer the following multiple choice question about the image/);
  t.match(b.messages[0].content[0].text, /Reply with only the letter of the correct answer \(A, B, C, or D\)/);
  t.equal(b.messages[0].content[1].type, 'image_url');
  t.equal(b.messages[0].content[1].image_url.detail, 'high');
  const urls = mock.bodies.map((x) => x.messages[0].content[1].image_url.url as string);
  t.ok(urls.some((u) => u.startsWith('data:image/jpeg;base64,')));
  t.ok(urls.includes(`data:image/png;base64,${Buffer.from(PNG).toString('base64')}`));

  // second run, same cache: zero HTTP requests, same result
  const before = mock.requests;
  const again = await validateMultipleChoice(ROWS, { endpoint, concurrency: 3, cacheDir });
  t.equal(mock.requests, before, 'no HTTP requests on a cached re-run');
  t.same(again.kept.sort(), res.kept.sort());
  t.same(again.dropped.sort(), res.dropped.sort());
  t.equal(again.passRate, 0.8);
  t.equal(again.cached, 1 + 1 + 1 + 4 + 1 + 1 + 3 + 4 + 1 + 1);
  t.equal(again.requests, 0);

  // a different model is a different cache key
  const other = await validateMultipleChoice([ROWS[0]!], {
    endpoint: { ...endpoint, model: 'other' },
    cacheDir,
  });
  t.equal(other.cached, 0);
  t.equal(mock.requests, before + 1);
});

t.test('concurrency limit of 1 and partial-cache resume', async (t) => {
  const mock = await startMock(mainScript);
  t.teardown(() => new Promise<void>((r) => mock.server.close(() => r())));
  const cacheDir = await mkdtemp(join(tmpdir(), 'st-llm-'));
  t.teardown(() => rm(cacheDir, { recursive: true, force: true }));
  const endpoint = { baseURL: mock.baseURL, model: 'gpt-4o', apiKey: KEY };
  const first = await validateMultipleChoice(ROWS.slice(0, 4), {
    endpoint,
    concurrency: 1,
    cacheDir,
    retry: { baseDelayMs: 5 },
  });
  t.equal(mock.maxInFlight, 1);
  const n = mock.requests;
  const all = await validateMultipleChoice(ROWS, { endpoint, concurrency: 1, cacheDir, retry: { baseDelayMs: 5 } });
  t.equal(all.cached, 1 + 1 + 1 + 4, 'first four rows come from the cache');
  t.equal(mock.requests - n, 2 + 3 + 3 + 4 + 1 + 1, 'only the new rows hit the server (incl. retries)');
  t.same(first.dropped, ['r3']);
  t.equal(all.passRate, 0.8);
});

t.test('401 aborts with an error that never contains the key', async (t) => {
  const mock = await startMock((tag, _n, res, reply) => {
    if (tag === 'deny') return fail(res, 401, {});
    if (tag === 'echo')
      return fail(res, 401, { error: { message: `Incorrect API key provided: ${KEY} (Bearer ${KEY})` } });
    return reply('A');
  });
  t.teardown(() => new Promise<void>((r) => mock.server.close(() => r())));
  const cacheDir = await mkdtemp(join(tmpdir(), 'st-llm-'));
  t.teardown(() => rm(cacheDir, { recursive: true, force: true }));
  const endpoint = { baseURL: mock.baseURL, model: 'gpt-4o', apiKey: KEY };

  for (const tag of ['deny', 'echo']) {
    let caught: unknown;
    try {
      await validateMultipleChoice([row('ok1', 'A'), row(tag, 'A'), row('ok2', 'A')], {
        endpoint,
        concurrency: 1,
        cacheDir,
        retry: { baseDelayMs: 5 },
      });
    } catch (err) {
      caught = err;
    }
    t.ok(caught instanceof LlmError, `${tag}: rejects with LlmError`);
    const e = caught as LlmError;
    t.equal(e.status, 401);
    t.notOk(e.message.includes(KEY), `${tag}: message is redacted: ${e.message}`);
    t.notOk(String(e.stack).includes(KEY), `${tag}: stack is redacted`);
    t.notOk(JSON.stringify(e).includes(KEY), `${tag}: serialised error is redacted`);
    t.equal((e as { cause?: unknown }).cause, undefined);
  }
  t.equal(mock.perRow.get('deny'), 1, '401 is not retried');
  t.equal(mock.perRow.get('ok2') ?? 0, 0, 'run stops after a fatal error');
});

t.test('abort signal stops the run', async (t) => {
  const mock = await startMock((_tag, _n, _res, reply) => reply('A'));
  t.teardown(() => new Promise<void>((r) => mock.server.close(() => r())));
  const cacheDir = await mkdtemp(join(tmpdir(), 'st-llm-'));
  t.teardown(() => rm(cacheDir, { recursive: true, force: true }));
  const ac = new AbortController();
  ac.abort();
  await t.rejects(
    validateMultipleChoice([row('a', 'A')], {
      endpoint: { baseURL: mock.baseURL, model: 'gpt-4o', apiKey: KEY },
      cacheDir,
      signal: ac.signal,
    }),
    LlmError,
  );
  t.equal(mock.requests, 0);
});
