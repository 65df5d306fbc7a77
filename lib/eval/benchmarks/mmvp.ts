/**
 * MMVP as the paper evaluates it: `hunarbatra/MMVP`, split `train` (300
 * questions on 150 CLIP-blind image pairs).
 *
 * Schema: the columns the reference loader reads (`image`, `text` = the
 * question with its `(a) ... (b) ...` options, `label` = the answer), in the
 * default hub layout `data/train-*.parquet`. MMVP is scored as free text
 * (the reference gives it no choices), so the label is compared with the
 * prediction by §5.4's equality tests: a label `a` matches `(a) Open`.
 */
import { image, text } from '../fields.js';
import { askForAnswerTags } from '../templates.js';
import type { BenchmarkDefinition } from '../types.js';

export const MMVP: BenchmarkDefinition = {
  name: 'mmvp',
  title: 'MMVP',
  repo: 'hunarbatra/MMVP',
  split: 'train',
  folder: 'MMVP',
  files: ['data/train-*.parquet', 'train-*.parquet'],
  schemaSource: 'reference loader evaluation/evals.py (MMVP: image, text, label)',
  kind: 'open',
  requiredColumns: ['image', 'text', 'label'],
  async toSample(item, where) {
    return { kind: 'open', images: [await image(item, 'image', where)], question: text(item, 'text', where), answer: text(item, 'label', where) };
  },
  prepareQuestion: askForAnswerTags,
};
