/**
 * Outcome-only rewards, without count or boxes.
 *
 * `sparse`, the paper's baseline ("vanilla GRPO", rewards.md §5):
 * format = the whole completion is `<think>...</think>` then optional
 * whitespace then `<answer>...</answer>`; accuracy = the answers agree after
 * stripping and lower-casing; overall = 0.5 accuracy + 0.5 format, ungated.
 * The reference grades answers with mathruler's MATH-style normaliser; for
 * multiple-choice options like `(B) behind` that reduces to the
 * case-insensitive comparison used here.
 *
 * `sparse_scene`, the reference's `r1v_scene` (method.md §2.10): the same
 * outcome reward for a policy that writes the four SpatialThinker blocks.
 */
import { answersMatch, extractAnswer } from './spatial-format.js';
import { firstBlock, pyStrip, skipPythonSpace } from './text.js';
import type { BatchReward, RewardInput, RewardScores } from './types.js';

/**
 * Full match of `<t0>.*?</t0>\s*<t1>.*?</t1>\s*...<tn>.*?</tn>` (dot matching
 * newlines), without a backtracking regex: content is arbitrary, so the
 * earliest position each block's content can start at is the only one that
 * matters, and one scan per block decides (linear, whatever the input).
 */
function isBlockSequence(text: string, tags: readonly string[]): boolean {
  const firstOpen = `<${tags[0]}>`;
  const lastClose = `</${tags[tags.length - 1]}>`;
  if (!text.startsWith(firstOpen) || !text.endsWith(lastClose)) return false;
  let contentStart = firstOpen.length;
  for (let i = 0; i + 1 < tags.length; i++) {
    const close = `</${tags[i]}>`;
    const nextOpen = `<${tags[i + 1]}>`;
    let nextStart = -1;
    for (let at = text.indexOf(close, contentStart); at >= 0 && nextStart < 0; at = text.indexOf(close, at + 1)) {
      const next = skipPythonSpace(text, at + close.length);
      if (text.startsWith(nextOpen, next)) nextStart = next + nextOpen.length;
    }
    if (nextStart < 0) return false;
    contentStart = nextStart;
  }
  return text.length - lastClose.length >= contentStart;
}

/** Full match of `<think>.*?</think>\s*<answer>.*?</answer>`, dot matching newlines. */
export function isThinkAnswerFormat(text: string): boolean {
  return isBlockSequence(text, ['think', 'answer']);
}

/** Full match of `<observe>.*?</observe>\s*<scene>.*?</scene>\s*<think>.*?</think>\s*<answer>.*?</answer>`. */
export function isOrderedSpatialFormat(text: string): boolean {
  return isBlockSequence(text, ['observe', 'scene', 'think', 'answer']);
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

/**
 * The reference's `r1v_scene` (method.md §2.10): the sparse reward for a policy
 * that writes the four SpatialThinker blocks. Format = the blocks in order
 * and nothing else (else every component is 0); accuracy = the exact
 * case-insensitive answer match of the dense reward; overall = 0.5 accuracy +
 * 0.5. No count, no boxes: the outcome-only baseline for a policy warm-started
 * on observe/scene/think/answer traces, whose completions the think/answer
 * format of `sparse` never accepts.
 */
export function sparseSceneScore(completion: string, groundTruth: string): SparseScores {
  if (!isOrderedSpatialFormat(completion)) return { overall: 0, format: 0, accuracy: 0 };
  const accuracy = answersMatch(extractAnswer(completion), extractAnswer(groundTruth)) ? 1 : 0;
  return { overall: 0.5 * accuracy + 0.5, format: 1, accuracy };
}

export class SparseSceneReward implements BatchReward {
  readonly name = 'sparse_scene';
  async scoreBatch(inputs: readonly RewardInput[]): Promise<SparseScores[]> {
    return inputs.map((input) => sparseSceneScore(input.completion, input.groundTruth));
  }
}

export class SparseReward implements BatchReward {
  readonly name = 'sparse';
  async scoreBatch(inputs: readonly RewardInput[]): Promise<SparseScores[]> {
    return inputs.map((input) => sparseScore(input.completion, input.groundTruth));
  }
}
