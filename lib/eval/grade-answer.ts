/**
 * `mathruler.grader.grade_answer(given, ground_truth)` (hiyouga/MathRuler,
 * after PRM800K's grader), which the reference evaluation uses as one of its
 * three equality tests (shared/spec/method.md §5.4 step 6).
 *
 * Ported: both normalisations (Hendrycks' MATH `_strip_string` and PRM800K's
 * `_normalize`: units, `$`/`%`, ` and `/` or ` lists, integer forms, case,
 * spaces), the tuple/interval split, the fraction and integer rules.
 * Not ported: LaTeX-to-text conversion (pylatexenc) and sympy's symbolic
 * simplification. In their place two elements are equal when both are plain
 * numbers or simple fractions of equal value. The answers of the benchmarks
 * evaluated here are letters, words and small numbers, for which this gives
 * the reference's verdicts; symbolic answers (`2\sqrt{2}` vs `\sqrt{8}`, or
 * sympy's reading of two-letter words as products) are not recognised.
 */

/** Python `float(s)` when it succeeds, else undefined. */
export function pyFloat(s: string): number | undefined {
  const t = s.trim();
  if (/^[+-]?(inf|infinity)$/i.test(t)) return t.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?nan$/i.test(t)) return NaN;
  const digits = String.raw`\d(?:_?\d)*`;
  const pattern = new RegExp(String.raw`^[+-]?(?:${digits}(?:\.(?:${digits})?)?|\.${digits})(?:[eE][+-]?${digits})?$`);
  return pattern.test(t) ? Number(t.replace(/_/g, '')) : undefined;
}

function isInt(x: number): boolean {
  return Number.isFinite(x) && Math.abs(x - Math.round(x)) <= 1e-7;
}

/** Python `str(int(x))` of a finite float. */
function intString(x: number): string {
  const t = Math.trunc(x);
  return Number.isSafeInteger(t) ? String(t) : BigInt(t).toString();
}

// ---------------------------------------------------------------------------
// math_normalize.normalize_answer (Hendrycks' MATH)

class NormalizeFailure extends Error {}

function fixFracs(string: string): string {
  const substrs = string.split('\\frac');
  let out = substrs[0]!;
  for (const substr of substrs.slice(1)) {
    out += '\\frac';
    if (substr.length === 0) throw new NormalizeFailure(); // Python: substr[0] raises IndexError
    if (substr[0] === '{') {
      out += substr;
      continue;
    }
    if (substr.length < 2) return string;
    const a = substr[0]!;
    const b = substr[1]!;
    if (b !== '{') out += `{${a}}{${b}}${substr.slice(2)}`;
    else out += `{${a}}${b}${substr.slice(2)}`;
  }
  return out;
}

function fixSlash(string: string): string {
  const parts = string.split('/');
  if (parts.length !== 2) return string;
  const [a, b] = parts as [string, string];
  if (!/^[+-]?\d+$/.test(a.trim()) || !/^[+-]?\d+$/.test(b.trim())) return string;
  const ai = BigInt(a.trim());
  const bi = BigInt(b.trim());
  if (string !== `${ai}/${bi}`) return string;
  return `\\frac{${ai}}{${bi}}`;
}

function removeRightUnits(string: string): string {
  if (!string.includes('\\text{ ')) return string;
  const splits = string.split('\\text{ ');
  if (splits.length !== 2) throw new NormalizeFailure(); // Python: assert
  return splits[0]!;
}

function fixSqrt(string: string): string {
  if (!string.includes('\\sqrt')) return string;
  const splits = string.split('\\sqrt');
  let out = splits[0]!;
  for (const split of splits.slice(1)) {
    if (split.length === 0) throw new NormalizeFailure(); // Python: split[0] raises IndexError
    out += split[0] !== '{' ? `\\sqrt{${split[0]}}${split.slice(1)}` : `\\sqrt${split}`;
  }
  return out;
}

function stripString(input: string): string {
  let s = input.replace(/\n/g, '');
  s = s.replaceAll('\\!', '');
  s = s.replaceAll('\\\\', '\\');
  s = s.replaceAll('tfrac', 'frac').replaceAll('dfrac', 'frac');
  s = s.replaceAll('\\left', '').replaceAll('\\right', '');
  s = s.replaceAll('^{\\circ}', '').replaceAll('^\\circ', '');
  s = s.replaceAll('\\$', '');
  s = removeRightUnits(s);
  s = s.replaceAll('\\%', '').replaceAll('%', '');
  s = s.replaceAll(' .', ' 0.').replaceAll('{.', '{0.');
  if (s.length === 0) return s;
  if (s[0] === '.') s = '0' + s;
  const eq = s.split('=');
  if (eq.length === 2 && eq[0]!.length <= 2) s = eq[1]!;
  s = fixSqrt(s);
  s = s.replaceAll(' ', '');
  s = fixFracs(s);
  if (s === '0.5') s = '\\frac{1}{2}';
  return fixSlash(s);
}

const TEXT_WRAPPER = /^\\text\{(.+?)\}$/;

