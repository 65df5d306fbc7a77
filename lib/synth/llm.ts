/**
 * The client side shared by the LLM stages of the data-generation pipeline (method.md §4.3:
 * question generation in llm-generate.ts, multiple-choice validation in llm-validate.ts), for
 * any OpenAI-compatible chat-completions endpoint: endpoint configuration from flags and the
 * environment, a concurrency limit, retries with backoff, the on-disk reply cache and abort.
 *
 * Secrets: the API key is never logged, never part of a cache key or entry, and is redacted
 * from every error message produced here.
 */
import OpenAI from 'openai';
import type { ChatCompletionContentPart } from 'openai/resources/chat/completions';
import { LlmCache } from './llm-cache.js';

export interface LlmEndpoint {
  baseURL: string;
  model: string;
  apiKey?: string;
}

export interface EndpointFlags {
  baseURL?: string;
  model?: string;
  apiKey?: string;
}

export const DEFAULT_LLM_BASE_URL = 'https://api.openai.com/v1';
/** The method's validation model; the default for both stages (generation used Claude, §4.3). */
export const DEFAULT_LLM_MODEL = 'gpt-4o';

/**
 * Endpoint from explicit flags, falling back to the environment (base URL:
 * `SPATIALTHINKER_LLM_BASE_URL`, then `OPENAI_BASE_URL`; model: `SPATIALTHINKER_LLM_MODEL`;
 * key: `OPENAI_API_KEY`), then to the method's defaults (OpenAI API, `gpt-4o`).
 */
export function endpointFromEnv(
  flags: EndpointFlags = {},
  env: NodeJS.ProcessEnv = process.env,
): LlmEndpoint {
  const baseURL = flags.baseURL || env.SPATIALTHINKER_LLM_BASE_URL || env.OPENAI_BASE_URL || DEFAULT_LLM_BASE_URL;
  const model = flags.model || env.SPATIALTHINKER_LLM_MODEL || DEFAULT_LLM_MODEL;
  const apiKey = flags.apiKey || env.OPENAI_API_KEY || undefined;
  const ep: LlmEndpoint = { baseURL, model };
  if (apiKey) ep.apiKey = apiKey;
  return ep;
}

/**
 * Human-readable endpoint description that never contains the key (nor credentials or a query
 * string in the base URL, where some gateways put tokens).
 */
export function describeEndpoint(ep: LlmEndpoint): string {
  let url = ep.baseURL;
  try {
    const u = new URL(ep.baseURL);
    u.username = '';
    u.password = '';
    u.search = '';
    url = u.toString().replace(/\/$/, '');
  } catch {
    // not a URL: shown as given, minus anything that looks like a key
  }
  return `${ep.model} @ ${redactSecret(url, ep.apiKey)}${ep.apiKey ? ' (api key set)' : ' (no api key)'}`;
}

/** Replace every occurrence of the secret (and any bearer token) in a message. */
export function redactSecret(message: string, secret: string | undefined): string {
  let out = message;
  if (secret && secret.length > 0) out = out.split(secret).join('[REDACTED]');
  out = out.replace(/Bearer\s+[^\s"',()]+/gi, 'Bearer [REDACTED]');
  out = out.replace(/\bsk-[A-Za-z0-9_\-]{4,}/g, '[REDACTED]');
  return out;
}

/** Error raised by this module; its message is already redacted and it carries no `cause`. */
export class LlmError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'LlmError';
  }
}

