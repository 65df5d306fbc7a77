/**
 * Strict reading of an LLM's proposed question (method.md §4.3 steps 1-3): the reply is cut to
 * its first `{ ... }`, parsed as JSON and checked field by field; the question is grounded in
 * the image's scene graph (the objects it names, as the question-aligned sub-graph keeps them)
 * and count answers are checked against the graph. Anything malformed, ambiguous or
 * unsupported by the graph is rejected with one reason from `GENERATION_REJECTIONS`.
 *
 * Where this is stricter than the reference (which took the reply as it came):
 * - level and rating must be present and valid (the balance step sorts by rating);
 * - a question naming no object of the graph is rejected (its ground-truth scene would be
 *   empty), except an existence question answered "no";
 * - a count answer that disagrees with the graph moves to the option holding the graph's
 *   count when there is one (as the reference does) and is otherwise rejected (the reference
 *   overwrote the answered option's text, which can duplicate another option).
 */
import { CATEGORIES, LETTERS, type Category, type Level, type Question } from './questions.js';
import type { NormalisedGraph } from './scene-graph.js';
import { labelInQuestion, questionTokens, questionWords, wordForms } from './subgraph.js';

/** Every reason a proposed question can be rejected for. */
export const GENERATION_REJECTIONS = [
  /** No `{` in the reply. */
  'no-json',
  /** The first `{ ... }` is not valid JSON, or is cut off. */
  'malformed-json',
  /** question, options, answer or category missing or not of the right type. */
  'missing-field',
  /** category is not one of the 9 (names starting with REL_ count as relation). */
  'unknown-category',
  'bad-level',
  /** rating is not an integer from 1 to 10. */
  'bad-rating',
  /** Fewer than 2 or more than 4 options. */
  'option-count',
  /** An empty or over-long option, or a letter prefix out of order. */
  'bad-option',
  /** Two options with the same text. */
  'duplicate-options',
  /** answer is not a letter, or names a text that is not its option's. */
  'bad-answer',
  /** answer is a letter past the last option. */
  'answer-out-of-range',
  /** The question or an option names an object by its id (`cup.1`). */
  'mentions-id',
  /** The question names no object of the scene graph. */
  'ungrounded',
  /** An existence question whose options are not exactly yes and no. */
  'not-yes-no',
  /** A count question whose answer is not an integer. */
  'count-not-integer',
  /** A count answer that disagrees with the graph, with no option holding the graph's count. */
  'count-mismatch',
] as const;

export type GenerationRejection = (typeof GENERATION_REJECTIONS)[number];

export type GenerationVerdict =
  | { ok: true; question: Question; /** The count answer was moved to the graph's count. */ corrected: boolean }
  | { ok: false; reason: GenerationRejection; /** Known when the reply got as far as a valid category. */ category?: Category };

const MAX_QUESTION_CHARS = 400;
const MAX_OPTION_CHARS = 100;

/**
 * The first balanced `{ ... }` of a reply (strings and escapes respected, so a brace inside
 * an option does not end it), or undefined when there is no `{`; `null` when it never closes.
 */
export function firstJsonObject(reply: string): string | null | undefined {
  const start = reply.indexOf('{');
  if (start < 0) return undefined;
  let depth = 0;
  let inString = false;
  for (let i = start; i < reply.length; i++) {
    const ch = reply[i];
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === '{') depth++;
    else if (ch === '}' && --depth === 0) return reply.slice(start, i + 1);
  }
  return null;
}

/** A category name as models write it: case and spaces forgiven, `REL_*` is relation. */
export function parseCategory(name: string): Category | undefined {
  const key = name.trim().toLowerCase().replace(/[\s-]+/g, '_');
  if (key.startsWith('rel_')) return 'relation';
  return (CATEGORIES as readonly string[]).includes(key) ? (key as Category) : undefined;
}

/** `(B) behind`, `B) behind`, `B. behind` -> ['B', 'behind']; otherwise [undefined, text]. */
function splitOptionPrefix(text: string): [string | undefined, string] {
  const m = /^\s*(?:\(([A-Za-z])\)|([A-Za-z])[).:])\s+(.*)$/s.exec(text);
  if (!m) return [undefined, text.trim()];
  return [(m[1] ?? m[2])!.toUpperCase(), m[3]!.trim()];
}

function normaliseText(text: string): string {
  return text.trim().replace(/\s+/g, ' ');
}

/** The options' texts without prefixes, or the reason they are unusable. */
function parseOptions(raw: unknown[]): string[] | GenerationRejection {
  if (raw.length < 2 || raw.length > LETTERS.length) return 'option-count';
  const texts: string[] = [];
  let prefixed = 0;
  for (let i = 0; i < raw.length; i++) {
    const item = raw[i];
    if (typeof item !== 'string' && typeof item !== 'number') return 'bad-option';
    const [letter, body] = splitOptionPrefix(String(item));
    if (letter !== undefined) {
      if (letter !== LETTERS[i]) return 'bad-option';
      prefixed++;
    }
    const text = normaliseText(body);
    if (text === '' || text.length > MAX_OPTION_CHARS) return 'bad-option';
    texts.push(text);
  }
  if (prefixed !== 0 && prefixed !== raw.length) return 'bad-option';
  if (new Set(texts.map((t) => t.toLowerCase())).size !== texts.length) return 'duplicate-options';
  return texts;
}

