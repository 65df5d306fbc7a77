/**
 * STVQA-7K validation split, `hunarbatra/STVQA-7K` split `val` (692
 * questions), read with the project's STVQA reader (lib/data), which checks
 * every row against the STVQA schema (shared/spec/method.md §4.2).
 *
 * The reference evaluates `question_with_options` against `answer_only`
 * with `options` as the choices; `category` gives the per-category table.
 * Hub layout: `data/val-*.parquet` (or a JSONL file written by
 * `spatialthinker data convert`).
 */
import { dirname } from 'node:path';
import { readRows } from '../../data/reader.js';
import { DataError, answerLetter, imagesOf, type StvqaRow } from '../../data/schema.js';
import type { BenchmarkDefinition, RawRecordItem } from '../types.js';

async function* stvqaRecords(file: string): AsyncGenerator<RawRecordItem, void, undefined> {
  for await (const { row, index } of readRows(file)) yield { record: row as unknown as Record<string, unknown>, file, index, baseDir: dirname(file) };
}

export const STVQA_VAL: BenchmarkDefinition = {
  name: 'stvqa',
  title: 'STVQA-7K val',
  repo: 'hunarbatra/STVQA-7K',
  split: 'val',
  folder: 'STVQA-7K',
  files: ['data/val-*.parquet', 'val-*.parquet', 'val.jsonl'],
  schemaSource: 'shared/spec/method.md §4.2 (the STVQA-7K record) and the reference loader (images, question_with_options, answer_only, options)',
  kind: 'multiple-choice',
  requiredColumns: ['images', 'problem', 'answer_option_text'],
  optionalColumns: ['question_with_options', 'answer_only', 'options', 'category'],
  readRecords: (file) => stvqaRecords(file),
  async toSample(item, where) {
    const row = item.record as unknown as StvqaRow;
    if (!row.question_with_options || !row.options?.length)
      throw new DataError(`${where}: an STVQA row needs "question_with_options" and "options" to be evaluated`, item.file, item.index);
    const answer = row.answer_only?.trim() || answerLetter(row);
    if (!answer) throw new DataError(`${where}: no answer letter in "answer_only" or "answer_option_text"`, item.file, item.index);
    return {
      kind: 'multiple-choice',
      images: imagesOf(row).map((i) => ({ bytes: i.bytes, path: i.path })),
      question: row.question_with_options,
      choices: [...row.options],
      answer,
      ...(row.category ? { task: row.category } : {}),
    };
  },
};
