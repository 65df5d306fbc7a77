/**
 * The fault and bad-input suite (issue 19): reward fuzzing, corruption
 * corpora for every file a user hands over, and kill -9 during checkpoint
 * saves. It prints its counts (t.comment) so they can be quoted.
 */
import './helpers-parquet-resolve.js';
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { rewards } from '../lib/rewards/registry.js';
import type { RewardInput, RewardScores } from '../lib/rewards/types.js';
import { writeParquet } from '../lib/data/writer.js';
import type { StvqaRow } from '../lib/data/schema.js';
import { writeTinyModelDirectory } from '../lib/engine/tiny-model.js';
import { Model } from '../lib/engine/model.js';
import { latestCheckpoint, readTrainerState } from '../lib/rl/checkpoint.js';
import { rng } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'st-fault-'));
const WORKER = join(import.meta.dirname, 'fault-worker.ts');

// ---------------------------------------------------------------------------
// Reward fuzzing

const FUZZ_COMPLETIONS = 200_000;
const TAGS = ['observe', 'think', 'scene', 'answer'];
const NUMBERS = ['0', '10', '640', '-5', '1e300', '-1e300', '1e308', '-1e308', '5e-324', '1e999', 'NaN', 'Infinity', '-0', '3.5', 'true', 'null', '"7"', '1' + '0'.repeat(400)];
const IDS = ['chair.1', 'table.1', 'man.2', 'chair.2', 'bad id', 'x.', 'traffic_light.3', '椅子.1', 'a.1'];
const ANSWERS = ['(A) yes', '(B) left of', '(a) YES', '', 'no'];
const UNICODE = ['\u0000', '\ud800', '\u{1F600}', '\u202e', 'é', '\uffff', '<', '>', '{', '}', '[', ']', '"', '\\', '\n', ' '];

function fuzzCompletion(next: () => number): string {
  const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)] as T;
  const kind = next();
  if (kind < 0.1) {
    let s = '';
    const n = Math.floor(next() * 60);
    for (let i = 0; i < n; i++) s += next() < 0.5 ? pick(UNICODE) : String.fromCharCode(Math.floor(next() * 0x3000));
    return s;
  }
  const box = () => `[${Array.from({ length: next() < 0.9 ? 4 : Math.floor(next() * 6) }, () => (next() < 0.5 ? String(Math.round((next() - 0.2) * 800)) : pick(NUMBERS))).join(', ')}]`;
  const objects = Array.from({ length: Math.floor(next() * 5) }, () => `{"id": "${pick(IDS)}", "bbox": ${box()}}`);
  const relations = next() < 0.5 ? [`{"subject": "${pick(IDS)}", "predicate": "left of", "object": "${pick(IDS)}"}`] : [];
  let scene = `{"objects": [${objects.join(', ')}], "relationships": [${relations.join(', ')}]}`;
  if (next() < 0.1) scene = scene.slice(0, Math.floor(next() * scene.length));
  const blocks = [`<observe>${pick(UNICODE)}</observe>`, `<scene>${scene}</scene>`, `<think>t</think>`, `<answer>${pick(ANSWERS)}</answer>`];
  if (next() < 0.2) blocks.push(`<${pick(TAGS)}>`);
  if (next() < 0.2) blocks.splice(Math.floor(next() * blocks.length), 1);
  if (next() < 0.3) blocks.sort(() => next() - 0.5);
  let text = blocks.join(next() < 0.5 ? '\n' : '');
  if (next() < 0.05) text = text.slice(0, Math.floor(next() * text.length));
  return text;
}

const GROUND_TRUTHS = [
  '<scene>{"objects": [{"id": "chair.1", "bbox": [10, 10, 20, 20]}], "relationships": []}</scene>\n<answer>(A) yes</answer>',
  '<scene>{"objects": [{"id": "chair.1", "bbox": [0, 0, 640, 480]}, {"id": "table.1", "bbox": [100, 50, 300, 400]}], "relationships": [{"subject": "chair.1", "predicate": "left of", "object": "table.1"}]}</scene>\n<answer>(B) left of</answer>',
  '<scene>{"objects": [], "relationships": []}</scene>\n<answer>(A) yes</answer>',
  '<scene>{"objects": [], "relationships": [{"subject": "a.1", "predicate": "on", "object": "b.1"}]}</scene>\n<answer>no</answer>',
];

