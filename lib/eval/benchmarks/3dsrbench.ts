/**
 * 3DSRBench as the paper evaluates it: `hunarbatra/3DSRBench`, split `test`
 * (a re-packaging of `ccvl/3DSRBench` with the COCO images embedded and the
 * choices in the prompt).
 *
 * Schema: the columns the reference loader reads (`image`, `prompt`,
 * `answer`, `choices`, `task` with height / location / orientation /
 * multi_object), in the default `datasets` hub layout
 * `data/test-*.parquet`. The value formats could not be checked against the
 * hub files: `answer` may be `(A)` or `A`, `choices` a list or a list literal.
 */
import { image, stringList, text } from '../fields.js';
import type { BenchmarkDefinition } from '../types.js';

export const THREEDSR_BENCH: BenchmarkDefinition = {
  name: '3dsrbench',
  title: '3DSRBench',
  repo: 'hunarbatra/3DSRBench',
  split: 'test',
  folder: '3DSRBench',
  files: ['data/test-*.parquet', 'test-*.parquet'],
  schemaSource: 'reference loader evaluation/evals.py (BENCH_3DSR: image, prompt, answer, choices, task)',
  kind: 'multiple-choice',
  requiredColumns: ['image', 'prompt', 'answer', 'choices', 'task'],
  tasks: ['height', 'location', 'orientation', 'multi_object'],
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
