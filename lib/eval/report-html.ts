/**
 * The HTML report: the tables of ./report.ts, then, per benchmark, the
 * first failures with their images (the boxes of the predicted `<scene>`
 * drawn over the first image), the completion, what was extracted and what
 * it was compared with. Self-contained: images are inlined as small JPEGs.
 */
import sharp from 'sharp';
import { boxesSvg, sceneBoxes } from '../report/boxes.js';
import { loadSamples } from './load.js';
import { reportTables, settingsLines, type ReportInput, type Table } from './report.js';
import type { BenchmarkSource } from './runner.js';
import type { EvalImage, EvalRecord } from './types.js';

export interface FailureExample {
  record: EvalRecord;
  images: EvalImage[];
}

/**
 * The images of the first `perBenchmark` wrong answers of each benchmark,
 * read back from the benchmark files (the records do not keep images).
 */
export async function collectFailures(
  sources: readonly BenchmarkSource[],
  recordsByBenchmark: ReadonlyMap<string, readonly EvalRecord[]>,
  perBenchmark: number,
  limit?: number,
): Promise<Map<string, FailureExample[]>> {
  const out = new Map<string, FailureExample[]>();
  for (const { definition, files } of sources) {
    const wrong = (recordsByBenchmark.get(definition.name) ?? []).filter((r) => !r.correct).slice(0, perBenchmark);
    if (wrong.length === 0) continue;
    const wanted = new Map(wrong.map((r) => [r.id, r]));
    const examples = new Map<string, FailureExample>();
    for await (const sample of loadSamples(definition, files, limit !== undefined ? { limit } : {})) {
      const record = wanted.get(sample.id);
      if (record) examples.set(sample.id, { record, images: sample.images });
      if (examples.size === wanted.size) break;
    }
    out.set(
      definition.name,
      wrong.map((r) => examples.get(r.id)).filter((e): e is FailureExample => e !== undefined),
    );
  }
  return out;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

const THUMB_WIDTH = 320;

/** A thumbnail of the image, with the predicted boxes (given in the image's own pixel frame) drawn over it. */
async function thumbnail(image: EvalImage, completion: string | undefined): Promise<string> {
  try {
    const input = Buffer.from(image.bytes.buffer, image.bytes.byteOffset, image.bytes.byteLength);
    const meta = await sharp(input).metadata();
    const { data, info } = await sharp(input).resize({ width: THUMB_WIDTH, withoutEnlargement: true }).jpeg({ quality: 80 }).toBuffer({ resolveWithObject: true });
    const sx = info.width / (meta.width ?? info.width);
    const sy = info.height / (meta.height ?? info.height);
    const boxes = completion
      ? sceneBoxes(completion).map((b) => ({ ...b, bbox: [b.bbox[0] * sx, b.bbox[1] * sy, b.bbox[2] * sx, b.bbox[3] * sy] as [number, number, number, number] }))
      : [];
    return (
      `<div class="pic" style="width:${info.width}px;height:${info.height}px"><img src="data:image/jpeg;base64,${data.toString('base64')}" width="${info.width}" height="${info.height}" alt="">` +
      `${boxes.length ? boxesSvg(info.width, info.height, boxes) : ''}</div><div class="meta">${meta.width}x${meta.height}${boxes.length ? `, ${boxes.length} predicted boxes` : ''}</div>`
    );
  } catch (error) {
    return `<div class="bad">image cannot be decoded: ${escapeHtml((error as Error).message)}</div>`;
  }
}

function htmlTable(table: Table): string {
  const cell = (tag: string, c: string, i: number) => `<${tag}${table.numeric && i > 0 ? ' class="num"' : ''}>${escapeHtml(c)}</${tag}>`;
  return (
    `<h2>${escapeHtml(table.title)}</h2><table><thead><tr>${table.head.map((c, i) => cell('th', c, i)).join('')}</tr></thead><tbody>` +
    table.rows.map((r) => `<tr>${r.map((c, i) => cell('td', c, i)).join('')}</tr>`).join('') +
    `</tbody></table>${table.note ? `<p class="note">${escapeHtml(table.note)}</p>` : ''}`
  );
}

async function failureSection(example: FailureExample): Promise<string> {
  const { record, images } = example;
  const pics: string[] = [];
  for (let i = 0; i < images.length; i++) pics.push(await thumbnail(images[i]!, i === 0 ? record.completion : undefined));
  const options = record.choices?.length
    ? `<ol type="A">${record.choices.map((c, i) => `<li${String.fromCharCode(65 + i) === record.groundTruth ? ' class="answer"' : ''}>${escapeHtml(c)}</li>`).join('')}</ol>`
    : '';
  const facts = [record.task && `task <b>${escapeHtml(record.task)}</b>`, record.sourceId && `source id ${escapeHtml(record.sourceId)}`, record.finishReason && `finished by ${record.finishReason}`, record.tokens !== undefined && `${record.tokens} tokens`].filter(Boolean);
  return `<section class="row">
<h3>${escapeHtml(record.id)}</h3>
<div class="facts">${facts.join(' · ')}</div>
<div class="body"><div class="pics">${pics.join('')}</div>
<div class="text">${options}
<p>extracted: <code>${record.extracted === null ? '(nothing)' : escapeHtml(record.extracted)}</code> → prediction <b>${escapeHtml(record.prediction ?? '(none)')}</b>, ground truth <b>${escapeHtml(record.groundTruth)}</b></p>
<pre class="completion">${escapeHtml(record.completion)}</pre>
<details><summary>prompt</summary><pre>${escapeHtml(record.prompt)}</pre></details></div></div>
</section>`;
}

export async function htmlReport(input: ReportInput, failures: ReadonlyMap<string, readonly FailureExample[]>): Promise<string> {
  const parts: string[] = [];
  for (const s of input.summaries) {
    const examples = failures.get(s.benchmark) ?? [];
    if (examples.length === 0) continue;
    const wrong = s.evaluated - s.correct;
    parts.push(`<h2 id="failures-${escapeHtml(s.benchmark)}">${escapeHtml(s.title)}: ${examples.length} of ${wrong} wrong answers</h2>`);
    for (const example of examples) parts.push(await failureSection(example));
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation</title>
<style>
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left}
.num{text-align:right;font-variant-numeric:tabular-nums}
.note,.facts,.meta{color:#666;font-size:.85em}
section.row{border-top:1px solid #ccc;padding:1em 0}
h3{font-size:1em;margin:0 0 .3em}
.body{display:flex;gap:1.5em;align-items:flex-start}
.pics{display:flex;flex-direction:column;gap:.5em}
.pic{position:relative}
.pic img,.pic svg{position:absolute;left:0;top:0}
.pic svg text{paint-order:stroke;stroke-width:3px;stroke-linejoin:round;font-weight:bold}
.text{max-width:60em}
li.answer{font-weight:bold;color:#1a7f37}
pre{white-space:pre-wrap;font-size:.8em;background:#f6f6f6;padding:.5em}
.bad{color:#b00}
</style></head><body>
<h1>Evaluation</h1>
<ul>${settingsLines(input.settings)
    .map((l) => `<li>${escapeHtml(l)}</li>`)
    .join('')}</ul>
${reportTables(input).map(htmlTable).join('\n')}
${parts.length ? '<h1>Failures</h1>' : ''}
${parts.join('\n')}
</body></html>
`;
}
