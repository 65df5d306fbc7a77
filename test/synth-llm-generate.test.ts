/**
 * LLM question generation and the LLM stages of `spatialthinker synth`, against an
 * OpenAI-compatible server started on 127.0.0.1: strict reply checking with counted rejection
 * reasons, grounding into STVQA rows, retries with backoff, the on-disk cache (a rerun sends
 * nothing; an interrupted run resumes without repeating what was cached), the API key kept out
 * of every output, and the CLI end to end with generation, validation and the pass-rate report.
 */
import t from 'tap';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  firstJsonObject,
  generateCandidatesWithLlm,
  normaliseGraph,
  parseCategory,
  parseGeneratedQuestion,
  synthesizeLlmCandidateDataset,
  candidateRow,
  emptySynthStats,
  emptyLlmGenerationStats,
  LlmError,
  type Candidate,
  type LlmGenerateOptions,
  type SceneGraph,
  type SynthRow,
} from '../lib/synth/index.js';
import { synthCommand } from '../lib/cli/synth.js';

const KEY = 'sk-gen-test-secret-0123456789';

// ---------------------------------------------------------------------------------------------
// A scripted OpenAI-compatible server

interface Exchange {
  /** The user message's text part. */
  text: string;
  body: any;
  /** 0-based count of earlier requests with the same text. */
  n: number;
}

type Reply = { status: number; content?: string; body?: unknown };

interface Mock {
  server: Server;
  baseURL: string;
  requests: number;
  inFlight: number;
  maxInFlight: number;
  bodies: any[];
  auth: Set<string>;
  statuses: number[];
  /** Called on every request before it is answered. */
  onRequest?: (count: number) => void;
}

async function startMock(script: (x: Exchange) => Reply): Promise<Mock> {
  const seen = new Map<string, number>();
  const m: Mock = { server: undefined as unknown as Server, baseURL: '', requests: 0, inFlight: 0, maxInFlight: 0, bodies: [], auth: new Set(), statuses: [] };
  m.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      m.requests++;
      m.inFlight++;
      m.maxInFlight = Math.max(m.maxInFlight, m.inFlight);
      m.auth.add(String(req.headers.authorization ?? ''));
      const send = (status: number, body: unknown) =>
        setTimeout(() => {
          m.inFlight--;
          m.statuses.push(status);
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        }, 10);
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return send(404, { error: { message: 'not found' } });
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      m.bodies.push(body);
      const text: string = body.messages[0].content[0].text;
      const n = seen.get(text) ?? 0;
      seen.set(text, n + 1);
      m.onRequest?.(m.requests);
      const r = script({ text, body, n });
      if (r.status !== 200) return send(r.status, r.body ?? { error: { message: `status ${r.status}` } });
      send(200, {
        id: 'cmpl-1',
        object: 'chat.completion',
        created: 0,
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: r.content ?? '' }, finish_reason: 'stop' }],
      });
    });
  });
  await new Promise<void>((resolve) => m.server.listen(0, '127.0.0.1', resolve));
  m.baseURL = `http://127.0.0.1:${(m.server.address() as AddressInfo).port}/v1`;
  return m;
}

const closeMock = (m: Mock) => () => new Promise<void>((r) => m.server.close(() => r()));

/** The scene graph and image size a generation prompt carries. */
function promptGraph(text: string): { width: number; height: number; graph: { objects: { id: string; bbox: number[] }[]; relationships: { subject: string; predicate: string; object: string }[] } } {
  const size = /Image size: (\d+) x (\d+)\nScene graph:\n(.*)\n/.exec(text);
  if (!size) throw new Error('not a generation prompt');
  return { width: Number(size[1]), height: Number(size[2]), graph: JSON.parse(size[3]!) };
}

const isGeneration = (text: string) => text.startsWith('You build a spatial visual question-answering dataset');

// ---------------------------------------------------------------------------------------------
// Library: one scene graph per scripted reply; the image width says which script applies

function sceneGraph(i: number): SceneGraph {
  return {
    image: { image_id: String(100 + i), width: 1000 + i, height: 700, file: `${100 + i}.jpg` },
    objects: [
      { object_id: 1, names: ['man'], x: 100, y: 100, w: 200, h: 500 },
      { object_id: 2, names: ['bench'], x: 50, y: 400, w: 650, h: 250 },
      { object_id: 3, names: ['dog'], x: 750, y: 450, w: 150, h: 190 },
      { object_id: 4, names: ['tree'], x: 600, y: 20, w: 350, h: 330 },
      { object_id: 5, names: ['cup'], x: 400, y: 300, w: 50, h: 50 },
      { object_id: 6, names: ['cup'], x: 500, y: 300, w: 50, h: 50 },
    ],
    relationships: [
      { subject_id: 1, predicate: 'sitting on', object_id: 2 },
      { subject_id: 3, predicate: 'near', object_id: 2 },
    ],
  };
}

