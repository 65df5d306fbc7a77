/**
 * A small STVQA dataset (coloured squares on a plain background, one
 * left/right question each) and a tiny model whose tokenizer is trained on
 * it: enough for the trainers to run real steps in seconds.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { renderProblem } from '../lib/synth/prompt.js';
import { goldTrace } from '../lib/rl/gold-trace.js';
import { writeTinyModelDirectory } from '../lib/engine/tiny-model.js';

const COLOURS = { red: [220, 40, 40], blue: [40, 60, 220], green: [40, 180, 60], yellow: [230, 210, 40] } as const;
type Colour = keyof typeof COLOURS;

export interface ToyRow {
  problem: string;
  answer_option_text: string;
  images: { path: string };
  category: string;
  question_only: string;
  image_id: string;
}

async function square(path: string, size: number, a: { colour: Colour; box: number[] }, b: { colour: Colour; box: number[] }): Promise<void> {
  const rect = (o: { colour: Colour; box: number[] }) => {
    const [x1, y1, x2, y2] = o.box as [number, number, number, number];
    const [r, g, bl] = COLOURS[o.colour];
    return `<rect x="${x1}" y="${y1}" width="${x2 - x1}" height="${y2 - y1}" fill="rgb(${r},${g},${bl})"/>`;
  };
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><rect width="${size}" height="${size}" fill="#ddd"/>${rect(a)}${rect(b)}</svg>`;
  await sharp(Buffer.from(svg)).png().toFile(path);
}

/** `count` rows in dir/<name>.jsonl with their images in dir/images. */
export async function writeToyDataset(dir: string, name: string, count: number, seed: number, size = 56): Promise<ToyRow[]> {
  mkdirSync(join(dir, 'images'), { recursive: true });
  const colours = Object.keys(COLOURS) as Colour[];
  const rows: ToyRow[] = [];
  for (let i = 0; i < count; i++) {
    const k = (seed * 31 + i * 7) >>> 0;
    const ca = colours[k % 4] as Colour;
    const cb = colours[(k + 1 + (i % 3)) % 4] as Colour;
    const leftFirst = (k >> 2) % 2 === 0;
    const boxA = leftFirst ? [4, 20, 20, 36] : [34, 18, 50, 34];
    const boxB = leftFirst ? [34, 18, 50, 34] : [4, 20, 20, 36];
    const image = `images/${name}-${i}.png`;
    await square(join(dir, image), size, { colour: ca, box: boxA }, { colour: cb, box: boxB });
    const question = `Is the ${ca} square left or right of the ${cb} square?`;
    const options = ['left', 'right'];
    const answerIndex = leftFirst ? 0 : 1;
    const scene = JSON.stringify({
      objects: [
        { id: `${ca}_square.1`, bbox: boxA },
        { id: `${cb}_square.1`, bbox: boxB },
      ],
      relationships: [{ subject: `${ca}_square.1`, predicate: leftFirst ? 'left of' : 'right of', object: `${cb}_square.1` }],
    }).replaceAll('":', '": ').replaceAll(',"', ', "');
    rows.push({
      problem: renderProblem(size, size, question, options),
      answer_option_text: `<scene>${scene}</scene>\n<answer>(${'AB'[answerIndex]}) ${options[answerIndex]}</answer>`,
      images: { path: image },
      category: 'relation',
      question_only: question,
      image_id: `${name}-${i}`,
    });
  }
  writeFileSync(join(dir, `${name}.jsonl`), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return rows;
}

/** A tiny Qwen2.5-VL directory whose tokenizer is trained on the rows' prompts and gold traces. */
export async function writeToyModel(dir: string, rows: readonly ToyRow[], seed = 1): Promise<void> {
  const corpus = rows.flatMap((r) => [r.problem, goldTrace(r.answer_option_text)]);
  await writeTinyModelDirectory(dir, { corpus, vocabSize: 700, seed });
}