export function normalizeMathd(answer: string): string {
  let a = answer.trim();
  const m = TEXT_WRAPPER.exec(a);
  if (m) a = m[1]!.trim();
  try {
    return stripString(a);
  } catch (error) {
    if (error instanceof NormalizeFailure) return a;
    throw error;
  }
}

// ---------------------------------------------------------------------------
// grader._normalize (PRM800K)

const UNITS = ['degree', 'cm', 'centimeter', 'meter', 'mile', 'second', 'minute', 'hour', 'day', 'week', 'month', 'year', 'foot', 'feet', 'inch', 'yard'];
const UNIT_PATTERNS = UNITS.map((u) => new RegExp(`${u}(es)?(s)? *(\\^[0-9]+)?`, 'g'));

function stripFormattedCommas(expr: string): string {
  const p = /(\d)(,)(\d\d\d)($|\D)/;
  let current = expr;
  for (;;) {
    // Python re.sub replaces every non-overlapping match per pass.
    const next = current.replace(new RegExp(p.source, 'g'), '$1$3$4');
    if (next === current) return next;
    current = next;
  }
}

function strIsInt(x: string): boolean {
  const f = pyFloat(stripFormattedCommas(x));
  return f !== undefined && isInt(f);
}

export function normalizePrm(input: string): string {
  let expr = input;
  const m = TEXT_WRAPPER.exec(expr);
  if (m) expr = m[1]!;
  expr = expr.replaceAll('\\%', '%').replaceAll('\\$', '$').replaceAll('$', '').replaceAll('%', '');
  expr = expr.replaceAll(' or ', ' , ').replaceAll(' and ', ' , ');
  expr = expr.replaceAll('million', '*10^6').replaceAll('billion', '*10^9').replaceAll('trillion', '*10^12');
  for (const unit of UNIT_PATTERNS) expr = expr.replace(unit, '');
  expr = expr.replace(/\^ *\\circ/g, '');
  if (expr.length > 0 && expr[0] === '{' && expr[expr.length - 1] === '}') expr = expr.slice(1, -1);
  expr = expr.replace(/,\\! */g, '');
  const f = pyFloat(expr);
  if (f !== undefined && isInt(f)) expr = intString(Math.round(f));
  // (LaTeX expressions go through pylatexenc in the reference; not ported.)
  expr = expr.replace(/- */g, '-');
  expr = expr.replace(/([0-9]) +([0-9])/g, '$1+$2');
  expr = expr.replaceAll(' ', '').replaceAll('{', '').replaceAll('}', '');
  expr = expr.toLowerCase();
  if (strIsInt(expr)) expr = intString(pyFloat(expr.replaceAll(',', ''))!);
  return expr;
}

const TUPLE_CHARS = '()[]';

function splitTuple(input: string): string[] {
  const expr = stripFormattedCommas(input);
  if (expr.length === 0) return [];
  const inner = expr.slice(1, -1);
  if (expr.length > 2 && TUPLE_CHARS.includes(expr[0]!) && TUPLE_CHARS.includes(expr[expr.length - 1]!) && ![...TUPLE_CHARS].some((c) => inner.includes(c)))
    return inner.split(',').map((e) => e.trim());
  return [expr];
}

function isFrac(expr: string): boolean {
  return /^-?[0-9]+.?\/0*[1-9][0-9]*.?$/.test(expr);
}

/** A plain number or a simple fraction `a/b`, as a value; the stand-in for sympy. */
function numericValue(expr: string): number | undefined {
  const f = pyFloat(expr);
  if (f !== undefined) return f;
  const m = /^([+-]?\d+(?:\.\d+)?)\/(\d+(?:\.\d+)?)$/.exec(expr);
  return m ? Number(m[1]) / Number(m[2]) : undefined;
}

function equalValues(groundTruth: string, given: string): boolean {
  const a = numericValue(groundTruth);
  const b = numericValue(given);
  return a !== undefined && b !== undefined && Number.isFinite(a) && a === b;
}

/** `grade_answer(given_answer, ground_truth)`, with the argument order of mathruler. */
export function gradeAnswer(given: string, groundTruth: string): boolean {
  if (normalizeMathd(groundTruth) === normalizeMathd(given)) return true;
  const truth = normalizePrm(groundTruth);
  const answer = normalizePrm(given);
  if (truth === answer) return true;
  if (answer.length === 0) return false;
  const truthElems = splitTuple(truth);
  const givenElems = splitTuple(answer);
  if (truthElems.length > 1 && (truth[0] !== answer[0] || truth[truth.length - 1] !== answer[answer.length - 1])) return false;
  if (truthElems.length !== givenElems.length) return false;
  for (let i = 0; i < truthElems.length; i++) {
    const t = truthElems[i]!;
    const g = givenElems[i]!;
    let ok: boolean;
    if (isFrac(t) && isFrac(g)) ok = t === g;
    else if (strIsInt(t) !== strIsInt(g)) ok = false;
    else ok = equalValues(t, g);
    if (!ok) return false;
  }
  return true;
}
