/**
 * The optional LLM stages of `spatialthinker synth`: their flags, the endpoint and key, the
 * validation of balanced candidates, interruption by Ctrl-C, and the pass-rate report.
 */
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../synth/llm-cache.js';
import { describeEndpoint, endpointFromEnv, LlmError, type LlmEndpoint } from '../synth/llm.js';
import type { LlmGenerationStats } from '../synth/llm-generate.js';
import { validateMultipleChoice, type McRow } from '../synth/llm-validate.js';
import { questionWithOptions } from '../synth/prompt.js';
import { CATEGORIES, optionLetter, type Category } from '../synth/questions.js';
import type { Candidate, SynthStats } from '../synth/synthesize.js';
import { CliError, UsageError } from './errors.js';
import { Progress } from './progress.js';

export const LLM_HELP = `
LLM stages (optional; any OpenAI-compatible chat-completions endpoint):
  --llm-generate        questions proposed by a model from each scene graph
                        (method §4.3) instead of the templates: one per
                        image, checked strictly, grounded in the graph,
                        options shuffled, then balanced as above
  --llm-generate-image  attach the image to generation requests (the
                        reference sends the scene graph only)
  --llm-validate        ask a vision model each balanced question with its
                        image (2 tries, then 2 more); rows it never answers
                        right are dropped, as the reference does
  --llm-base-url URL    default $SPATIALTHINKER_LLM_BASE_URL, else
                        $OPENAI_BASE_URL, else https://api.openai.com/v1
  --llm-model M         model of both stages (default
                        $SPATIALTHINKER_LLM_MODEL, else gpt-4o)
  --llm-validate-model M  validation model (default: --llm-model)
  --llm-api-key-env VAR environment variable holding the API key (default
                        OPENAI_API_KEY); the key is never taken from the
                        command line, printed or written to the cache
  --llm-concurrency N   requests in flight at once (default 4)
  --llm-cache DIR       reply cache (default OUT/llm-cache): a rerun of the
                        same command reuses every reply already paid for,
                        so an interrupted run resumes where it stopped
`;

export const LLM_OPTIONS = {
  'llm-generate': { type: 'boolean' },
  'llm-generate-image': { type: 'boolean' },
  'llm-validate': { type: 'boolean' },
  'llm-base-url': { type: 'string' },
  'llm-model': { type: 'string' },
  'llm-validate-model': { type: 'string' },
  'llm-api-key-env': { type: 'string' },
  'llm-concurrency': { type: 'string' },
  'llm-cache': { type: 'string' },
} as const;

export interface LlmFlags {
  'llm-generate'?: boolean;
  'llm-generate-image'?: boolean;
  'llm-validate'?: boolean;
  'llm-base-url'?: string;
  'llm-model'?: string;
  'llm-validate-model'?: string;
  'llm-api-key-env'?: string;
  'llm-concurrency'?: string;
  'llm-cache'?: string;
}

export interface LlmSettings {
  generate: boolean;
  attachImage: boolean;
  validate: boolean;
  generateEndpoint: LlmEndpoint;
  validateEndpoint: LlmEndpoint;
  concurrency: number;
  cacheDir: string;
}

