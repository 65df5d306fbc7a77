/**
 * The scene-graph JSON inside `<scene>...</scene>`: parsing and the validity
 * rules of the reference's format check (shared/spec/rewards.md §2-3).
 */
import { firstBlock, pyStrip } from './text.js';

export type JsonObject = { [key: string]: unknown };

/**
 * Object ids: letters or underscores, a dot, digits. Python's `\d` matches any
 * Unicode decimal digit, hence `\p{Nd}`.
 */
const ID_PATTERN = /^[a-zA-Z_]+\.\p{Nd}+$/u;

export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Python's isinstance(x, (int, float)): JSON true and false count as numbers. */
function isPythonNumber(value: unknown): value is number | boolean {
  return typeof value === 'number' || typeof value === 'boolean';
}

/** An object with exactly the keys `id` and `bbox`, a valid id and 4 numbers. */
export function isValidObject(value: unknown): boolean {
  if (!isJsonObject(value)) return false;
  let keys = 0;
  for (const key in value) if (++keys > 2 || (key !== 'id' && key !== 'bbox')) return false;
  if (keys !== 2) return false;
  const bbox = value['bbox'];
  return isValidId(value['id']) && Array.isArray(bbox) && bbox.length === 4 && bbox.every(isPythonNumber);
}

/** At least `subject`, `predicate`, `object` (more keys allowed), endpoints valid ids. */
export function isValidRelationship(value: unknown): boolean {
  if (!isJsonObject(value)) return false;
  return isValidId(value['subject']) && typeof value['predicate'] === 'string' && isValidId(value['object']);
}

/** A box's four coordinates as numbers (true is 1, false is 0, as in Python). */
export function boxOf(bbox: readonly unknown[]): [number, number, number, number] {
  return [Number(bbox[0]), Number(bbox[1]), Number(bbox[2]), Number(bbox[3])];
}

/**
 * The first `<scene>` block parsed as a JSON object, or an empty object when
 * it is absent, not JSON or not an object. A scene holding a non-finite number
 * (JSON that overflows, like 1e999) is unparseable too: the reference would
 * turn it into NaN rewards, which never reach training here.
 */
export function extractScene(text: string): JsonObject {
  const block = firstBlock(text, 'scene');
  if (block === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(pyStrip(block));
  } catch {
    return {};
  }
  if (!isJsonObject(parsed)) return {};
  if (mayOverflow(block) && !allNumbersFinite(parsed)) return {};
  return parsed;
}

// JSON.parse yields a non-finite number only for a literal beyond the double
// range: 309+ digits, or an exponent of 3+ digits. Only then is a walk needed.
// One pass over the text: the regex /\d{309}|[eE]\+?0*[1-9]\d\d/ restarted
// its digit count at every digit (2.7 s on 10 MB of 308-digit numbers).
export function mayOverflow(text: string): boolean {
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      if (++digits >= 309) return true;
      continue;
    }
    digits = 0;
    if (c === 0x65 || c === 0x45) {
      let j = i + 1;
      if (text.charCodeAt(j) === 0x2b) j++;
      while (text.charCodeAt(j) === 0x30) j++;
      if (isNonZeroDigit(text.charCodeAt(j)) && isDigit(text.charCodeAt(j + 1)) && isDigit(text.charCodeAt(j + 2))) return true;
    }
  }
  return false;
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isNonZeroDigit = (c: number) => c >= 0x31 && c <= 0x39;

// Iterative, so a deeply nested document cannot overflow the stack.
function allNumbersFinite(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) return false;
    } else if (Array.isArray(value)) {
      for (const item of value) stack.push(item);
    } else if (isJsonObject(value)) {
      for (const key in value) stack.push(value[key]);
    }
  }
  return true;
}

/** `scene.get(key, [])` when it is a list, else undefined. */
export function listOr(scene: JsonObject, key: string): unknown[] | undefined {
  const value = Object.hasOwn(scene, key) ? scene[key] : [];
  return Array.isArray(value) ? value : undefined;
}

/** `_` and `-` become spaces, then strip and lower-case. */
export function normaliseId(id: string): string {
  return pyStrip(id.replace(/[_-]/g, ' ')).toLowerCase();
}

/** An object's label: its normalised id up to the first dot, stripped again (`man_.1` is `man`). */
export function labelOf(id: string): string {
  const normalised = normaliseId(id);
  const dot = normalised.indexOf('.');
  return dot < 0 ? normalised : pyStrip(normalised.slice(0, dot));
}
