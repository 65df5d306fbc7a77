/**
 * The sparse baseline of the paper ("vanilla GRPO", rewards.md §5):
 * format = the whole completion is `<think>...</think>` then optional
 * whitespace then `<answer>...</answer>`; accuracy = the answers agree after
 * stripping and lower-casing; overall = 0.5 accuracy + 0.5 format, ungated.
 * The reference grades answers with mathruler's MATH-style normaliser; for
 * multiple-choice options like `(B) behind` that reduces to the
 * case-insensitive comparison used here.
 */
import { firstBlock, pyStrip, skipPythonSpace } from './text.js';
import type { BatchReward, RewardInput, RewardScores } from './types.js';

/** Full match of `<think>.*?</think>\s*<answer>.*?</answer>`, dot matching newlines. */
export function isThinkAnswerFormat(text: string): boolean {
  const open = '<think>';
  const close = '</think>';
  const answerOpen = '<answer>';
  const answerClose = '</answer>';
  if (!text.startsWith(open) || !text.endsWith(answerClose)) return false;
  const lastAnswerOpen = text.length - answerClose.length - answerOpen.length;
  for (let at = text.indexOf(close, open.length); at >= 0; at = text.indexOf(close, at + 1)) {
    const next = skipPythonSpace(text, at + close.length);
    if (next > lastAnswerOpen) return false;
    if (text.startsWith(answerOpen, next)) return true;
  }
  return false;
}

export interface SparseScores extends RewardScores {
  format: number;
  accuracy: number;
}

export function sparseScore(completion: string, groundTruth: string): SparseScores {
  const format = isThinkAnswerFormat(completion) ? 1 : 0;
  const expected = pyStrip(firstBlock(groundTruth, 'answer') ?? groundTruth);
  // The reference extracts the prediction's answer without dot-matches-newline,
  // falling back to the whole completion.
  const predicted = pyStrip(firstBlock(completion, 'answer', false) ?? completion);
  const accuracy = predicted.toLowerCase() === expected.toLowerCase() ? 1 : 0;
  return { overall: 0.5 * accuracy + 0.5 * format, format, accuracy };
}

export class SparseReward implements BatchReward {
  readonly name = 'sparse';
  async scoreBatch(inputs: readonly RewardInput[]): Promise<SparseScores[]> {
    return inputs.map((input) => sparseScore(input.completion, input.groundTruth));
  }
}
