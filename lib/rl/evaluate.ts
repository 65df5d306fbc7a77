/**
 * Validation of a policy on held-out rows: answer accuracy, format rate, box
 * localisation (mapped CIoU after Hungarian matching, whether or not the
 * answer was right), how often the answer is one of the options at all (a
 * small model often pairs a valid letter with text it made up), the reward
 * and its components, per question category.
 * The same numbers whatever reward the run trains with, so dense and sparse
 * runs compare.
 */
import type { VisionLanguageModel } from '../engine/pipeline.js';
import { parseGroundTruth } from '../rewards/ground-truth.js';
import { answersMatch, checkFormat, extractAnswer } from '../rewards/spatial-format.js';
import { SpatialReward } from '../rewards/spatial-reward.js';
import type { BatchReward, RewardInput, RewardScores } from '../rewards/types.js';
import type { PreparedRow } from './prompts.js';
import { sampleCompletions, type Rollout, type RolloutOptions, type Sampling } from './rollout.js';

export interface EvaluatedSample {
  row: PreparedRow;
  rollout: Rollout;
  correct: boolean;
  wellFormed: boolean;
  /** The answer is one of the row's options, right or wrong (undefined when the row lists none). */
  answerIsOption: boolean | undefined;
  ciou: number;
  reward: RewardScores;
}

export interface Evaluation {
  metrics: Record<string, number>;
  samples: EvaluatedSample[];
}

export interface EvaluateOptions extends RolloutOptions {
  /** Prompts generated per engine call. */
  batchSize?: number;
}

// Made on first use: opening WordNet at import would tax every command that
// merely loads this module.
let localisation: SpatialReward | undefined;

/** Scores completions already sampled (each names its row by `prompt`). */
export async function scoreRollouts(rows: readonly PreparedRow[], rollouts: readonly Rollout[], reward: BatchReward): Promise<EvaluatedSample[]> {
  const inputs: RewardInput[] = rollouts.map((r) => {
    const row = rows[r.prompt] as PreparedRow;
    return { completion: r.text, groundTruth: row.groundTruth, prompt: row.prompt, image: row.image };
  });
  const [rewards, cious] = await Promise.all([reward.scoreBatch(inputs), (localisation ??= new SpatialReward({ similarity: 'wordnet' })).localisationScores(inputs)]);
  return rollouts.map((rollout, i) => {
    const row = rows[rollout.prompt] as PreparedRow;
    return {
      row,
      rollout,
      correct: answersMatch(extractAnswer(rollout.text), parseGroundTruth(row.groundTruth).answer),
      wellFormed: checkFormat(rollout.text) !== undefined,
      answerIsOption: isOneOfTheOptions(extractAnswer(rollout.text), row.source.row.options),
      ciou: cious[i] as number,
      reward: rewards[i] as RewardScores,
    };
  });
}

/** Whether `answer` is `(L) text` for one of the options (lettered A, B, ... in order), as the accuracy check compares. */
function isOneOfTheOptions(answer: string, options: unknown): boolean | undefined {
  if (!Array.isArray(options) || options.length === 0 || !options.every((o) => typeof o === 'string')) return undefined;
  return options.some((text, i) => answersMatch(answer, `(${String.fromCharCode(65 + i)}) ${text}`));
}

/** Mean of every metric over samples, overall and per category (`<name>/<category>`). */
export function summarise(samples: readonly EvaluatedSample[], prefix = 'val/'): Record<string, number> {
  const metrics: Record<string, number> = {};
  const groups = new Map<string, EvaluatedSample[]>([['', [...samples]]]);
  for (const s of samples) {
    const category = s.row.source.row.category;
    if (typeof category === 'string' && category !== '') groups.set(category, [...(groups.get(category) ?? []), s]);
  }
  for (const [category, group] of groups) {
    const suffix = category === '' ? '' : `/${category}`;
    const mean = (f: (s: EvaluatedSample) => number) => group.reduce((a, s) => a + f(s), 0) / Math.max(1, group.length);
    metrics[`${prefix}accuracy${suffix}`] = mean((s) => (s.correct ? 1 : 0));
    if (category !== '') continue;
    metrics[`${prefix}format_rate`] = mean((s) => (s.wellFormed ? 1 : 0));
    metrics[`${prefix}ciou`] = mean((s) => s.ciou);
    const withOptions = group.filter((s) => s.answerIsOption !== undefined);
    if (withOptions.length > 0) metrics[`${prefix}answer_is_option`] = withOptions.filter((s) => s.answerIsOption).length / withOptions.length;
    metrics[`${prefix}response_length/mean`] = mean((s) => s.rollout.tokens.length);
    metrics[`${prefix}samples`] = group.length;
    const components = new Set(group.flatMap((s) => Object.keys(s.reward)));
    for (const c of components) metrics[`${prefix}reward/${c}`] = mean((s) => s.reward[c] ?? 0);
  }
  return metrics;
}

/** Generates `sampling.n` completions per row and scores each: the metrics are means over every completion. */
export async function evaluatePolicy(
  vlm: VisionLanguageModel,
  rows: readonly PreparedRow[],
  sampling: Sampling,
  reward: BatchReward,
  options: EvaluateOptions = {},
): Promise<Evaluation> {
  const batch = options.batchSize ?? 64;
  const n = Math.max(1, sampling.n);
  const samples: EvaluatedSample[] = [];
  for (let start = 0; start < rows.length; start += batch) {
    const chunk = rows.slice(start, start + batch);
    const rollouts = await sampleCompletions(vlm, chunk, { ...sampling, n }, {
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (done) => options.onProgress?.(start * n + done, rows.length * n),
    });
    if (options.signal?.aborted) break;
    const scored = await scoreRollouts(chunk, rollouts, reward);
    samples.push(...scored.map((s) => ({ ...s, rollout: { ...s.rollout, prompt: s.rollout.prompt + start } })));
  }
  return { metrics: summarise(samples), samples };
}
