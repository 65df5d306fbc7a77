/**
 * A static check of the regular expressions a tokenizer.json asks for
 * (Split pre-tokenizers, Replace normalizers and decoders). JavaScript
 * regexes backtrack and cannot be interrupted, so a pattern with a
 * repetition nested inside another repetition, like `(a+)+$`, can take
 * exponential time on a short input (16 s on a 30-character question). Such
 * patterns are refused when the tokenizer loads. Real tokenizers' patterns
 * (GPT-2, Qwen2, Llama 3) repeat single atoms or classes only.
 */

export interface PatternProblem {
  /** Where in tokenizer.json, e.g. `pre_tokenizer.pretokenizers[0].pattern.Regex`. */
  path: string;
  pattern: string;
  reason: string;
}

/** Every `{"Regex": "..."}` in a parsed tokenizer.json that could backtrack without bound. */
export function unsafeTokenizerPatterns(tokenizerJson: unknown): PatternProblem[] {
  const problems: PatternProblem[] = [];
  const visit = (value: unknown, path: string) => {
    if (Array.isArray(value)) value.forEach((item, i) => visit(item, `${path}[${i}]`));
    else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) {
        // The vocabulary and merges hold no patterns; skipping them keeps this cheap.
        if (path === 'model' && (key === 'vocab' || key === 'merges')) continue;
        const at = path ? `${path}.${key}` : key;
        if (key === 'Regex' && typeof item === 'string') {
          const reason = nestedRepetition(item);
          if (reason) problems.push({ path: at, pattern: item, reason });
        } else visit(item, at);
      }
    }
  };
  visit(tokenizerJson, '');
  return problems;
}

interface Group {
  /** Whether something inside the group can repeat without bound. */
  repeats: boolean;
  start: number;
}

/**
 * Why `pattern` nests an unbounded repetition inside another (star height
 * above 1), or undefined. A heuristic on the pattern's text: it accepts only
 * patterns whose repeated parts are single atoms, classes, or groups without
 * repetition inside.
 */
export function nestedRepetition(pattern: string): string | undefined {
  const stack: Group[] = [{ repeats: false, start: 0 }];
  let i = 0;
  // The quantifier at i, if any: its length and whether it is unbounded.
  const quantifier = (): { length: number; unbounded: boolean } | undefined => {
    const c = pattern[i];
    let length = 0;
    let unbounded = false;
    if (c === '*' || c === '+') [length, unbounded] = [1, true];
    else if (c === '?') length = 1;
    else if (c === '{') {
      const m = /^\{(\d*)(,(\d*))?\}/.exec(pattern.slice(i, i + 24));
      if (!m) return undefined;
      length = m[0].length;
      unbounded = m[2] !== undefined && (m[3] === '' || Number(m[3]) > 1);
    } else return undefined;
    const lazy = pattern[i + length];
    if (lazy === '?' || lazy === '+') length++;
    return { length, unbounded };
  };
  const afterAtom = (atomRepeats: boolean, start: number): string | undefined => {
    const q = quantifier();
    const top = stack[stack.length - 1] as Group;
    if (q) {
      if (q.unbounded && atomRepeats)
        return `"${pattern.slice(start, i + q.length)}" repeats a part that itself repeats (catastrophic backtracking)`;
      i += q.length;
      if (q.unbounded) top.repeats = true;
    }
    if (atomRepeats) top.repeats = true;
    return undefined;
  };
  while (i < pattern.length) {
    const start = i;
    const c = pattern[i];
    if (c === '\\') {
      i += 2;
      if ('pPux'.includes(pattern[i - 1] ?? '') && pattern[i] === '{') {
        const close = pattern.indexOf('}', i);
        i = close < 0 ? pattern.length : close + 1;
      } else if (pattern[i - 1] === 'k' && pattern[i] === '<') {
        const close = pattern.indexOf('>', i);
        i = close < 0 ? pattern.length : close + 1;
      }
    } else if (c === '[') {
      i++;
      if (pattern[i] === '^') i++;
      if (pattern[i] === ']') i++;
      while (i < pattern.length && pattern[i] !== ']') i += pattern[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '(') {
      i++;
      if (pattern[i] === '?') {
        i++;
        if (pattern[i] === '<' && pattern[i + 1] !== '=' && pattern[i + 1] !== '!') i = Math.max(i, pattern.indexOf('>', i) + 1);
        else {
          while (i < pattern.length && /[a-zA-Z<=!>-]/.test(pattern[i] as string)) i++;
          if (pattern[i] === ':') i++;
        }
      }
      stack.push({ repeats: false, start });
      continue;
    } else if (c === ')') {
      i++;
      const group = stack.length > 1 ? (stack.pop() as Group) : { repeats: false, start: 0 };
      const problem = afterAtom(group.repeats, group.start);
      if (problem) return problem;
      continue;
    } else if (c === '|') {
      i++;
      continue;
    } else i++;
    const problem = afterAtom(false, start);
    if (problem) return problem;
  }
  return undefined;
}
