/**
 * Pillow-exact bicubic resizing of 8-bit images, done by the native engine
 * (native/vision/bicubic.cpp) on a worker thread.
 */
import { native } from '../native/binding.js';
import type { RgbImage } from './image.js';

/**
 * Resizes interleaved 8-bit pixels `[height, width, channels]` to
 * `[outHeight, outWidth, channels]` exactly as Pillow's
 * `Image.resize((outWidth, outHeight), Image.BICUBIC)` does. The same size
 * returns a copy.
 */
export function resizeBicubicU8(
  pixels: Uint8Array,
  height: number,
  width: number,
  channels: number,
  outHeight: number,
  outWidth: number,
): Promise<Uint8Array> {
  return native().resizeBicubicU8({ pixels, height, width, channels, outHeight, outWidth });
}

/** resizeBicubicU8 for an RgbImage. */
export async function resizeRgb(image: RgbImage, height: number, width: number): Promise<RgbImage> {
  const data = await resizeBicubicU8(image.data, image.height, image.width, 3, height, width);
  return { data, width, height };
}
