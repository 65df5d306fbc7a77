/**
 * LLM-backed steps of the data-generation pipeline (method §4.3 step 6): multiple-choice
 * consistency validation of synthesized questions by a vision LLM (GPT-4o in the method) through
 * any OpenAI-compatible chat-completions endpoint.
 *
 * Secrets: the API key is never logged and is redacted from every error message produced here.
 */
import OpenAI from 'openai';
import { LlmCache, sha256Hex } from './llm-cache.js';

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
export const DEFAULT_VALIDATION_MODEL = 'gpt-4o';

/**
 * Endpoint from explicit flags, falling back to the environment
 * (`SPATIALTHINKER_LLM_BASE_URL`, `SPATIALTHINKER_LLM_MODEL`, `OPENAI_API_KEY`), then to the
 * method's defaults (OpenAI API, `gpt-4o`).
 */
export function endpointFromEnv(
  flags: EndpointFlags = {},
  env: NodeJS.ProcessEnv = process.env,
): LlmEndpoint {
  const baseURL = flags.baseURL || env.SPATIALTHINKER_LLM_BASE_URL || DEFAULT_LLM_BASE_URL;
  const model = flags.model || env.SPATIALTHINKER_LLM_MODEL || DEFAULT_VALIDATION_MODEL;
  const apiKey = flags.apiKey || env.OPENAI_API_KEY || undefined;
  const ep: LlmEndpoint = { baseURL, model };
  if (apiKey) ep.apiKey = apiKey;
  return ep;
}

