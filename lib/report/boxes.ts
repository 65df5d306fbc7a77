/**
 * Draws labelled boxes on an image (predicted scene graphs, ground truth) and
 * writes a PNG: used by `spatialthinker generate --boxes` and the reports.
 */
import sharp from 'sharp';
import { extractScene, isJsonObject } from '../rewards/scene.js';
import type { RgbImage } from '../vision/image.js';

export interface LabelledBox {
  label: string;
  /** [x1, y1, x2, y2] in the image's pixels */
  bbox: readonly [number, number, number, number];
  color?: string;
}

export interface BoxesSvgOptions {
  /**
   * Where a label goes: on its box's top edge, above it ('above', the default)
   * or just inside it ('inside'). Two sets of boxes over one image (predicted
   * and ground truth) take one each, so labels of matching boxes do not
   * overprint. A label with no room on its side goes to the other.
   */
  labels?: 'above' | 'inside';
}

const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#bfef45', '#469990', '#9a6324'];

/** Label text size in pixels: readable on a small picture, not shouting on a large one. */
const MIN_FONT = 12;
const MAX_FONT = 18;
/** A sans-serif glyph's advance is at most about this many ems (upper case and digits); labels are sized from it so the text fits its background. */
const GLYPH_EM = 0.62;

/** The objects of the first <scene> block of a completion whose bbox is 4 finite numbers. */
export function sceneBoxes(completion: string): LabelledBox[] {
  const objects = extractScene(completion)['objects'];
  if (!Array.isArray(objects)) return [];
  const boxes: LabelledBox[] = [];
  for (const o of objects) {
    if (!isJsonObject(o)) continue;
    const { id, bbox } = o;
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every((v) => typeof v === 'number' && Number.isFinite(v))) continue;
    boxes.push({ label: typeof id === 'string' ? id : '?', bbox: bbox as [number, number, number, number] });
  }
  return boxes;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] as string);
}

const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), Math.max(lo, hi));
const r1 = (v: number) => Math.round(v * 10) / 10;

/**
 * The boxes as an SVG of `width` x `height`: each an outline with its label
 * as light text on a tag of the box's colour. Every label lies inside the
 * picture: moved in from the edges, and cut short (with "…") when even the
 * picture's width cannot hold it.
 */
export function boxesSvg(width: number, height: number, boxes: readonly LabelledBox[], options: BoxesSvgOptions = {}): string {
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 200));
  const font = clamp(Math.round(Math.min(width, height) / 28), MIN_FONT, MAX_FONT);
  const padX = Math.round(font * 0.3);
  const tagHeight = Math.round(font * 1.3);
  const maxChars = Math.max(1, Math.floor((width - 2 * padX) / (font * GLYPH_EM)));
  const shapes = boxes.map((b, i) => {
    const color = b.color ?? PALETTE[i % PALETTE.length];
    const [x1, y1, x2, y2] = b.bbox;
    const x = Math.min(x1, x2), y = Math.min(y1, y2), w = Math.abs(x2 - x1), h = Math.abs(y2 - y1);
    const text = b.label.length > maxChars ? `${b.label.slice(0, Math.max(0, maxChars - 1))}…` : b.label;
    const tagWidth = Math.ceil(text.length * font * GLYPH_EM) + 2 * padX;
    const above = y - tagHeight;
    const inside = y;
    let tagY = (options.labels ?? 'above') === 'above' ? (above >= 0 ? above : inside) : inside + tagHeight <= height ? inside : above;
    tagY = clamp(tagY, 0, height - tagHeight);
    const tagX = clamp(x, 0, width - tagWidth);
    return (
      `<rect x="${r1(x)}" y="${r1(y)}" width="${r1(w)}" height="${r1(h)}" class="box" fill="none" stroke="${color}" stroke-width="${stroke}"/>` +
      `<g class="label"><rect x="${r1(tagX)}" y="${r1(tagY)}" width="${tagWidth}" height="${tagHeight}" fill="${color}" fill-opacity="0.85"/>` +
      `<text x="${r1(tagX + padX)}" y="${r1(tagY + tagHeight / 2)}" dominant-baseline="central" font-family="sans-serif" font-size="${font}" fill="#fff">${escapeXml(text)}</text></g>`
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes.join('')}</svg>`;
}

export interface DrawBoxesOptions {
  /** The picture is enlarged to at least this many pixels on its longer side, so labels stay readable on small model inputs (default 512). */
  minSide?: number;
}

/** Writes `image` with `boxes` (in the image's pixels) drawn on it as a PNG file. */
export async function drawBoxes(image: RgbImage, boxes: readonly LabelledBox[], outPath: string, options: DrawBoxesOptions = {}): Promise<void> {
  const scale = Math.max(1, (options.minSide ?? 512) / Math.max(image.width, image.height));
  const width = Math.round(image.width * scale);
  const height = Math.round(image.height * scale);
  const sx = width / image.width;
  const sy = height / image.height;
  const shown = boxes.map((b) => ({ ...b, bbox: [b.bbox[0] * sx, b.bbox[1] * sy, b.bbox[2] * sx, b.bbox[3] * sy] as const }));
  const picture = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .resize({ width, height, kernel: 'nearest' })
    .png()
    .toBuffer();
  await sharp(picture)
    .composite([{ input: Buffer.from(boxesSvg(width, height, shown)), top: 0, left: 0 }])
    .png()
    .toFile(outPath);
}
