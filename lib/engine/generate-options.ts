/**
 * Bounds on generation options, checked before anything is allocated: the
 * native side sizes its buffers by samples x max_new_tokens, so `samples:
 * 1e12` would end in a bare std::bad_alloc, and 0 or out-of-range values
 * would silently generate nothing or sample from nothing.
 */

/** More completions per prompt than this is a mistake, not a workload. */
export const MAX_SAMPLES = 4096;
export const MAX_NEW_TOKENS = 1 << 20;
/** Engine threads: more than this only adds contention (and 100000 hung the pool). */
export const MAX_THREADS = 1024;

/** The generation options these bounds cover (a subset of Model's GenerateOptions). */
export interface BoundedGenerateOptions {
  samples?: number;
  maxNewTokens?: number;
  topK?: number;
  topP?: number;
  temperature?: number;
}

/** What is wrong with `options`, naming the option, or undefined. */
export function generateOptionsProblem(options: BoundedGenerateOptions): string | undefined {
  const integerIn = (name: string, value: number | undefined, lo: number, hi: number) =>
    value === undefined || (Number.isInteger(value) && value >= lo && value <= hi) ? undefined : `${name} must be an integer in [${lo}, ${hi}], got ${value}`;
  return (
    integerIn('samples', options.samples, 1, MAX_SAMPLES) ??
    integerIn('maxNewTokens', options.maxNewTokens, 1, MAX_NEW_TOKENS) ??
    integerIn('topK', options.topK, 0, 2 ** 31 - 1) ??
    (options.topP === undefined || (options.topP > 0 && options.topP <= 1) ? undefined : `topP must be in (0, 1], got ${options.topP}`) ??
    (options.temperature === undefined || (Number.isFinite(options.temperature) && options.temperature >= 0)
      ? undefined
      : `temperature must be a finite number >= 0, got ${options.temperature}`)
  );
}

/** What is wrong with a thread count, or undefined. */
export function threadsProblem(threads: number): string | undefined {
  return Number.isInteger(threads) && threads >= 1 && threads <= MAX_THREADS
    ? undefined
    : `threads must be an integer in [1, ${MAX_THREADS}], got ${threads}`;
}
