/**
 * HallusionBench, `lmms-lab/HallusionBench`, split `image` (951 yes/no
 * questions with an image).
 *
 * Schema (its dataset card's `dataset_info`): `category` (VD / VS),
 * `subcategory`, `visual_input`, `set_id`, `figure_id`, `sample_note`,
 * `question_id`, `question`, `gt_answer_details`, `gt_answer` ("1" yes /
 * "0" no), `filename`, `image` Image; file `data/image-00000-of-00001.parquet`.
 * The reference scores it as the options (A) Yes / (B) No, appended to the
 * prompt.
 */
import { image, optionalText, sourceId, text } from '../fields.js';
import type { BenchmarkDefinition } from '../types.js';

export const HALLUSIONBENCH: BenchmarkDefinition = {
  name: 'hallusionbench',
  title: 'HallusionBench',
  repo: 'lmms-lab/HallusionBench',
  split: 'image',
  folder: 'HallusionBench',
  files: ['data/image-*.parquet', 'image-*.parquet'],
  schemaSource: 'dataset card of lmms-lab/HallusionBench (dataset_info features, splits image / non_image)',
  kind: 'yes-no',
  requiredColumns: ['image', 'question', 'gt_answer'],
  optionalColumns: ['category', 'question_id'],
  tasks: ['VD', 'VS'],
  async toSample(item, where) {
    return {
      kind: 'yes-no',
      images: [await image(item, 'image', where)],
      question: text(item, 'question', where),
      choices: ['Yes', 'No'],
      answer: text(item, 'gt_answer', where),
      task: optionalText(item, 'category', where),
      sourceId: sourceId(item, 'question_id'),
    };
  },
  promptSuffix: '\nOptions:\n(A) Yes \n(B) No',
};