const q = (fields: Record<string, unknown>) =>
  JSON.stringify({ level: 'easy', rating: 7, ...fields });

/** Scripted replies, by scene-graph index: what the model says and what must come of it. */
const SCRIPTS: { reply: (n: number) => Reply; expect: string; answer?: string }[] = [
  { reply: () => ({ status: 200, content: q({ question: 'Where is the man with respect to the bench?', options: ['(A) under', '(B) sitting on', '(C) behind'], answer: 'B', category: 'relation' }) }), expect: 'accepted', answer: 'sitting on' },
  {
    reply: () => ({ status: 200, content: 'Here it is:\n```json\n' + q({ question: 'Which is closer to the camera, the tree or the dog?', options: ['(A) the tree', '(B) the dog {lower}'], answer: '(B) the dog {lower}', category: 'depth', level: 'medium', rating: '8' }) + '\n```' }),
    expect: 'accepted',
    answer: 'the dog {lower}',
  },
  { reply: () => ({ status: 200, content: '{"question": "Where is the dog?", "options": ["(A) near", ' }), expect: 'malformed-json' },
  { reply: () => ({ status: 200, content: q({ question: 'Where is the dog with respect to the bench?', options: ['(A) near', '(B) under', '(C) inside'], answer: 'E', category: 'relation' }) }), expect: 'relation:answer-out-of-range' },
  { reply: () => ({ status: 200, content: q({ question: 'Where is the dog with respect to the bench?', options: ['(A) near', '(B) under'], answer: 'D', category: 'relation' }) }), expect: 'relation:answer-out-of-range' },
  { reply: () => ({ status: 200, content: q({ question: 'Where is the dog with respect to the bench?', options: ['(A) near', '(B) under', '(C) inside', '(D) above', '(E) far from'], answer: 'A', category: 'relation' }) }), expect: 'relation:option-count' },
  { reply: () => ({ status: 200, content: q({ question: 'What shape is the bench?', options: ['(A) round', '(B) long'], answer: 'B', category: 'shape' }) }), expect: 'unknown-category' },
  { reply: () => ({ status: 200, content: q({ question: 'How many cups are there in the image?', options: ['(A) 1', '(B) 2', '(C) 3'], answer: 'A', category: 'count' }) }), expect: 'accepted', answer: '2' },
  { reply: () => ({ status: 200, content: q({ question: 'How many cups are there in the image?', options: ['(A) 3', '(B) 4'], answer: 'A', category: 'count' }) }), expect: 'count:count-mismatch' },
  { reply: () => ({ status: 200, content: 'I cannot help with that.' }), expect: 'no-json' },
  { reply: () => ({ status: 200, content: q({ question: 'Where is man.1 with respect to bench.1?', options: ['(A) on', '(B) under'], answer: 'A', category: 'relation' }) }), expect: 'relation:mentions-id' },
  { reply: () => ({ status: 200, content: q({ question: 'Where is the giraffe with respect to the zebra?', options: ['(A) left of', '(B) right of'], answer: 'A', category: 'relation' }) }), expect: 'relation:ungrounded' },
  { reply: () => ({ status: 200, content: q({ question: 'Is there a dog in the image?', options: ['(A) yes', '(B) no'], answer: 'A', category: 'existence' }) }), expect: 'accepted', answer: 'yes' },
  { reply: () => ({ status: 200, content: q({ question: 'Is there a dog in the image?', options: ['(A) yes', '(B) maybe'], answer: 'A', category: 'existence' }) }), expect: 'existence:not-yes-no' },
  { reply: () => ({ status: 200, content: q({ question: 'Which is bigger, the bench or the dog?', options: ['(A) the bench', '(B) The Bench'], answer: 'A', category: 'size' }) }), expect: 'size:duplicate-options' },
  { reply: () => ({ status: 200, content: q({ question: 'Where is the tree with respect to the dog?', options: ['above', 'below'], answer: '(A) above', category: 'REL_ABOVE_BELOW' }) }), expect: 'accepted', answer: 'above' },
  { reply: () => ({ status: 200, content: q({ question: 'Which is taller, the man or the dog?', options: ['(A) the man', '(B) the dog'], answer: 'A', category: 'size', rating: 11 }) }), expect: 'size:bad-rating' },
  {
    reply: (n) => (n === 0 ? { status: 429, body: { error: { message: 'rate limited' } } } : { status: 200, content: q({ question: 'Which is taller, the man or the dog?', options: ['(A) the man', '(B) the dog'], answer: 'A', category: 'size' }) }),
    expect: 'accepted',
    answer: 'the man',
  },
  {
    reply: (n) => (n < 2 ? { status: 500 } : { status: 200, content: q({ question: 'Is the dog to the left or to the right of the man?', options: ['(A) left', '(B) right'], answer: 'B', category: 'orientation', level: 'hard' }) }),
    expect: 'accepted',
    answer: 'right',
  },
  { reply: () => ({ status: 200, content: q({ question: 'Where is the man with respect to the bench?', options: ['(A) on', '(B) under'], answer: 'A', category: 'relation', level: 'trivial' }) }), expect: 'relation:bad-level' },
];

