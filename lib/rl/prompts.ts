/**
 * Dataset rows to model inputs, as the reference loader builds them
 * (method.md §1.2, §3.7): the `problem` text as the user turn with its image,
 * the image scaled into [min_pixels, max_pixels] first, the chat template
 * with the generation prompt. Prepared prompts are cached per row (within a
 * byte budget): a multi-epoch run decodes and patchifies each image once.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PromptInput } from '../engine/model.js';
import type { VisionLanguageModel } from '../engine/pipeline.js';
import { imagesOf, type StvqaRow } from '../data/schema.js';
import { parseImageSize } from '../rewards/image-size.js';
import type { ImageGeometry } from '../rewards/types.js';
import { datasetProblemToMessages } from '../tokenizer/prompt.js';
import { loadImage, type RgbImage } from '../vision/image.js';
import { resizeRgb } from '../vision/resize.js';
import type { TrainingRow } from './loader.js';

export interface PromptFields {
  promptKey: string;
  answerKey: string;
  minPixels: number;
  maxPixels: number;
  /** Text put before each prompt, a space between (the SpatialThinker fork's `data.format_prompt`). */
  formatPrompt?: string;
}

export interface PreparedRow {
  source: TrainingRow;
  input: PromptInput;
  prompt: string;
  groundTruth: string;
  /** The frame boxes are written in: the prompt's `Image size`, else the image's own size. */
  image: ImageGeometry;
  tokens: number;
}

export class RowError extends Error {
  constructor(where: string, message: string) {
    super(`${where}: ${message}`);
    this.name = 'RowError';
  }
}

/** A string field of a row, or an error naming the row and the key. */
export function rowText(row: TrainingRow, key: string): string {
  const value = (row.row as unknown as Record<string, unknown>)[key];
  if (typeof value !== 'string' || value.length === 0) throw new RowError(row.where, `no text in field "${key}"`);
  return value;
}

/** The reference's dataset-level resize: scale into [min, max] pixels, sides truncated to integers. */
export async function fitPixels(image: RgbImage, minPixels: number, maxPixels: number): Promise<RgbImage> {
  const area = image.width * image.height;
  let scale = 1;
  if (area > maxPixels) scale = Math.sqrt(maxPixels / area);
  else if (area < minPixels) scale = Math.sqrt(minPixels / area);
  if (scale === 1) return image;
  const width = Math.max(1, Math.trunc(image.width * scale));
  const height = Math.max(1, Math.trunc(image.height * scale));
  return resizeRgb(image, height, width);
}

export class PromptBuilder {
  private readonly cache = new WeakMap<StvqaRow, PreparedRow>();
  private cachedBytes = 0;

  constructor(
    private readonly vlm: VisionLanguageModel,
    private readonly fields: PromptFields,
    /** Pixel bytes kept in the cache at most. */
    private readonly cacheBytes = 1024 ** 3,
  ) {}

  async prepare(row: TrainingRow): Promise<PreparedRow> {
    const hit = this.cache.get(row.row);
    if (hit) return hit;
    const text = rowText(row, this.fields.promptKey);
    const prompt = this.fields.formatPrompt ? `${this.fields.formatPrompt.trim()} ${text}` : text;
    const groundTruth = rowText(row, this.fields.answerKey);
    let images: RgbImage[];
    try {
      images = await Promise.all(imagesOf(row.row).map(async (i) => fitPixels(await loadImage(i.bytes), this.fields.minPixels, this.fields.maxPixels)));
    } catch (error) {
      throw new RowError(row.where, `cannot decode its image: ${(error as Error).message}`);
    }
    const first = images[0];
    const stated = parseImageSize(prompt);
    const image = stated ?? (first ? { width: first.width, height: first.height } : undefined);
    if (!image) throw new RowError(row.where, 'no image and no `Image size: (W x H)` in the prompt: boxes have no frame');
    const messages = datasetProblemToMessages(prompt);
    // The loader's single <image> marker stands for the first image; more images follow it.
    const content = messages[0]?.content;
    if (images.length > 1 && Array.isArray(content)) content.splice(1, 0, ...images.slice(1).map(() => ({ type: 'image' as const })));
    const prepared = await this.vlm.prepare({ images, messages });
    const result: PreparedRow = { source: row, input: prepared.input, prompt, groundTruth, image, tokens: prepared.input.ids.length };
    const bytes = prepared.input.images?.pixels.byteLength ?? 0;
    if (this.cachedBytes + bytes <= this.cacheBytes) {
      this.cache.set(row.row, result);
      this.cachedBytes += bytes;
    }
    return result;
  }
}

/**
 * Writes a row's first image into `dir` (named by its content hash, once) for
 * reports, returning the path relative to `relativeTo`'s parent layout.
 */
export async function saveRowImage(row: StvqaRow, dir: string): Promise<string | null> {
  const image = imagesOf(row)[0];
  if (!image) return null;
  const hash = createHash('sha1').update(image.bytes).digest('hex').slice(0, 16);
  const ext = image.bytes[0] === 0x89 ? 'png' : image.bytes[0] === 0xff ? 'jpg' : 'img';
  const name = `${hash}.${ext}`;
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  await writeFile(path, image.bytes, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return name;
}
