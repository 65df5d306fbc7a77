/**
 * Tiny random Qwen2.5-VL model directories with a tokenizer trained on the
 * project's own corpus (lib/tokenizer/tiny.ts): what the demo and the tests
 * train, loading through exactly the code paths a real checkpoint does.
 */
import { writeRandomCheckpoint, type RandomCheckpointOptions } from './random-checkpoint.js';
import { buildTokenizer, writeTokenizerFiles, type BuildTokenizerOptions, type SpecialTokenIds } from '../tokenizer/tiny.js';
import type { TrainBpeStats } from '../tokenizer/train-bpe.js';

export interface TinyModelOptions extends BuildTokenizerOptions {
  /** The texts the tokenizer is trained on (prompts and completions). */
  corpus: Iterable<string>;
  /** Seed of the random weights. */
  seed?: number;
  /**
   * Text model shape over TINY.text. `vocab` (the embedding rows) defaults to the tokenizer's
   * number of ids, so that every id a randomly initialised model can sample decodes to text
   * (Qwen pads its embedding to 151,936 rows for 151,665 ids; a trained model never samples
   * the padding rows, a random one does). A larger `vocab` is allowed, a smaller one is not.
   */
  text?: RandomCheckpointOptions['text'];
  vision?: RandomCheckpointOptions['vision'];
  tieEmbeddings?: boolean;
}

export interface TinyModelDirectory {
  /** Ids in the tokenizer. */
  tokenizerVocabSize: number;
  /** Rows of the model's embedding (config.json vocab_size). */
  modelVocabSize: number;
  specialTokenIds: SpecialTokenIds;
  stats: TrainBpeStats;
}

/**
 * Writes a complete Hugging Face Qwen2.5-VL model directory: random weights (config.json,
 * preprocessor_config.json, model.safetensors) whose config token ids are the trained
 * tokenizer's, plus the tokenizer files.
 */
export async function writeTinyModelDirectory(dir: string, options: TinyModelOptions): Promise<TinyModelDirectory> {
  const { corpus, seed, text, vision, tieEmbeddings, ...tokenizerOptions } = options;
  const built = buildTokenizer(corpus, tokenizerOptions);
  const modelVocabSize = text?.vocab ?? built.vocabSize;
  if (!Number.isSafeInteger(modelVocabSize) || modelVocabSize < built.vocabSize) {
    throw new RangeError(`text.vocab ${modelVocabSize} is smaller than the trained tokenizer (${built.vocabSize} ids)`);
  }
  await writeRandomCheckpoint(dir, {
    text: { ...text, vocab: modelVocabSize },
    ...(vision ? { vision } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(tieEmbeddings !== undefined ? { tieEmbeddings } : {}),
    tokenIds: built.specialTokenIds,
  });
  await writeTokenizerFiles(dir, built);
  return { tokenizerVocabSize: built.vocabSize, modelVocabSize, specialTokenIds: built.specialTokenIds, stats: built.stats };
}