/** Tiny counting semaphore. */
export class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`semaphore limit must be >= 1, got ${limit}`);
  }

  async acquire(): Promise<() => void> {
    if (this.active < this.limit) {
      this.active++;
    } else {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      // the releaser handed its slot over; `active` is unchanged
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    };
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

function abortError(): LlmError {
  return new LlmError('LLM run aborted', undefined, false);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError());
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface RetryOptions {
  /** Retries after the first try on 429 / 5xx / network errors (default 5). */
  maxRetries?: number;
  /** Base backoff in ms (default 1000); delay = base·2^k with ±50% jitter, capped by maxDelayMs. */
  baseDelayMs?: number;
  /** Cap on one backoff delay in ms (default 30000). */
  maxDelayMs?: number;
}

/** Convert any error thrown by the OpenAI client into a redacted LlmError. */
function toLlmError(err: unknown, apiKey: string | undefined): LlmError {
  if (err instanceof LlmError) return err;
  if (err instanceof OpenAI.APIConnectionError) {
    // includes APIConnectionTimeoutError
    return new LlmError(redactSecret(`LLM connection error: ${err.message}`, apiKey), undefined, true);
  }
  if (err instanceof OpenAI.APIUserAbortError) return abortError();
  if (err instanceof OpenAI.APIError) {
    const status = typeof err.status === 'number' ? err.status : undefined;
    const retryable = status === undefined || status === 429 || status === 408 || status >= 500;
    return new LlmError(
      redactSecret(`LLM request failed (HTTP ${status ?? '?'}): ${err.message}`, apiKey),
      status,
      retryable,
    );
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new LlmError(redactSecret(`LLM request failed: ${msg}`, apiKey), undefined, false);
}

/** Run `fn`, retrying retryable LlmErrors with bounded exponential backoff and jitter. */
async function withRetries<T>(
  fn: () => Promise<T>,
  apiKey: string | undefined,
  retry: RetryOptions,
  signal: AbortSignal | undefined,
  onRetry: (() => void) | undefined,
): Promise<T> {
  const maxRetries = retry.maxRetries ?? 5;
  const base = retry.baseDelayMs ?? 1000;
  const cap = retry.maxDelayMs ?? 30_000;
  for (let k = 0; ; k++) {
    if (signal?.aborted) throw abortError();
    try {
      return await fn();
    } catch (raw) {
      const err = toLlmError(raw, apiKey);
      if (signal?.aborted) throw abortError();
      if (!err.retryable || k >= maxRetries) throw err;
      onRetry?.();
      const delay = Math.min(cap, base * 2 ** k) * (0.5 + Math.random());
      await sleep(delay, signal);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Images in requests

export function imageMime(bytes: Uint8Array): 'image/png' | 'image/jpeg' {
  const png = [0x89, 0x50, 0x4e, 0x47];
  return png.every((b, i) => bytes[i] === b) ? 'image/png' : 'image/jpeg';
}

export function imageDataUrl(bytes: Uint8Array): string {
  return `data:${imageMime(bytes)};base64,${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}`;
}

/** An image as a chat content part, at full detail (as the method sends it). */
export function imageContent(bytes: Uint8Array): ChatCompletionContentPart {
  return { type: 'image_url', image_url: { url: imageDataUrl(bytes), detail: 'high' } };
}

// ---------------------------------------------------------------------------------------------
// A run of LLM calls: one client, one cache, one concurrency limit, one abort signal

export interface LlmRunOptions {
  endpoint: LlmEndpoint;
  /** Requests in flight at once, and items worked on at once (default 4). */
  concurrency?: number;
  /** Directory of the on-disk reply cache. */
  cacheDir: string;
  /** Aborting it stops the run: requests in flight are cancelled, nothing new is sent. */
  signal?: AbortSignal;
  retry?: RetryOptions;
  /** Per-request timeout in ms (default 120000). */
  timeoutMs?: number;
}

/** What a run cost so far. */
export interface LlmCallCounts {
  /** HTTP round trips that returned a reply (retries not counted). */
  requests: number;
  /** Replies served from the cache. */
  cached: number;
  /** Retries after 429 / 408 / 5xx / network errors. */
  retries: number;
}

export interface ChatRequest {
  /** The user message: text and image parts. */
  content: ChatCompletionContentPart[];
  temperature: number;
  maxTokens: number;
}

interface CachedReply {
  reply: string;
}

/**
 * The client side of one stage run. Requests go through a semaphore (at most `concurrency` in
 * flight) and are retried with backoff; replies are cached on disk under caller-chosen keys
 * (never containing the key); `forEach` runs a bounded worker pool in which the first fatal
 * error cancels everything else and is rethrown redacted.
 */
export class LlmSession {
  readonly counts: LlmCallCounts = { requests: 0, cached: 0, retries: 0 };
  readonly concurrency: number;
  private readonly client: OpenAI;
  private readonly cache: LlmCache<CachedReply>;
  private readonly semaphore: Semaphore;
  // aborted by the caller's signal or by the first fatal error of a worker
  private readonly internal = new AbortController();
  private readonly onOuterAbort = () => this.internal.abort();

  constructor(readonly options: LlmRunOptions) {
    this.concurrency = options.concurrency ?? 4;
    if (!Number.isSafeInteger(this.concurrency) || this.concurrency < 1)
      throw new RangeError(`concurrency must be a positive integer, got ${options.concurrency}`);
    this.semaphore = new Semaphore(this.concurrency);
    this.cache = new LlmCache<CachedReply>(options.cacheDir);
    this.client = new OpenAI({
      baseURL: options.endpoint.baseURL,
      apiKey: options.endpoint.apiKey ?? 'no-api-key',
      maxRetries: 0, // retries are ours (bounded, with jitter, counted)
      timeout: options.timeoutMs ?? 120_000,
    });
    const outer = options.signal;
    if (outer?.aborted) this.internal.abort();
    else outer?.addEventListener('abort', this.onOuterAbort, { once: true });
  }

  get model(): string {
    return this.options.endpoint.model;
  }

  get signal(): AbortSignal {
    return this.internal.signal;
  }

  /** Detach from the caller's signal (call when the run is over). */
  close(): void {
    this.options.signal?.removeEventListener('abort', this.onOuterAbort);
  }

  throwIfAborted(): void {
    if (this.internal.signal.aborted) throw abortError();
  }

  /** One chat completion's reply text (empty when the model sent no content). */
  async complete(request: ChatRequest): Promise<string> {
    const sig = this.internal.signal;
    const completion = await withRetries(
      () =>
        this.semaphore.run(async () => {
          // a child signal per request, unlinked afterwards (the client does not always remove
          // its abort listener, which would otherwise pile up on the run's signal)
          const child = new AbortController();
          const relay = () => child.abort();
          if (sig.aborted) child.abort();
          else sig.addEventListener('abort', relay, { once: true });
          try {
            return await this.client.chat.completions.create(
              {
                model: this.model,
                temperature: request.temperature,
                max_tokens: request.maxTokens,
                messages: [{ role: 'user', content: request.content }],
              },
              { signal: child.signal },
            );
          } finally {
            sig.removeEventListener('abort', relay);
          }
        }),
      this.options.endpoint.apiKey,
      this.options.retry ?? {},
      sig,
      () => {
        this.counts.retries++;
      },
    );
    this.counts.requests++;
    return completion.choices?.[0]?.message?.content ?? '';
  }

  /**
   * The reply cached under `key`, else a fresh one, stored under `key` as soon as it arrives
   * (so an interrupted run keeps every reply it paid for). `request` is only built on a miss.
   */
  async cachedReply(key: readonly (string | number)[], request: () => ChatRequest | Promise<ChatRequest>): Promise<string> {
    this.throwIfAborted();
    const hit = await this.cache.get(key);
    if (hit && typeof hit.reply === 'string') {
      this.counts.cached++;
      return hit.reply;
    }
    const reply = await this.complete(await request());
    await this.cache.set(key, { reply });
    return reply;
  }

  /**
   * `work` on every item, at most `concurrency` at once (the semaphore bounds requests; the
   * pool bounds memory). The first error stops the other workers and is rethrown as a
   * redacted LlmError; an abort of the caller's signal rejects with an abort LlmError.
   */
  async forEach<T>(items: readonly T[], work: (item: T, index: number) => Promise<void>): Promise<void> {
    const sig = this.internal.signal;
    let next = 0;
    let fatal: LlmError | undefined;
    const worker = async () => {
      while (!sig.aborted) {
        const i = next++;
        if (i >= items.length) return;
        try {
          await work(items[i] as T, i);
        } catch (err) {
          fatal ??= toLlmError(err, this.options.endpoint.apiKey);
          this.internal.abort();
          return;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, items.length) }, worker));
    if (this.options.signal?.aborted) throw abortError();
    if (fatal !== undefined) throw fatal;
    this.throwIfAborted();
  }
}