/** The LLM settings from the flags and the environment, or undefined when no stage is on. */
export function llmSettings(flags: LlmFlags, outDir: string, env: NodeJS.ProcessEnv = process.env): LlmSettings | undefined {
  const generate = flags['llm-generate'] === true;
  const validate = flags['llm-validate'] === true;
  if (!generate && !validate) {
    const stray = Object.keys(LLM_OPTIONS).filter((k) => flags[k as keyof LlmFlags] !== undefined);
    if (stray.length > 0) throw new UsageError(`--${stray[0]} needs --llm-generate or --llm-validate`);
    return undefined;
  }
  if (flags['llm-generate-image'] && !generate) throw new UsageError('--llm-generate-image needs --llm-generate');
  const keyEnv = flags['llm-api-key-env'];
  let apiKey: string | undefined;
  if (keyEnv !== undefined) {
    apiKey = env[keyEnv];
    if (!apiKey) throw new CliError(`--llm-api-key-env: the environment variable ${keyEnv} is not set`);
  }
  const endpoint = endpointFromEnv(
    {
      ...(flags['llm-base-url'] ? { baseURL: flags['llm-base-url'] } : {}),
      ...(flags['llm-model'] ? { model: flags['llm-model'] } : {}),
      ...(apiKey ? { apiKey } : {}),
    },
    env,
  );
  try {
    new URL(endpoint.baseURL);
  } catch {
    throw new UsageError(`--llm-base-url: not a URL: ${endpoint.baseURL}`);
  }
  const concurrencyText = flags['llm-concurrency'];
  const concurrency = concurrencyText === undefined ? 4 : Number(concurrencyText);
  if (!Number.isSafeInteger(concurrency) || concurrency < 1)
    throw new UsageError(`--llm-concurrency must be an integer >= 1, got "${concurrencyText}"`);
  return {
    generate,
    attachImage: flags['llm-generate-image'] === true,
    validate,
    generateEndpoint: endpoint,
    validateEndpoint: flags['llm-validate-model'] ? { ...endpoint, model: flags['llm-validate-model'] } : endpoint,
    concurrency,
    cacheDir: flags['llm-cache'] ?? join(outDir, 'llm-cache'),
  };
}

/**
 * Run `stage` with an abort signal that Ctrl-C triggers; LLM errors (already redacted) become
 * one-line CLI errors, an interruption says how to resume.
 */
export async function withInterrupt<T>(cacheDir: string, stage: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    return await stage(controller.signal);
  } catch (error) {
    if (controller.signal.aborted)
      throw new CliError(`interrupted; the replies received so far are cached in ${cacheDir}: run the same command again to resume`, 130);
    if (error instanceof LlmError) throw new CliError(error.message);
    throw error;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

/** Per category: the balanced rows checked and kept by validation. */
export type ValidationCounts = Record<Category, { checked: number; kept: number }>;

export interface ValidationOutcome {
  endpoint: string;
  train: Candidate[];
  val: Candidate[];
  perCategory: ValidationCounts;
  requests: number;
  cached: number;
  retries: number;
}

/** A row's cache id: its image and its question with options (the prompt it is asked with). */
function rowId(candidate: Candidate): string {
  const q = candidate.question;
  return `${candidate.context.imageId}:${sha256Hex(questionWithOptions(q.question, q.options)).slice(0, 16)}`;
}

/** Multiple-choice validation of the balanced rows; the ones the model never gets right are dropped. */
export async function validateCandidates(
  train: readonly Candidate[],
  val: readonly Candidate[],
  outDir: string,
  settings: LlmSettings,
  signal: AbortSignal,
): Promise<ValidationOutcome> {
  const all = [...train, ...val];
  for (const c of all) {
    const file = join(outDir, c.context.imagePath);
    const size = statSync(file, { throwIfNoEntry: false })?.size;
    if (size === undefined) throw new CliError(`--llm-validate: image ${file} of image_id ${c.context.imageId} does not exist`);
    if (size === 0) throw new CliError(`--llm-validate: image ${file} of image_id ${c.context.imageId} is empty`);
  }
  const rows: McRow[] = all.map((c) => ({
    id: rowId(c),
    loadImage: () => readFile(join(outDir, c.context.imagePath)),
    question_with_options: questionWithOptions(c.question.question, c.question.options),
    answer_only: optionLetter(c.question),
  }));
  const progress = new Progress('validated', 'questions', rows.length);
  const result = await validateMultipleChoice(rows, {
    endpoint: settings.validateEndpoint,
    concurrency: settings.concurrency,
    cacheDir: settings.cacheDir,
    signal,
    onProgress: (p) => progress.update(p.done),
  });
  progress.done(rows.length);
  const kept = new Set(result.kept);
  const perCategory = Object.fromEntries(CATEGORIES.map((c) => [c, { checked: 0, kept: 0 }])) as ValidationCounts;
  const keep = (c: Candidate) => {
    const ok = kept.has(rowId(c));
    perCategory[c.category].checked++;
    if (ok) perCategory[c.category].kept++;
    return ok;
  };
  return {
    endpoint: describeEndpoint(settings.validateEndpoint),
    train: train.filter(keep),
    val: val.filter(keep),
    perCategory,
    requests: result.requests,
    cached: result.cached,
    retries: result.retries,
  };
}

function rate(part: number, whole: number): string {
  return whole === 0 ? '-' : `${((100 * part) / whole).toFixed(1)}%`;
}

function reasons(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([r, n]) => `${r} ${n}`)
    .join(', ');
}

