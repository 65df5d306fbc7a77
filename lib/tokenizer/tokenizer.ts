/**
 * A thin, typed wrapper around `@huggingface/tokenizers` (a pure-JS port of the Hugging Face
 * `tokenizers` runtime) for Qwen2.5-VL style byte-level BPE tokenizers.
 *
 * What it adds over the raw library:
 * - loading from a model directory with errors that name the failing file;
 * - `encode` defaults to `addSpecialTokens = false` (the library defaults to true); Qwen has no
 *   BOS/EOS post-processor so both give the same ids, but the explicit default keeps prompt
 *   building independent of the tokenizer's post-processor;
 * - `decode` of an empty list returns "" (the library throws) and ids outside the vocabulary
 *   raise a RangeError (the library would silently decode them as `undefined`);
 * - `clean_up_tokenization_spaces` defaults to false when tokenizer_config.json does not set it
 *   (the library defaults to true, which breaks round trips such as "a , b" -> "a, b");
 * - the special-token table, EOS ids (tokenizer_config.json `eos_token` plus
 *   generation_config.json `eos_token_id`) and the pad id;
 * - an incremental decoder for streaming generation that never emits half a UTF-8 character.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { unsafeTokenizerPatterns } from './pattern-safety.js';

/** The parts of tokenizer_config.json this module reads (the rest is passed through). */
export interface TokenizerConfigJson {
  eos_token?: string | { content: string } | null;
  pad_token?: string | { content: string } | null;
  bos_token?: string | { content: string } | null;
  unk_token?: string | { content: string } | null;
  clean_up_tokenization_spaces?: boolean;
  chat_template?: unknown;
  [key: string]: unknown;
}

/** The parts of generation_config.json this module reads. */
export interface GenerationConfigJson {
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  [key: string]: unknown;
}

export interface SpecialToken {
  readonly token: string;
  readonly id: number;
}

export interface EncodeOptions {
  /** Run the tokenizer's post-processor (BOS/EOS templates). Default false. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop tokens marked `special` in tokenizer.json (e.g. `<|im_end|>`). Default false. */
  skipSpecialTokens?: boolean;
}

/** Incremental detokeniser: feed generated ids one at a time, get text as soon as it is complete. */
export interface StreamDecoder {
  /** Adds one id; returns the newly completed text ("" while a UTF-8 character is incomplete). */
  push(id: number): string;
  /** Returns whatever is still held back (an incomplete character decodes to U+FFFD) and resets. */
  flush(): string;
}

/** A trailing incomplete UTF-8 sequence has at most 3 bytes, so it spans at most 3 tokens. */
const MAX_PENDING_TOKENS = 3;
const REPLACEMENT_CHAR = '\uFFFD';

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

// One line: JSON.parse quotes the text around an error, newlines included.
function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*[\r\n]+\s*/g, ' ');
}

