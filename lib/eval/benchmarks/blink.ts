/**
 * BLINK, `BLINK-Benchmark/BLINK`, split `val`, one config per sub-task.
 *
 * Schema (the dataset's loading guide and the hub's per-config layout
 * `<Config>/val-00000-of-00001.parquet`): `idx`, `question`, `sub_task`,
 * `image_1`..`image_4` Image (unused ones null), `choices` list<string>,
 * `answer` "(A)", `prompt` (question with the lettered choices),
 * `explanation`. The reference reads `image_1` (and `image_2` for
 * Multi-view_Reasoning), `prompt`, `answer`, `choices`.
 */
import { image, sourceId, stringList, text } from '../fields.js';
import type { BenchmarkDefinition } from '../types.js';

function blink(name: string, config: string, title: string, imageFields: readonly string[]): BenchmarkDefinition {
  return {
    name,
    title,
    repo: 'BLINK-Benchmark/BLINK',
    config,
    split: 'val',
    folder: 'BLINK',
    files: [`${config}/val-*.parquet`],
    schemaSource: 'BLINK dataset loading guide (idx, question, prompt, choices, answer "(A)", image_1..image_4) and the hub layout <Config>/val-00000-of-00001.parquet',
    kind: 'multiple-choice',
    requiredColumns: [...imageFields, 'prompt', 'choices', 'answer'],
    optionalColumns: ['idx'],
    async toSample(item, where) {
      const images = [];
      for (const field of imageFields) images.push(await image(item, field, where));
      return {
        kind: 'multiple-choice',
        images,
        question: text(item, 'prompt', where),
        choices: stringList(item, 'choices', where),
        answer: text(item, 'answer', where),
        sourceId: sourceId(item, 'idx'),
      };
    },
  };
}

export const BLINK_SPATIAL = blink('blink-spatial', 'Spatial_Relation', 'BLINK Spatial Relation', ['image_1']);
export const BLINK_DEPTH = blink('blink-depth', 'Relative_Depth', 'BLINK Relative Depth', ['image_1']);
export const BLINK_COUNTING = blink('blink-counting', 'Counting', 'BLINK Counting', ['image_1']);
export const BLINK_OBJECT = blink('blink-object', 'Object_Localization', 'BLINK Object Localization', ['image_1']);
export const BLINK_MULTI_VIEW = blink('blink-multi-view', 'Multi-view_Reasoning', 'BLINK Multi-view Reasoning', ['image_1', 'image_2']);
