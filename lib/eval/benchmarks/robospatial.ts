/**
 * RoboSpatial-Home as the paper evaluates it: `hunarbatra/RoboSpatial-Home`,
 * split `train`; the paper reports the configuration and compatibility
 * questions (123 + 105).
 *
 * Schema: the columns the reference loader reads (`image`, `depth_image`,
 * `prompt`, `answer`, `options`, `category`), default hub layout
 * `data/train-*.parquet`. `robospatial` sends the RGB and the depth image
 * (the reference's `robospatial`), `robospatial-rgb` only the RGB one.
 */
import { image, stringList, text } from '../fields.js';
import type { BenchmarkDefinition } from '../types.js';

function roboSpatial(name: string, title: string, imageFields: readonly string[]): BenchmarkDefinition {
  return {
    name,
    title,
    repo: 'hunarbatra/RoboSpatial-Home',
    split: 'train',
    folder: 'RoboSpatial-Home',
    files: ['data/train-*.parquet', 'train-*.parquet'],
    schemaSource: 'reference loader evaluation/evals.py (ROBOSPATIAL / ROBOSPATIAL_RGB: image [+ depth_image], prompt, answer, options, category)',
    kind: 'multiple-choice',
    requiredColumns: [...imageFields, 'prompt', 'answer', 'options', 'category'],
    tasks: ['configuration', 'compatibility'],
    async toSample(item, where) {
      const images = [];
      for (const field of imageFields) images.push(await image(item, field, where));
      return {
        kind: 'multiple-choice',
        images,
        question: text(item, 'prompt', where),
        choices: stringList(item, 'options', where),
        answer: text(item, 'answer', where),
        task: text(item, 'category', where),
      };
    },
  };
}

export const ROBOSPATIAL = roboSpatial('robospatial', 'RoboSpatial-Home', ['image', 'depth_image']);
export const ROBOSPATIAL_RGB = roboSpatial('robospatial-rgb', 'RoboSpatial-Home (RGB only)', ['image']);
