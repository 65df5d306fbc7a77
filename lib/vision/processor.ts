/**
 * The Qwen2.5-VL image processor: the slow (PIL) `Qwen2VLImageProcessor` of
 * transformers 4.49 (shared/spec/qwen25vl.md §3), bit-exact in its resized
 * pixels and in its float32 normalised patches.
 *
 *   smart_resize -> Pillow bicubic (native) -> x / 255 -> (x - mean) / std
 *   -> patches [grid_t * grid_h * grid_w, 3 * T * p * p] in 2x2-merge order
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { checkRgbImage, type RgbImage } from './image.js';
import { resizeRgb } from './resize.js';
import { smartResize, type Size } from './smart-resize.js';

export interface ImageProcessorConfig {
  /** Smallest resized area in pixels (`min_pixels`). */
  minPixels: number;
  /** Largest resized area in pixels (`max_pixels`). */
  maxPixels: number;
  /** Side of a vision patch in pixels (`patch_size`). */
  patchSize: number;
  /** Frames per patch (`temporal_patch_size`); an image is repeated to fill them. */
  temporalPatchSize: number;
  /** Patches merged per side into one LLM token (`merge_size`). */
  mergeSize: number;
  /** Per-channel mean, R G B (`image_mean`). */
  imageMean: [number, number, number];
  /** Per-channel standard deviation, R G B (`image_std`). */
  imageStd: [number, number, number];
  /** Resize with smart_resize (`do_resize`); when false, sides must already be multiples of patch x merge. */
  doResize: boolean;
  /** Multiply by `rescaleFactor` (`do_rescale`). */
  doRescale: boolean;
  /** `rescale_factor` (1/255). */
  rescaleFactor: number;
  /** Subtract the mean and divide by the std (`do_normalize`). */
  doNormalize: boolean;
}

/**
 * The defaults of transformers' Qwen2VLImageProcessor, used for any field a
 * preprocessor_config.json leaves out. Note that the hub files of
 * Qwen2.5-VL set max_pixels to 12845056 (28 * 28 * 16384); the class
 * default, used only when the file has no max_pixels, is 28 * 28 * 1280.
 */
export const QWEN2VL_PROCESSOR_DEFAULTS: Readonly<ImageProcessorConfig> = Object.freeze({
  minPixels: 56 * 56,
  maxPixels: 28 * 28 * 1280,
  patchSize: 14,
  temporalPatchSize: 2,
  mergeSize: 2,
  imageMean: Object.freeze([0.48145466, 0.4578275, 0.40821073]) as [number, number, number],
  imageStd: Object.freeze([0.26862954, 0.26130258, 0.27577711]) as [number, number, number],
  doResize: true,
  doRescale: true,
  rescaleFactor: 1 / 255,
  doNormalize: true,
});

export interface ProcessedImages {
  /** float32 `[sum of rows, 3 * T * p * p]`, row-major; the rows of each image follow in input order. */
  pixelValues: Float32Array;
  /** Per image `[grid_t, grid_h, grid_w]` in patches. */
  gridThw: [number, number, number][];
  /** Per image, the resized RGB pixels that were patchified. */
  resized: RgbImage[];
  /** Per image, the number of `<|image_pad|>` tokens: grid_t * grid_h * grid_w / merge^2. */
  imageTokens: number[];
}

const SNAKE_NAMES: Record<keyof ImageProcessorConfig, string> = {
  minPixels: 'min_pixels',
  maxPixels: 'max_pixels',
  patchSize: 'patch_size',
  temporalPatchSize: 'temporal_patch_size',
  mergeSize: 'merge_size',
  imageMean: 'image_mean',
  imageStd: 'image_std',
  doResize: 'do_resize',
  doRescale: 'do_rescale',
  rescaleFactor: 'rescale_factor',
  doNormalize: 'do_normalize',
};

