/** The image size a training prompt states, as the reference scorer reads it. */
import type { ImageGeometry } from './types.js';
import { pyStrip } from './text.js';

const IMAGE_SIZE = /Image size: \(([\s\S]*?) x ([\s\S]*?)\)/;

/**
 * `Image size: (W x H)` from the prompt, or undefined when the prompt has no
 * such line or its numbers are not positive integers (the reference would
 * crash on both; callers turn this into an error naming the row).
 */
export function parseImageSize(prompt: string): ImageGeometry | undefined {
  const match = IMAGE_SIZE.exec(prompt);
  if (!match) return undefined;
  const width = parsePositiveInt(match[1] as string);
  const height = parsePositiveInt(match[2] as string);
  return width === undefined || height === undefined ? undefined : { width, height };
}

function parsePositiveInt(text: string): number | undefined {
  const t = pyStrip(text);
  if (!/^\+?\d+$/.test(t)) return undefined;
  const n = Number(t);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}