const GRAPHS = SCRIPTS.map((_, i) => sceneGraph(i));
const scriptOf = (x: Exchange) => SCRIPTS[promptGraph(x.text).width - 1000]!.reply(x.n);

function tally(result: { stats: ReturnType<typeof emptySynthStats>; llm: ReturnType<typeof emptyLlmGenerationStats> }): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [c, reasons] of Object.entries(result.stats.refused)) for (const [r, n] of Object.entries(reasons)) out[`${c}:${r}`] = n;
  for (const [r, n] of Object.entries(result.llm.uncategorised)) out[r] = n;
  return out;
}

async function collect(options: LlmGenerateOptions, graphs: readonly SceneGraph[] = GRAPHS) {
  const stats = emptySynthStats();
  const llm = emptyLlmGenerationStats();
  const candidates: Candidate[] = [];
  for await (const c of generateCandidatesWithLlm(graphs, options, stats, llm)) candidates.push(c);
  return { candidates, stats, llm };
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

function keyLeaks(dir: string): string[] {
  return filesUnder(dir).filter((f) => readFileSync(f, 'utf8').includes(KEY));
}

t.test('reply parsing: first JSON object, categories, strict fields', async (t) => {
  t.equal(firstJsonObject('x {"a": "}{", "b": [1]} {"c": 2}'), '{"a": "}{", "b": [1]}');
  t.equal(firstJsonObject('no object'), undefined);
  t.equal(firstJsonObject('{"a": "never closed'), null);
  t.equal(parseCategory('Instance Location'), 'instance_location');
  t.equal(parseCategory('REL_LEFT_RIGHT'), 'relation');
  t.equal(parseCategory('colour'), undefined);

  const graph = normaliseGraph(sceneGraph(0));
  const ok = parseGeneratedQuestion(SCRIPTS[0]!.reply(0).content!, graph);
  t.ok(ok.ok, 'a well-formed relation question is accepted');
  if (ok.ok) {
    t.same(ok.question.options, ['under', 'sitting on', 'behind'], 'option prefixes are removed');
    t.equal(ok.question.answerIndex, 1);
    t.same(ok.question.objects.map((i) => graph.objects[i]!.label).sort(), ['bench', 'man']);
    t.equal(ok.question.basis, 'llm');
  }
  const reasons = (fields: Record<string, unknown>) => {
    const v = parseGeneratedQuestion(JSON.stringify(fields), graph);
    return v.ok ? 'ok' : v.reason;
  };
  const base = { question: 'Where is the man with respect to the bench?', options: ['(A) on', '(B) under'], answer: 'A', category: 'relation', level: 'easy', rating: 5 };
  t.equal(reasons(base), 'ok');
  t.equal(reasons({ ...base, level: undefined }), 'bad-level');
  t.equal(reasons({ ...base, rating: 4.5 }), 'bad-rating');
  t.equal(reasons({ ...base, options: ['(B) on', '(A) under'] }), 'bad-option', 'prefix letters must be in order');
  t.equal(reasons({ ...base, options: ['(A) on', 'under'] }), 'bad-option', 'all options prefixed or none');
  t.equal(reasons({ ...base, options: ['(A) on'] }), 'option-count');
  t.equal(reasons({ ...base, answer: 'on' }), 'bad-answer', 'the answer is a letter, not a text');
  t.equal(reasons({ ...base, answer: '(A) under' }), 'bad-answer', 'a letter with the wrong option text');
  t.equal(reasons({ ...base, question: undefined }), 'missing-field');
  t.equal(reasons({ ...base, category: 7 }), 'missing-field');
  t.equal(reasons({ ...base, category: 'existence', question: 'Is there a giraffe in the image?', options: ['yes', 'no'], answer: 'B' }), 'ok', 'an absent object answered "no" needs no grounding');
  t.equal(reasons({ ...base, category: 'existence', question: 'Is there a giraffe in the image?', options: ['yes', 'no'], answer: 'A' }), 'ungrounded');
  t.equal(reasons({ ...base, category: 'count', question: 'How many cups are there?', options: ['two', 'three'], answer: 'A' }), 'count-not-integer');
});

t.test('generation against a scripted server: acceptances, rejections by reason, retries, rows', async (t) => {
  const mock = await startMock(scriptOf);
  t.teardown(closeMock(mock));
  const cacheDir = mkdtempSync(join(tmpdir(), 'st-llm-gen-'));
  t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }));
  const options: LlmGenerateOptions = {
    endpoint: { baseURL: mock.baseURL, model: 'gen-model', apiKey: KEY },
    cacheDir,
    concurrency: 3,
    wave: 8,
    seed: 5,
    retry: { baseDelayMs: 5, maxDelayMs: 40 },
  };
  const run = await collect(options);

  const expected: Record<string, number> = {};
  for (const s of SCRIPTS) if (s.expect !== 'accepted') expected[s.expect] = (expected[s.expect] ?? 0) + 1;
  t.same(tally(run), expected, 'every rejection counted under its reason and category');
  const accepted = SCRIPTS.filter((s) => s.expect === 'accepted');
  t.equal(run.candidates.length, accepted.length);
  t.equal(run.llm.accepted, accepted.length);
  t.equal(run.llm.replies, SCRIPTS.length);
  t.equal(run.llm.corrected, 1, 'the count answer moved to the graph count');
  t.equal(run.llm.retries, 3, 'one 429 and two 500 retried');
  t.equal(run.llm.requests, SCRIPTS.length);
  t.equal(mock.requests, SCRIPTS.length + 3);
  t.ok(mock.statuses.includes(429) && mock.statuses.filter((s) => s === 500).length === 2);
  t.ok(mock.maxInFlight <= 3, `at most 3 requests in flight (saw ${mock.maxInFlight})`);
  t.ok(mock.maxInFlight >= 2, 'requests overlap');
  t.same(mock.auth, new Set([`Bearer ${KEY}`]), 'the key is sent to the endpoint');
  t.equal(run.stats.generated.relation, 1 + 2 + 1 + 1 + 1 + 1 + 1, 'replies naming relation (REL_* included)');
  t.equal(run.stats.picked.relation, 2);
  t.equal(run.stats.picked.count, 1);
  t.notOk(run.llm.endpoint.includes(KEY));

  // request form: the reference's temperature and reply length, graph-only prompt
  const body = mock.bodies[0];
  t.equal(body.temperature, 0);
  t.equal(body.max_tokens, 256);
  t.equal(body.model, 'gen-model');
  t.equal(body.messages[0].content.length, 1, 'no image unless asked for');
  const first = body.messages[0].content[0].text as string;
  t.match(first, /Only return the JSON object, no additional text\.$/);
  t.match(first, /"relationships": \[\{"subject": "man\.1", "predicate": "sitting on", "object": "bench\.1"\}/);
  t.match(first, /"id": "cup\.2"/);
  // the statistics block: empty for the first wave, the first wave's acceptances for the second
  const prompts = mock.bodies.map((b) => b.messages[0].content[0].text as string);
  const ofGraph = (i: number) => prompts.find((p) => promptGraph(p).width === 1000 + i)!;
  t.match(ofGraph(0), /Data statistics \(0 questions accepted so far\)/);
  t.notMatch(ofGraph(0), /last categories/);
  t.match(ofGraph(8), /Data statistics \(3 questions accepted so far\)/, 'wave 2 sees the 3 accepted in wave 1');
  t.match(ofGraph(8), /last categories: relation, depth, count; last levels: easy, medium, easy/);
  t.match(ofGraph(8), /relation 33\.3% \/ 50\.0%/);

  // accepted questions become grounded STVQA rows
  const rows = new Map<string, SynthRow>(run.candidates.map((c) => [c.context.imageId, candidateRow(c)]));
  SCRIPTS.forEach((s, i) => {
    if (s.expect !== 'accepted') return;
    const row = rows.get(String(100 + i));
    t.ok(row, `graph ${i} gave a row`);
    if (!row) return;
    t.equal(row.answer_text_only, s.answer, `graph ${i}: answer text`);
    t.equal(row.options[row.answer_only.charCodeAt(0) - 65], s.answer, `graph ${i}: the letter points at the answer`);
    t.match(row.problem, new RegExp(`Image size: \\(${1000 + i} x 700\\)`));
    t.equal(row.answer_option_text, `${row.answer.split('\n<answer>')[0]}\n<answer>(${row.answer_only}) ${s.answer}</answer>`);
  });
  const relationRow = rows.get('100')!;
  t.equal(
    relationRow.answer.split('\n')[0],
    '<scene>{"objects": [{"id": "man.1", "bbox": [100, 100, 300, 600]}, {"id": "bench.1", "bbox": [50, 400, 700, 650]}], "relationships": [{"subject": "man.1", "predicate": "sitting on", "object": "bench.1"}]}</scene>',
    'the ground-truth scene is the question-aligned sub-graph',
  );
  t.match(rows.get('107')!.answer, /"cup\.1".*"cup\.2"/, 'a count row grounds every counted instance');
  t.equal(rows.get('112')!.category, 'existence');

  // the second run, same cache: nothing is sent, the same candidates come out
  const before = mock.requests;
  const again = await collect(options);
  t.equal(mock.requests, before, 'zero requests on a cached rerun');
  t.equal(again.llm.cached, SCRIPTS.length);
  t.equal(again.llm.requests, 0);
  t.same(again.candidates, run.candidates, 'identical candidates from the cache');
  // the concurrency does not enter the prompts: a rerun with another one is still fully cached
  const other = await collect({ ...options, concurrency: 1 });
  t.equal(mock.requests, before);
  t.same(other.candidates, run.candidates);

  t.same(keyLeaks(cacheDir), [], 'no cache file contains the key');
});

