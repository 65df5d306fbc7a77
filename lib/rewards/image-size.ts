/** The image size a training prompt states, as the reference scorer reads it. */
import type { ImageGeometry } from './types.js';
import { pyStrip } from './text.js';

const OPEN = 'Image size: (';
const SEPARATOR = ' x ';
const CLOSE = ')';

/**
 * `Image size: (W x H)` from the prompt, or undefined when the prompt has no
 * such line or its numbers are not positive integers (the reference would
 * crash on both; callers turn this into an error naming the row).
 */
export function parseImageSize(prompt: string): ImageGeometry | undefined {
  const [widthText, heightText] = imageSizeFields(prompt) ?? [];
  if (widthText === undefined || heightText === undefined) return undefined;
  const width = parsePositiveInt(widthText);
  const height = parsePositiveInt(heightText);
  return width === undefined || height === undefined ? undefined : { width, height };
}

function parsePositiveInt(text: string): number | undefined {
  const t = pyStrip(text);
  if (!/^\+?\d+$/.test(t)) return undefined;
  const n = Number(t);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * The two groups of the reference's `Image size: \((.*?) x (.*?)\)` (DOTALL),
 * found in linear time. The regex engine retried every later `Image size: (`
 * after a failed one, which is quadratic on a prompt that repeats it; but
 * only the first can match: a later one finds no earlier " x " or ")" than
 * the first does.
 */
export function imageSizeFields(prompt: string): [string, string] | undefined {
  const open = prompt.indexOf(OPEN);
  if (open < 0) return undefined;
  const widthStart = open + OPEN.length;
  const separator = prompt.indexOf(SEPARATOR, widthStart);
  if (separator < 0) return undefined;
  const heightStart = separator + SEPARATOR.length;
  const close = prompt.indexOf(CLOSE, heightStart);
  if (close < 0) return undefined;
  return [prompt.slice(widthStart, separator), prompt.slice(heightStart, close)];
}