function outOfBounds(name: string, s: RewardScores): string | undefined {
  for (const [key, value] of Object.entries(s))
    if (typeof value !== 'number' || Number.isNaN(value)) return `${key} is ${value}`;
    else if (!Number.isFinite(value)) return `${key} is not finite`;
  const inRange = (v: number | undefined, lo: number, hi: number) => v === undefined || (v >= lo && v <= hi);
  if (name === 'spatial') {
    if (!inRange(s.overall, -0.1, 1)) return `overall ${s.overall} outside [-0.1, 1]`;
    if (!inRange(s['spatial'], -0.5, 1)) return `spatial ${s['spatial']} outside [-0.5, 1]`;
    for (const key of ['format', 'count', 'accuracy']) if (!inRange(s[key], 0, 1)) return `${key} ${s[key]} outside [0, 1]`;
  } else {
    for (const [key, value] of Object.entries(s)) if (!inRange(value as number, 0, 1)) return `${key} ${value} outside [0, 1]`;
  }
  return undefined;
}

t.test(`reward fuzzing: ${FUZZ_COMPLETIONS} random and garbage completions through every registered reward`, async (t) => {
  const next = rng(19);
  const names = rewards.names();
  const counts = Object.fromEntries(names.map((n) => [n, { scored: 0, throws: 0, nan: 0, outOfBounds: 0 }]));
  const examples: string[] = [];
  const batchSize = 5000;
  for (let done = 0; done < FUZZ_COMPLETIONS; done += batchSize) {
    const inputs: RewardInput[] = Array.from({ length: batchSize }, () => ({
      completion: fuzzCompletion(next),
      groundTruth: GROUND_TRUTHS[Math.floor(next() * GROUND_TRUTHS.length)] as string,
      prompt: '',
      image: { width: 640 + Math.floor(next() * 3000), height: 480 + Math.floor(next() * 3000) },
    }));
    for (const name of names) {
      const reward = rewards.create(name, name === 'spatial' ? { similarity: 'exact' } : {});
      const c = counts[name] as { scored: number; throws: number; nan: number; outOfBounds: number };
      let scores: RewardScores[];
      try {
        scores = await reward.scoreBatch(inputs);
      } catch (error) {
        c.throws += batchSize;
        if (examples.length < 5) examples.push(`${name} threw ${(error as Error).message}`);
        continue;
      }
      scores.forEach((s, i) => {
        c.scored++;
        const problem = outOfBounds(name, s);
        if (!problem) return;
        if (/NaN/.test(problem)) c.nan++;
        else c.outOfBounds++;
        if (examples.length < 5) examples.push(`${name}: ${problem} for ${JSON.stringify(inputs[i]?.completion).slice(0, 300)}`);
      });
    }
  }
  for (const name of names) t.comment(`reward fuzz ${name}: ${JSON.stringify(counts[name])}`);
  t.same(examples, [], 'no reward throws, returns NaN or leaves its bounds');
  for (const name of names) t.equal(counts[name]?.scored, FUZZ_COMPLETIONS, `${name} scored every completion`);
});

// ---------------------------------------------------------------------------
// Corruption corpora

const modelDir = join(root, 'model');
mkdirSync(modelDir);
const corpusText = ['<observe>a chair</observe><scene>{}</scene><think>t</think><answer>(A) yes</answer>', 'Where is the chair? Image size: (64 x 48)'];
await writeTinyModelDirectory(modelDir, { corpus: corpusText, vocabSize: 300, seed: 2 });