/**
 * The pass-rate report: per category, questions generated and accepted (with the LLM's
 * rejections by reason when it generated them), and balanced rows checked and validated.
 */
export function formatLlmReport(stats: SynthStats, generation: LlmGenerationStats | undefined, validation: ValidationOutcome | undefined): string {
  const lines: string[] = [''];
  if (generation)
    lines.push(
      `LLM generation (${generation.endpoint}): ${generation.replies} replies, ${generation.accepted} accepted (${rate(generation.accepted, generation.replies)})` +
        `${generation.corrected ? `, ${generation.corrected} count answers corrected` : ''}; ${generation.requests} requests, ${generation.cached} cached, ${generation.retries} retries`,
    );
  if (validation) {
    const checked = CATEGORIES.reduce((n, c) => n + validation.perCategory[c].checked, 0);
    const kept = CATEGORIES.reduce((n, c) => n + validation.perCategory[c].kept, 0);
    lines.push(
      `LLM validation (${validation.endpoint}): ${kept} of ${checked} rows kept (${rate(kept, checked)}); ${validation.requests} requests, ${validation.cached} cached, ${validation.retries} retries`,
    );
  }
  lines.push(
    '',
    `${'category'.padEnd(18)} ${'generated'.padStart(9)} ${'accepted'.padStart(8)} ${'checked'.padStart(7)} ${'validated'.padStart(9)} ${'pass'.padStart(6)}  ${generation ? 'rejected by reason' : ''}`.trimEnd(),
  );
  const total = { generated: 0, accepted: 0, checked: 0, kept: 0 };
  for (const c of CATEGORIES) {
    const v = validation?.perCategory[c];
    total.generated += stats.generated[c];
    total.accepted += stats.picked[c];
    total.checked += v?.checked ?? 0;
    total.kept += v?.kept ?? 0;
    lines.push(
      `${c.padEnd(18)} ${String(stats.generated[c]).padStart(9)} ${String(stats.picked[c]).padStart(8)} ${(v ? String(v.checked) : '-').padStart(7)} ${(v ? String(v.kept) : '-').padStart(9)} ${(v ? rate(v.kept, v.checked) : '-').padStart(6)}  ${generation ? reasons(stats.refused[c]) : ''}`.trimEnd(),
    );
  }
  if (generation && Object.keys(generation.uncategorised).length > 0) {
    const n = Object.values(generation.uncategorised).reduce((a, b) => a + b, 0);
    lines.push(`${'(no category)'.padEnd(18)} ${String(n).padStart(9)} ${'0'.padStart(8)} ${'-'.padStart(7)} ${'-'.padStart(9)} ${'-'.padStart(6)}  ${reasons(generation.uncategorised)}`);
    total.generated += n;
  }
  lines.push(
    `${'total'.padEnd(18)} ${String(total.generated).padStart(9)} ${String(total.accepted).padStart(8)} ${(validation ? String(total.checked) : '-').padStart(7)} ${(validation ? String(total.kept) : '-').padStart(9)} ${(validation ? rate(total.kept, total.checked) : '-').padStart(6)}`,
  );
  return lines.join('\n') + '\n';
}
