/**
 * Multiple-choice consistency validation of synthesised questions (method.md §4.3 step 6): a
 * vision LLM (GPT-4o in the method) answers each question from the image alone; a row is kept
 * when one of its answers equals the ground-truth letter and dropped when all disagree.
 */
import { sha256Hex } from './llm-cache.js';
import { imageContent, LlmSession, type LlmRunOptions } from './llm.js';

export interface McRow {
  /** Stable id of the row (part of the cache key). */
  id: string;
  /** JPEG or PNG bytes; or give `loadImage` to read them only while the row is worked on. */
  imageBytes?: Uint8Array;
  loadImage?: () => Promise<Uint8Array>;
  question_with_options: string;
  /** Ground-truth answer letter (e.g. "B" or "(B)"). */
  answer_only: string;
}

export interface McProgress {
  done: number;
  total: number;
  kept: number;
  dropped: number;
  cached: number;
  requests: number;
  retries: number;
}

export interface ValidateOptions extends LlmRunOptions {
  /** Attempt phases (default [2, 2]: two attempts, then two more if neither matched). */
  attempts?: number[];
  onProgress?: (p: McProgress) => void;
  temperature?: number;
  maxTokens?: number;
}

export interface ValidateResult {
  kept: string[];
  dropped: string[];
  passRate: number;
  /** Number of answers served from the cache. */
  cached: number;
  /** HTTP round trips that returned an answer (excluding retries). */
  requests: number;
  /** Retries performed after 429 / 5xx / network errors. */
  retries: number;
}

export function mcValidationPrompt(questionWithOptions: string): string {
  return (
    'Answer the following multiple choice question about the image.\n\n' +
    `${questionWithOptions}\n\n` +
    'Reply with only the letter of the correct answer (A, B, C, or D).'
  );
}

/** The method's parser: the first character of the reply that is one of A, B, C, D (or null). */
export function parseMcLetter(reply: string): string | null {
  for (const ch of reply) if (ch === 'A' || ch === 'B' || ch === 'C' || ch === 'D') return ch;
  return null;
}

/** Ground-truth letter from `answer_only` ("B", "(B)", "b", "(B) behind"). */
export function groundTruthLetter(answerOnly: string): string | null {
  const m = /^\s*\(?\s*([A-Da-d])\b/.exec(answerOnly);
  return m ? m[1]!.toUpperCase() : null;
}

async function rowImage(row: McRow): Promise<Uint8Array> {
  if (row.imageBytes) return row.imageBytes;
  if (row.loadImage) return row.loadImage();
  throw new TypeError(`row ${row.id}: neither imageBytes nor loadImage given`);
}

/**
 * Ask the LLM each multiple-choice question (with its image) up to sum(attempts) times, phase by
 * phase, stopping at the first answer equal to the ground-truth letter; a row is kept if any
 * answer matches and dropped if all disagree. Every answer is cached on disk under
 * (model, row id, attempt index, hash of prompt and image). Non-retryable errors (e.g. 401)
 * abort the run with a redacted LlmError.
 */
export async function validateMultipleChoice(rows: readonly McRow[], options: ValidateOptions): Promise<ValidateResult> {
  const attempts = options.attempts ?? [2, 2];
  const totalAttempts = attempts.reduce((a, b) => a + Math.max(0, Math.floor(b)), 0);
  if (totalAttempts < 1) throw new RangeError('attempts must allow at least one attempt');
  const session = new LlmSession(options);
  const stats = { done: 0, kept: 0, dropped: 0 };
  const verdict = new Map<string, boolean>();

  const validateRow = async (row: McRow): Promise<void> => {
    const gt = groundTruthLetter(row.answer_only);
    const prompt = mcValidationPrompt(row.question_with_options);
    const image = await rowImage(row);
    const promptHash = sha256Hex(`${prompt}\n#image:${sha256Hex(image)}`);
    let ok = false;
    for (let a = 0; a < totalAttempts && !ok; a++) {
      const reply = await session.cachedReply(['mc-validate-v1', session.model, row.id, a, promptHash], () => ({
        content: [{ type: 'text', text: prompt }, imageContent(image)],
        temperature: options.temperature ?? 0,
        maxTokens: options.maxTokens ?? 10,
      }));
      ok = gt !== null && parseMcLetter(reply) === gt;
    }
    verdict.set(row.id, ok);
    stats.done++;
    if (ok) stats.kept++;
    else stats.dropped++;
    options.onProgress?.({ ...stats, ...session.counts, total: rows.length });
  };

  try {
    await session.forEach(rows, validateRow);
  } finally {
    session.close();
  }
  const kept: string[] = [];
  const dropped: string[] = [];
  for (const row of rows) (verdict.get(row.id) ? kept : dropped).push(row.id);
  return {
    kept,
    dropped,
    passRate: rows.length === 0 ? 0 : kept.length / rows.length,
    ...session.counts,
  };
}
