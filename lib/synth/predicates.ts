/**
 * The canonical relation table of the question generator (shared/spec/method.md §4.5):
 * 12 groups, 71 predicates. Relation questions take their answer from a graph predicate
 * found here and their distractors from other groups; the other categories read a few
 * predicate families (depth, facing, reach) listed below the table.
 */

export const PREDICATE_GROUPS = {
  ABOVE_BELOW: ['above', 'over', 'beneath', 'under', 'below'],
  LEFT_RIGHT: ['left of', 'right of', 'left', 'right'],
  FRONT_BEHIND: ['behind', 'in front of', 'on back of', 'at the back of'],
  INSIDE_CONTAINING: ['in', 'inside', 'part of', 'belonging to', 'flying in', 'walking in', 'consist', 'contain'],
  ON_SUPPORTING: [
    'on',
    'on top of',
    'sitting on',
    'standing on',
    'lying on',
    'laying on',
    'parked on',
    'mounted on',
    'riding',
    'walking on',
    'growing on',
    'hanging from',
  ],
  TOUCHING_ADJACENT: [
    'touching',
    'holding',
    'attached to',
    'leaning against',
    'next to',
    'beside',
    'against',
    'carrying',
    'reached',
  ],
  NEAR_FAR: ['near', 'far from', 'alongside', 'far', 'far away', 'close'],
  BETWEEN: ['between', 'in between'],
  ACROSS_ALONG: ['across', 'along'],
  FACING_ORIENTATION: ['facing', 'looking at', 'watching', 'facing towards', 'facing away'],
  SIZE: ['bigger', 'smaller', 'taller', 'shorter'],
  MISC: ['parallel to', 'perpendicular to', 'across from', 'and', 'at', 'for', 'from', 'to', 'surrounding', 'outside'],
} as const satisfies Record<string, readonly string[]>;

export type PredicateGroup = keyof typeof PREDICATE_GROUPS;

export const GROUP_NAMES = Object.keys(PREDICATE_GROUPS) as PredicateGroup[];

const GROUP_OF = new Map<string, PredicateGroup>();
for (const group of GROUP_NAMES) for (const p of PREDICATE_GROUPS[group]) GROUP_OF.set(p, group);

/**
 * Lower-case, single spaces, trimmed, a trailing article and a leading "is"/"are" dropped:
 * raw Visual Genome predicates like `"is Sitting on a"` become `sitting on` (VG150's are
 * already clean and only lose their case).
 */
export function normalisePredicate(predicate: string): string {
  const words = predicate.toLowerCase().split(/\s+/).filter((w) => w !== '');
  if (words.length > 1 && ['a', 'an', 'the'].includes(words[words.length - 1] as string)) words.pop();
  if (words.length > 1 && (words[0] === 'is' || words[0] === 'are')) words.shift();
  return words.join(' ');
}

/** The canonical group of a (normalised) predicate, or undefined when the table does not list it. */
export function groupOf(predicate: string): PredicateGroup | undefined {
  return GROUP_OF.get(normalisePredicate(predicate));
}

/**
 * Listed predicates that say nothing about space (conjunctions, prepositions of purpose or
 * origin) or express possession: relation questions are never built on them.
 */
export const NON_SPATIAL_PREDICATES: ReadonlySet<string> = new Set([
  'and',
  'at',
  'for',
  'from',
  'to',
  'part of',
  'belonging to',
  'consist',
  'contain',
]);

/**
 * Groups whose predicates become orientation questions rather than relation questions
 * (a facing predicate describes where the subject looks, not where it is).
 */
export const ORIENTATION_GROUPS: ReadonlySet<PredicateGroup> = new Set(['FACING_ORIENTATION']);

/**
 * Depth predicates: `subject behind object` puts the object nearer the camera,
 * `subject in front of object` the subject. "on back of" is left out on purpose: it means
 * "on the back of" (a rider on a horse), not depth order.
 */
export const DEPTH_PREDICATES: ReadonlyMap<string, 'subject-farther' | 'subject-nearer'> = new Map([
  ['behind', 'subject-farther'],
  ['at the back of', 'subject-farther'],
  ['in front of', 'subject-nearer'],
]);

/**
 * Facing predicates for orientation questions: where the object lies from the subject's
 * point of view. "facing away" (from) puts the object behind the subject.
 */
export const FACING_PREDICATES: ReadonlyMap<string, 'in front' | 'behind'> = new Map([
  ['facing', 'in front'],
  ['facing towards', 'in front'],
  ['looking at', 'in front'],
  ['watching', 'in front'],
  ['facing away', 'behind'],
  ['facing away from', 'behind'],
]);

/** Viewer-relative left/right predicates (none are VG150 predicates, but synthetic graphs use them). */
export const LEFT_RIGHT_PREDICATES: ReadonlyMap<string, 'left' | 'right'> = new Map([
  ['left of', 'left'],
  ['to the left of', 'left'],
  ['left', 'left'],
  ['right of', 'right'],
  ['to the right of', 'right'],
  ['right', 'right'],
]);

/**
 * Physical-interaction predicates for reach questions, by kind. Predicates of one kind can
 * hold together (carrying implies holding), so distractors come from other kinds only.
 */
export const REACH_KINDS = {
  hold: ['holding', 'carrying', 'holds'],
  touch: ['touching', 'leaning against', 'leaning on'],
  ride: ['riding', 'riding on'],
  wear: ['wearing', 'wears'],
} as const satisfies Record<string, readonly string[]>;

export type ReachKind = keyof typeof REACH_KINDS;

export const REACH_KIND_NAMES = Object.keys(REACH_KINDS) as ReachKind[];

const REACH_KIND_OF = new Map<string, ReachKind>();
for (const kind of REACH_KIND_NAMES) for (const p of REACH_KINDS[kind]) REACH_KIND_OF.set(p, kind);

/** The reach kind of a predicate, or undefined when it is no physical interaction. */
export function reachKindOf(predicate: string): ReachKind | undefined {
  return REACH_KIND_OF.get(normalisePredicate(predicate));
}

/** The verb each reach kind uses as a distractor (an option naming an interaction that did not happen). */
export const REACH_DISTRACTOR: Readonly<Record<ReachKind, string>> = {
  hold: 'holding',
  touch: 'touching',
  ride: 'riding',
  wear: 'wearing',
};

/**
 * The kinds that may serve as distractors for an answer of each kind: never "touch" (whoever
 * holds, rides or wears a thing also touches it), and never "hold" for a touch answer (an
 * unannotated hold may well be what the touch was).
 */
export const REACH_DISTRACTOR_KINDS: Readonly<Record<ReachKind, readonly ReachKind[]>> = {
  hold: ['ride', 'wear'],
  touch: ['ride', 'wear'],
  ride: ['hold', 'wear'],
  wear: ['hold', 'ride'],
};
