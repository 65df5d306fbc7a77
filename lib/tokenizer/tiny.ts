/**
 * Small Qwen2.5-VL tokenizers trained on the project's own corpus (lib/engine/tiny-model.ts
 * writes tiny random Qwen2.5-VL model directories that use them).
 *
 * A real Qwen2.5-VL vocabulary has 151,665 ids; with it a 64-wide model spends almost all of
 * its parameters and step time on the embedding and the LM head. The tokenizer built here has
 * the same structure as Qwen's tokenizer.json (NFC, Qwen2's split regex, byte-level BPE, the
 * 22 Qwen2.5-VL added tokens after the BPE vocabulary) and a tokenizer_config.json with the
 * Qwen2.5-VL chat template, so the directory loads through exactly the code paths a real
 * checkpoint does (Tokenizer.fromDirectory, loadChatTemplate, VisionLanguageModel.load) and
 * can be opened by transformers as well.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { QWEN2_BYTE_LEVEL, QWEN2_NORMALIZER, QWEN2_PRE_TOKENIZER } from './byte-level-bpe.js';
import { QWEN2_5_VL_CHAT_TEMPLATE } from './qwen2_5_vl_chat_template.js';
import type { GenerationConfigJson, TokenizerConfigJson } from './tokenizer.js';
import { trainBpe, type TrainBpeStats } from './train-bpe.js';

export interface AddedTokenSpec {
  readonly content: string;
  /** Special tokens are dropped by decode(skipSpecialTokens) (Hugging Face semantics). */
  readonly special: boolean;
}

/** Qwen2.5-VL's added tokens, in id order (151643... in the real vocabulary). */
export const QWEN2_5_VL_ADDED_TOKENS: readonly AddedTokenSpec[] = Object.freeze(
  [
    ['<|endoftext|>', true],
    ['<|im_start|>', true],
    ['<|im_end|>', true],
    ['<|object_ref_start|>', true],
    ['<|object_ref_end|>', true],
    ['<|box_start|>', true],
    ['<|box_end|>', true],
    ['<|quad_start|>', true],
    ['<|quad_end|>', true],
    ['<|vision_start|>', true],
    ['<|vision_end|>', true],
    ['<|vision_pad|>', true],
    ['<|image_pad|>', true],
    ['<|video_pad|>', true],
    ['<tool_call>', false],
    ['</tool_call>', false],
    ['<|fim_prefix|>', false],
    ['<|fim_middle|>', false],
    ['<|fim_suffix|>', false],
    ['<|fim_pad|>', false],
    ['<|repo_name|>', false],
    ['<|file_sep|>', false],
  ].map(([content, special]) => Object.freeze({ content: content as string, special: special as boolean })),
);

/** The ids of the special tokens a Qwen2.5-VL model directory's config.json names. */
export interface SpecialTokenIds {
  endoftext: number;
  imStart: number;
  imEnd: number;
  visionStart: number;
  visionEnd: number;
  visionPad: number;
  imagePad: number;
  videoPad: number;
}

/** Which added token each SpecialTokenIds field names. */
const SPECIAL_TOKEN_FIELDS: Readonly<Record<keyof SpecialTokenIds, string>> = {
  endoftext: '<|endoftext|>',
  imStart: '<|im_start|>',
  imEnd: '<|im_end|>',
  visionStart: '<|vision_start|>',
  visionEnd: '<|vision_end|>',
  visionPad: '<|vision_pad|>',
  imagePad: '<|image_pad|>',
  videoPad: '<|video_pad|>',
};

/** Qwen2.5-VL's tokenizer_config.json model_max_length. */
const QWEN2_5_VL_MODEL_MAX_LENGTH = 131072;

export interface TokenizerJsonAddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** tokenizer.json as Hugging Face's `tokenizers` writes it for a byte-level BPE. */
export interface TokenizerJson {
  version: '1.0';
  truncation: null;
  padding: null;
  added_tokens: TokenizerJsonAddedToken[];
  normalizer: typeof QWEN2_NORMALIZER;
  pre_tokenizer: typeof QWEN2_PRE_TOKENIZER;
  post_processor: typeof QWEN2_BYTE_LEVEL;
  decoder: typeof QWEN2_BYTE_LEVEL;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: '';
    end_of_word_suffix: '';
    fuse_unk: false;
    byte_fallback: false;
    ignore_merges: false;
    vocab: Record<string, number>;
    merges: [string, string][];
  };
}

export interface BuildTokenizerOptions {
  /**
   * Ids in the whole tokenizer: the BPE vocabulary (256 byte symbols + merges) plus the 22
   * added tokens. Fewer when the corpus runs out of pairs seen minPairFrequency times.
   */
  vocabSize: number;
  /** Merge only pairs seen at least this often (default 2). */
  minPairFrequency?: number;
}

export interface BuiltTokenizer {
  tokenizerJson: TokenizerJson;
  tokenizerConfig: TokenizerConfigJson;
  /** generation_config.json: the ids generation stops at (<|im_end|>, <|endoftext|>), bos and pad. */
  generationConfig: GenerationConfigJson;
  specialTokenIds: SpecialTokenIds;
  /** Ids in the tokenizer (largest id + 1); a model's embedding may have more rows. */
  vocabSize: number;
  /** What training saw and produced. */
  stats: TrainBpeStats;
}

