/**
 * Evaluation through the native engine: greedy decoding of batches of
 * prompts, as the reference decodes (HF `generate`, `do_sample=False`,
 * `max_new_tokens` 2048, stop at the checkpoint's end-of-turn tokens;
 * shared/spec/method.md §5.3). The reference's base-model rows also applied
 * the base checkpoints' `repetition_penalty` 1.05, which the engine does not
 * have: base-model numbers from here are plain greedy.
 */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { VisionLanguageModel } from '../../engine/pipeline.js';
import type { LoadOptions } from '../../engine/model.js';
import type { Generation, GenerationRequest, Generator } from '../types.js';

export interface EngineGeneratorOptions extends LoadOptions {
  /** Default 2048, as the paper. */
  maxNewTokens?: number;
  /** Prompts per engine call, decoded together (default 16). */
  batchSize?: number;
}

/** Name, size and modification time of the weight files: a resumed run must use the same weights. */
async function weightsFingerprint(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.safetensors')).sort();
  for (const name of names) {
    const s = await stat(join(dir, name));
    hash.update(`${name}\0${s.size}\0${Math.round(s.mtimeMs)}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}

export class EngineGenerator implements Generator {
  readonly identity: Readonly<Record<string, unknown>>;
  readonly batchSize: number;

  private constructor(
    private readonly vlm: VisionLanguageModel,
    readonly maxNewTokens: number,
    batchSize: number,
    identity: Record<string, unknown>,
  ) {
    this.batchSize = batchSize;
    this.identity = identity;
  }

  static async load(modelDir: string, options: EngineGeneratorOptions = {}): Promise<EngineGenerator> {
    const maxNewTokens = options.maxNewTokens ?? 2048;
    const batchSize = options.batchSize ?? 16;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new RangeError(`maxNewTokens must be a positive integer, got ${maxNewTokens}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    const { maxNewTokens: _m, batchSize: _b, ...load } = options;
    const vlm = await VisionLanguageModel.load(modelDir, load);
    const dir = resolve(modelDir);
    return new EngineGenerator(vlm, maxNewTokens, batchSize, {
      backend: 'engine',
      model: dir,
      weights: await weightsFingerprint(dir),
      decoding: 'greedy',
      maxNewTokens,
    });
  }

  async generate(
    requests: readonly GenerationRequest[],
    handlers: { onResult: (g: Generation) => void | Promise<void>; onError: (id: string, error: Error) => void; signal?: AbortSignal },
  ): Promise<void> {
    if (requests.length === 0) return;
    const completions = await this.vlm.generate(
      requests.map((r) => ({ images: r.images.map((i) => i.bytes), text: r.text })),
      { greedy: true, maxNewTokens: this.maxNewTokens, maxBatch: requests.length, ...(handlers.signal ? { signal: handlers.signal } : {}) },
    );
    for (const c of completions) {
      // Sequences cut short by an abort are not answers; a later run redoes them.
      if (c.finishReason === 'cancelled') continue;
      await handlers.onResult({ id: requests[c.prompt]!.id, text: c.text, finishReason: c.finishReason, tokens: c.tokens.length });
    }
  }

  close(): Promise<void> {
    return this.vlm.dispose();
  }
}