t.test('balanced dataset, option shuffle and attached images', async (t) => {
  const mock = await startMock(scriptOf);
  t.teardown(closeMock(mock));
  const cacheDir = mkdtempSync(join(tmpdir(), 'st-llm-gen-'));
  t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }));
  const images: string[] = [];
  const options: LlmGenerateOptions = {
    endpoint: { baseURL: mock.baseURL, model: 'gen-model' },
    cacheDir,
    retry: { baseDelayMs: 5 },
    target: 40,
    loadImage: async (graph, path) => {
      images.push(path);
      return new Uint8Array([0xff, 0xd8, 0xff, Number(graph.imageId) % 256]);
    },
  };
  const dataset = await synthesizeLlmCandidateDataset(GRAPHS.slice(0, 2), options);
  t.same(images.sort(), ['100.jpg', '101.jpg'], 'the image of every graph asked is loaded');
  t.equal(mock.bodies[0].messages[0].content[1].type, 'image_url');
  t.match(mock.bodies[0].messages[0].content[1].image_url.url, /^data:image\/jpeg;base64,/);
  t.equal(dataset.train.length + dataset.val.length, 2);
  t.equal(dataset.llm.accepted, 2);
  t.same(mock.auth, new Set(['Bearer no-api-key']), 'a local endpoint works without a key');
  // the option order is the seeded shuffle's, whatever order the model gave
  const shuffledOrders = new Set<string>();
  for (let seed = 0; seed < 12; seed++) {
    const d = await synthesizeLlmCandidateDataset(GRAPHS.slice(0, 1), { ...options, seed });
    const c = [...d.train, ...d.val][0]!;
    t.equal(c.question.options[c.question.answerIndex], 'sitting on');
    shuffledOrders.add(c.question.options.join('|'));
  }
  t.ok(shuffledOrders.size > 1, `the seed changes the option order (${shuffledOrders.size} orders)`);
});

