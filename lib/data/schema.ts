/**
 * The STVQA-7K record (shared/spec/method.md §4.2) and its validation.
 *
 * Field order is the order of the features that `data_gen/generate_data.py`
 * (`generate_hf_data`) declares, which is the column order of the hub files.
 * Only `problem`, `images` and `answer_option_text` are needed for training;
 * every other field may be absent (undefined) or null.
 */
import { GroundTruthError, groundTruthOutsideImage, parseGroundTruth } from '../rewards/ground-truth.js';
import { firstBlock } from '../rewards/text.js';
import { parseImageSize } from '../rewards/image-size.js';

/**
 * An image as the Hugging Face `Image` feature stores it: the encoded file
 * (JPEG, PNG, ...) and the name it had, if any. Rows read by `readRows`
 * always carry bytes.
 */
export interface StvqaImage {
  bytes: Uint8Array;
  path: string | null;
}

export interface StvqaRow {
  /** Visual Genome image id. */
  image_id?: string | null;
  /** The image; the hub column is a single Image, a list of Images is accepted too. */
  images: StvqaImage | StvqaImage[];
  /** The full training prompt, with `Image size: (W x H)` and the question. */
  problem: string;
  question_only?: string | null;
  /** `<scene>{json}</scene>\n<answer>B</answer>` (letter only). */
  answer?: string | null;
  /** The letter, `A`–`D`. */
  answer_only?: string | null;
  /** `<scene>{json}</scene>\n<answer>behind</answer>`. */
  answer_text?: string | null;
  answer_text_only?: string | null;
  /** `<scene>{json}</scene>\n<answer>(B) behind</answer>`: the training ground truth. */
  answer_option_text: string;
  /** `(B) behind`: the vanilla-GRPO ground truth. */
  answer_option_text_only?: string | null;
  category?: string | null;
  /** `easy` / `medium` / `hard`. */
  level?: string | null;
  /** `question_only` + `\nOptions:` + `\n(A) opt` lines. */
  question_with_options?: string | null;
  /** Option texts without their `(A) ` prefixes, in presented order (2–4). */
  options?: string[] | null;
  /** LLM quality rating 1–10 (int32). */
  rating?: number | null;
}

export type StvqaField = keyof StvqaRow;

/** Every field of §4.2, in hub column order. */
export const STVQA_FIELDS: readonly StvqaField[] = [
  'image_id',
  'images',
  'problem',
  'question_only',
  'answer',
  'answer_only',
  'answer_text',
  'answer_text_only',
  'answer_option_text',
  'answer_option_text_only',
  'category',
  'level',
  'question_with_options',
  'options',
  'rating',
];

/** The plain string fields (everything but images, options and rating). */
export const STRING_FIELDS = [
  'image_id',
  'problem',
  'question_only',
  'answer',
  'answer_only',
  'answer_text',
  'answer_text_only',
  'answer_option_text',
  'answer_option_text_only',
  'category',
  'level',
  'question_with_options',
] as const satisfies readonly StvqaField[];

export const REQUIRED_FIELDS = ['problem', 'images', 'answer_option_text'] as const satisfies readonly StvqaField[];

/** The 9 task categories of §4.4, in the order of their share. */
export const CATEGORIES = [
  'relation',
  'reach',
  'existence',
  'depth',
  'instance_location',
  'size',
  'distance',
  'orientation',
  'count',
] as const;
export type Category = (typeof CATEGORIES)[number];

export const LEVELS = ['easy', 'medium', 'hard'] as const;

/** An error in the data, naming the file and row; `problems` lists all that were found. */
export class DataError extends Error {
  override name = 'DataError';
  constructor(
    message: string,
    readonly file?: string,
    readonly row?: number,
    readonly problems: readonly string[] = [message],
  ) {
    super(message);
  }
}

/** The images of a row as a list (a single image is a list of one). */
export function imagesOf(row: Pick<StvqaRow, 'images'>): StvqaImage[] {
  return Array.isArray(row.images) ? row.images : [row.images];
}

function isImage(value: unknown): value is StvqaImage {
  if (typeof value !== 'object' || value === null) return false;
  const { bytes, path } = value as Record<string, unknown>;
  return bytes instanceof Uint8Array && bytes.byteLength > 0 && (path === null || path === undefined || typeof path === 'string');
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Uint8Array) return 'bytes';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * Everything wrong with a row, as messages prefixed with `where` (e.g.
 * `train-00000.parquet row 17`); an empty list when the row is a valid
 * StvqaRow. Images are checked for presence only (decoding is the reader's
 * `validateImages`).
 */
