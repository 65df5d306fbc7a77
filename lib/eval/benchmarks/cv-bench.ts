/**
 * CV-Bench (Cambrian-1's vision-centric benchmark), `nyu-visionx/CV-Bench`,
 * split `test`: configs `2D` (Count, Relation) and `3D` (Depth, Distance).
 *
 * Schema (the dataset card's field table and its `configs` section):
 * `test_2d.parquet` / `test_3d.parquet` (older revisions: one `test.parquet`
 * holding both, told apart by `type`) with `idx` int, `type` "2D"/"3D",
 * `task`, `image` Image, `question`, `choices` list<string>, `answer` "(A)",
 * `prompt` (question with the lettered choices), `filename`, `source`, ...
 * The reference reads `image`, `prompt`, `answer`, `choices`, `task`.
 */
import { image, optionalText, sourceId, stringList, text } from '../fields.js';
import type { BenchmarkDefinition } from '../types.js';

function cvBench(dimension: '2D' | '3D', tasks: readonly string[]): BenchmarkDefinition {
  const lower = dimension.toLowerCase();
  return {
    name: `cv-bench-${lower}`,
    title: `CV-Bench ${dimension}`,
    repo: 'nyu-visionx/CV-Bench',
    config: dimension,
    split: 'test',
    folder: 'CV-Bench',
    files: [`test_${lower}.parquet`, 'test.parquet'],
    schemaSource: 'dataset card of nyu-visionx/CV-Bench (field table, configs 2D/3D -> test_2d.parquet / test_3d.parquet)',
    kind: 'multiple-choice',
    requiredColumns: ['image', 'prompt', 'choices', 'answer', 'task'],
    optionalColumns: ['idx', 'type'],
    tasks,
    // test.parquet holds both dimensions; the per-dimension files only one.
    include: (record) => record['type'] === undefined || record['type'] === null || String(record['type']) === dimension,
    async toSample(item, where) {
      return {
        kind: 'multiple-choice',
        images: [await image(item, 'image', where)],
        question: text(item, 'prompt', where),
        choices: stringList(item, 'choices', where),
        answer: text(item, 'answer', where),
        task: optionalText(item, 'task', where),
        sourceId: sourceId(item, 'idx'),
      };
    },
  };
}

export const CV_BENCH_2D = cvBench('2D', ['Count', 'Relation']);
export const CV_BENCH_3D = cvBench('3D', ['Depth', 'Distance']);