t.test('an interrupted run resumes without repeating cached requests', async (t) => {
  const mock = await startMock(scriptOf);
  t.teardown(closeMock(mock));
  const cacheDir = mkdtempSync(join(tmpdir(), 'st-llm-gen-'));
  t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }));
  const controller = new AbortController();
  const k = 7;
  mock.onRequest = (count) => {
    if (count === k) controller.abort();
  };
  const options: LlmGenerateOptions = {
    endpoint: { baseURL: mock.baseURL, model: 'gen-model', apiKey: KEY },
    cacheDir,
    concurrency: 2,
    wave: 6,
    retry: { baseDelayMs: 5 },
  };
  let caught: unknown;
  try {
    await collect({ ...options, signal: controller.signal });
  } catch (error) {
    caught = error;
  }
  t.ok(caught instanceof LlmError, 'the aborted run rejects with an LlmError');
  t.match((caught as Error).message, /aborted/);
  t.notOk((caught as Error).message.includes(KEY));
  t.equal(mock.requests, k, `nothing is sent after the abort (${mock.requests} requests)`);
  const cached = readdirSync(cacheDir).filter((f) => f.endsWith('.json'));
  t.ok(cached.length >= 1 && cached.length < SCRIPTS.length, `${cached.length} replies cached before the abort`);
  const cachedImages = new Set(cached.map((f) => JSON.parse(readFileSync(join(cacheDir, f), 'utf8')).key[2] as string));

  mock.onRequest = undefined;
  const before = mock.bodies.length;
  const resumed = await collect(options);
  const askedAgain = mock.bodies.slice(before).map((b) => String(promptGraph(b.messages[0].content[0].text).width - 1000 + 100));
  t.same(askedAgain.filter((id) => cachedImages.has(id)), [], 'no cached reply is asked for again');
  t.equal(resumed.llm.cached, cached.length, 'every cached reply is used');
  t.equal(resumed.llm.cached + resumed.llm.requests, SCRIPTS.length, 'and the rest is asked once');
  const fresh = await collect({ ...options, cacheDir: mkdtempSync(join(tmpdir(), 'st-llm-gen-fresh-')) });
  t.same(resumed.candidates, fresh.candidates, 'the resumed run ends where an uninterrupted one does');
  t.same(keyLeaks(cacheDir), []);
});