export function validateRow(row: unknown, where: string): string[] {
  const problems: string[] = [];
  const say = (message: string) => problems.push(`${where}: ${message}`);
  if (typeof row !== 'object' || row === null || Array.isArray(row)) {
    say(`is ${describe(row)}, not an object`);
    return problems;
  }
  const r = row as Record<string, unknown>;

  // problem: required, with the image size the reward reads boxes in.
  const { problem } = r;
  if (problem === undefined || problem === null) say('"problem" is missing');
  else if (typeof problem !== 'string') say(`"problem" is ${describe(problem)}, not a string`);
  else if (!parseImageSize(problem)) say('"problem" has no "Image size: (W x H)" with positive integers W and H');

  // images: required, bytes present.
  const { images } = r;
  if (images === undefined || images === null) say('"images" is missing');
  else if (Array.isArray(images)) {
    if (images.length === 0) say('"images" is an empty list');
    images.forEach((image, i) => {
      if (!isImage(image)) say(`"images"[${i}] has no image bytes`);
    });
  } else if (!isImage(images)) say('"images" has no image bytes');

  // answer_option_text: required, a ground truth the reward can parse.
  const gt = r['answer_option_text'];
  if (gt === undefined || gt === null) say('"answer_option_text" is missing');
  else if (typeof gt !== 'string') say(`"answer_option_text" is ${describe(gt)}, not a string`);
  else if (firstBlock(gt, 'scene') === undefined) say('"answer_option_text" has no <scene>...</scene>');
  else if (firstBlock(gt, 'answer') === undefined) say('"answer_option_text" has no <answer>...</answer>');
  else {
    try {
      const parsed = parseGroundTruth(gt);
      const size = typeof problem === 'string' ? parseImageSize(problem) : undefined;
      const outside = size && groundTruthOutsideImage(parsed, size.width, size.height);
      if (outside) say(`"answer_option_text": ${outside}`);
    } catch (error) {
      if (!(error instanceof GroundTruthError)) throw error;
      say(`"answer_option_text": ${error.message}`);
    }
  }

  // Optional fields: right type when present.
  for (const field of STRING_FIELDS) {
    if (field === 'problem' || field === 'answer_option_text') continue;
    const value = r[field];
    if (value !== undefined && value !== null && typeof value !== 'string')
      say(`"${field}" is ${describe(value)}, not a string`);
  }
  const { category } = r;
  if (typeof category === 'string' && category !== '' && !(CATEGORIES as readonly string[]).includes(category))
    say(`"category" is "${category}", not one of ${CATEGORIES.join(', ')}`);
  const { options } = r;
  if (options !== undefined && options !== null) {
    if (!Array.isArray(options)) say(`"options" is ${describe(options)}, not a list of strings`);
    else if (options.length < 2 || options.length > 4 || !options.every((o) => typeof o === 'string'))
      say(`"options" must be 2 to 4 strings (got ${options.length} ${options.every((o) => typeof o === 'string') ? 'strings' : 'values, not all strings'})`);
  }
  const { rating } = r;
  if (rating !== undefined && rating !== null) {
    const n = typeof rating === 'bigint' ? Number(rating) : rating;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < -(2 ** 31) || n >= 2 ** 31)
      say(`"rating" is ${typeof rating === 'number' ? rating : describe(rating)}, not a 32-bit integer`);
  }
  return problems;
}

/** Type guard over `validateRow`. */
export function isStvqaRow(row: unknown): row is StvqaRow {
  return validateRow(row, '').length === 0;
}

/**
 * The answer letter of a row: `answer_only` when it is a single letter,
 * else the `(X)` that starts the ground truth's <answer>; undefined if neither.
 */
export function answerLetter(row: Pick<StvqaRow, 'answer_only' | 'answer_option_text'>): string | undefined {
  const only = row.answer_only?.trim();
  if (only && /^[A-Za-z]$/.test(only)) return only.toUpperCase();
  const block = typeof row.answer_option_text === 'string' ? firstBlock(row.answer_option_text, 'answer') : undefined;
  const match = block === undefined ? null : /^\s*\(([A-Za-z])\)/.exec(block);
  return match ? (match[1] as string).toUpperCase() : undefined;
}
