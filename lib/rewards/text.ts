/**
 * String helpers that reproduce the reference scorer's Python semantics, so
 * that rewards agree with it on odd whitespace and unbalanced tags. All are
 * linear in the input: completions can be megabytes of garbage.
 */

// Python's str.isspace() set; String.prototype.trim differs (it strips U+FEFF
// and keeps U+001C..U+001F and U+0085).
function isPythonSpace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    (c >= 0x1c && c <= 0x20) ||
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

/** Python's `str.strip()`. */
export function pyStrip(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && isPythonSpace(s.charCodeAt(start))) start++;
  while (end > start && isPythonSpace(s.charCodeAt(end - 1))) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

/** Python's `\s` in a str pattern matches the same set as isspace(). */
export function skipPythonSpace(s: string, from: number): number {
  while (from < s.length && isPythonSpace(s.charCodeAt(from))) from++;
  return from;
}

/**
 * The content of the first `<tag>...</tag>` block, as the non-greedy,
 * dot-matches-newline search `<tag>(.*?)</tag>` finds it, or undefined.
 * The first opening tag decides: if no closing tag follows it, none follows
 * any later opening tag either.
 */
export function firstBlock(text: string, tag: string, allowNewlines = true): string | undefined {
  const open = `<${tag}>`;
  const close = `</${tag}>`;
  if (allowNewlines) {
    const start = text.indexOf(open);
    if (start < 0) return undefined;
    const end = text.indexOf(close, start + open.length);
    return end < 0 ? undefined : text.slice(start + open.length, end);
  }
  // Without DOTALL the block may not span a line break, so a later opening
  // tag can still match after an earlier one fails.
  let from = 0;
  for (;;) {
    const start = text.indexOf(open, from);
    if (start < 0) return undefined;
    const end = text.indexOf(close, start + open.length);
    if (end < 0) return undefined;
    const content = text.slice(start + open.length, end);
    const newline = content.search(/[\n]/);
    if (newline < 0) return content;
    from = start + open.length + newline;
  }
}

/** Non-overlapping occurrences of `needle`, as Python's `str.count`. */
export function countOccurrences(text: string, needle: string): number {
  let n = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) n++;
  return n;
}