t.test('a rejected key stops generation with a redacted error', async (t) => {
  const mock = await startMock(() => ({ status: 401, body: { error: { message: `Incorrect API key provided: ${KEY}` } } }));
  t.teardown(closeMock(mock));
  const cacheDir = mkdtempSync(join(tmpdir(), 'st-llm-gen-'));
  t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }));
  let caught: unknown;
  try {
    await collect({ endpoint: { baseURL: mock.baseURL, model: 'gen-model', apiKey: KEY }, cacheDir, concurrency: 1, retry: { baseDelayMs: 5 } });
  } catch (error) {
    caught = error;
  }
  t.ok(caught instanceof LlmError);
  t.equal((caught as LlmError).status, 401);
  t.notOk(String((caught as Error).stack).includes(KEY), (caught as Error).message);
  t.equal(mock.requests, 1, 'a 401 is neither retried nor followed by other requests');
});

// ---------------------------------------------------------------------------------------------
// The CLI end to end

const LABELS = ['chair', 'table', 'dog', 'lamp', 'car', 'tree', 'bench', 'horse', 'cup', 'bed'];
const PREDICATES = ['on', 'under', 'behind', 'near', 'above'];

/** A VG-format fixture: scene_graphs.json, image_data.json and VG_100K/<id>.jpg. */
function writeVgFixture(root: string, images: number): void {
  mkdirSync(join(root, 'images', 'VG_100K'), { recursive: true });
  const entries = [];
  const imageData = [];
  for (let id = 1; id <= images; id++) {
    const width = 640;
    const height = 480;
    const labels = [0, 1, 2].map((k) => LABELS[(id + 3 * k) % LABELS.length]!);
    const objects = labels.map((label, k) => ({ object_id: id * 10 + k, names: [label], x: 40 + 190 * k, y: 60 + 90 * k, w: 150, h: 120 + 20 * k, synsets: [] }));
    const relationships = [{ relationship_id: id, predicate: PREDICATES[id % PREDICATES.length]!, subject_id: id * 10, object_id: id * 10 + 1, synsets: [] }];
    entries.push({ image_id: id, objects, relationships });
    imageData.push({ image_id: id, width, height, url: `https://cs.stanford.edu/people/rak248/VG_100K/${id}.jpg` });
    writeFileSync(join(root, 'images', 'VG_100K', `${id}.jpg`), Buffer.from([0xff, 0xd8, 0xff, 0xe0, id]));
  }
  writeFileSync(join(root, 'scene_graphs.json'), JSON.stringify(entries));
  writeFileSync(join(root, 'image_data.json'), JSON.stringify(imageData));
}

