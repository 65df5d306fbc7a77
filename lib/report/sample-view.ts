/**
 * One sampled completion as HTML: its image (embedded, downscaled) with the
 * predicted boxes (from the completion's <scene>) and the ground-truth boxes
 * drawn over it in two colours, the question, the reward breakdown, the
 * advantage and the completion text.
 */
import { existsSync } from 'node:fs';
import sharp from 'sharp';
import { parseGroundTruth } from '../rewards/ground-truth.js';
import { boxesSvg, sceneBoxes, type LabelledBox } from './boxes.js';
import { escapeHtml, formatValue } from './html.js';
import type { Sample } from './run-data.js';

export const PREDICTED_BOX_COLOR = '#ff5a1f';
export const GROUND_TRUTH_BOX_COLOR = '#00a6e0';

export interface EmbeddedImage {
  /** data: URI of the (downscaled) image: JPEG, or PNG for small images. */
  src: string;
  width: number;
  height: number;
  /** The file's own size. */
  naturalWidth: number;
  naturalHeight: number;
}

/** Images up to this many pixels are embedded as PNG. */
const SMALL_IMAGE_PIXELS = 256 * 256;

/** Images are shown at least this large on their longer side (tiny training images are enlarged, boxes with them), so objects and labels can be read. */
const MIN_DISPLAY_SIDE = 400;

/**
 * Images as data URIs, at most `maxSide` pixels on a side, each file encoded
 * once however many samples show it (GRPO samples share their prompt's image).
 */
export class ImageEmbedder {
  private readonly cache = new Map<string, Promise<EmbeddedImage | string>>();

  constructor(private readonly maxSide = 512) {}

  /** The embedded image, or why it cannot be shown. */
  embed(path: string): Promise<EmbeddedImage | string> {
    let entry = this.cache.get(path);
    if (!entry) this.cache.set(path, (entry = this.load(path)));
    return entry;
  }

  private async load(path: string): Promise<EmbeddedImage | string> {
    if (!existsSync(path)) return `image not found: ${path}`;
    try {
      const meta = await sharp(path).metadata();
      const resized = sharp(path)
        .resize({ width: this.maxSide, height: this.maxSide, fit: 'inside', withoutEnlargement: true })
        .flatten({ background: '#ffffff' });
      // Small images stay lossless (JPEG blocks would show once they are enlarged on the page).
      const small = (meta.width ?? Infinity) * (meta.height ?? Infinity) <= SMALL_IMAGE_PIXELS;
      const { data, info } = await (small ? resized.png() : resized.jpeg({ quality: 80 })).toBuffer({ resolveWithObject: true });
      return {
        src: `data:image/${small ? 'png' : 'jpeg'};base64,${data.toString('base64')}`,
        width: info.width,
        height: info.height,
        naturalWidth: meta.width ?? info.width,
        naturalHeight: meta.height ?? info.height,
      };
    } catch (error) {
      return `image cannot be decoded: ${path} (${(error as Error).message})`;
    }
  }
}

const r2 = (v: number) => Math.round(v * 100) / 100;

function scaled(boxes: readonly LabelledBox[], sx: number, sy: number, color: string): LabelledBox[] {
  return boxes.map((b) => ({
    label: b.label,
    bbox: [r2(b.bbox[0] * sx), r2(b.bbox[1] * sy), r2(b.bbox[2] * sx), r2(b.bbox[3] * sy)],
    color,
  }));
}

function boxList(boxes: readonly LabelledBox[]): string {
  return boxes.length ? boxes.map((b) => `${escapeHtml(b.label)} [${b.bbox.map(formatValue).join(', ')}]`).join('<br>') : '(none)';
}

function rewardTable(sample: Sample): string {
  const entries = Object.entries(sample.reward).sort(([a], [b]) => Number(b === 'overall') - Number(a === 'overall'));
  if (sample.advantage !== undefined) entries.push(['advantage', sample.advantage]);
  if (entries.length === 0) return '';
  return (
    `<table class="reward"><tr>${entries.map(([k]) => `<th>${escapeHtml(k)}</th>`).join('')}</tr>` +
    `<tr>${entries.map(([, v]) => `<td>${formatValue(v)}</td>`).join('')}</tr></table>`
  );
}