/** Human-readable endpoint description that never contains the key. */
export function describeEndpoint(ep: LlmEndpoint): string {
  return `${ep.model} @ ${ep.baseURL}${ep.apiKey ? ' (api key set)' : ' (no api key)'}`;
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
  return new LlmError('LLM validation aborted', undefined, false);
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
// Multiple-choice validation (method §4.3 step 6)

export interface McRow {
  id: string;
  /** JPEG or PNG bytes. */
  imageBytes: Uint8Array;
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

export interface ValidateOptions {
  endpoint: LlmEndpoint;
  /** Concurrent in-flight requests (default 4). */
  concurrency?: number;
  /** Attempt phases (default [2, 2]: two attempts, then two more if neither matched). */
  attempts?: number[];
  /** Directory for the per-answer disk cache. */
  cacheDir: string;
  signal?: AbortSignal;
  onProgress?: (p: McProgress) => void;
  retry?: RetryOptions;
  /** Per-request timeout in ms (default 120000). */
  timeoutMs?: number;
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

export function imageMime(bytes: Uint8Array): 'image/png' | 'image/jpeg' {
  const png = [0x89, 0x50, 0x4e, 0x47];
  return png.every((b, i) => bytes[i] === b) ? 'image/png' : 'image/jpeg';
}

export function imageDataUrl(bytes: Uint8Array): string {
  return `data:${imageMime(bytes)};base64,${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}`;
}

interface CachedAnswer {
  reply: string;
  letter: string | null;
}

/**
 * Ask the LLM each multiple-choice question (with its image) up to sum(attempts) times, phase by
 * phase, stopping at the first answer equal to the ground-truth letter; a row is kept if any
 * answer matches and dropped if all disagree. Every answer is cached on disk under
 * (model, row id, attempt index, prompt hash). Non-retryable errors (e.g. 401) abort the run
 * with a redacted LlmError.
 */
export async function validateMultipleChoice(
  rows: readonly McRow[],
  options: ValidateOptions,
): Promise<ValidateResult> {
  const { endpoint, signal } = options;
  const concurrency = options.concurrency ?? 4;
  const attempts = options.attempts ?? [2, 2];
  const totalAttempts = attempts.reduce((a, b) => a + Math.max(0, Math.floor(b)), 0);
  if (totalAttempts < 1) throw new RangeError('attempts must allow at least one attempt');
  const apiKey = endpoint.apiKey;
  const cache = new LlmCache<CachedAnswer>(options.cacheDir);
  const sem = new Semaphore(concurrency);
  const client = new OpenAI({
    baseURL: endpoint.baseURL,
    apiKey: apiKey ?? 'no-api-key',
    maxRetries: 0, // retries handled below (bounded, with jitter)
    timeout: options.timeoutMs ?? 120_000,
  });

  // internal abort: the first fatal error stops the other workers
  const internal = new AbortController();
  const onOuterAbort = () => internal.abort();
  if (signal) {
    if (signal.aborted) internal.abort();
    else signal.addEventListener('abort', onOuterAbort, { once: true });
  }
  const sig = internal.signal;

  const stats = { done: 0, kept: 0, dropped: 0, cached: 0, requests: 0, retries: 0 };
  const verdict = new Map<string, boolean>();
  const progress = () =>
    options.onProgress?.({ ...stats, total: rows.length });

  const ask = async (row: McRow, prompt: string, dataUrl: string): Promise<CachedAnswer> => {
    const completion = await withRetries(
      () =>
        sem.run(async () => {
          // per-request child signal, unlinked afterwards (the client does not always remove its
          // abort listener, which would otherwise pile up on the shared run signal)
          const child = new AbortController();
          const relay = () => child.abort();
          if (sig.aborted) child.abort();
          else sig.addEventListener('abort', relay, { once: true });
          try {
            return await client.chat.completions.create(
              {
                model: endpoint.model,
                temperature: options.temperature ?? 0,
                max_tokens: options.maxTokens ?? 10,
                messages: [
                  {
                    role: 'user',
                    content: [
                      { type: 'text', text: prompt },
                      { type: 'image_url', image_url: { url: dataUrl, detail: 'high' } },
                    ],
                  },
                ],
              },
              { signal: child.signal },
              );
          } finally {
            sig.removeEventListener('abort', relay);
          }
        }),
      apiKey,
      options.retry ?? {},
      sig,
      () => {
        stats.retries++;
      },
    );
    stats.requests++;
    const reply = completion.choices?.[0]?.message?.content ?? '';
    return { reply, letter: parseMcLetter(reply) };
  };

  const processRow = async (row: McRow): Promise<void> => {
    const gt = groundTruthLetter(row.answer_only);
    const prompt = mcValidationPrompt(row.question_with_options);
    const imageHash = sha256Hex(row.imageBytes);
    const promptHash = sha256Hex(`${prompt}\n#image:${imageHash}`);
    let dataUrl: string | undefined;
    let ok = false;
    for (let a = 0; a < totalAttempts && !ok; a++) {
      if (sig.aborted) throw abortError();
      const key = ['mc-validate-v1', endpoint.model, row.id, a, promptHash];
      let ans = await cache.get(key);
      if (ans) {
        stats.cached++;
      } else {
        dataUrl ??= imageDataUrl(row.imageBytes);
        ans = await ask(row, prompt, dataUrl);
        await cache.set(key, ans);
      }
      ok = gt !== null && ans.letter === gt;
    }
    verdict.set(row.id, ok);
    stats.done++;
    if (ok) stats.kept++;
    else stats.dropped++;
    progress();
  };

  // a bounded pool of row workers (the semaphore bounds HTTP requests; the pool bounds memory)
  let next = 0;
  let fatal: unknown;
  const worker = async () => {
    while (!sig.aborted) {
      const i = next++;
      if (i >= rows.length) return;
      try {
        await processRow(rows[i]!);
      } catch (err) {
        if (fatal === undefined) fatal = toLlmError(err, apiKey);
        internal.abort();
        return;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, rows.length) }, worker));
  } finally {
    signal?.removeEventListener('abort', onOuterAbort);
  }
  if (fatal !== undefined) throw fatal;
  if (signal?.aborted) throw abortError();

  const kept: string[] = [];
  const dropped: string[] = [];
  for (const row of rows) (verdict.get(row.id) ? kept : dropped).push(row.id);
  return {
    kept,
    dropped,
    passRate: rows.length === 0 ? 0 : kept.length / rows.length,
    cached: stats.cached,
    requests: stats.requests,
    retries: stats.retries,
  };
}