/**
 * A model for the CLI: generation proposes a relation question (first relationship), a depth
 * question (lower box bottom is closer) or a size question (larger box), by image; images
 * 10, 20 and 30 get an unusable reply. Validation answers relation and size right, depth wrong.
 */
function cliModel() {
  const truth = new Map<string, { answer: string; category: string }>();
  const other = ['under', 'far from', 'inside', 'behind', 'on'];
  const label = (id: string) => id.slice(0, id.lastIndexOf('.')).replace(/_/g, ' ');
  return (x: Exchange): Reply => {
    if (isGeneration(x.text)) {
      const { graph } = promptGraph(x.text);
      const [a, b] = graph.objects;
      // the fixture's first label is LABELS[id % 10]: it says which kind of question to propose
      const first = LABELS.indexOf(label(a!.id));
      const kind = first === 0 ? 'junk' : (['relation', 'depth', 'size'] as const)[first % 3]!;
      let reply: Record<string, unknown>;
      if (kind === 'junk') return { status: 200, content: 'Sorry, no question for this one.' };
      if (kind === 'relation') {
        const r = graph.relationships[0]!;
        const question = `Where is the ${label(r.subject)} with respect to the ${label(r.object)}?`;
        const options = [r.predicate, ...other.filter((p) => p !== r.predicate).slice(0, 2)];
        reply = { question, options: options.map((o, i) => `(${'ABCD'[i]}) ${o}`), answer: 'A', category: 'relation' };
        truth.set(question, { answer: r.predicate, category: 'relation' });
      } else if (kind === 'depth') {
        const question = `Which is closer to the camera, the ${label(a!.id)} or the ${label(b!.id)}?`;
        const closer = a!.bbox[3]! > b!.bbox[3]! ? a! : b!;
        reply = { question, options: [`(A) the ${label(a!.id)}`, `(B) the ${label(b!.id)}`], answer: closer === a ? 'A' : 'B', category: 'depth' };
        truth.set(question, { answer: `the ${label(closer.id)}`, category: 'depth' });
      } else {
        const area = (o: { bbox: number[] }) => (o.bbox[2]! - o.bbox[0]!) * (o.bbox[3]! - o.bbox[1]!);
        const question = `Which is bigger in the image, the ${label(a!.id)} or the ${label(b!.id)}?`;
        const bigger = area(a!) > area(b!) ? a! : b!;
        reply = { question, options: [`(A) the ${label(a!.id)}`, `(B) the ${label(b!.id)}`], answer: bigger === a ? 'A' : 'B', category: 'size' };
        truth.set(question, { answer: `the ${label(bigger.id)}`, category: 'size' });
      }
      return { status: 200, content: JSON.stringify({ ...reply, level: 'medium', rating: 6 }) };
    }
    const m = /^Answer the following multiple choice question about the image\.\n\n(.*)\nOptions:\n((?:\([A-D]\) .*\n?)+)/.exec(x.text);
    if (!m) return { status: 400, body: { error: { message: 'unexpected prompt' } } };
    const known = truth.get(m[1]!);
    if (!known) return { status: 400, body: { error: { message: 'unknown question' } } };
    const options = m[2]!.trim().split('\n').map((l) => l.slice(4));
    const right = 'ABCD'[options.indexOf(known.answer)]!;
    const wrong = right === 'A' ? 'B' : 'A';
    return { status: 200, content: known.category === 'depth' ? wrong : `${right}.` };
  };
}

/** Run the command with stderr captured. */
async function runSynth(argv: string[]): Promise<string> {
  const write = process.stderr.write;
  let err = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    err += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stderr.write;
  try {
    await synthCommand(argv);
  } finally {
    process.stderr.write = write;
  }
  return err;
}

