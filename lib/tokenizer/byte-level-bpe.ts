/**
 * The pieces a Qwen-style byte-level BPE tokenizer is made of, shared by the trainer
 * (train-bpe.ts) and by the files it writes (tiny.ts):
 *
 * - the GPT-2 byte <-> unicode table that lets every byte sequence be written as a printable
 *   string, so a 256-symbol base vocabulary covers all text (no unknown token is ever needed);
 * - Qwen2's pre-tokenizer: split off the added tokens, NFC-normalise, split with Qwen2's regex
 *   (letters with one leading non-letter, each digit alone, punctuation runs, whitespace),
 *   then byte-level map each piece. Normalisation and the regex split are done by
 *   @huggingface/tokenizers itself, built from the very objects written into tokenizer.json
 *   (its translation of the Rust regex to a JavaScript one, e.g. `\s` -> `\p{White_Space}`,
 *   is then the same by construction), so the words seen in training are exactly the words
 *   the runtime tokenizer feeds to BPE;
 * - `BpeEncoder`, which applies learned merges as Hugging Face's BPE model does (repeatedly
 *   merge the lowest-ranked adjacent pair, leftmost first), an independent check on the runtime.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

/** Qwen2's pre-tokenizer regex (the `Split` pattern of Qwen2 / Qwen2.5-VL tokenizer.json). */
export const QWEN2_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** tokenizer.json `normalizer` of Qwen2. */
export const QWEN2_NORMALIZER = { type: 'NFC' } as const;

const QWEN2_SPLIT = {
  type: 'Split',
  pattern: { Regex: QWEN2_SPLIT_PATTERN },
  behavior: 'Isolated',
  invert: false,
} as const;

const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false } as const;

/** tokenizer.json `pre_tokenizer` of Qwen2: the regex split, then the byte-level mapping. */
export const QWEN2_PRE_TOKENIZER = { type: 'Sequence', pretokenizers: [QWEN2_SPLIT, BYTE_LEVEL] } as const;

/** tokenizer.json `decoder` (and `post_processor`) of Qwen2: byte-level, no prefix space. */
export const QWEN2_BYTE_LEVEL = BYTE_LEVEL;

/**
 * GPT-2's byte -> character table: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map
 * to themselves, the other 68 bytes to U+0100 onwards in byte order.
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = [];
  let next = 0x100;
  for (let b = 0; b < 256; b++) table.push(String.fromCharCode(printable(b) ? b : next++));
  return Object.freeze(table);
})();

/**
 * The 256 base symbols in vocabulary order: sorted by character, as Hugging Face's trainer
 * and Qwen's vocabulary order them (id 0 is "!", the printable bytes come first).
 */
export const BYTE_SYMBOLS: readonly string[] = Object.freeze(
  [...BYTE_TO_CHAR].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0)),
);

const UTF8 = new TextEncoder();

