/**
 * The question-aligned scene sub-graph and the ground-truth string (method.md §1.4, §4.3
 * step 2): objects whose label appears among the question's words (with singular, plural
 * and WordNet-lemma forms), relations whose two ends were both kept (the predicate is not
 * checked, as in the reference), written as `<scene>{json}</scene>\n<answer>(B) x</answer>`.
 */
import pluralize from 'pluralize';
import { defaultWordNet } from '../rewards/similarity/wordnet.js';
import type { GraphObject, NormalisedGraph } from './scene-graph.js';

export interface SubgraphObject {
  id: string;
  bbox: [number, number, number, number];
}

export interface SubgraphRelationship {
  subject: string;
  predicate: string;
  object: string;
}

export interface Subgraph {
  objects: SubgraphObject[];
  relationships: SubgraphRelationship[];
}

/**
 * The question's tokens: runs of letters (with a possessive `'s` dropped), lower-cased.
 * NLTK's tokenizer keeps "t-shirt" whole and then drops it as non-alphabetic; labels here
 * are already split at non-letters, so splitting the question the same way matches them.
 */
export function questionTokens(question: string): string[] {
  const out: string[] = [];
  for (const m of question.toLowerCase().matchAll(/[a-z]+(?:['\u2019][a-z]+)?/g)) {
    const token = m[0].replace(/['\u2019]s$/, '');
    if (/^[a-z]+$/.test(token)) out.push(token);
  }
  return out;
}

const formCache = new Map<string, ReadonlySet<string>>();

/**
 * A token's forms, as the reference expands question words: the token, its WordNet noun
 * lemmas (morphy), the plural of each lemma and the token's singular.
 */
export function wordForms(token: string): ReadonlySet<string> {
  let forms = formCache.get(token);
  if (forms) return forms;
  const set = new Set<string>([token]);
  const lemmas = defaultWordNet().morphy(token);
  for (const lemma of lemmas) set.add(lemma);
  for (const lemma of lemmas.length > 0 ? lemmas : [token]) {
    const plural = pluralize.plural(lemma);
    if (/^[a-z]+$/.test(plural)) set.add(plural);
  }
  const singular = pluralize.singular(token);
  if (/^[a-z]+$/.test(singular)) set.add(singular);
  forms = set;
  if (formCache.size > 100_000) formCache.clear();
  formCache.set(token, forms);
  return forms;
}

/** The expanded word set of a question (all forms of all tokens). */
export function questionWords(question: string): Set<string> {
  const words = new Set<string>();
  for (const token of questionTokens(question)) for (const form of wordForms(token)) words.add(form);
  return words;
}

/**
 * Whether a label occurs in the question: a one-word label among the expanded words; a
 * multi-word label as consecutive tokens, the last in any of its forms ("traffic lights").
 */
export function labelInQuestion(label: string, tokens: readonly string[], words: ReadonlySet<string>): boolean {
  const parts = label.split(' ');
  if (parts.length === 1) return words.has(label);
  const last = parts[parts.length - 1] as string;
  for (let i = 0; i + parts.length <= tokens.length; i++) {
    let ok = true;
    for (let k = 0; k < parts.length - 1 && ok; k++) ok = tokens[i + k] === parts[k];
    if (ok && wordForms(tokens[i + parts.length - 1] as string).has(last)) return true;
  }
  return false;
}

/** `traffic light` -> `traffic_light` (the reward's id pattern allows letters and underscores). */
export function idLabel(label: string): string {
  return label.replace(/ /g, '_');
}

/**
 * The sub-graph of the objects named by the question. Ids are `label.N`, N counting from 1
 * per label in graph order; boxes are [x1, y1, x2, y2] pixels.
 */
export function questionSubgraph(graph: NormalisedGraph, question: string): Subgraph {
  const tokens = questionTokens(question);
  const words = new Set<string>();
  for (const t of tokens) for (const f of wordForms(t)) words.add(f);
  const keepLabel = new Map<string, boolean>();
  const ids = new Map<number, string>();
  const perLabel = new Map<string, number>();
  const objects: SubgraphObject[] = [];
  for (const o of graph.objects) {
    let keep = keepLabel.get(o.label);
    if (keep === undefined) {
      keep = labelInQuestion(o.label, tokens, words);
      keepLabel.set(o.label, keep);
    }
    if (!keep) continue;
    const n = (perLabel.get(o.label) ?? 0) + 1;
    perLabel.set(o.label, n);
    const id = `${idLabel(o.label)}.${n}`;
    ids.set(o.index, id);
    objects.push({ id, bbox: bboxOf(o) });
  }
  const relationships: SubgraphRelationship[] = [];
  for (const r of graph.relations) {
    const subject = ids.get(r.subject);
    const object = ids.get(r.object);
    if (subject !== undefined && object !== undefined) relationships.push({ subject, predicate: r.predicate, object });
  }
  return { objects, relationships };
}

function bboxOf(o: GraphObject): [number, number, number, number] {
  return [o.box[0], o.box[1], o.box[2], o.box[3]];
}

/**
 * JSON as Python's `json.dumps` writes it by default: `", "` and `": "` separators,
 * non-ASCII escaped as \uXXXX, floats in repr form (a two-digit exponent: 1e-07).
 */
export function pyJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return pyNumber(value);
  if (typeof value === 'string') return pyString(value);
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(', ')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.map(([k, v]) => `${pyString(k)}: ${pyJsonDumps(v)}`).join(', ')}}`;
  }
  throw new TypeError(`cannot write ${typeof value} as JSON`);
}

function pyNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (!Number.isFinite(n)) return n > 0 ? 'Infinity' : '-Infinity';
  if (Number.isInteger(n) && Math.abs(n) < 1e16) return String(n);
  const s = String(n);
  // Python's repr pads the exponent to two digits and always signs it.
  return s.replace(/e([+-]?)(\d+)$/, (_m, sign: string, digits: string) => `e${sign === '-' ? '-' : '+'}${digits.padStart(2, '0')}`);
}

function pyString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x08) out += '\\b';
    else if (c === 0x0c) out += '\\f';
    else if (c < 0x20 || c > 0x7f) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += s[i];
  }
  return out + '"';
}

/** `{"objects": [...], "relationships": [...]}` in Python json.dumps form. */
export function sceneJson(scene: Subgraph): string {
  return pyJsonDumps({ objects: scene.objects, relationships: scene.relationships });
}