/** Trains a byte-level BPE on `corpus` and lays it out as Qwen2.5-VL tokenizer files. */
export function buildTokenizer(corpus: Iterable<string>, options: BuildTokenizerOptions): BuiltTokenizer {
  const added = QWEN2_5_VL_ADDED_TOKENS;
  const { vocabSize, minPairFrequency } = options;
  if (!Number.isSafeInteger(vocabSize) || vocabSize < 256 + added.length) {
    throw new RangeError(`tokenizer vocabSize must be an integer of at least ${256 + added.length} (256 byte symbols + ${added.length} added tokens), got ${vocabSize}`);
  }
  const bpe = trainBpe(corpus, {
    vocabSize: vocabSize - added.length,
    addedTokens: added.map((t) => t.content),
    ...(minPairFrequency !== undefined ? { minPairFrequency } : {}),
  });
  const firstAddedId = bpe.tokens.length;
  const addedTokens: TokenizerJsonAddedToken[] = added.map((t, i) => ({
    id: firstAddedId + i,
    content: t.content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: t.special,
  }));
  const idOf = new Map(addedTokens.map((t) => [t.content, t.id]));
  const specialTokenIds = Object.fromEntries(
    Object.entries(SPECIAL_TOKEN_FIELDS).map(([field, content]) => [field, idOf.get(content) as number]),
  ) as unknown as SpecialTokenIds;

  const vocab: Record<string, number> = {};
  bpe.tokens.forEach((token, id) => (vocab[token] = id));
  const tokenizerJson: TokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: QWEN2_NORMALIZER,
    pre_tokenizer: QWEN2_PRE_TOKENIZER,
    post_processor: QWEN2_BYTE_LEVEL,
    decoder: QWEN2_BYTE_LEVEL,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: bpe.merges.map(([left, right]) => [left, right]),
    },
  };

  const tokenizerConfig: TokenizerConfigJson = {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(
      addedTokens.map(({ id, ...token }) => [
        String(id),
        { content: token.content, lstrip: token.lstrip, normalized: token.normalized, rstrip: token.rstrip, single_word: token.single_word, special: token.special },
      ]),
    ),
    additional_special_tokens: addedTokens.filter((t) => t.special && t.content !== '<|endoftext|>').map((t) => t.content),
    bos_token: null,
    chat_template: QWEN2_5_VL_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: QWEN2_5_VL_MODEL_MAX_LENGTH,
    pad_token: '<|endoftext|>',
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    unk_token: null,
  };
  const generationConfig: GenerationConfigJson = {
    bos_token_id: specialTokenIds.endoftext,
    pad_token_id: specialTokenIds.endoftext,
    eos_token_id: [specialTokenIds.imEnd, specialTokenIds.endoftext],
  };
  return {
    tokenizerJson,
    tokenizerConfig,
    generationConfig,
    specialTokenIds,
    vocabSize: firstAddedId + addedTokens.length,
    stats: bpe.stats,
  };
}

/**
 * tokenizer.json text: 2-space indented like Hugging Face's, but with one vocabulary entry
 * and one merge per line, the vocabulary in id order (a plain object would list integer-like
 * tokens such as "7" first).
 */
export function tokenizerJsonText(json: TokenizerJson): string {
  // Byte-level tokens never contain a space (it maps to "Ġ"), so these cannot collide.
  const VOCAB = 'vocab in id order';
  const MERGES = 'merges one per line';
  const skeleton = JSON.stringify({ ...json, model: { ...json.model, vocab: VOCAB, merges: MERGES } }, null, 2);
  const indent = ' '.repeat(6);
  const entries = Object.entries(json.model.vocab).sort((a, b) => a[1] - b[1]);
  const vocab = entries.length === 0 ? '{}' : `{\n${entries.map(([token, id]) => `${indent}${JSON.stringify(token)}: ${id}`).join(',\n')}\n    }`;
  const merges =
    json.model.merges.length === 0 ? '[]' : `[\n${json.model.merges.map(([l, r]) => `${indent}[${JSON.stringify(l)}, ${JSON.stringify(r)}]`).join(',\n')}\n    ]`;
  return `${skeleton.replace(JSON.stringify(VOCAB), () => vocab).replace(JSON.stringify(MERGES), () => merges)}\n`;
}

/** Writes tokenizer.json, tokenizer_config.json and generation_config.json into `dir`. */
export async function writeTokenizerFiles(dir: string, built: BuiltTokenizer): Promise<void> {
  await Promise.all([
    writeFile(join(dir, 'tokenizer.json'), tokenizerJsonText(built.tokenizerJson)),
    writeFile(join(dir, 'tokenizer_config.json'), `${JSON.stringify(built.tokenizerConfig, null, 2)}\n`),
    writeFile(join(dir, 'generation_config.json'), `${JSON.stringify(built.generationConfig, null, 2)}\n`),
  ]);
}
