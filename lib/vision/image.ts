/**
 * Decoding images to the 8-bit RGB pixels the reference processor starts
 * from: PIL's `Image.open(path).convert('RGB')`. Decoding is done by sharp
 * (libvips), with the choices that make it agree with PIL:
 *
 * - alpha is dropped, not composited onto a background (convert('RGB'));
 * - grey images are expanded to three equal channels;
 * - the EXIF orientation is NOT applied (Image.open does not rotate);
 * - an embedded ICC profile is NOT applied (PIL ignores it on convert);
 * - 16-bit samples keep their high byte.
 */
import sharp from 'sharp';

/** An 8-bit RGB image, row-major with channels interleaved: `data[(y * width + x) * 3 + c]`. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Throws a TypeError/RangeError naming `what` when `image` is not a well-formed RgbImage. */
export function checkRgbImage(image: unknown, what = 'image'): asserts image is RgbImage {
  if (typeof image !== 'object' || image === null)
    throw new TypeError(`${what} must be an object { data: Uint8Array, width, height }`);
  const { data, width, height } = image as Partial<RgbImage>;
  if (!(data instanceof Uint8Array)) throw new TypeError(`${what}.data must be a Uint8Array`);
  for (const [name, value] of [
    ['width', width],
    ['height', height],
  ] as const)
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
      throw new RangeError(`${what}.${name} must be a positive integer (got ${String(value)})`);
  const expected = (width as number) * (height as number) * 3;
  if (data.length !== expected)
    throw new RangeError(
      `${what}.data holds ${data.length} bytes but width x height x 3 = ${width} x ${height} x 3 = ${expected}`,
    );
}

/**
 * Decodes an image file (or its bytes) in any format sharp reads (JPEG, PNG,
 * WebP, GIF, TIFF, AVIF, ...) to RGB. The first page/frame of a multi-page
 * image is used, as PIL does.
 */
export async function loadImage(source: string | Uint8Array): Promise<RgbImage> {
  const name =
    typeof source === 'string' ? source : `(${source instanceof Uint8Array ? source.byteLength : 0} bytes in memory)`;
  if (typeof source !== 'string' && !(source instanceof Uint8Array))
    throw new TypeError('loadImage: expected a file path or a Uint8Array of encoded image bytes');
  const input =
    typeof source === 'string' ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
  try {
    const { data, info } = await sharp(input, { ignoreIcc: true, autoOrient: false })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3)
      throw new Error(`decoded to ${info.channels} channels, expected 3`);
    // A plain Uint8Array over the Buffer's memory (no copy).
    const pixels = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { data: pixels, width: info.width, height: info.height };
  } catch (error) {
    // libvips reports over several lines, often repeating one: keep it to one line.
    const lines = (error instanceof Error ? error.message : String(error)).split(/\s*[\r\n]+\s*/).filter(Boolean);
    const reason = [...new Set(lines)].join('; ');
    throw new Error(`cannot decode image ${name}: ${reason}`, { cause: error });
  }
}