/** A text piece as its byte-level string (one character per UTF-8 byte). */
export function byteLevelString(piece: string): string {
  let out = '';
  for (const byte of UTF8.encode(piece)) out += BYTE_TO_CHAR[byte] as string;
  return out;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Text -> pre-tokens as the runtime tokenizer makes them. `addedTokens` are the strings that
 * are cut out before normalisation and never reach BPE (tokenizer.json `added_tokens`, all
 * with normalized = false, as in Qwen's).
 */
export class QwenPreTokenizer {
  readonly #normalize: (text: string) => string;
  readonly #split: (text: string) => string[];
  readonly #addedPattern: RegExp | undefined;

  constructor(addedTokens: readonly string[] = []) {
    // A runtime tokenizer holding just Qwen2's normalizer and regex split (no byte mapping:
    // training maps each distinct word once rather than every occurrence).
    const runtime = new HfTokenizer(
      { normalizer: QWEN2_NORMALIZER, pre_tokenizer: QWEN2_SPLIT, model: { type: 'BPE', vocab: {}, merges: [] }, decoder: null, post_processor: null, added_tokens: [] },
      {},
    );
    const { normalizer, pre_tokenizer: splitter } = runtime;
    if (!normalizer || !splitter) throw new Error('@huggingface/tokenizers built no normalizer or pre-tokenizer from the Qwen2 configuration');
    this.#normalize = (text) => normalizer(text);
    this.#split = (text) => splitter.pre_tokenize_text(text);

    for (const token of addedTokens) {
      if (typeof token !== 'string' || token.length === 0) throw new Error(`added tokens must be non-empty strings, got ${JSON.stringify(token)}`);
    }
    // Longest first, as the runtime's trie matches the longest added token at each position.
    const alternatives = [...new Set(addedTokens)].sort((a, b) => b.length - a.length || (a < b ? -1 : 1)).map(escapeRegExp);
    this.#addedPattern = alternatives.length > 0 ? new RegExp(`(${alternatives.join('|')})`) : undefined;
  }

  /**
   * The text split into added tokens and plain sections, in order (empty sections dropped).
   * Added tokens come back with `added: true`.
   */
  sections(text: string): { text: string; added: boolean }[] {
    const parts = this.#addedPattern ? text.split(this.#addedPattern) : [text];
    const out: { text: string; added: boolean }[] = [];
    // With a capturing group, split() puts the separators at the odd indices.
    parts.forEach((part, i) => {
      if (part.length > 0) out.push({ text: part, added: i % 2 === 1 });
    });
    return out;
  }

  /** A plain section (no added tokens) -> its pre-tokens as raw text, before byte mapping. */
  splitSection(section: string): string[] {
    const normalized = this.#normalize(section);
    return normalized.length === 0 ? [] : this.#split(normalized);
  }
}

export interface BpeVocabulary {
  /** Token strings by id: the 256 byte symbols, then one token per merge. */
  readonly tokens: readonly string[];
  /** Merges in rank order; merge r creates token 256 + r. */
  readonly merges: readonly (readonly [string, string])[];
}

/** Key of an adjacent symbol pair (ids below 2^21, so the key is an exact double). */
export const PAIR_KEY_BASE = 2 ** 21;
export const pairKey = (left: number, right: number): number => left * PAIR_KEY_BASE + right;

/**
 * Encodes with a learned vocabulary the way Hugging Face's BPE model does: pre-tokenise, then
 * within each word repeatedly merge the adjacent pair of lowest merge rank (leftmost on ties).
 * Added tokens get the ids given for them.
 */
export class BpeEncoder {
  readonly #preTokenizer: QwenPreTokenizer;
  readonly #addedIds: ReadonlyMap<string, number>;
  readonly #symbolId: ReadonlyMap<string, number>;
  /** pair key -> rank (the merged token's id is 256 + rank). */
  readonly #ranks = new Map<number, number>();
  /** Encoded words; grows with the distinct words seen (a corpus has thousands). */
  readonly #cache = new Map<string, number[]>();

  constructor(vocabulary: BpeVocabulary, addedTokens: readonly { content: string; id: number }[] = []) {
    this.#preTokenizer = new QwenPreTokenizer(addedTokens.map((t) => t.content));
    this.#addedIds = new Map(addedTokens.map((t) => [t.content, t.id]));
    const ids = new Map<string, number>();
    vocabulary.tokens.forEach((token, id) => {
      if (ids.has(token)) throw new Error(`BPE vocabulary has ${JSON.stringify(token)} twice (ids ${ids.get(token)} and ${id})`);
      ids.set(token, id);
    });
    this.#symbolId = ids;
    vocabulary.merges.forEach(([left, right], rank) => {
      const l = ids.get(left);
      const r = ids.get(right);
      if (l === undefined || r === undefined) throw new Error(`merge ${rank} (${JSON.stringify(left)} ${JSON.stringify(right)}) uses a token not in the vocabulary`);
      if (ids.get(left + right) !== BYTE_SYMBOLS.length + rank) {
        throw new Error(`merge ${rank} must create token ${BYTE_SYMBOLS.length + rank}, ${JSON.stringify(left + right)}`);
      }
      this.#ranks.set(pairKey(l, r), rank);
    });
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    for (const section of this.#preTokenizer.sections(text)) {
      if (section.added) {
        ids.push(this.#addedIds.get(section.text) as number);
        continue;
      }
      for (const piece of this.#preTokenizer.splitSection(section.text)) ids.push(...this.encodeWord(byteLevelString(piece)));
    }
    return ids;
  }

  /** One pre-token, already byte-level mapped -> ids. */
  encodeWord(word: string): readonly number[] {
    const cached = this.#cache.get(word);
    if (cached) return cached;
    const symbols = Array.from(word, (ch) => {
      const id = this.#symbolId.get(ch);
      if (id === undefined) throw new Error(`${JSON.stringify(ch)} is not a byte-level symbol`);
      return id;
    });
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.#ranks.get(pairKey(symbols[i] as number, symbols[i + 1] as number));
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      symbols.splice(best, 2, BYTE_SYMBOLS.length + bestRank);
    }
    this.#cache.set(word, symbols);
    return symbols;
  }
}
