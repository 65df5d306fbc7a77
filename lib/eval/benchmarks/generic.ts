/**
 * Any benchmark stored as parquet or JSONL, given its field names: the
 * question (which should list the options), the answer, optionally the
 * option list, one or more image columns, a task column and an id column.
 * With an option list the benchmark is scored as multiple choice (the answer
 * a letter `(A)` / `A` or an option's text), without one as free text.
 */
import { basename, dirname } from 'node:path';
import { image, optionalText, sourceId, stringList, text } from '../fields.js';
import type { AnswerKind, BenchmarkDefinition } from '../types.js';

export interface GenericBenchmarkOptions {
  /** Name used in ids, file names and the report. */
  name: string;
  title?: string;
  /** A .parquet / .jsonl file, or a folder of them. */
  path: string;
  /** True when `path` is a folder. */
  isFolder: boolean;
  question: string;
  answer: string;
  choices?: string;
  images: readonly string[];
  task?: string;
  id?: string;
}

export function genericBenchmark(options: GenericBenchmarkOptions): BenchmarkDefinition {
  if (options.images.length === 0) throw new RangeError('a generic benchmark needs at least one image field');
  const kind: AnswerKind = options.choices ? 'multiple-choice' : 'open';
  const optional = [options.task, options.id].filter((f): f is string => f !== undefined);
  return {
    name: options.name,
    title: options.title ?? options.name,
    split: '-',
    folder: options.isFolder ? options.path : dirname(options.path),
    files: options.isFolder ? ['*.parquet', '*.jsonl'] : [basename(options.path)],
    schemaSource: 'field names given on the command line',
    kind,
    requiredColumns: [...options.images, options.question, options.answer, ...(options.choices ? [options.choices] : [])],
    optionalColumns: optional,
    async toSample(item, where) {
      const images = [];
      for (const field of options.images) images.push(await image(item, field, where));
      const task = options.task ? optionalText(item, options.task, where) : undefined;
      const id = options.id ? sourceId(item, options.id) : undefined;
      return {
        kind,
        images,
        question: text(item, options.question, where),
        answer: text(item, options.answer, where),
        ...(options.choices ? { choices: stringList(item, options.choices, where) } : {}),
        ...(task !== undefined ? { task } : {}),
        ...(id !== undefined ? { sourceId: id } : {}),
      };
    },
  };
}
