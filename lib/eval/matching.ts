/**
 * Answer extraction and matching of the reference evaluation
 * (shared/spec/method.md §5.4), in two modes.
 *
 * `reference` reproduces `evaluation/evals.py` exactly, including its bug:
 * on a multiple-choice benchmark a prediction is mapped to an option letter
 * only when it is exactly an option's text (after dropping a leading `(X) `
 * and braces); otherwise a fallback loop whose test contains an always-true
 * term sets the prediction to `A`. So a bare `C`, `(C)` or `(C) behind.`
 * (trailing period) is scored as `A`: right when the answer is A, wrong
 * otherwise.
 *
 * `corrected` (the default) fixes that one thing: a multiple-choice
 * prediction resolves to an option by its text (case, spaces, braces and a
 * trailing period ignored) or by its label (`C`, `(C)`, `C.`, `C)`, `(C) text`
 * when the text names no other option), and one that resolves to no option is
 * wrong. Extraction, ground-truth handling and the open-answer comparison are
 * the reference's in both modes.
 */
import { pyStrip } from '../rewards/text.js';
import { gradeAnswer } from './grade-answer.js';
import type { AnswerKind, MatchingMode } from './types.js';

export interface ScoredAnswer {
  /** The answer block's content, or null when extraction failed ("Failed to extract." in the reference). */
  extracted: string | null;
  /** An option letter (option benchmarks) or the answer text; null when nothing was extracted or (corrected) no option matched. */
  prediction: string | null;
  /** The ground truth as compared. */
  groundTruth: string;
  correct: boolean;
}

/** What scoring needs to know about a sample. */
export interface AnswerKey {
  kind: AnswerKind;
  answer: string;
  choices?: readonly string[];
}

const letter = (index: number) => String.fromCharCode(65 + index);

/**
 * Steps 1–4 of §5.4: the text after the last `Answer:`; a completion without
 * answer tags counts as one whole answer; the content of the last `<answer>`
 * block (to its `</answer>`, or to the end). Null when there is nothing.
 */
export function extractFinalAnswer(completion: string | null | undefined): string | null {
  let answer = completion ?? '';
  if (answer.includes('Answer:')) answer = pyStrip(answer.slice(answer.lastIndexOf('Answer:') + 'Answer:'.length));
  const open = answer.includes('<answer>');
  const close = answer.includes('</answer>');
  if (answer && !open && !close) answer = `<answer>${pyStrip(answer)}</answer>`;
  else if (answer && !open && close) answer = `<answer>${pyStrip(answer.slice(0, answer.indexOf('</answer>')))}</answer>`;
  if (!answer || !answer.includes('<answer>')) return null;
  const last = answer.slice(answer.lastIndexOf('<answer>') + '<answer>'.length);
  const end = last.indexOf('</answer>');
  return pyStrip(end < 0 ? last : last.slice(0, end));
}

/** The reference's `extract_answer(correct, pred)`: the text inside the first `(...)` of the prediction, without a trailing period, compared case-insensitively. */
export function parenthesisedMatch(groundTruth: string, prediction: string): boolean {
  let p = prediction;
  if (p.includes('(') && p.includes(')')) {
    const afterOpen = p.split('(')[1]!;
    p = afterOpen.split(')')[0]!;
  }
  if (p.length > 0 && p.endsWith('.')) p = p.slice(0, -1);
  return pyStrip(p).toLowerCase() === pyStrip(groundTruth).toLowerCase();
}

/** Step 6: case-insensitive equality, `grade_answer`, or the parenthesised-letter test. */
export function referenceEqual(groundTruth: string, prediction: string): boolean {
  return groundTruth.toLowerCase() === prediction.toLowerCase() || gradeAnswer(groundTruth, prediction) || parenthesisedMatch(groundTruth, prediction);
}

/** The options of a key: HallusionBench's are Yes / No. */
function optionsOf(key: AnswerKey): readonly string[] {
  return key.kind === 'yes-no' ? ['Yes', 'No'] : (key.choices ?? []);
}

/** Option text for comparison: braces dropped, spaces collapsed, one trailing period dropped, lower case. */
function optionKey(text: string): string {
  let t = pyStrip(text.replace(/[{}]/g, '')).replace(/\s+/g, ' ');
  if (t.endsWith('.')) t = pyStrip(t.slice(0, -1));
  return t.toLowerCase();
}

function optionByText(text: string, options: readonly string[]): string | null {
  const k = optionKey(text);
  if (k === '') return null;
  const i = options.findIndex((o) => optionKey(o) === k);
  return i >= 0 ? letter(i) : null;
}

