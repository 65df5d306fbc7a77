/**
 * Byte-level BPE training, as Hugging Face's BpeTrainer does it, for the small tokenizers of
 * the CPU runs (a vocabulary of a few thousand tokens learned from the synthetic corpus).
 *
 * 1. Pre-tokenise every text exactly as the runtime will (byte-level-bpe.ts: added tokens cut
 *    out, NFC, Qwen2's split regex) and count the distinct words; a 15 MB corpus of templated
 *    prompts has only thousands of distinct words, and everything after this works on those.
 * 2. Start from the 256 byte symbols; repeatedly merge the most frequent adjacent pair
 *    (weighted by word counts), ties broken by the smaller (left id, right id), until the
 *    vocabulary is full or the best pair occurs fewer than `minPairFrequency` times.
 *    Pair counts are kept up to date incrementally: a merge only revisits the words that
 *    contain its pair (an index from pair to words), and a max-heap with lazy re-insertion
 *    finds the next pair.
 *
 * A pair whose concatenation is already a token (the same string reachable by two merge
 * paths) is never merged. Hugging Face would add a second merge for it; skipping it keeps
 * every token the product of exactly one merge, which is what makes the runtime's "lowest
 * rank first" encoding reproduce the training segmentation word for word.
 */
import { BYTE_SYMBOLS, BYTE_TO_CHAR, PAIR_KEY_BASE, QwenPreTokenizer, pairKey, type BpeVocabulary } from './byte-level-bpe.js';

export interface TrainBpeOptions {
  /** Size of the BPE vocabulary: the 256 byte symbols plus one token per merge. */
  vocabSize: number;
  /** Stop once the most frequent pair occurs fewer times than this (default 2). */
  minPairFrequency?: number;
  /** Strings cut out of every text before pre-tokenising (the tokenizer's added tokens). */
  addedTokens?: readonly string[];
}

export interface TrainBpeStats {
  texts: number;
  /** Corpus length in UTF-16 code units (JavaScript string length). */
  characters: number;
  /** Pre-tokens in the corpus (added tokens not included). */
  words: number;
  uniqueWords: number;
  merges: number;
  /** Tokens the corpus encodes to with the learned merges, added tokens included. */
  tokens: number;
  /** Why merging ended: the vocabulary is full, or no pair occurs minPairFrequency times. */
  stoppedBy: 'vocab-size' | 'corpus-exhausted';
}

export interface TrainedBpe extends BpeVocabulary {
  stats: TrainBpeStats;
}

/** Max-heap of (count, pair key): higher count first, then smaller key (left id, then right id). */
class PairHeap {
  readonly #counts: number[] = [];
  readonly #keys: number[] = [];

  get size(): number {
    return this.#keys.length;
  }

  #before(i: number, j: number): boolean {
    const ci = this.#counts[i] as number;
    const cj = this.#counts[j] as number;
    return ci > cj || (ci === cj && (this.#keys[i] as number) < (this.#keys[j] as number));
  }

  #swap(i: number, j: number): void {
    const c = this.#counts[i] as number;
    this.#counts[i] = this.#counts[j] as number;
    this.#counts[j] = c;
    const k = this.#keys[i] as number;
    this.#keys[i] = this.#keys[j] as number;
    this.#keys[j] = k;
  }