function show(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks a complete configuration; `field` names a field the way the source spells it. */
function validate(config: ImageProcessorConfig, source: string, field: (key: keyof ImageProcessorConfig) => string) {
  const fail = (key: keyof ImageProcessorConfig, what: string): never => {
    throw new RangeError(`${source}: \`${field(key)}\` must be ${what} (got ${show(config[key])})`);
  };
  for (const key of ['patchSize', 'temporalPatchSize', 'mergeSize'] as const) {
    const v = config[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 4096) fail(key, 'an integer from 1 to 4096');
  }
  for (const key of ['minPixels', 'maxPixels'] as const) {
    const v = config[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail(key, 'a positive integer');
  }
  if (config.minPixels > config.maxPixels)
    throw new RangeError(
      `${source}: \`${field('minPixels')}\` (${config.minPixels}) is larger than ` +
        `\`${field('maxPixels')}\` (${config.maxPixels})`,
    );
  for (const key of ['imageMean', 'imageStd'] as const) {
    const v = config[key] as unknown;
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x)))
      fail(key, 'a list of 3 finite numbers (R, G, B)');
  }
  if (!config.imageStd.every((x) => x > 0)) fail('imageStd', 'positive');
  for (const key of ['doResize', 'doRescale', 'doNormalize'] as const)
    if (typeof config[key] !== 'boolean') fail(key, 'true or false');
  const r = config.rescaleFactor;
  if (typeof r !== 'number' || !Number.isFinite(r) || r <= 0) fail('rescaleFactor', 'a positive number');
}

export class ImageProcessor {
  readonly config: Readonly<ImageProcessorConfig>;
  /** Float32 lookup of the normalised value of each channel and byte: `lut[c * 256 + v]`. */
  readonly #lut: Float32Array;

