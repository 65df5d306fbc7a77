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

const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#bfef45', '#469990', '#9a6324'];

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

export function boxesSvg(width: number, height: number, boxes: readonly LabelledBox[]): string {
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 200));
  const font = Math.max(10, Math.round(Math.min(width, height) / 30));
  const shapes = boxes.map((b, i) => {
    const color = b.color ?? PALETTE[i % PALETTE.length];
    const [x1, y1, x2, y2] = b.bbox;
    const x = Math.min(x1, x2), y = Math.min(y1, y2), w = Math.abs(x2 - x1), h = Math.abs(y2 - y1);
    const labelY = y > font + 4 ? y - 4 : y + font + 2;
    return (
      `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="${color}" stroke-width="${stroke}"/>` +
      `<text x="${x + 2}" y="${labelY}" font-family="sans-serif" font-size="${font}" fill="${color}" stroke="white" stroke-width="0.6">${escapeXml(b.label)}</text>`
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes.join('')}</svg>`;
}

/** Writes `image` with `boxes` drawn on it as a PNG file. */
export async function drawBoxes(image: RgbImage, boxes: readonly LabelledBox[], outPath: string): Promise<void> {
  const svg = Buffer.from(boxesSvg(image.width, image.height, boxes));
  await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .composite([{ input: svg, top: 0, left: 0 }])
    .png()
    .toFile(outPath);
}
