/** Rendering the training prompt (`problem`) of a synthesised row from PROMPT_TEMPLATE. */
import { PROMPT_TEMPLATE } from './prompt-template.js';
import { LETTERS } from './questions.js';

/** The template with the image size filled in (ends with "Now answer the following question:\n"). */
export function renderPromptPrefix(width: number, height: number): string {
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1)
    throw new RangeError(`image size must be positive integers, got ${width} x ${height}`);
  return PROMPT_TEMPLATE.replaceAll('{{WIDTH}}', String(width)).replaceAll('{{HEIGHT}}', String(height));
}

/** `Q\nOptions:\n(A) x\n(B) y` (2-4 options). */
export function questionWithOptions(question: string, options: readonly string[]): string {
  if (options.length < 2 || options.length > LETTERS.length)
    throw new RangeError(`a question needs 2-${LETTERS.length} options, got ${options.length}`);
  return `${question}\nOptions:${options.map((o, i) => `\n(${LETTERS[i] as string}) ${o}`).join('')}`;
}

/**
 * The full `problem`: the rendered template, a blank line, then `Q. <question>` and the
 * lettered options. Starts with `<image>` as STVQA rows do.
 */
export function renderProblem(width: number, height: number, question: string, options: readonly string[]): string {
  return `${renderPromptPrefix(width, height)}\nQ. ${questionWithOptions(question, options)}`;
}
