/**
 * The shapes shared by the evaluation modules: a benchmark's definition
 * (where its files are, how a row becomes a sample), a sample, a model's
 * answer to it and the per-sample record written to the results JSONL.
 */

/** An encoded image (JPEG, PNG, ...) as the Hugging Face `Image` feature stores it. */
export interface EvalImage {
  bytes: Uint8Array;
  path: string | null;
}

/**
 * How a benchmark's ground truth is compared with a prediction
 * (shared/spec/method.md §5.4):
 * - `multiple-choice`: the answer is an option letter (`(A)`, `A`) of `choices`;
 * - `yes-no`: HallusionBench, `gt_answer` `1`/`0` over the options Yes / No;
 * - `open`: free text compared as text (RealWorldQA, SpatialBench, MMVP).
 */
export type AnswerKind = 'multiple-choice' | 'yes-no' | 'open';

/** One question of a benchmark, with everything the prompt and the scoring need. */
export interface EvalSample {
  /** Stable across runs: `<benchmark>/<file name>#<row>` (row counted from 0 in its file, as `datasets` does). */
  id: string;
  benchmark: string;
  file: string;
  row: number;
  /** The dataset's own id of the row, where it has one (`idx`, `question_id`, ...). */
  sourceId?: string;
  /** Sub-task / category used for per-task accuracy. */
  task?: string;
  /** In prompt order; the first one's size goes into the `spatial_thinker` prompt. */
  images: EvalImage[];
  /** The benchmark's question text (its `prompt` field when it has one, which already lists the options). */
  question: string;
  /** Option texts in letter order, for multiple-choice and yes/no benchmarks. */
  choices?: string[];
  /** The ground truth as the dataset stores it. */
  answer: string;
  kind: AnswerKind;
}

/** The fields a benchmark row provides; the loader adds id, benchmark, file and row. */
export type SampleFields = Omit<EvalSample, 'id' | 'benchmark' | 'file' | 'row'>;

/** A raw dataset row: column name to value, as hyparquet (or JSON.parse) gives it. */
export type RawRecord = Record<string, unknown>;

export interface RawRecordItem {
  record: RawRecord;
  file: string;
  /** 0-based row position in the file. */
  index: number;
  /** Relative image paths (JSONL) resolve against this folder. */
  baseDir: string;
}

/** The evaluation prompt variants of the reference (`evaluation/evals.py` `--template`). */
export type TemplateName = 'spatial_thinker' | 'reasoning' | 'no_reasoning';
export const TEMPLATE_NAMES: readonly TemplateName[] = ['spatial_thinker', 'reasoning', 'no_reasoning'];

/**
 * `corrected` (default): a prediction that names no option is wrong.
 * `reference`: the released script's behaviour, where any multiple-choice
 * prediction that is not exactly an option's text is scored as `A`.
 */
export type MatchingMode = 'corrected' | 'reference';

export interface BenchmarkDefinition {
  /** Command-line name, e.g. `cv-bench-2d`. */
  name: string;
  /** Display name, e.g. `CV-Bench 2D`. */
  title: string;
  /** Hugging Face dataset repository the files come from (none for a local benchmark). */
  repo?: string;
  /** The `datasets` config and split the reference evaluates. */
  config?: string;
  split: string;
  /** Default folder under the data directory: where `huggingface-cli download <repo> --local-dir` puts the files. */
  folder: string;
  /**
   * Data files relative to the folder: exact names or one `*` wildcard in the
   * file name (`data/test-*.parquet`). The first pattern that matches any
   * file is used; the others are fallbacks for other layouts of the repo.
   */
  files: readonly string[];
  /** Where the column names and types were confirmed. */
  schemaSource: string;
  kind: AnswerKind;
  /** Columns that every file must have. */
  requiredColumns: readonly string[];
  /** Columns read when present. */
  optionalColumns?: readonly string[];
  /** Task names in report order (others found in the data are appended). */
  tasks?: readonly string[];
  /** Rows to skip (e.g. the 3D rows of CV-Bench's combined file when evaluating 2D). */
  include?(record: RawRecord): boolean;
  /** Turns a raw row into sample fields; throws a DataError naming `where` when the row is unusable. */
  toSample(item: RawRecordItem, where: string): Promise<SampleFields>;
  /** Reads a data file's rows; default: the generic parquet / JSONL reader. */
  readRecords?(file: string, columns: readonly string[]): AsyncIterable<RawRecordItem>;
  /** Dataset-specific rewriting of the question before the template applies (method.md §5.2). */
  prepareQuestion?(question: string, template: TemplateName): string;
  /** Appended after the templated prompt (HallusionBench's Yes/No options). */
  promptSuffix?: string;
}

/** A prompt sent to a model. */
export interface GenerationRequest {
  id: string;
  images: readonly EvalImage[];
  text: string;
}

/** A model's answer to one request. */
export interface Generation {
  id: string;
  text: string;
  /** Why generation ended, where the backend reports it (the engine does; the API path does not keep it). */
  finishReason?: 'stop' | 'length';
  /** Generated tokens, where the backend reports them. */
  tokens?: number;
}

/** A backend that answers prompts: the engine, or an OpenAI-compatible API. */
export interface Generator {
  /** What the results depend on (model, decoding); stored in run.json, a resumed run must match it. */
  readonly identity: Readonly<Record<string, unknown>>;
  /** Requests a runner groups into one call (engine batch; API in-flight window). */
  readonly batchSize: number;
  /**
   * Answers the requests, calling `onResult` as each finishes. Requests that
   * fail are reported through `onError` (the runner does not record them, so
   * a later run retries them); a failure that makes every request fail
   * (authentication, a missing model) rejects instead.
   */
  generate(
    requests: readonly GenerationRequest[],
    handlers: { onResult: (g: Generation) => void | Promise<void>; onError: (id: string, error: Error) => void; signal?: AbortSignal },
  ): Promise<void>;
  close?(): Promise<void>;
}

/** One line of `samples/<benchmark>.jsonl`. */
export interface EvalRecord {
  id: string;
  benchmark: string;
  row: number;
  sourceId?: string;
  task?: string;
  kind: AnswerKind;
  /** The text sent with the images. */
  prompt: string;
  completion: string;
  finishReason?: 'stop' | 'length';
  tokens?: number;
  /** Content of the answer block after the §5.4 extraction; null when nothing could be extracted. */
  extracted: string | null;
  /** What was compared with the ground truth: an option letter, or the answer text. */
  prediction: string | null;
  /** The ground truth as compared (a letter for option benchmarks). */
  groundTruth: string;
  /** The dataset's ground truth and options, kept so a record can be re-scored. */
  answer: string;
  choices?: string[];
  matching: MatchingMode;
  correct: boolean;
}
