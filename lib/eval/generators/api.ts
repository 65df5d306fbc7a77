/**
 * Evaluation of a model behind an OpenAI-compatible chat-completions
 * endpoint (GPT-4o-style baselines, a vLLM server), through the project's
 * LLM session (lib/synth/llm.ts): bounded concurrency, retries with backoff
 * on 429 / 5xx / network errors, an on-disk reply cache (a re-run, or a run
 * in a new output folder, pays nothing for answers it has), API keys
 * redacted from every message.
 *
 * Requests follow the reference's OpenAI path (shared/spec/method.md §5.3):
 * one user message with the text first and then the images as data URLs,
 * `max_tokens` 2048; temperature 0 as the paper states (the reference left it
 * unset).
 */
import sharp from 'sharp';
import { sha256Hex } from '../../synth/llm-cache.js';
import { LlmError, LlmSession, imageDataUrl, type LlmCallCounts, type LlmEndpoint, type RetryOptions } from '../../synth/llm.js';
import type { EvalImage, Generation, GenerationRequest, Generator } from '../types.js';
import type { ChatCompletionContentPart } from 'openai/resources/chat/completions';

export interface ApiGeneratorOptions {
  endpoint: LlmEndpoint;
  /** Default 2048. */
  maxTokens?: number;
  /** Default 0. */
  temperature?: number;
  /** Requests in flight (default 8). */
  concurrency?: number;
  /** Folder of the reply cache. */
  cacheDir: string;
  retry?: RetryOptions;
  timeoutMs?: number;
}

/** HTTP statuses after which no request can succeed: stop the run instead of failing sample by sample. */
const FATAL_STATUSES = new Set([401, 403, 404]);

function isPngOrJpeg(bytes: Uint8Array): boolean {
  const png = bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  const jpeg = bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
  return png || jpeg;
}

/** The image as a data URL: PNG and JPEG as stored, other formats re-encoded as PNG (as the reference sends every image). */
async function imagePart(image: EvalImage): Promise<ChatCompletionContentPart> {
  const bytes = isPngOrJpeg(image.bytes) ? image.bytes : new Uint8Array(await sharp(image.bytes).png().toBuffer());
  return { type: 'image_url', image_url: { url: imageDataUrl(bytes) } };
}

export class ApiGenerator implements Generator {
  readonly identity: Readonly<Record<string, unknown>>;
  readonly batchSize: number;
  readonly counts: LlmCallCounts = { requests: 0, cached: 0, retries: 0 };
  private readonly maxTokens: number;
  private readonly temperature: number;
  private readonly concurrency: number;

  constructor(private readonly options: ApiGeneratorOptions) {
    this.maxTokens = options.maxTokens ?? 2048;
    this.temperature = options.temperature ?? 0;
    this.concurrency = options.concurrency ?? 8;
    if (!Number.isInteger(this.maxTokens) || this.maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${this.maxTokens}`);
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${this.concurrency}`);
    // Enough requests per call to keep every slot busy while results are written.
    this.batchSize = this.concurrency * 4;
    this.identity = {
      backend: 'api',
      model: options.endpoint.model,
      baseURL: options.endpoint.baseURL,
      temperature: this.temperature,
      maxTokens: this.maxTokens,
    };
  }

  private cacheKey(request: GenerationRequest): (string | number)[] {
    const content = sha256Hex(request.text + request.images.map((i) => `\n#image:${sha256Hex(i.bytes)}`).join(''));
    return ['eval-v1', this.options.endpoint.baseURL, this.options.endpoint.model, this.maxTokens, this.temperature, content];
  }

  async generate(
    requests: readonly GenerationRequest[],
    handlers: { onResult: (g: Generation) => void | Promise<void>; onError: (id: string, error: Error) => void; signal?: AbortSignal },
  ): Promise<void> {
    const session = new LlmSession({
      endpoint: this.options.endpoint,
      concurrency: this.concurrency,
      cacheDir: this.options.cacheDir,
      ...(handlers.signal ? { signal: handlers.signal } : {}),
      ...(this.options.retry ? { retry: this.options.retry } : {}),
      ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
    });
    try {
      await session.forEach(requests, async (request) => {
        let reply: string;
        try {
          reply = await session.cachedReply(this.cacheKey(request), async () => ({
            content: [{ type: 'text', text: request.text }, ...(await Promise.all(request.images.map(imagePart)))],
            temperature: this.temperature,
            maxTokens: this.maxTokens,
          }));
        } catch (error) {
          // A request the server refuses (e.g. HTTP 400 for one image) fails that sample only.
          if (error instanceof LlmError && !session.signal.aborted && error.status !== undefined && !FATAL_STATUSES.has(error.status) && !error.retryable) {
            handlers.onError(request.id, error);
            return;
          }
          throw error;
        }
        await handlers.onResult({ id: request.id, text: reply });
      });
    } finally {
      session.close();
      this.counts.requests += session.counts.requests;
      this.counts.cached += session.counts.cached;
      this.counts.retries += session.counts.retries;
    }
  }
}