async function pictureHtml(sample: Sample, predicted: LabelledBox[], truth: LabelledBox[], images: ImageEmbedder): Promise<string> {
  if (!sample.imagePath) return `<div class="placeholder">no image recorded for this sample</div>`;
  const image = await images.embed(sample.imagePath);
  if (typeof image === 'string') return `<div class="placeholder">${escapeHtml(image)}</div>`;
  // Boxes are in the frame the prompt stated (image_size), else in the file's own pixels.
  const [frameWidth, frameHeight] = sample.imageSize ?? [image.naturalWidth, image.naturalHeight];
  const enlarge = Math.max(1, MIN_DISPLAY_SIDE / Math.max(image.width, image.height));
  const w = Math.round(image.width * enlarge);
  const h = Math.round(image.height * enlarge);
  const sx = w / frameWidth;
  const sy = h / frameHeight;
  return (
    `<div class="pic" style="width:${w}px;height:${h}px"><img src="${image.src}" width="${w}" height="${h}" alt="${escapeHtml(sample.imageId ?? sample.image ?? '')}">` +
    `<div class="overlay gt">${boxesSvg(w, h, scaled(truth, sx, sy, GROUND_TRUTH_BOX_COLOR), { labels: 'above' })}</div>` +
    `<div class="overlay pred">${boxesSvg(w, h, scaled(predicted, sx, sy, PREDICTED_BOX_COLOR), { labels: 'inside' })}</div></div>` +
    `<div class="meta">${image.naturalWidth}x${image.naturalHeight}` +
    (sample.imageSize && (sample.imageSize[0] !== image.naturalWidth || sample.imageSize[1] !== image.naturalHeight)
      ? `, boxes in ${sample.imageSize[0]}x${sample.imageSize[1]}`
      : '') +
    `</div>`
  );
}

export async function renderSample(sample: Sample, images: ImageEmbedder): Promise<string> {
  const predicted = sceneBoxes(sample.completion);
  let truth: LabelledBox[] = [];
  let truthProblem = '';
  try {
    truth = parseGroundTruth(sample.groundTruth).objects.map((o) => ({ label: o.id, bbox: o.box }));
  } catch (error) {
    truthProblem = `ground truth unreadable: ${(error as Error).message}`;
  }
  const facts = [
    `step ${sample.step}`,
    sample.index !== undefined && `#${sample.index}`,
    sample.category && `<b>${escapeHtml(sample.category)}</b>`,
    sample.imageId && `image ${escapeHtml(sample.imageId)}`,
  ].filter(Boolean);
  return `<article class="sample">
<div class="pics">${await pictureHtml(sample, predicted, truth, images)}</div>
<div class="text">
<div class="facts">${facts.join(' · ')}</div>
${sample.question ? `<p class="q">${escapeHtml(sample.question).replace(/\n/g, '<br>')}</p>` : ''}
${rewardTable(sample)}
<div class="boxlist"><div><span class="key pred">predicted</span><br>${boxList(predicted)}</div><div><span class="key gt">ground truth</span><br>${boxList(truth)}</div></div>
${truthProblem ? `<p class="bad">${escapeHtml(truthProblem)}</p>` : ''}
<pre class="completion">${escapeHtml(sample.completion)}</pre>
<details><summary>ground truth</summary><pre>${escapeHtml(sample.groundTruth)}</pre></details>
<div class="source">${escapeHtml(sample.source)}</div>
</div>
</article>`;
}

/** The key to the two box colours. */
export function boxLegendHtml(): string {
  return (
    `<div class="box-legend"><span class="swatch" style="border-color:${PREDICTED_BOX_COLOR}"></span> predicted (from the completion's &lt;scene&gt;; dashed, label inside the box)` +
    ` <span class="swatch" style="border-color:${GROUND_TRUTH_BOX_COLOR}"></span> ground truth (label above the box)</div>`
  );
}

export const SAMPLE_CSS = `
article.sample{display:flex;gap:1.2em;align-items:flex-start;border-top:1px solid #ddd;padding:.8em 0}
.pic{position:relative}
.pic img,.pic .overlay{position:absolute;left:0;top:0}
.overlay.pred rect.box{stroke-dasharray:7 4}
.placeholder{width:320px;height:120px;display:flex;align-items:center;justify-content:center;text-align:center;background:#f3f3f3;border:1px dashed #aaa;color:#a00;font-size:.85em;padding:.5em;box-sizing:border-box;word-break:break-all}
.sample .text{max-width:62em;min-width:20em}
.facts,.meta,.source{color:#666;font-size:.85em;margin:.2em 0}
table.reward{border-collapse:collapse;font-size:.85em;margin:.4em 0}
table.reward th,table.reward td{border:1px solid #ddd;padding:.15em .5em;text-align:right}
.boxlist{display:flex;gap:2em;font-family:monospace;font-size:.8em;margin:.4em 0}
.key{font-family:sans-serif;font-weight:bold}
.key.pred{color:${PREDICTED_BOX_COLOR}}
.key.gt{color:${GROUND_TRUTH_BOX_COLOR}}
pre{white-space:pre-wrap;word-break:break-word;font-size:.8em;background:#f6f6f6;padding:.5em;margin:.4em 0}
.bad{color:#b00}
.box-legend{font-size:.9em;margin:.4em 0}
.swatch{display:inline-block;width:1.6em;height:.9em;border:3px solid;vertical-align:middle;margin-left:.8em}
`;
