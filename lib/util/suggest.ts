/**
 * "Did you mean" for mistyped names (commands, flags, configuration keys):
 * the known names closest by edit distance, within a distance that scales
 * with the length of what was typed so unrelated names are never offered.
 */

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions each cost 1. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[(i - 1) * cols + j]! + 1, d[i * cols + j - 1]! + 1, d[(i - 1) * cols + j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[(i - 2) * cols + j - 2]! + 1);
      d[i * cols + j] = best;
    }
  }
  return d[rows * cols - 1]!;
}

/**
 * The known names closest to `typed` (ties kept, at most three), or none when
 * every name is too far: a third of the typed length, at least 1 and at most 3
 * edits, and nothing for a single character. Case is ignored; a known name that starts with what was typed (an
 * abbreviation, `--max` for `--max-steps`) also counts as close.
 */
export function suggestions(typed: string, known: Iterable<string>): string[] {
  const needle = typed.toLowerCase();
  // One letter is as close to every other letter: no suggestion means more than a wrong one.
  if (needle.length < 2) return [];
  const limit = Math.min(3, Math.max(1, Math.floor(needle.length / 3)));
  let best = Infinity;
  let closest: string[] = [];
  for (const name of new Set(known)) {
    const hay = name.toLowerCase();
    let distance = editDistance(needle, hay);
    if (needle.length >= 3 && hay.startsWith(needle)) distance = Math.min(distance, 1);
    if (distance > limit || distance > best) continue;
    if (distance < best) {
      best = distance;
      closest = [];
    }
    closest.push(name);
  }
  return closest.slice(0, 3);
}

/** "; did you mean X?" (or "X or Y"), or "" when nothing is close; `format` renders each name (e.g. with its leading --). */
export function didYouMean(typed: string, known: Iterable<string>, format: (name: string) => string = (n) => n): string {
  const close = suggestions(typed, known).map(format);
  if (close.length === 0) return '';
  return `; did you mean ${close.length === 1 ? close[0] : `${close.slice(0, -1).join(', ')} or ${close[close.length - 1]}`}?`;
}
