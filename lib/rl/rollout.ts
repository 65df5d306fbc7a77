/**
 * Sampling completions of prepared prompts through the engine's batched
 * generation (shared prefill per group, continuous batching), decoded to
 * text. The trainer's rollouts and every evaluation go through here.
 */
import type { VisionLanguageModel } from '../engine/pipeline.js';
import type { PreparedRow } from './prompts.js';

export interface Sampling {
  n: number;
  temperature: number;
  topP: number;
  /** <= 0: off. */
  topK: number;
  maxNewTokens: number;
  seed: number;
  /** Sequences decoded at once. */
  maxBatch: number;
  /** The prompts' places in the global batch a data-parallel rank takes its share of (see GenerateOptions.promptIndex). */
  promptIndex?: { first: number; stride: number };
}

export interface Rollout {
  /** Index of the prompt in the call. */
  prompt: number;
  sample: number;
  /** Completion token ids, the stop token included (it is trained on, as the reference's response mask does). */
  tokens: Int32Array;
  logprobs: Float32Array;
  text: string;
  finishReason: 'stop' | 'length' | 'cancelled';
}

export interface RolloutOptions {
  signal?: AbortSignal;
  /** Completed sequences so far, of prompts x n. */
  onProgress?: (done: number, total: number) => void;
}

/** n completions of every prompt, ordered prompt by prompt (a group is contiguous). */
export async function sampleCompletions(vlm: VisionLanguageModel, prompts: readonly PreparedRow[], sampling: Sampling, options: RolloutOptions = {}): Promise<Rollout[]> {
  const total = prompts.length * sampling.n;
  const stopIds = [...new Set([...vlm.model.config.eosTokenIds, ...vlm.tokenizer.eosTokenIds])];
  let done = 0;
  const finished = new Set<string>();
  const onToken = options.onProgress
    ? (prompt: number, sample: number, token: number) => {
        if (!stopIds.includes(token)) return;
        const key = `${prompt}/${sample}`;
        if (finished.has(key)) return;
        finished.add(key);
        options.onProgress?.(++done, total);
      }
    : undefined;
  const completions = await vlm.model.generate(
    prompts.map((p) => p.input),
    {
      samples: sampling.n,
      temperature: sampling.temperature,
      greedy: sampling.temperature === 0,
      topP: sampling.topP,
      topK: Math.max(0, sampling.topK),
      maxNewTokens: sampling.maxNewTokens,
      seed: sampling.seed,
      ...(sampling.promptIndex ? { promptIndex: sampling.promptIndex } : {}),
      maxBatch: sampling.maxBatch,
      stopTokenIds: stopIds,
      ...(onToken ? { onToken } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    },
  );
  options.onProgress?.(total, total);
  const out = completions.map((c) => ({
    prompt: c.prompt,
    sample: c.sample,
    tokens: c.tokens,
    logprobs: c.logprobs,
    text: vlm.decodeKnown(c.tokens),
    finishReason: c.finishReason,
  }));
  out.sort((a, b) => a.prompt - b.prompt || a.sample - b.sample);
  return out;
}