t.test('synth --llm-generate --llm-validate end to end', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'st-llm-cli-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeVgFixture(root, 30);
  const mock = await startMock(cliModel());
  t.teardown(closeMock(mock));
  process.env.ST_LLM_TEST_KEY = KEY;
  t.teardown(() => {
    delete process.env.ST_LLM_TEST_KEY;
  });
  const out = join(root, 'out');
  const argv = [
    '--vg-scene-graphs', join(root, 'scene_graphs.json'),
    '--vg-image-data', join(root, 'image_data.json'),
    '--images', join(root, 'images'),
    '--out', out,
    '--target', '80',
    '--seed', '1',
    '--llm-generate',
    '--llm-validate',
    '--llm-base-url', mock.baseURL,
    '--llm-model', 'gen-model',
    '--llm-validate-model', 'check-model',
    '--llm-api-key-env', 'ST_LLM_TEST_KEY',
    '--llm-concurrency', '3',
  ];
  const stderr = await runSynth(argv);
  t.same(mock.auth, new Set([`Bearer ${KEY}`]));
  t.ok(mock.maxInFlight <= 3);
  const models = new Set(mock.bodies.map((b) => `${isGeneration(b.messages[0].content[0].text) ? 'gen' : 'check'}:${b.model}`));
  t.same([...models].sort(), ['check:check-model', 'gen:gen-model']);

  const read = (name: string) =>
    readFileSync(join(out, name), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as SynthRow);
  const rows = [...read('train.jsonl'), ...read('val.jsonl')];
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  const gen = summary.llm.generation;
  const val = summary.llm.validation;
  const generated = summary.stats.generated;
  t.equal(gen.replies, 30, 'one reply per image');
  t.equal(gen.uncategorised['no-json'], 3, 'the chair images got unusable replies');
  t.equal(gen.accepted, 27);
  t.equal(generated.relation + generated.depth + generated.size, 27);
  t.ok(generated.relation > 0 && generated.depth > 0 && generated.size > 0, `relation ${generated.relation}, depth ${generated.depth}, size ${generated.size}`);
  t.ok(val.perCategory.depth.checked > 0, 'depth rows were checked');
  t.equal(val.perCategory.depth.kept, 0, 'and all dropped: the model never agreed');
  t.equal(val.perCategory.relation.kept, val.perCategory.relation.checked, 'relation rows all pass');
  t.equal(val.perCategory.size.kept, val.perCategory.size.checked);
  t.equal(rows.length, val.perCategory.relation.kept + val.perCategory.size.kept, 'the rows written are the validated ones');
  t.equal(summary.train + summary.val, rows.length);
  t.notOk(rows.some((r) => r.category === 'depth'), 'no row failed validation is written');
  for (const row of rows) {
    t.ok(statSync(join(out, row.images.path)).size > 0, 'image path resolves from the output folder');
    t.equal(row.options[row.answer_only.charCodeAt(0) - 65], row.answer_text_only);
    t.match(row.answer_option_text, /^<scene>\{"objects": \[\{"id": "[a-z_]+\.1"/);
  }
  // the pass-rate report
  t.match(stderr, /synth: questions from gen-model @ http:\/\/127\.0\.0\.1:\d+\/v1 \(api key set\)/);
  t.match(stderr, /LLM generation \(gen-model @ [^)]*\(api key set\)\): 30 replies, 27 accepted \(90\.0%\)/);
  t.match(stderr, new RegExp(`LLM validation \\(check-model @ [^)]*\\(api key set\\)\\): ${rows.length} of ${val.perCategory.relation.checked + val.perCategory.size.checked + val.perCategory.depth.checked} rows kept`));
  t.match(stderr, new RegExp(`\\ndepth +${generated.depth} +${generated.depth} +${val.perCategory.depth.checked} +0 +0\\.0%`));
  t.match(stderr, new RegExp(`\\nrelation +${generated.relation} +${generated.relation} +${val.perCategory.relation.checked} +${val.perCategory.relation.kept} +100\\.0%`));
  t.match(stderr, /\n\(no category\) +3 +0 +- +- +-  no-json 3/);
  t.notOk(stderr.includes(KEY), 'stderr never shows the key');
  t.same(keyLeaks(out), [], 'no output or cache file contains the key');

  // the same command again: everything from the cache, the same rows
  const before = mock.requests;
  const firstTrain = readFileSync(join(out, 'train.jsonl'), 'utf8');
  const stderr2 = await runSynth(argv);
  t.equal(mock.requests, before, 'a rerun sends no request');
  t.equal(readFileSync(join(out, 'train.jsonl'), 'utf8'), firstTrain);
  t.match(stderr2, /30 replies, 27 accepted \(90\.0%\); 0 requests, 30 cached/);

  // flag errors
  await t.rejects(synthCommand([...argv.slice(0, 8), '--llm-model', 'x']), /--llm-model needs --llm-generate or --llm-validate/);
  await t.rejects(synthCommand([...argv, '--llm-concurrency', '0']), /--llm-concurrency must be an integer >= 1/);
  await t.rejects(synthCommand([...argv.slice(0, 8), '--llm-validate', '--llm-api-key-env', 'ST_LLM_UNSET_VAR']), /ST_LLM_UNSET_VAR is not set/);
});