async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: invalid JSON: ${errorMessage(err)}`, { cause: err });
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export class Tokenizer {
  /** The raw tokenizer_config.json content ({} when none was given). */
  readonly config: Readonly<TokenizerConfigJson>;
  /** The added tokens marked `special`, in id order. */
  readonly specialTokens: readonly SpecialToken[];
  /** End-of-sequence ids: tokenizer_config `eos_token` first, then generation_config `eos_token_id`. */
  readonly eosTokenIds: readonly number[];
  /** Id of tokenizer_config `pad_token` (else generation_config `pad_token_id`), if any. */
  readonly padTokenId: number | undefined;

  readonly #hf: HfTokenizer;
  readonly #cleanUpSpaces: boolean;
  readonly #specialIds: ReadonlySet<number>;
  #vocabSize: number | undefined;

  private constructor(hf: HfTokenizer, config: TokenizerConfigJson, generationConfig: GenerationConfigJson | undefined) {
    this.#hf = hf;
    this.config = config;
    this.#cleanUpSpaces = config.clean_up_tokenization_spaces === true;

    const specials: SpecialToken[] = [];
    for (const [id, added] of hf.get_added_tokens_decoder()) {
      if (added.special) specials.push({ token: added.content, id });
    }
    specials.sort((a, b) => a.id - b.id);
    this.specialTokens = Object.freeze(specials);
    this.#specialIds = new Set(specials.map((t) => t.id));

    const eos: number[] = [];
    const eosToken = tokenContent(config.eos_token);
    if (eosToken !== undefined) {
      const id = hf.token_to_id(eosToken);
      if (id === undefined) throw new Error(`tokenizer_config eos_token ${JSON.stringify(eosToken)} is not in the vocabulary`);
      eos.push(id);
    }
    const genEos = generationConfig?.eos_token_id;
    for (const id of genEos === undefined || genEos === null ? [] : Array.isArray(genEos) ? genEos : [genEos]) {
      if (!Number.isInteger(id)) throw new Error(`generation_config eos_token_id must be integers, got ${JSON.stringify(genEos)}`);
      if (!eos.includes(id)) eos.push(id);
    }
    this.eosTokenIds = Object.freeze(eos);

    const padToken = tokenContent(config.pad_token);
    let pad: number | undefined;
    if (padToken !== undefined) {
      pad = hf.token_to_id(padToken);
      if (pad === undefined) throw new Error(`tokenizer_config pad_token ${JSON.stringify(padToken)} is not in the vocabulary`);
    } else if (typeof generationConfig?.pad_token_id === 'number') {
      pad = generationConfig.pad_token_id;
    }
    this.padTokenId = pad;
  }

  /**
   * Loads dir/tokenizer.json and dir/tokenizer_config.json (both required) and, when present,
   * dir/generation_config.json (for its eos_token_id list). Errors name the failing file:
   * "cannot read tokenizer /path/tokenizer.json: ...".
   */
  static async fromDirectory(dir: string): Promise<Tokenizer> {
    const tokenizerPath = join(dir, 'tokenizer.json');
    const configPath = join(dir, 'tokenizer_config.json');
    const generationPath = join(dir, 'generation_config.json');
    // Settled in order, so a directory missing both files always names tokenizer.json.
    const [tokenizerRead, configRead] = await Promise.allSettled([
      readJsonFile(tokenizerPath, 'tokenizer'),
      readJsonFile(configPath, 'tokenizer'),
    ]);
    if (tokenizerRead.status === 'rejected') throw tokenizerRead.reason;
    if (configRead.status === 'rejected') throw configRead.reason;
    const tokenizerJson = tokenizerRead.value;
    const config = configRead.value;
    if (!isPlainObject(config)) throw new Error(`cannot read tokenizer ${configPath}: expected a JSON object`);

    let generation: GenerationConfigJson | undefined;
    let generationText: string | undefined;
    try {
      generationText = await readFile(generationPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new Error(`cannot read generation config ${generationPath}: ${errorMessage(err)}`, { cause: err });
      }
    }
    if (generationText !== undefined) {
      try {
        generation = JSON.parse(generationText) as GenerationConfigJson;
      } catch (err) {
        throw new Error(`cannot read generation config ${generationPath}: invalid JSON: ${errorMessage(err)}`, { cause: err });
      }
      if (!isPlainObject(generation)) throw new Error(`cannot read generation config ${generationPath}: expected a JSON object`);
    }

    try {
      return Tokenizer.fromJson(tokenizerJson, config as TokenizerConfigJson, generation);
    } catch (err) {
      throw new Error(`cannot read tokenizer ${tokenizerPath}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Builds a tokenizer from parsed tokenizer.json (+ tokenizer_config.json, generation_config.json). */
  static fromJson(
    tokenizerJson: unknown,
    tokenizerConfig: TokenizerConfigJson = {},
    generationConfig?: GenerationConfigJson,
  ): Tokenizer {
    if (!isPlainObject(tokenizerJson)) throw new Error('tokenizer.json must be a JSON object');
    if (!isPlainObject(tokenizerJson.model)) throw new Error('tokenizer.json has no "model" object');
    if (!Array.isArray(tokenizerJson.added_tokens)) {
      // The library iterates `added_tokens` unconditionally.
      tokenizerJson = { ...tokenizerJson, added_tokens: [] };
    }
    const [unsafe] = unsafeTokenizerPatterns(tokenizerJson);
    if (unsafe) throw new Error(`${unsafe.path} ${JSON.stringify(unsafe.pattern)}: ${unsafe.reason}; refusing it`);
    const hf = new HfTokenizer(tokenizerJson as object, tokenizerConfig);
    return new Tokenizer(hf, tokenizerConfig, generationConfig);
  }

  /** Number of ids (largest id + 1, added tokens included); the model's embedding may be larger. */
  get vocabSize(): number {
    if (this.#vocabSize === undefined) {
      let max = -1;
      for (const id of this.#hf.get_vocab(true).values()) if (id > max) max = id;
      this.#vocabSize = max + 1;
    }
    return this.#vocabSize;
  }

  /**
   * Text -> ids. Special-token strings in the text (e.g. `<|im_start|>`) are always recognised as
   * single tokens, as Hugging Face does with split_special_tokens = false.
   */
  encode(text: string, { addSpecialTokens = false }: EncodeOptions = {}): number[] {
    if (text.length === 0) return [];
    return this.#hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Ids -> text. Throws RangeError for ids outside the vocabulary. */
  decode(ids: ArrayLike<number> | Iterable<number>, { skipSpecialTokens = false }: DecodeOptions = {}): string {
    const list = Array.from(ids as ArrayLike<number>);
    if (list.length === 0) return '';
    for (const id of list) {
      if (!Number.isInteger(id) || this.#hf.id_to_token(id) === undefined) {
        throw new RangeError(`token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
      }
    }
    return this.#hf.decode(list, {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: this.#cleanUpSpaces,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) ? this.#hf.id_to_token(id) : undefined;
  }

  /** Whether `id` is an added token marked special. */
  isSpecial(id: number): boolean {
    return this.#specialIds.has(id);
  }

  /**
   * Streaming detokeniser. Uses the "prefix/read offset" scheme of text-generation-inference:
   * each push decodes a short window of recent ids and emits the text past what was already
   * emitted, holding it back while it ends in U+FFFD (an incomplete UTF-8 character). A U+FFFD
   * that survives more than 3 pending tokens is a real one (or invalid bytes) and is emitted.
   */
  createDecoder(options: DecodeOptions = {}): StreamDecoder {
    let ids: number[] = [];
    let prefixOffset = 0;
    let readOffset = 0;
    const skip = options.skipSpecialTokens === true;
    const decode = (slice: number[]): string => this.decode(slice, options);
    const suffix = (full: string, prefix: string): string =>
      full.startsWith(prefix) ? full.slice(prefix.length) : full.slice(Math.min(prefix.length, full.length));
    return {
      push: (id: number): string => {
        if (this.idToToken(id) === undefined) {
          throw new RangeError(`token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
        }
        ids.push(id);
        const prefixText = decode(ids.slice(prefixOffset, readOffset));
        const newText = decode(ids.slice(prefixOffset));
        // Ids that add no text (skipped specials) do not count towards the 3-token bound.
        let pending = 0;
        for (let i = readOffset; i < ids.length; i++) if (!(skip && this.isSpecial(ids[i]!))) pending++;
        if (newText.length > prefixText.length && (!newText.endsWith(REPLACEMENT_CHAR) || pending > MAX_PENDING_TOKENS)) {
          const out = suffix(newText, prefixText);
          prefixOffset = readOffset;
          readOffset = ids.length;
          // Keep memory bounded: only ids from prefixOffset on are ever needed again.
          if (prefixOffset > 0) {
            ids = ids.slice(prefixOffset);
            readOffset -= prefixOffset;
            prefixOffset = 0;
          }
          return out;
        }
        return '';
      },
      flush: (): string => {
        const out = readOffset < ids.length ? suffix(decode(ids.slice(prefixOffset)), decode(ids.slice(prefixOffset, readOffset))) : '';
        ids = [];
        prefixOffset = 0;
        readOffset = 0;
        return out;
      },
    };
  }
}