/** `B`, `(B)`, `B)`, `(B) behind` (the text must be option B's) -> index, or the reason. */
function parseAnswer(raw: string, options: readonly string[]): number | GenerationRejection {
  const m = /^\s*\(?([A-Za-z])\)?(?:[\s.:)]+(.*))?$/s.exec(raw);
  if (!m) return 'bad-answer';
  const index = m[1]!.toUpperCase().charCodeAt(0) - 65;
  if (index >= options.length) return 'answer-out-of-range';
  const text = m[2] === undefined ? '' : normaliseText(m[2]);
  if (text !== '' && text.toLowerCase() !== options[index]!.toLowerCase()) return 'bad-answer';
  return index;
}

function parseLevel(raw: unknown): Level | undefined {
  if (typeof raw !== 'string') return undefined;
  const level = raw.trim().toLowerCase();
  return level === 'easy' || level === 'medium' || level === 'hard' ? level : undefined;
}

function parseRating(raw: unknown): number | undefined {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 10 ? n : undefined;
}

const ID_PATTERN = /\b[a-z][a-z_]*\.\d+\b/i;

/** Indices of the graph objects the question names (the objects its sub-graph keeps). */
export function namedObjects(graph: NormalisedGraph, question: string): number[] {
  const tokens = questionTokens(question);
  const words = questionWords(question);
  const keep = new Map<string, boolean>();
  const out: number[] = [];
  for (const o of graph.objects) {
    let k = keep.get(o.label);
    if (k === undefined) keep.set(o.label, (k = labelInQuestion(o.label, tokens, words)));
    if (k) out.push(o.index);
  }
  return out;
}

/** Token position where a label first occurs in the question, or -1. */
function labelPosition(label: string, tokens: readonly string[]): number {
  const parts = label.split(' ');
  const last = parts[parts.length - 1]!;
  for (let i = 0; i + parts.length <= tokens.length; i++) {
    let ok = true;
    for (let k = 0; k < parts.length - 1 && ok; k++) ok = tokens[i + k] === parts[k];
    if (ok && wordForms(tokens[i + parts.length - 1]!).has(last)) return i;
  }
  return -1;
}

/**
 * The label a count question counts: the first named label after "how many" (or the first
 * named label when the question has no "how many"), and how many objects of it the graph has.
 */
export function countedLabel(graph: NormalisedGraph, question: string, named: readonly number[]): { label: string; count: number } | undefined {
  const tokens = questionTokens(question);
  let from = 0;
  for (let i = 0; i + 1 < tokens.length; i++)
    if (tokens[i] === 'how' && tokens[i + 1] === 'many') {
      from = i + 2;
      break;
    }
  let best: { label: string; at: number } | undefined;
  for (const label of new Set(named.map((i) => graph.objects[i]!.label))) {
    const at = labelPosition(label, tokens.slice(from));
    if (at >= 0 && (best === undefined || at < best.at)) best = { label, at };
  }
  if (best === undefined) return undefined;
  return { label: best.label, count: graph.byLabel.get(best.label)?.length ?? 0 };
}

/**
 * Read one reply into a question about `graph`, options in the model's order. `basis` is
 * `llm`; `objects` are the graph objects the question names.
 */
export function parseGeneratedQuestion(reply: string, graph: NormalisedGraph): GenerationVerdict {
  const text = firstJsonObject(reply);
  if (text === undefined) return { ok: false, reason: 'no-json' };
  if (text === null) return { ok: false, reason: 'malformed-json' };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'malformed-json' };
  }
  const record = json as Record<string, unknown>;
  if (typeof record.category !== 'string') return { ok: false, reason: 'missing-field' };
  const category = parseCategory(record.category);
  if (category === undefined) return { ok: false, reason: 'unknown-category' };
  const reject = (reason: GenerationRejection): GenerationVerdict => ({ ok: false, reason, category });

  if (typeof record.question !== 'string' || !Array.isArray(record.options) || typeof record.answer !== 'string')
    return reject('missing-field');
  const question = normaliseText(record.question);
  if (question === '' || question.length > MAX_QUESTION_CHARS) return reject('missing-field');
  const level = parseLevel(record.level);
  if (level === undefined) return reject('bad-level');
  const rating = parseRating(record.rating);
  if (rating === undefined) return reject('bad-rating');
  const options = parseOptions(record.options);
  if (typeof options === 'string') return reject(options);
  let answerIndex = parseAnswer(record.answer, options);
  if (typeof answerIndex === 'string') return reject(answerIndex);
  if (ID_PATTERN.test(question) || options.some((o) => ID_PATTERN.test(o))) return reject('mentions-id');

  const answer = options[answerIndex]!.toLowerCase();
  if (category === 'existence') {
    const forms = options.map((o) => o.toLowerCase().replace(/[.!]$/, '')).sort();
    if (forms.length !== 2 || forms[0] !== 'no' || forms[1] !== 'yes') return reject('not-yes-no');
  }
  const objects = namedObjects(graph, question);
  const absentByAnswer = category === 'existence' && answer.startsWith('no');
  if (objects.length === 0 && !absentByAnswer) return reject('ungrounded');

  let corrected = false;
  if (category === 'count') {
    if (!/^\d+$/.test(answer)) return reject('count-not-integer');
    const counted = countedLabel(graph, question, objects);
    if (counted === undefined) return reject('ungrounded');
    if (Number(answer) !== counted.count) {
      const at = options.findIndex((o) => /^\d+$/.test(o) && Number(o) === counted.count);
      if (at < 0) return reject('count-mismatch');
      answerIndex = at;
      corrected = true;
    }
  }
  return {
    ok: true,
    corrected,
    question: {
      imageId: graph.imageId,
      category,
      level,
      rating,
      question,
      options,
      answerIndex,
      objects,
      basis: 'llm',
    },
  };
}
