/**
 * SpatialReasonerEval as the paper evaluates it:
 * `hunarbatra/SpatialReasonerEval`, split `train` (Depth 600, Distance 600;
 * the images of `ccvl/SpatialReasonerEval` embedded).
 *
 * Schema: the columns the reference loader reads (`image`, `prompt`,
 * `answer`, `choices`, `task`); `choices` is a string holding a Python list
 * (the reference decodes it with `ast.literal_eval`); default hub layout
 * `data/train-*.parquet`.
 */
import { image, stringList, text } from '../fields.js';
import type { BenchmarkDefinition } from '../types.js';

export const SPATIAL_REASONER_EVAL: BenchmarkDefinition = {
  name: 'spatialreasoner',
  title: 'SpatialReasonerEval',
  repo: 'hunarbatra/SpatialReasonerEval',
  split: 'train',
  folder: 'SpatialReasonerEval',
  files: ['data/train-*.parquet', 'train-*.parquet'],
  schemaSource: 'reference loader evaluation/evals.py (SPATIALREASONER_EVAL: image, prompt, answer, choices as a string list literal, task)',
  kind: 'multiple-choice',
  requiredColumns: ['image', 'prompt', 'answer', 'choices', 'task'],
  tasks: ['Depth', 'Distance'],
  async toSample(item, where) {
    return {
      kind: 'multiple-choice',
      images: [await image(item, 'image', where)],
      question: text(item, 'prompt', where),
      choices: stringList(item, 'choices', where),
      answer: text(item, 'answer', where),
      task: text(item, 'task', where),
    };
  },
};
