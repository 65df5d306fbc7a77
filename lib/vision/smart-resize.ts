/**
 * Qwen2-VL's `smart_resize` (shared/spec/qwen25vl.md §3.1), as in the
 * reference processor of transformers 4.49: the size an image is resized to
 * before patchifying, both sides multiples of `factor` (patch size x merge
 * size = 28), the area brought within [minPixels, maxPixels] keeping the
 * aspect ratio as well as the grid allows.
 */

export interface SmartResizeOptions {
  /** Both output sides are multiples of this (patch_size * merge_size). Default 28. */
  factor?: number;
  /** Smallest area in pixels. Default 56 * 56 = 3136 (the reference's default). */
  minPixels?: number;
  /** Largest area in pixels. Default 28 * 28 * 1280 = 1003520 (the function's default in the reference). */
  maxPixels?: number;
}

export interface Size {
  height: number;
  width: number;
}

export const SMART_RESIZE_DEFAULTS = Object.freeze({ factor: 28, minPixels: 56 * 56, maxPixels: 28 * 28 * 1280 });

/** Python 3's round(): to the nearest integer, ties to the even neighbour (2.5 -> 2, 3.5 -> 4). */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

function positiveInteger(value: number, name: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
    throw new RangeError(`smartResize: ${name} must be a positive integer (got ${String(value)})`);
}

/**
 * The resized size of a `height` x `width` image. Throws, as the reference
 * does, when a side is shorter than `factor` or the aspect ratio exceeds 200;
 * and when the image cannot fit `maxPixels` with both sides at least `factor`
 * (where the reference would go on to fail resizing to a zero side).
 */
export function smartResize(height: number, width: number, options: SmartResizeOptions = {}): Size {
  const factor = options.factor ?? SMART_RESIZE_DEFAULTS.factor;
  const minPixels = options.minPixels ?? SMART_RESIZE_DEFAULTS.minPixels;
  const maxPixels = options.maxPixels ?? SMART_RESIZE_DEFAULTS.maxPixels;
  positiveInteger(height, 'height');
  positiveInteger(width, 'width');
  positiveInteger(factor, 'factor');
  if (typeof minPixels !== 'number' || !Number.isFinite(minPixels) || minPixels < 0)
    throw new RangeError(`smartResize: minPixels must be a non-negative number (got ${String(minPixels)})`);
  if (typeof maxPixels !== 'number' || !Number.isFinite(maxPixels) || maxPixels <= 0)
    throw new RangeError(`smartResize: maxPixels must be a positive number (got ${String(maxPixels)})`);
  if (minPixels > maxPixels)
    throw new RangeError(`smartResize: minPixels (${minPixels}) is larger than maxPixels (${maxPixels})`);

  if (height < factor || width < factor)
    throw new RangeError(
      `smartResize: image of height ${height} and width ${width} is too small: ` +
        `both sides must be at least ${factor} pixels`,
    );
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > 200)
    throw new RangeError(
      `smartResize: image of height ${height} and width ${width} has an aspect ratio of ${ratio}; ` +
        `it must be at most 200`,
    );

  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    // Scale the original size down to the area, then floor to the grid.
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.floor(height / beta / factor) * factor;
    w = Math.floor(width / beta / factor) * factor;
    if (h === 0 || w === 0)
      throw new RangeError(
        `smartResize: image of height ${height} and width ${width} cannot fit maxPixels ${maxPixels} ` +
          `with both sides at least ${factor} pixels (it would be resized to ${h}x${w})`,
      );
  } else if (h * w < minPixels) {
    // Scale the original size up to the area, then ceil to the grid.
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}