  push(count: number, key: number): void {
    this.#counts.push(count);
    this.#keys.push(key);
    for (let i = this.#keys.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.#before(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  /** Removes and returns the top entry (the heap must not be empty). */
  pop(): { count: number; key: number } {
    const top = { count: this.#counts[0] as number, key: this.#keys[0] as number };
    const last = this.#keys.length - 1;
    this.#swap(0, last);
    this.#counts.pop();
    this.#keys.pop();
    for (let i = 0; ; ) {
      const left = 2 * i + 1;
      const right = left + 1;
      let best = i;
      if (left < last && this.#before(left, best)) best = left;
      if (right < last && this.#before(right, best)) best = right;
      if (best === i) break;
      this.#swap(i, best);
      i = best;
    }
    return top;
  }
}

interface WordTable {
  /** Each distinct word as symbol ids (replaced as merges apply). */
  symbols: number[][];
  counts: number[];
  texts: number;
  characters: number;
  words: number;
  addedTokens: number;
}

function countWords(corpus: Iterable<string>, preTokenizer: QwenPreTokenizer): WordTable {
  const counts = new Map<string, number>();
  let texts = 0;
  let characters = 0;
  let words = 0;
  let addedTokens = 0;
  for (const text of corpus) {
    if (typeof text !== 'string') throw new TypeError(`corpus text ${texts} is ${text === null ? 'null' : typeof text}, expected a string`);
    texts++;
    characters += text.length;
    for (const section of preTokenizer.sections(text)) {
      if (section.added) {
        addedTokens++;
        continue;
      }
      for (const piece of preTokenizer.splitSection(section.text)) {
        counts.set(piece, (counts.get(piece) ?? 0) + 1);
        words++;
      }
    }
  }
  const byteId = new Map(BYTE_SYMBOLS.map((symbol, id) => [symbol, id]));
  const byteToId = BYTE_TO_CHAR.map((ch) => byteId.get(ch) as number);
  const utf8 = new TextEncoder();
  const table: WordTable = { symbols: [], counts: [], texts, characters, words, addedTokens };
  for (const [piece, count] of counts) {
    table.symbols.push(Array.from(utf8.encode(piece), (byte) => byteToId[byte] as number));
    table.counts.push(count);
  }
  return table;
}

/** Adds `weight` times each adjacent pair of `symbols` to `into`. */
function addPairs(symbols: readonly number[], weight: number, into: Map<number, number>): void {
  for (let i = 0; i + 1 < symbols.length; i++) {
    const key = pairKey(symbols[i] as number, symbols[i + 1] as number);
    into.set(key, (into.get(key) ?? 0) + weight);
  }
}

/** `symbols` with every non-overlapping (left, right), scanned left to right, replaced by `merged`; undefined if none. */
function applyMerge(symbols: readonly number[], left: number, right: number, merged: number): number[] | undefined {
  let out: number[] | undefined;
  for (let i = 0; i < symbols.length; i++) {
    if (symbols[i] === left && symbols[i + 1] === right) {
      out ??= symbols.slice(0, i);
      out.push(merged);
      i++;
    } else if (out) {
      out.push(symbols[i] as number);
    }
  }
  return out;
}

/** Learns byte-level BPE merges from `corpus` (see the module comment). */
export function trainBpe(corpus: Iterable<string>, options: TrainBpeOptions): TrainedBpe {
  const { vocabSize, minPairFrequency = 2, addedTokens = [] } = options;
  if (!Number.isSafeInteger(vocabSize) || vocabSize < BYTE_SYMBOLS.length || vocabSize > PAIR_KEY_BASE) {
    throw new RangeError(`BPE vocabSize must be an integer from ${BYTE_SYMBOLS.length} (the byte symbols) to ${PAIR_KEY_BASE}, got ${vocabSize}`);
  }
  if (!Number.isSafeInteger(minPairFrequency) || minPairFrequency < 1) {
    throw new RangeError(`minPairFrequency must be a positive integer, got ${minPairFrequency}`);
  }
  const table = countWords(corpus, new QwenPreTokenizer(addedTokens));
  const { symbols: words, counts } = table;

  const tokens: string[] = [...BYTE_SYMBOLS];
  const tokenIds = new Map(tokens.map((token, id) => [token, id]));
  const merges: [string, string][] = [];

  const pairCounts = new Map<number, number>();
  /** pair -> the words that contain it (may also list words that no longer do). */
  const pairWords = new Map<number, Set<number>>();
  words.forEach((symbols, w) => {
    addPairs(symbols, counts[w] as number, pairCounts);
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = pairKey(symbols[i] as number, symbols[i + 1] as number);
      let set = pairWords.get(key);
      if (!set) pairWords.set(key, (set = new Set()));
      set.add(w);
    }
  });
  // Invariant: every pair with a positive count has a heap entry whose count is at least its
  // current count. Counts only fall, except for pairs next to a merged symbol, which are
  // pushed again when they rise; an entry popped with a stale count is re-pushed.
  const heap = new PairHeap();
  for (const [key, count] of pairCounts) heap.push(count, key);

  const unmergeable = new Set<number>();
  let stoppedBy: TrainBpeStats['stoppedBy'] = 'corpus-exhausted';
  while (heap.size > 0) {
    if (tokens.length >= vocabSize) {
      stoppedBy = 'vocab-size';
      break;
    }
    const { count, key } = heap.pop();
    const current = pairCounts.get(key) ?? 0;
    if (current !== count) {
      if (current > 0) heap.push(current, key);
      continue;
    }
    if (count < minPairFrequency) break;
    const left = Math.floor(key / PAIR_KEY_BASE);
    const right = key % PAIR_KEY_BASE;
    const mergedToken = (tokens[left] as string) + (tokens[right] as string);
    if (tokenIds.has(mergedToken)) {
      // Never merged (module comment): forget the pair for good.
      unmergeable.add(key);
      pairCounts.delete(key);
      pairWords.delete(key);
      continue;
    }
    const merged = tokens.length;
    tokens.push(mergedToken);
    tokenIds.set(mergedToken, merged);
    merges.push([tokens[left] as string, tokens[right] as string]);

    const delta = new Map<number, number>();
    for (const w of pairWords.get(key) ?? []) {
      const before = words[w] as number[];
      const after = applyMerge(before, left, right, merged);
      if (!after) continue;
      const weight = counts[w] as number;
      addPairs(before, -weight, delta);
      addPairs(after, weight, delta);
      words[w] = after;
      for (let i = 0; i + 1 < after.length; i++) {
        if (after[i] !== merged && after[i + 1] !== merged) continue;
        const newKey = pairKey(after[i] as number, after[i + 1] as number);
        let set = pairWords.get(newKey);
        if (!set) pairWords.set(newKey, (set = new Set()));
        set.add(w);
      }
    }
    pairWords.delete(key);
    for (const [changed, d] of delta) {
      if (d === 0 || unmergeable.has(changed)) continue;
      const next = (pairCounts.get(changed) ?? 0) + d;
      if (next <= 0) pairCounts.delete(changed);
      else pairCounts.set(changed, next);
      if (d > 0) heap.push(next, changed);
    }
  }
  if (tokens.length >= vocabSize) stoppedBy = 'vocab-size';

  let tokenCount = table.addedTokens;
  words.forEach((symbols, w) => (tokenCount += symbols.length * (counts[w] as number)));
  return {
    tokens,
    merges,
    stats: {
      texts: table.texts,
      characters: table.characters,
      words: table.words,
      uniqueWords: words.length,
      merges: merges.length,
      tokens: tokenCount,
      stoppedBy,
    },
  };
}
