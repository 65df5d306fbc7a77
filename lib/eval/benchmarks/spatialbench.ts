/**
 * SpatialBench (SpatialBot's benchmark) as the paper evaluates it:
 * `hunarbatra/SpatialBench`, split `train`, 174 questions.
 *
 * Schema (its dataset card's `dataset_info`): `image` Image, `answer`
 * string, `category` string (existence, reach, size, positional, counting),
 * `text` string, `question_id` int32; files `data/train-*.parquet`. Scored
 * as free text.
 */
import { image, sourceId, text } from '../fields.js';
import { askForAnswerTags } from '../templates.js';
import type { BenchmarkDefinition } from '../types.js';

export const SPATIALBENCH: BenchmarkDefinition = {
  name: 'spatialbench',
  title: 'SpatialBench',
  repo: 'hunarbatra/SpatialBench',
  split: 'train',
  folder: 'SpatialBench',
  files: ['data/train-*.parquet', 'train-*.parquet'],
  schemaSource: 'dataset card of hunarbatra/SpatialBench (dataset_info features)',
  kind: 'open',
  requiredColumns: ['image', 'text', 'answer', 'category'],
  optionalColumns: ['question_id'],
  tasks: ['existence', 'reach', 'size', 'positional', 'counting'],
  async toSample(item, where) {
    return {
      kind: 'open',
      images: [await image(item, 'image', where)],
      question: text(item, 'text', where),
      answer: text(item, 'answer', where),
      task: text(item, 'category', where),
      sourceId: sourceId(item, 'question_id'),
    };
  },
  prepareQuestion: askForAnswerTags,
};
