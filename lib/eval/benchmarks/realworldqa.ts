/**
 * RealWorldQA (xAI), as the paper evaluates it from `visheratin/realworldqa`,
 * split `test`, 765 questions (`xai-org/RealworldQA` holds the same rows).
 *
 * Schema (both dataset cards' `dataset_info`): `image` Image, `question`
 * string (with its options and an instruction such as "Please answer
 * directly with only the letter of the correct option and nothing else."),
 * `answer` string (a letter, a number or a word); files `data/test-*.parquet`.
 * Scored as free text.
 */
import { image, text } from '../fields.js';
import type { BenchmarkDefinition, TemplateName } from '../types.js';

/** Removed from the question under the spatial_thinker template, which asks for reasoning first. */
export const REALWORLDQA_LETTER_ONLY = 'Please answer directly with only the letter of the correct option and nothing else.';

export const REALWORLDQA: BenchmarkDefinition = {
  name: 'realworldqa',
  title: 'RealWorldQA',
  repo: 'visheratin/realworldqa',
  split: 'test',
  folder: 'realworldqa',
  files: ['data/test-*.parquet', 'data/test_0412-*.parquet', 'test-*.parquet'],
  schemaSource: 'dataset cards of visheratin/realworldqa and xai-org/RealworldQA (dataset_info: image, question, answer)',
  kind: 'open',
  requiredColumns: ['image', 'question', 'answer'],
  async toSample(item, where) {
    return { kind: 'open', images: [await image(item, 'image', where)], question: text(item, 'question', where), answer: text(item, 'answer', where) };
  },
  prepareQuestion: (question: string, template: TemplateName) => (template === 'spatial_thinker' ? question.replaceAll(REALWORLDQA_LETTER_ONLY, '') : question),
};