  /** A processor with the given settings, the reference's defaults for the rest. */
  constructor(config: Partial<ImageProcessorConfig> = {}, source = 'ImageProcessor') {
    const full: ImageProcessorConfig = {
      ...QWEN2VL_PROCESSOR_DEFAULTS,
      ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)),
    } as ImageProcessorConfig;
    validate(full, source, (key) => key);
    full.imageMean = [...full.imageMean] as [number, number, number];
    full.imageStd = [...full.imageStd] as [number, number, number];
    this.config = Object.freeze(full);
    this.#lut = normalisationTable(full);
  }

  /**
   * A processor from the parsed contents of a preprocessor_config.json
   * (snake_case fields: min_pixels, max_pixels, patch_size,
   * temporal_patch_size, merge_size, image_mean, image_std, and do_resize,
   * do_rescale, rescale_factor, do_normalize). Absent fields take the
   * reference's defaults; `size: {shortest_edge, longest_edge}` is read as
   * min/max pixels when min_pixels/max_pixels are absent, as transformers
   * does. `source` names the file in errors.
   */
  static fromConfig(obj: unknown, source = 'preprocessor config'): ImageProcessor {
    if (!isRecord(obj)) throw new TypeError(`${source}: expected a JSON object (got ${show(obj)})`);
    const config: Partial<ImageProcessorConfig> = {};
    const raw = config as Record<string, unknown>;
    // How each field is spelled in the source, for error messages.
    const names: Record<string, string> = { ...SNAKE_NAMES };
    for (const [key, snake] of Object.entries(SNAKE_NAMES))
      if (obj[snake] !== undefined && obj[snake] !== null) raw[key] = obj[snake];
    const size = obj.size;
    if (size !== undefined && size !== null) {
      if (!isRecord(size))
        throw new RangeError(`${source}: \`size\` must be an object {shortest_edge, longest_edge} (got ${show(size)})`);
      for (const [key, edge] of [
        ['minPixels', 'shortest_edge'],
        ['maxPixels', 'longest_edge'],
      ] as const)
        if (raw[key] === undefined && size[edge] !== undefined && size[edge] !== null) {
          raw[key] = size[edge];
          names[key] = `size.${edge}`;
        }
    }
    const full: ImageProcessorConfig = { ...QWEN2VL_PROCESSOR_DEFAULTS, ...config };
    validate(full, source, (key) => names[key] ?? key);
    return new ImageProcessor(full, source);
  }

  /** A processor from `dir/preprocessor_config.json`. */
  static async fromDirectory(dir: string): Promise<ImageProcessor> {
    const file = join(dir, 'preprocessor_config.json');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason = code === 'ENOENT' ? 'no such file' : error instanceof Error ? error.message : String(error);
      throw new Error(`cannot read the image processor config ${file}: ${reason}`, { cause: error });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new Error(`${file}: not valid JSON: ${(error instanceof Error ? error.message : String(error)).replace(/\s*[\r\n]+\s*/g, ' ')}`, {
        cause: error,
      });
    }
    return ImageProcessor.fromConfig(parsed, file);
  }

  /** Both resized sides are multiples of this: patch_size * merge_size. */
  get factor(): number {
    return this.config.patchSize * this.config.mergeSize;
  }

  /** The size an image of `height` x `width` is resized to. */
  targetSize(height: number, width: number): Size {
    const { minPixels, maxPixels, doResize } = this.config;
    if (doResize) return smartResize(height, width, { factor: this.factor, minPixels, maxPixels });
    if (height % this.factor !== 0 || width % this.factor !== 0)
      throw new RangeError(
        `ImageProcessor: with do_resize false, image sides must be multiples of ${this.factor} ` +
          `(got height ${height}, width ${width})`,
      );
    return { height, width };
  }

  /** `[grid_t, grid_h, grid_w]` of an image resized to `size`. */
  grid(size: Size): [number, number, number] {
    const p = this.config.patchSize;
    return [1, size.height / p, size.width / p];
  }

  /** Resizes, normalises and patchifies `images`, concatenating their patches in order. */
  async process(images: RgbImage[]): Promise<ProcessedImages> {
    if (!Array.isArray(images)) throw new TypeError('ImageProcessor.process: expected an array of RGB images');
    images.forEach((image, i) => checkRgbImage(image, `ImageProcessor.process: images[${i}]`));
    const sizes = images.map((image, i) => {
      try {
        return this.targetSize(image.height, image.width);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new RangeError(`ImageProcessor.process: images[${i}]: ${reason}`, { cause: error });
      }
    });
    const resized = await Promise.all(images.map((image, i) => resizeRgb(image, sizes[i]!.height, sizes[i]!.width)));
    const { patchSize: p, temporalPatchSize: T, mergeSize: m } = this.config;
    const cols = 3 * T * p * p;
    const gridThw = sizes.map((size) => this.grid(size));
    const rows = gridThw.map(([t, h, w]) => t * h * w);
    const pixelValues = new Float32Array(rows.reduce((a, b) => a + b, 0) * cols);
    let rowOffset = 0;
    resized.forEach((image, i) => {
      this.#patchify(image, pixelValues, rowOffset);
      rowOffset += rows[i]!;
    });
    return { pixelValues, gridThw, resized, imageTokens: rows.map((r) => r / (m * m)) };
  }

  /**
   * Writes the patches of one resized image at row `rowOffset` of `out`
   * (spec §3.4): the image is one frame repeated T times (grid_t = 1);
   * row = ((bh * wB + bw) * m + ih) * m + iw over merge blocks (bh, bw) and
   * the patches (ih, iw) inside them; col = ((c * T + f) * p + i) * p + j.
   */
  #patchify(image: RgbImage, out: Float32Array, rowOffset: number): void {
    const { patchSize: p, temporalPatchSize: T, mergeSize: m } = this.config;
    const lut = this.#lut;
    const { data, width } = image;
    const hB = image.height / p / m;
    const wB = width / p / m;
    const cols = 3 * T * p * p;
    const frame = p * p;
    const channelStride = T * frame; // from channel c to c + 1 within a row
    let row = rowOffset;
    for (let bh = 0; bh < hB; bh++)
      for (let bw = 0; bw < wB; bw++)
        for (let ih = 0; ih < m; ih++)
          for (let iw = 0; iw < m; iw++, row++) {
            const y0 = (bh * m + ih) * p;
            const x0 = (bw * m + iw) * p;
            const base = row * cols;
            // Frame 0 of the three channels, reading each pixel once...
            for (let i = 0; i < p; i++) {
              let src = ((y0 + i) * width + x0) * 3;
              let dst = base + i * p;
              for (let j = 0; j < p; j++, src += 3, dst++) {
                out[dst] = lut[data[src]!]!;
                out[dst + channelStride] = lut[256 + data[src + 1]!]!;
                out[dst + 2 * channelStride] = lut[512 + data[src + 2]!]!;
              }
            }
            // ...then the repeated frames are copies of it.
            for (let c = 0; c < 3; c++) {
              const first = base + c * channelStride;
              for (let f = 1; f < T; f++) out.copyWithin(first + f * frame, first, first + frame);
            }
          }
  }
}

/**
 * The normalised float32 value of every byte in every channel, computed as
 * the reference does: x = float32(float64(v) * rescale_factor), then in
 * float32 (x - float32(mean)) / float32(std). A float32 operation is the
 * float64 one rounded to float32 (exact for +, -, *, / of float32 operands).
 */
function normalisationTable(config: ImageProcessorConfig): Float32Array {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(config.imageMean[c]!);
    const std = Math.fround(config.imageStd[c]!);
    for (let v = 0; v < 256; v++) {
      let x = config.doRescale ? Math.fround(v * config.rescaleFactor) : v;
      if (config.doNormalize) x = Math.fround(Math.fround(x - mean) / std);
      lut[c * 256 + v] = x;
    }
  }
  return lut;
}