/**
 * The option a prediction names (corrected mode), or null: its whole text
 * equal to an option's; else a label `(C)`, `C`, `C.`, `C)`, `C:` (optionally
 * followed by text), where text that equals another option's wins, as in the
 * reference; a label outside the options names nothing.
 */
export function resolveOption(prediction: string, options: readonly string[]): string | null {
  const whole = optionByText(prediction, options);
  if (whole) return whole;
  const s = pyStrip(prediction.replace(/[{}]/g, ''));
  const m = /^\(\s*([A-Za-z])\s*\)\s*([\s\S]*)$/.exec(s) ?? /^([A-Za-z])(?:[.):]\s*([\s\S]*))?$/.exec(s);
  if (!m) return null;
  const rest = m[2] ?? '';
  if (pyStrip(rest) !== '') {
    const byText = optionByText(rest, options);
    if (byText) return byText;
  }
  const label = m[1]!.toUpperCase();
  return label.charCodeAt(0) - 65 < options.length ? label : null;
}

/**
 * The ground-truth option letter of a multiple-choice or yes/no key, or
 * undefined when the answer names no option: `(A)`, `A`, `A.` within the
 * options, or an option's text; HallusionBench's `1` is A (Yes), `0` B (No).
 */
export function answerKeyLetter(key: AnswerKey): string | undefined {
  const answer = pyStrip(key.answer);
  if (key.kind === 'yes-no') {
    const v = answer.replace(/\./g, '');
    return v === '1' ? 'A' : v === '0' ? 'B' : undefined;
  }
  const options = optionsOf(key);
  const m = /^\(?\s*([A-Za-z])\s*\)?\.?$/.exec(answer);
  if (m) {
    const l = m[1]!.toUpperCase();
    return options.length === 0 || l.charCodeAt(0) - 65 < options.length ? l : undefined;
  }
  return optionByText(answer, options) ?? undefined;
}

function scoreReference(key: AnswerKey, extracted: string): ScoredAnswer {
  if (key.kind === 'open') {
    const groundTruth = pyStrip(key.answer);
    return { extracted, prediction: extracted, groundTruth, correct: referenceEqual(groundTruth, extracted) };
  }
  // "(A)" -> "A"; HallusionBench: "1" -> A, anything else -> B.
  let groundTruth = pyStrip(key.answer.replace(/[()]/g, ''));
  if (key.kind === 'yes-no') groundTruth = groundTruth.replace(/\./g, '') === '1' ? 'A' : 'B';
  const options = optionsOf(key);
  let prediction = extracted;
  if (options.length > 0) {
    const lowered = options.map((o) => o.toLowerCase());
    const gtChars = Array.from(groundTruth);
    if (gtChars.length > 1) groundTruth = gtChars[0]!.toLowerCase();
    let text = extracted.replace(/^\([A-Za-z]\)\s*/, '');
    // The reference's second pattern, `^\[A-Za-z]\)\s*`, only matches the literal text "[A-Za-z])".
    if (text === extracted) text = extracted.replace(/^\[A-Za-z\]\)\s*/, '');
    text = text.replace(/[{}]/g, '');
    const index = lowered.indexOf(text.toLowerCase());
    // The fallback: `if f'({L})' in answer or f'{L})' or ...` is always true for the first option.
    prediction = index >= 0 ? letter(index) : 'A';
  }
  return { extracted, prediction, groundTruth, correct: referenceEqual(groundTruth, prediction) };
}

function scoreCorrected(key: AnswerKey, extracted: string): ScoredAnswer {
  if (key.kind === 'open') return scoreReference(key, extracted);
  const groundTruth = answerKeyLetter(key);
  if (groundTruth === undefined) throw new RangeError(`the answer ${JSON.stringify(key.answer)} names none of the options ${JSON.stringify(optionsOf(key))}`);
  const prediction = resolveOption(extracted, optionsOf(key));
  return { extracted, prediction, groundTruth, correct: prediction === groundTruth };
}

/** Extracts the final answer of a completion and compares it with the key. */
export function scoreCompletion(key: AnswerKey, completion: string, mode: MatchingMode = 'corrected'): ScoredAnswer {
  const extracted = extractFinalAnswer(completion);
  if (extracted === null) {
    const groundTruth = key.kind === 'open' || mode === 'reference' ? key.answer : (answerKeyLetter(key) ?? key.answer);
    return { extracted: null, prediction: null, groundTruth, correct: false };
  }
  return mode === 'reference' ? scoreReference(key, extracted) : scoreCorrected(key, extracted);
}