/** Byte flips (seeded), truncations and a replaced prefix of `bytes`. */
function corruptions(bytes: Uint8Array, seed: number, flips: number, headerBytes = bytes.length): Uint8Array[] {
  const next = rng(seed);
  const out: Uint8Array[] = [];
  for (const fraction of [0, 0.001, 0.01, 0.1, 0.5, 0.9, 0.999]) out.push(bytes.slice(0, Math.floor(bytes.length * fraction)));
  out.push(bytes.slice(0, bytes.length - 1));
  for (let i = 0; i < flips; i++) {
    const copy = bytes.slice();
    const at = Math.floor(next() * Math.min(headerBytes, copy.length));
    copy[at] = (copy[at] as number) ^ (1 + Math.floor(next() * 255));
    out.push(copy);
  }
  const garbage = bytes.slice();
  for (let i = 0; i < Math.min(16, garbage.length); i++) garbage[i] = 0xff;
  out.push(garbage);
  return out;
}

interface CorpusResult {
  cases: number;
  loaded: number;
  clearErrors: number;
  bad: string[];
}

/** Runs the worker over `dir`; every case must load, or fail with one line naming its file. */
function runCorpus(kind: string, dir: string, mustName: (file: string) => string[]): CorpusResult {
  const cases = readdirSync(dir).filter((n) => n.startsWith('case-')).length;
  const r = spawnSync(process.execPath, ['--import', 'tsx', WORKER, 'corpus', kind, dir], { encoding: 'utf8', timeout: 300_000 });
  const lines = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { case: string; started?: boolean; file?: string; error?: string; loaded?: boolean });
  const result: CorpusResult = { cases, loaded: 0, clearErrors: 0, bad: [] };
  for (const line of lines) {
    if (line.started) continue;
    if (line.loaded) result.loaded++;
    else if (line.error !== undefined) {
      const names = mustName(line.file as string);
      if (!line.error.includes('\n') && names.some((name) => (line.error as string).includes(name)) && !/\bat .*:\d+:\d+/.test(line.error)) result.clearErrors++;
      else result.bad.push(`${line.case}: ${JSON.stringify(line.error).slice(0, 300)}`);
    }
  }
  const finished = lines.filter((l) => !l.started).length;
  if (r.status !== 0 || finished !== cases) {
    const last = lines.at(-1);
    result.bad.push(`worker exited with ${r.status ?? r.signal} after ${finished} of ${cases} cases (last started: ${last?.case}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  return result;
}

function report(t: Test, kind: string, result: CorpusResult) {
  t.comment(`corpus ${kind}: ${result.cases} cases, ${result.loaded} loaded, ${result.clearErrors} one-line errors naming the file, ${result.bad.length} bad`);
  t.same(result.bad, [], `${kind}: no crash, every error one line naming the file`);
  t.equal(result.loaded + result.clearErrors, result.cases, `${kind}: every case accounted for`);
}

function caseDirs(kind: string, file: string, variants: Uint8Array[]): string {
  const dir = join(root, `corpus-${kind}`);
  mkdirSync(dir);
  variants.forEach((bytes, i) => {
    const caseDir = join(dir, `case-${String(i).padStart(3, '0')}`);
    mkdirSync(caseDir);
    for (const name of readdirSync(modelDir)) if (name !== file) copyFileSync(join(modelDir, name), join(caseDir, name));
    writeFileSync(join(caseDir, file), bytes);
  });
  return dir;
}

function caseFiles(kind: string, extension: string, variants: Uint8Array[]): string {
  const dir = join(root, `corpus-${kind}`);
  mkdirSync(dir);
  variants.forEach((bytes, i) => writeFileSync(join(dir, `case-${String(i).padStart(3, '0')}.${extension}`), bytes));
  return dir;
}

t.test('corruption corpora: each gives a one-line error naming the file, never a crash', async (t) => {
  const weights = new Uint8Array(readFileSync(join(modelDir, 'model.safetensors')));
  const headerBytes = 8 + Number(Buffer.from(weights).readBigUInt64LE(0));
  const lengthField = weights.slice();
  Buffer.from(lengthField.buffer).writeBigUInt64LE(2n ** 62n, 0);
  report(t, 'safetensors', runCorpus('safetensors', caseDirs('safetensors', 'model.safetensors', [...corruptions(weights, 1, 30, headerBytes), lengthField]),
    // A header naming the wrong tensors is reported as the model directory missing a tensor.
    (file) => ['model.safetensors', `${dirname(file)}: missing tensor`]));

  const config = new Uint8Array(readFileSync(join(modelDir, 'config.json')));
  const configJson = JSON.parse(Buffer.from(config).toString('utf8'));
  const semantic = [
    { ...configJson, vision_config: { ...configJson.vision_config, window_size: 14 } },
    { ...configJson, vision_config: { ...configJson.vision_config, num_heads: 3 } },
    { ...configJson, image_token_id: 1e9 },
    { ...configJson, hidden_size: -1 },
    [],
  ].map((v) => new TextEncoder().encode(JSON.stringify(v)));
  report(t, 'config', runCorpus('config', caseDirs('config', 'config.json', [...corruptions(config, 2, 30), ...semantic]), () => ['config.json']));

  const tokenizer = new Uint8Array(readFileSync(join(modelDir, 'tokenizer.json')));
  report(t, 'tokenizer', runCorpus('tokenizer', caseDirs('tokenizer', 'tokenizer.json', corruptions(tokenizer, 3, 30, 4000)), () => ['tokenizer.json']));

  const png = new Uint8Array(await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 20, b: 90 } } }).png().toBuffer());
  const jpeg = new Uint8Array(await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 20, g: 200, b: 90 } } }).jpeg().toBuffer());
  const imageDir = caseFiles('image', 'img', [...corruptions(png, 4, 25), ...corruptions(jpeg, 5, 25)]);
  report(t, 'image', runCorpus('image', imageDir, (file) => [file]));

  const image = png;
  const scene = JSON.stringify({ objects: [{ id: 'chair.1', bbox: [1, 1, 30, 20] }], relationships: [] });
  const rows = Array.from({ length: 30 }, (_, i) => ({
    images: { bytes: image, path: null },
    problem: `Where is the chair? (${i}) ${'with respect to the table '.repeat(4)}Image size: (40 x 30)`,
    answer_option_text: `<scene>${scene}</scene>\n<answer>(A) left</answer>`,
  })) as unknown as StvqaRow[];
  const goodParquet = join(root, 'good.parquet');
  await writeParquet(goodParquet, (async function* () { yield* rows; })(), { rowGroupSize: 10 });
  const parquet = new Uint8Array(readFileSync(goodParquet));
  report(t, 'parquet', runCorpus('parquet', caseFiles('parquet', 'parquet', corruptions(parquet, 6, 60)), (file) => [basename(file)]));
});

// ---------------------------------------------------------------------------
// kill -9 during checkpoint saves

t.test('kill -9 during checkpoint saves never loses the latest complete checkpoint', async (t) => {
  const runDir = join(root, 'run');
  const next = rng(9);
  const iterations = 4;
  let kills = 0;
  let verified = 0;
  for (let i = 0; i < iterations; i++) {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, 'save', modelDir, runDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const target = 1 + Math.floor(next() * 2);
    let saved = 0;
    child.stdout.on('data', (d: Buffer) => {
      saved += (String(d).match(/saved/g) ?? []).length;
      // The next save starts right after this line: kill it somewhere inside.
      if (saved === target) setTimeout(() => child.kill('SIGKILL'), Math.floor(next() * 40));
    });
    const signal = await exited;
    if (signal !== 'SIGKILL') t.fail(`save worker ended by ${signal} before it was killed: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
    kills++;
    const latest = await latestCheckpoint(runDir);
    t.ok(latest, `iteration ${i}: a complete checkpoint exists`);
    if (!latest) continue;
    const state = await readTrainerState(latest); // validated: a torn trainer_state.json would throw naming the file
    t.ok(Number.isInteger(state.step), `iteration ${i}: trainer state of step ${state.step} reads`);
    const model = await Model.load(latest);
    await model.dispose();
    verified++;
  }
  t.comment(`kill -9 during save: ${kills} kills, ${verified} latest checkpoints loaded`);
  t.equal(verified, iterations);
});
