/**
 * Template questions in the 9 STVQA categories (method.md §4.4), decided from box geometry
 * and relation predicates only. Every candidate the graph offers is either generated or
 * refused with a reason; the caller picks among the generated ones.
 *
 * Rules where the method leaves room (all margins are in `Margins`, defaults below).
 * At most `maxPerCategory` (3) questions per category and image are made, visiting the
 * largest objects / relations first (the reference prefers the largest-area triple).
 *
 * - Salience: parts, body parts, clothing and background regions are never asked about;
 *   nor are plural labels ("people"), objects covering < 0.1% of the image, nor (except in
 *   count questions) labels whose synonym class has several objects in the graph ("the
 *   man" with two men, or a man and a person). Questions use labels, never ids.
 * - relation: "Where is the S with respect to the O?", answer = a graph predicate of the
 *   12-group table (facing predicates go to orientation; "and/at/for/from/to", "part of",
 *   "belonging to", "consist", "contain" are not spatial). Trivial relations are refused:
 *   a part, body part or clothing at either end, wear/has-type predicates on clothing, or
 *   something on/in a background region (a car on the road). Distractors: one predicate
 *   from each of up to 3 other groups, never a group annotated between the two objects
 *   (either direction) or compatible with the answer's (on ~ touching ~ near, on ~ above),
 *   and only when the box geometry makes it false: "left of"/"right of" against a centre
 *   offset >= 10% of the width, "above"/"below" against >= 10% of the height, "behind"/"in
 *   front of" against the bottom-edge depth rule, "inside" when < 10% of the subject box is
 *   in the object box, "on top of"/"touching" when the boxes are >= 5% of the diagonal apart,
 *   "far from" when they overlap.
 * - reach: holding/carrying, touching/leaning, riding, wearing predicates. "What is the S
 *   doing with the O?" (distractors: verbs of other kinds, see REACH_DISTRACTOR_KINDS),
 *   "Is the S <verb> the O?" yes/no ("no" asks a verb of another kind), or "What is the S
 *   <verb>?" naming the object (only when the S does it to one object; distractors: other
 *   askable objects whose boxes are >= 5% of the diagonal away from the S's, with no
 *   interaction annotated).
 * - existence: "Is there a X in the image?": yes for the largest single salient label;
 *   no for a salient vocabulary label (VG150 classes by default) of which neither it nor a
 *   synonym is in the graph. A scene graph is incomplete, so a "no" is an assumption.
 * - depth: "Which is closer to the camera, the A or the B?": behind / in front of / at the
 *   back of predicates between the two decide (conflicting ones refuse); else the box whose
 *   bottom edge is lower in the image (larger y2) is closer, refused when the bottom edges
 *   are within 5% of the height or one box mostly (80%) covers the other.
 * - size: apparent size in the image: box area (larger/smaller, or which is larger) or
 *   box height (taller/shorter); refused when the ratio is below 1.3.
 * - distance: "Which object is closer to the R, the A or the B?" by box-centre distance;
 *   refused when nearer/farther > 0.75.
 * - instance_location: the 3x3 cell of the box centre (top-left ... bottom-right);
 *   refused when the centre is within 4% of the image side of a grid line or the box
 *   covers more than half of the image.
 * - orientation: from a facing predicate ("S facing/looking at/watching O": the O is in
 *   front from the S's perspective; "facing away": behind), or from the camera's viewpoint
 *   (left/right of the box centres, refused when they are < 10% of the width apart or the
 *   boxes share more than half of the narrower one's width; an annotated left/right
 *   predicate that disagrees refuses).
 * - count: "How many Xs are there in the image?" for 1-6 instances, refused when two of
 *   them overlap with IoU > 0.5 (hard to count, often duplicate annotations) or a synonym
 *   label is present too.
 *
 * Difficulty: points = object points (objects involved - 1; 1 for distance, 0 for count)
 * + closeness (0-2, below) + 1 when the smallest object covers < 1% of the image + 1 when
 * two of the objects overlap by more than a quarter of the smaller box (likely partial
 * occlusion; not for count); easy <= 1, medium = 2, hard >= 3. Closeness says how near
 * the decision is to its refusal margin, or how much reasoning the question needs:
 *   relation: 0 on/above-below/inside/touching groups, 1 front-behind/left-right/near-far,
 *     2 between/across-along/misc; reach: 0 yes/no, 1 the two "What is ..." forms;
 *   existence: 0 yes, 2 no (an absence needs the whole image searched);
 *   depth: by predicate 1, else bottom-edge gap >= 25% of the height 0, >= 10% 1, else 2;
 *   size: ratio >= 3 0, >= 1.8 1, else 2; distance: nearer/farther < 0.4 0, < 0.6 1, else 2;
 *   instance_location: centre >= 0.3 cell widths from a grid line 0, >= 0.2 1, else 2;
 *   orientation: facing 2; camera left/right centre gap >= 30% of the width 0, >= 15% 1,
 *     else 2; count: <= 2 instances 0, <= 4 1, else 2.
 * Rating (1-10, "how much the question would improve spatial intelligence"): a base per
 * category (depth, distance, orientation 7; relation, reach 6; size, count,
 * instance_location 5; existence 4), + 1 when the answer rests on an annotated relation
 * (the reference prefers questions built on the graph's relations), + 1 when every object
 * involved covers >= 5% of the image (salient), - 1 when one covers < 0.5% (not for
 * existence, so that "yes" and "no" rate alike), and for count + 1 for 2 instances, + 2
 * for 3 or more. The rating does not depend on the level, so that the rating filter of
 * balancing keeps the level mix.
 */
import {
  boxArea,
  boxGap,
  centre,
  intersectionArea,
  iou,
  type PixelBox,
  type GraphObject,
  type GraphRelation,
  type NormalisedGraph,
} from './scene-graph.js';
import {
  DEPTH_PREDICATES,
  FACING_PREDICATES,
  LEFT_RIGHT_PREDICATES,
  NON_SPATIAL_PREDICATES,
  ORIENTATION_GROUPS,
  REACH_DISTRACTOR,
  REACH_DISTRACTOR_KINDS,
  groupOf,
  reachKindOf,
  type PredicateGroup,
  type ReachKind,
} from './predicates.js';
import { randomInt, sample, seeded, shuffled, type Random } from '../random.js';
import { VG150_OBJECTS, article, isPluralLabel, pluralLabel, salienceProblem, synonymKey } from './vocabulary.js';

// The 9 categories are the dataset schema's (lib/data/schema.ts).
export { CATEGORIES, type Category } from '../data/schema.js';
import { CATEGORIES, type Category } from '../data/schema.js';

export type Level = 'easy' | 'medium' | 'hard';

export interface Margins {
  /** size: refuse when the larger / smaller area (or height) is below this. */
  sizeRatio: number;
  /** depth: refuse when the bottom edges are closer than this fraction of the height. */
  depthGap: number;
  /** depth: refuse when the overlap covers more than this fraction of the smaller box. */
  nestedOverlap: number;
  /** distance: refuse when nearer / farther centre distance exceeds this. */
  distanceRatio: number;
  /** instance_location: refuse when the centre is this close (fraction of the side) to a grid line. */
  gridMargin: number;
  /** instance_location: refuse boxes covering more than this fraction of the image. */
  maxLocationArea: number;
  /** left/right decisions need centres at least this fraction of the width apart. */
  horizontalGap: number;
  /** above/below decisions need centres at least this fraction of the height apart. */
  verticalGap: number;
  /** left/right decisions: refuse when the boxes share more than this fraction of the narrower width. */
  horizontalOverlap: number;
  /** count: refuse when two instances overlap with more than this IoU. */
  countOverlap: number;
  /** count: the largest count asked. */
  maxCount: number;
  /** "not touching": the boxes are at least this fraction of the image diagonal apart. */
  touchGap: number;
  /** "not inside": less than this fraction of the subject box lies in the object box. */
  insideFraction: number;
  /** pair and triple questions consider only the largest N eligible objects. */
  maxPairObjects: number;
  /** objects covering less than this fraction of the image are too small to ask about. */
  minObjectArea: number;
}

export const DEFAULT_MARGINS: Readonly<Margins> = Object.freeze({
  sizeRatio: 1.3,
  depthGap: 0.05,
  nestedOverlap: 0.8,
  distanceRatio: 0.75,
  gridMargin: 0.04,
  maxLocationArea: 0.5,
  horizontalGap: 0.1,
  verticalGap: 0.1,
  horizontalOverlap: 0.5,
  countOverlap: 0.5,
  maxCount: 6,
  touchGap: 0.05,
  insideFraction: 0.1,
  maxPairObjects: 10,
  minObjectArea: 0.001,
});

export interface Question {
  imageId: string;
  category: Category;
  level: Level;
  rating: number;
  /** The bare question (`question_only`). */
  question: string;
  /** Option texts in presented (shuffled) order. */
  options: string[];
  answerIndex: number;
  /** Graph object indices the question is about. */
  objects: number[];
  /** What decided the answer: `predicate`, `bottom-edge`, `area`, `height`, `centre-distance`, `grid`, `count`, `label`. */
  basis: string;
}

export const LETTERS = ['A', 'B', 'C', 'D'] as const;

export function optionLetter(q: Pick<Question, 'answerIndex'>): string {
  return LETTERS[q.answerIndex] as string;
}

export function answerText(q: Pick<Question, 'answerIndex' | 'options'>): string {
  return q.options[q.answerIndex] as string;
}

/** `(B) behind`. */
export function answerOptionText(q: Pick<Question, 'answerIndex' | 'options'>): string {
  return `(${optionLetter(q)}) ${answerText(q)}`;
}

export type RefusalCounts = Record<Category, Record<string, number>>;

export function emptyRefusals(): RefusalCounts {
  return Object.fromEntries(CATEGORIES.map((c) => [c, {}])) as RefusalCounts;
}

export interface GenerateOptions {
  seed?: number;
  margins?: Partial<Margins>;
  /** Labels an existence "no" question may ask about (default: the VG150 object classes). */
  absentVocabulary?: readonly string[];
  /** Only these categories (default: all). */
  categories?: readonly Category[];
  /**
   * Questions per category at most (default 3; Infinity for every candidate). Candidates
   * are visited largest objects first (the reference prefers the largest-area triple), so
   * the cap keeps the most salient ones; refusals are counted for the candidates visited.
   */
  maxPerCategory?: number;
}

export interface GeneratedQuestions {
  questions: Question[];
  refusals: RefusalCounts;
}

/** Grid cells, row-major from the top-left. */
export const GRID_CELLS = [
  'top-left',
  'top',
  'top-right',
  'left',
  'centre',
  'right',
  'bottom-left',
  'bottom',
  'bottom-right',
] as const;

/** The progressive form of a reach predicate ("holds" -> "holding"). */
export function progressive(predicate: string): string {
  if (predicate === 'holds') return 'holding';
  if (predicate === 'wears') return 'wearing';
  return predicate;
}

/** Groups whose predicates can hold together with the key group's: never distractors for it. */
const COMPATIBLE_GROUPS: Readonly<Partial<Record<PredicateGroup, readonly PredicateGroup[]>>> = {
  ON_SUPPORTING: ['TOUCHING_ADJACENT', 'ABOVE_BELOW', 'INSIDE_CONTAINING'],
  TOUCHING_ADJACENT: ['ON_SUPPORTING', 'NEAR_FAR', 'LEFT_RIGHT'],
  NEAR_FAR: ['TOUCHING_ADJACENT', 'BETWEEN', 'ACROSS_ALONG', 'LEFT_RIGHT', 'FRONT_BEHIND'],
  ABOVE_BELOW: ['ON_SUPPORTING'],
  INSIDE_CONTAINING: ['ON_SUPPORTING'],
  BETWEEN: ['NEAR_FAR'],
  ACROSS_ALONG: ['NEAR_FAR'],
};

const DISTRACTOR_GROUP_ORDER: readonly PredicateGroup[] = [
  'LEFT_RIGHT',
  'ABOVE_BELOW',
  'FRONT_BEHIND',
  'INSIDE_CONTAINING',
  'ON_SUPPORTING',
  'TOUCHING_ADJACENT',
  'NEAR_FAR',
];

/** Predicates whose object is trivially expected when it is a background region (a car on the road). */
const SUPPORT_GROUPS: ReadonlySet<PredicateGroup> = new Set(['ON_SUPPORTING', 'INSIDE_CONTAINING']);

/** Possession-like predicates: trivial with clothing or parts ("man has hair", "man wearing shirt"). */
const POSSESSION = new Set(['has', 'have', 'with', 'of', 'wearing', 'wears', 'wearing a', 'in']);

interface Candidate {
  category: Category;
  question: string;
  options: string[];
  answer: string;
  objects: number[];
  basis: string;
  /** Closeness points (0-2) for the difficulty rule. */
  closeness: number;
  /** Object points of the difficulty rule when not (objects - 1): count questions ask about one label. */
  objectPoints?: number;
  /** Added to the rating (count: more instances teach more counting). */
  ratingBonus?: number;
}

/** All questions the graph supports, and the reasons for every refused candidate. */
export function generateQuestions(graph: NormalisedGraph, options: GenerateOptions = {}): GeneratedQuestions {
  return new Generator(graph, options).run();
}

class Generator {
  private readonly m: Margins;
  private readonly seed: number;
  private readonly refusals = emptyRefusals();
  private readonly questions: Question[] = [];
  private readonly asked = new Set<string>();
  private readonly classCount = new Map<string, number>();
  /** Why each object cannot appear in a non-count question, or undefined. */
  private readonly problem: (string | undefined)[];
  /** Eligible objects, largest first, capped at maxPairObjects. */
  private readonly large: GraphObject[];
  /** Relation predicates by ordered pair `s,o`. */
  private readonly pairPredicates = new Map<string, string[]>();
  /** Relations, largest subject + object area first. */
  private readonly relationsByArea: readonly GraphRelation[];
  private readonly maxPer: number;
  private readonly perCategory = new Map<Category, number>();

  constructor(
    private readonly graph: NormalisedGraph,
    private readonly options: GenerateOptions,
  ) {
    this.m = { ...DEFAULT_MARGINS, ...options.margins };
    this.seed = options.seed ?? 0;
    this.maxPer = options.maxPerCategory ?? 3;
    for (const o of graph.objects) {
      const key = synonymKey(o.label);
      this.classCount.set(key, (this.classCount.get(key) ?? 0) + 1);
    }
    this.problem = graph.objects.map((o) => {
      const salience = salienceProblem(o.label);
      if (salience) return salience;
      if (isPluralLabel(o.label)) return 'plural-label';
      if ((this.classCount.get(synonymKey(o.label)) ?? 0) > 1) return 'several-instances';
      if (this.areaFraction(o) < this.m.minObjectArea) return 'too-small';
      return undefined;
    });
    this.large = graph.objects
      .filter((o) => this.problem[o.index] === undefined)
      .sort((a, b) => b.area - a.area || a.index - b.index)
      .slice(0, this.m.maxPairObjects);
    for (const r of graph.relations) {
      const key = `${r.subject},${r.object}`;
      const list = this.pairPredicates.get(key);
      if (list) list.push(r.predicate);
      else this.pairPredicates.set(key, [r.predicate]);
    }
    const pairArea = (r: GraphRelation) => this.obj(r.subject).area + this.obj(r.object).area;
    this.relationsByArea = graph.relations
      .map((r, i) => ({ r, i, area: pairArea(r) }))
      .sort((a, b) => b.area - a.area || a.i - b.i)
      .map((e) => e.r);
  }

  /** Whether a category already has its maxPerCategory questions. */
  private full(category: Category): boolean {
    return (this.perCategory.get(category) ?? 0) >= this.maxPer;
  }

  run(): GeneratedQuestions {
    const wanted = new Set(this.options.categories ?? CATEGORIES);
    if (wanted.has('relation')) this.relation();
    if (wanted.has('reach')) this.reach();
    if (wanted.has('existence')) this.existence();
    if (wanted.has('depth')) this.depth();
    if (wanted.has('instance_location')) this.instanceLocation();
    if (wanted.has('size')) this.size();
    if (wanted.has('distance')) this.distance();
    if (wanted.has('orientation')) this.orientation();
    if (wanted.has('count')) this.count();
    return { questions: this.questions, refusals: this.refusals };
  }

  // -------------------------------------------------------------------------------------
  // helpers

  private refuse(category: Category, reason: string): void {
    const counts = this.refusals[category];
    counts[reason] = (counts[reason] ?? 0) + 1;
  }

  private rng(...parts: (string | number)[]): Random {
    return seeded(this.seed, this.graph.imageId, ...parts);
  }

  private obj(i: number): GraphObject {
    return this.graph.objects[i] as GraphObject;
  }

  private areaFraction(o: GraphObject): number {
    return o.area / (this.graph.width * this.graph.height);
  }

  /** The first problem among the objects, or undefined when all may be asked about. */
  private objectsProblem(indices: readonly number[]): string | undefined {
    for (const i of indices) {
      const p = this.problem[i];
      if (p !== undefined) return p;
    }
    return undefined;
  }

  /** Both directions' predicates between two objects. */
  private predicatesBetween(a: number, b: number): string[] {
    return [...(this.pairPredicates.get(`${a},${b}`) ?? []), ...(this.pairPredicates.get(`${b},${a}`) ?? [])];
  }

  private add(c: Candidate): void {
    if (this.asked.has(c.question)) {
      this.refuse(c.category, 'duplicate-question');
      return;
    }
    if (c.options.length < 2 || c.options.length > 4 || new Set(c.options).size !== c.options.length || !c.options.includes(c.answer))
      throw new Error(`internal: bad options for "${c.question}": ${JSON.stringify(c.options)}`);
    this.asked.add(c.question);
    this.perCategory.set(c.category, (this.perCategory.get(c.category) ?? 0) + 1);
    const objects = c.objects.map((i) => this.obj(i));
    const fractions = objects.map((o) => this.areaFraction(o));
    const smallest = fractions.length > 0 ? Math.min(...fractions) : 1;
    const objectPoints = c.objectPoints ?? Math.min(2, Math.max(0, objects.length - 1));
    let occluded = false;
    if (c.category !== 'count')
      for (let i = 0; i < objects.length && !occluded; i++)
        for (let j = i + 1; j < objects.length && !occluded; j++) {
          const a = objects[i] as GraphObject;
          const b = objects[j] as GraphObject;
          occluded = intersectionArea(a.box, b.box) > 0.25 * Math.min(a.area, b.area);
        }
    const points = objectPoints + c.closeness + (smallest < 0.01 ? 1 : 0) + (occluded ? 1 : 0);
    const level: Level = points <= 1 ? 'easy' : points === 2 ? 'medium' : 'hard';
    let rating = RATING_BASE[c.category] + (c.ratingBonus ?? 0);
    if (c.basis === 'predicate') rating += 1;
    // Existence: "yes" names an object and "no" none; both rate alike so neither answer dominates.
    if (c.category !== 'existence') {
      if (fractions.length > 0 && smallest >= 0.05) rating += 1;
      if (smallest < 0.005) rating -= 1;
    }
    rating = Math.min(10, Math.max(1, rating));
    const order = shuffled(c.options, seeded(this.seed, this.graph.imageId, c.question));
    this.questions.push({
      imageId: this.graph.imageId,
      category: c.category,
      level,
      rating,
      question: c.question,
      options: order,
      answerIndex: order.indexOf(c.answer),
      objects: c.objects,
      basis: c.basis,
    });
  }

  /** Distinct-label pairs among the large eligible objects. */
  private pairs(): [GraphObject, GraphObject][] {
    const out: [GraphObject, GraphObject][] = [];
    for (let i = 0; i < this.large.length; i++)
      for (let j = i + 1; j < this.large.length; j++) {
        const a = this.large[i] as GraphObject;
        const b = this.large[j] as GraphObject;
        if (a.label !== b.label) out.push([a, b]);
      }
    return out;
  }

  /** A pair in a random but deterministic order (which one the question names first). */
  private ordered(category: Category, a: GraphObject, b: GraphObject): [GraphObject, GraphObject] {
    return this.rng(category, 'order', a.index, b.index)() < 0.5 ? [a, b] : [b, a];
  }

  /** Counts, per category, each ineligible object once (the pair categories' refusals). */
  private refuseIneligible(category: Category): void {
    for (const p of this.problem) if (p !== undefined) this.refuse(category, p);
  }

  // -------------------------------------------------------------------------------------
  // relation

  private relation(): void {
    const done = new Set<string>();
    for (const r of this.relationsByArea) {
      if (this.full('relation')) return;
      const group = groupOf(r.predicate);
      if (group === undefined) {
        this.refuse('relation', 'ungrouped-predicate');
        continue;
      }
      if (ORIENTATION_GROUPS.has(group)) continue; // asked as orientation
      if (group === 'SIZE') {
        this.refuse('relation', 'size-predicate');
        continue;
      }
      if (NON_SPATIAL_PREDICATES.has(r.predicate)) {
        this.refuse('relation', 'non-spatial-predicate');
        continue;
      }
      const s = this.obj(r.subject);
      const o = this.obj(r.object);
      if (this.isTrivial(s, o, r.predicate, group)) {
        this.refuse('relation', 'trivial-relation');
        continue;
      }
      const problem = this.objectsProblem([s.index, o.index]);
      if (problem) {
        this.refuse('relation', problem);
        continue;
      }
      if (s.label === o.label) {
        this.refuse('relation', 'same-label');
        continue;
      }
      const pairKey = `${s.index},${o.index}`;
      if (done.has(pairKey)) {
        this.refuse('relation', 'duplicate-question');
        continue;
      }
      done.add(pairKey);
      const annotated = new Set<PredicateGroup>();
      for (const p of this.predicatesBetween(s.index, o.index)) {
        const g = groupOf(p);
        if (g) {
          annotated.add(g);
          for (const c of COMPATIBLE_GROUPS[g] ?? []) annotated.add(c);
        }
      }
      for (const c of COMPATIBLE_GROUPS[group] ?? []) annotated.add(c);
      annotated.add(group);
      const falsePredicates = this.falseRelationPredicates(s.box, o.box, annotated);
      if (falsePredicates.length === 0) {
        this.refuse('relation', 'no-distractors');
        continue;
      }
      const rng = this.rng('relation', s.index, o.index);
      const k = Math.min(falsePredicates.length, 2 + randomInt(rng, 2));
      const distractors = sample(falsePredicates, k, rng);
      this.add({
        category: 'relation',
        question: `Where is the ${s.label} with respect to the ${o.label}?`,
        options: [r.predicate, ...distractors],
        answer: r.predicate,
        objects: [s.index, o.index],
        basis: 'predicate',
        closeness: RELATION_CLOSENESS[group],
      });
    }
  }

  private isTrivial(s: GraphObject, o: GraphObject, predicate: string, group: PredicateGroup | undefined): boolean {
    const sp = salienceProblem(s.label);
    const op = salienceProblem(o.label);
    if (sp === 'part' || sp === 'body-part' || op === 'part' || op === 'body-part') return true;
    if ((sp === 'clothing' || op === 'clothing') && (POSSESSION.has(predicate) || reachKindOf(predicate) === 'wear')) return true;
    if (op === 'background' && group !== undefined && SUPPORT_GROUPS.has(group)) return true;
    return false;
  }

  /** One geometrically false predicate per group outside `excluded`, in a fixed group order. */
  private falseRelationPredicates(s: PixelBox, o: PixelBox, excluded: ReadonlySet<PredicateGroup>): string[] {
    const out: string[] = [];
    for (const group of DISTRACTOR_GROUP_ORDER) {
      if (excluded.has(group)) continue;
      const p = falsePredicate(group, s, o, this.graph, this.m);
      if (p !== undefined) out.push(p);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------
  // reach

  private reach(): void {
    const done = new Set<string>();
    for (const r of this.relationsByArea) {
      const kind = reachKindOf(r.predicate);
      if (kind === undefined) continue;
      if (this.full('reach')) return;
      const s = this.obj(r.subject);
      const o = this.obj(r.object);
      if (this.isTrivial(s, o, r.predicate, groupOf(r.predicate))) {
        this.refuse('reach', 'trivial-relation');
        continue;
      }
      const problem = this.objectsProblem([s.index, o.index]);
      if (problem) {
        this.refuse('reach', problem);
        continue;
      }
      if (s.label === o.label) {
        this.refuse('reach', 'same-label');
        continue;
      }
      const pairKey = `${s.index},${o.index}`;
      if (done.has(pairKey)) {
        this.refuse('reach', 'duplicate-question');
        continue;
      }
      done.add(pairKey);
      const annotatedKinds = new Set<ReachKind>();
      for (const p of this.pairPredicates.get(pairKey) ?? []) {
        const k = reachKindOf(p);
        if (k) annotatedKinds.add(k);
      }
      const distractors = REACH_DISTRACTOR_KINDS[kind].filter((k) => !annotatedKinds.has(k)).map((k) => REACH_DISTRACTOR[k]);
      const verb = progressive(r.predicate);
      const rng = this.rng('reach', s.index, o.index);
      const objectDistractors = this.reachObjectDistractors(s, o, verb);
      const forms: ('doing' | 'which' | 'yes-no')[] = ['yes-no'];
      if (distractors.length > 0) forms.push('doing');
      if (objectDistractors.length > 0) forms.push('which');
      const form = forms[randomInt(rng, forms.length)];
      if (form === 'doing') {
        this.add({
          category: 'reach',
          question: `What is the ${s.label} doing with the ${o.label}?`,
          options: [verb, ...distractors],
          answer: verb,
          objects: [s.index, o.index],
          basis: 'predicate',
          closeness: 1,
        });
      } else if (form === 'which') {
        const k = Math.min(objectDistractors.length, 1 + randomInt(rng, 3));
        this.add({
          category: 'reach',
          question: `What is the ${s.label} ${verb}?`,
          options: [o.label, ...sample(objectDistractors, k, rng).map((x) => x.label)],
          answer: o.label,
          objects: [s.index, o.index],
          basis: 'predicate',
          closeness: 1,
        });
      } else {
        const no = distractors.length > 0 && rng() < 0.5;
        const asked = no ? (distractors[randomInt(rng, distractors.length)] as string) : verb;
        this.add({
          category: 'reach',
          question: `Is the ${s.label} ${asked} the ${o.label}?`,
          options: ['yes', 'no'],
          answer: no ? 'no' : 'yes',
          objects: [s.index, o.index],
          basis: 'predicate',
          closeness: 0,
        });
      }
    }
  }

  /**
   * Wrong answers to "What is the S <verb>?": other askable objects the subject cannot be
   * holding, riding or wearing because their boxes are apart from its box (>= 5% of the
   * diagonal) and no interaction links them; none when the subject does the verb to
   * another object too (the answer would not be unique).
   */
  private reachObjectDistractors(s: GraphObject, o: GraphObject, verb: string): GraphObject[] {
    for (const r of this.graph.relations)
      if (r.subject === s.index && r.object !== o.index && progressive(r.predicate) === verb) return [];
    const diagonal = Math.hypot(this.graph.width, this.graph.height);
    return this.large.filter(
      (x) =>
        x !== s &&
        x !== o &&
        x.label !== s.label &&
        x.label !== o.label &&
        boxGap(s.box, x.box) >= this.m.touchGap * diagonal &&
        !this.predicatesBetween(s.index, x.index).some((p) => reachKindOf(p) !== undefined),
    );
  }

  // -------------------------------------------------------------------------------------
  // existence

  private existence(): void {
    const present = this.graph.objects.filter((o) => {
      const p = this.problem[o.index];
      if (p !== undefined) this.refuse('existence', p);
      return p === undefined;
    });
    const largest = present.reduce<GraphObject | undefined>((best, o) => (!best || o.area > best.area ? o : best), undefined);
    if (largest)
      this.add({
        category: 'existence',
        question: `Is there ${article(largest.label)} ${largest.label} in the image?`,
        options: ['yes', 'no'],
        answer: 'yes',
        objects: [largest.index],
        basis: 'label',
        closeness: 0,
      });
    const presentKeys = new Set(this.graph.objects.map((o) => synonymKey(o.label)));
    const presentLabels = new Set(this.graph.objects.map((o) => o.label));
    const vocabulary = this.options.absentVocabulary ?? VG150_OBJECTS;
    const absent = vocabulary.filter(
      (label) =>
        label !== '' &&
        !presentLabels.has(label) &&
        !presentKeys.has(synonymKey(label)) &&
        salienceProblem(label) === undefined &&
        !isPluralLabel(label),
    );
    if (absent.length === 0) {
      this.refuse('existence', 'no-absent-label');
      return;
    }
    const label = absent[randomInt(this.rng('existence', 'absent'), absent.length)] as string;
    this.add({
      category: 'existence',
      question: `Is there ${article(label)} ${label} in the image?`,
      options: ['yes', 'no'],
      answer: 'no',
      objects: [],
      basis: 'label',
      closeness: 2, // an absence needs the whole image searched
    });
  }

  // -------------------------------------------------------------------------------------
  // depth

  private depth(): void {
    this.refuseIneligible('depth');
    const H = this.graph.height;
    for (const [x, y] of this.pairs()) {
      if (this.full('depth')) return;
      const [a, b] = this.ordered('depth', x, y);
      const decided = depthByPredicate(a.index, b.index, this.graph.relations);
      if (decided === 'conflict') {
        this.refuse('depth', 'conflicting-depth');
        continue;
      }
      let nearer: GraphObject;
      let basis: string;
      let closeness: number;
      if (decided !== undefined) {
        nearer = this.obj(decided);
        basis = 'predicate';
        closeness = 1;
      } else {
        if (intersectionArea(a.box, b.box) > this.m.nestedOverlap * Math.min(a.area, b.area)) {
          this.refuse('depth', 'nested-boxes');
          continue;
        }
        const gap = Math.abs(a.box[3] - b.box[3]) / H;
        if (gap < this.m.depthGap) {
          this.refuse('depth', 'ambiguous-depth');
          continue;
        }
        nearer = a.box[3] > b.box[3] ? a : b;
        basis = 'bottom-edge';
        closeness = gap >= 5 * this.m.depthGap ? 0 : gap >= 2 * this.m.depthGap ? 1 : 2;
      }
      const options = [a.label, b.label];
      if (closeness < 2 && this.rng('depth', 'same', a.index, b.index)() < 0.5) options.push('they are at the same depth');
      this.add({
        category: 'depth',
        question: `Which is closer to the camera, the ${a.label} or the ${b.label}?`,
        options,
        answer: nearer.label,
        objects: [a.index, b.index],
        basis,
        closeness,
      });
    }
  }

  // -------------------------------------------------------------------------------------
  // instance_location

  private instanceLocation(): void {
    const { width: W, height: H } = this.graph;
    const byArea = this.graph.objects.slice().sort((a, b) => b.area - a.area || a.index - b.index);
    for (const o of byArea) {
      if (this.full('instance_location')) return;
      const p = this.problem[o.index];
      if (p !== undefined) {
        this.refuse('instance_location', p);
        continue;
      }
      if (this.areaFraction(o) > this.m.maxLocationArea) {
        this.refuse('instance_location', 'too-large');
        continue;
      }
      const [cx, cy] = centre(o.box);
      const fx = cx / W;
      const fy = cy / H;
      const edge = Math.min(Math.abs(fx - 1 / 3), Math.abs(fx - 2 / 3), Math.abs(fy - 1 / 3), Math.abs(fy - 2 / 3));
      if (edge < this.m.gridMargin) {
        this.refuse('instance_location', 'grid-boundary');
        continue;
      }
      const cell = gridCell(cx, cy, W, H);
      const rng = this.rng('instance_location', o.index);
      const others = sample(
        GRID_CELLS.filter((c) => c !== cell),
        3,
        rng,
      );
      const cellFraction = edge * 3; // 0 at a grid line, 0.5 at a cell centre
      this.add({
        category: 'instance_location',
        question: `In which part of the image is the ${o.label} located?`,
        options: [cell, ...others],
        answer: cell,
        objects: [o.index],
        basis: 'grid',
        closeness: cellFraction >= 0.3 ? 0 : cellFraction >= 0.2 ? 1 : 2,
      });
    }
  }

  // -------------------------------------------------------------------------------------
  // size

  private size(): void {
    this.refuseIneligible('size');
    for (const [x, y] of this.pairs()) {
      if (this.full('size')) return;
      const [a, b] = this.ordered('size', x, y);
      const areaRatio = Math.max(a.area, b.area) / Math.min(a.area, b.area);
      const ha = a.box[3] - a.box[1];
      const hb = b.box[3] - b.box[1];
      const heightRatio = Math.max(ha, hb) / Math.min(ha, hb);
      const forms: ('area' | 'which' | 'height')[] = [];
      if (areaRatio >= this.m.sizeRatio) forms.push('area', 'which');
      if (heightRatio >= this.m.sizeRatio) forms.push('height');
      if (forms.length === 0) {
        this.refuse('size', 'size-too-close');
        continue;
      }
      const rng = this.rng('size', a.index, b.index);
      const form = forms[randomInt(rng, forms.length)] as 'area' | 'which' | 'height';
      const ratio = form === 'height' ? heightRatio : areaRatio;
      const closeness = ratio >= 3 ? 0 : ratio >= 1.8 ? 1 : 2;
      const base = { category: 'size' as const, objects: [a.index, b.index], closeness };
      if (form === 'which') {
        this.add({
          ...base,
          question: `Which appears larger in the image, the ${a.label} or the ${b.label}?`,
          options: [a.label, b.label],
          answer: a.area > b.area ? a.label : b.label,
          basis: 'area',
        });
      } else if (form === 'area') {
        const options = ['larger', 'smaller'];
        if (ratio >= 2 && rng() < 0.5) options.push('about the same size');
        this.add({
          ...base,
          question: `Does the ${a.label} appear larger or smaller than the ${b.label} in the image?`,
          options,
          answer: a.area > b.area ? 'larger' : 'smaller',
          basis: 'area',
        });
      } else {
        this.add({
          ...base,
          question: `Does the ${a.label} appear taller or shorter than the ${b.label} in the image?`,
          options: ['taller', 'shorter'],
          answer: ha > hb ? 'taller' : 'shorter',
          basis: 'height',
        });
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // distance

  private distance(): void {
    this.refuseIneligible('distance');
    const refs = this.large.slice(0, 6);
    const others = this.large.slice(0, 8);
    for (const r of refs) {
      for (let i = 0; i < others.length; i++)
        for (let j = i + 1; j < others.length; j++) {
          if (this.full('distance')) return;
          const x = others[i] as GraphObject;
          const y = others[j] as GraphObject;
          if (x === r || y === r || x.label === y.label || x.label === r.label || y.label === r.label) continue;
          const [a, b] = this.ordered('distance', x, y);
          const da = centreDistance(a.box, r.box);
          const db = centreDistance(b.box, r.box);
          const ratio = Math.min(da, db) / Math.max(da, db);
          if (!(ratio <= this.m.distanceRatio)) {
            this.refuse('distance', 'distance-tie');
            continue;
          }
          this.add({
            category: 'distance',
            question: `Which object is closer to the ${r.label}, the ${a.label} or the ${b.label}?`,
            options: [a.label, b.label],
            answer: da < db ? a.label : b.label,
            objects: [r.index, a.index, b.index],
            basis: 'centre-distance',
            closeness: ratio < 0.4 ? 0 : ratio < 0.6 ? 1 : 2,
            objectPoints: 1, // one comparison of two distances
          });
        }
    }
  }

  // -------------------------------------------------------------------------------------
  // orientation

  private orientation(): void {
    const done = new Set<string>();
    for (const r of this.relationsByArea) {
      const direction = FACING_PREDICATES.get(r.predicate);
      if (direction === undefined) continue;
      if (this.full('orientation')) return;
      const s = this.obj(r.subject);
      const o = this.obj(r.object);
      const problem = this.objectsProblem([s.index, o.index]);
      if (problem) {
        this.refuse('orientation', problem);
        continue;
      }
      if (s.label === o.label) {
        this.refuse('orientation', 'same-label');
        continue;
      }
      const key = `${s.index},${o.index}`;
      if (done.has(key)) continue;
      done.add(key);
      const directions = new Set(
        (this.pairPredicates.get(key) ?? []).map((p) => FACING_PREDICATES.get(p)).filter((d) => d !== undefined),
      );
      if (directions.size > 1) {
        this.refuse('orientation', 'conflicting-orientation');
        continue;
      }
      this.add({
        category: 'orientation',
        question: `From the ${s.label}'s perspective, which direction is the ${o.label}?`,
        options: ['in front', 'behind'],
        answer: direction,
        objects: [s.index, o.index],
        basis: 'predicate',
        closeness: 2,
      });
    }
    this.refuseIneligible('orientation');
    const W = this.graph.width;
    for (const [x, y] of this.pairs()) {
      if (this.full('orientation')) return;
      const [a, b] = this.ordered('orientation', x, y);
      const side = cameraSide(a.box, b.box, W, this.m);
      if (side === undefined) {
        this.refuse('orientation', 'orientation-ambiguous');
        continue;
      }
      const stated = leftRightByPredicate(a.index, b.index, this.graph.relations);
      if (stated === 'conflict' || (stated !== undefined && stated !== side)) {
        this.refuse('orientation', 'conflicting-orientation');
        continue;
      }
      const gap = Math.abs(centre(a.box)[0] - centre(b.box)[0]) / W;
      this.add({
        category: 'orientation',
        question: `From the camera's viewpoint, is the ${a.label} to the left or to the right of the ${b.label}?`,
        options: ['to the left', 'to the right'],
        answer: side === 'left' ? 'to the left' : 'to the right',
        objects: [a.index, b.index],
        basis: stated !== undefined ? 'predicate' : 'centre-x',
        closeness: gap >= 3 * this.m.horizontalGap ? 0 : gap >= 1.5 * this.m.horizontalGap ? 1 : 2,
      });
    }
  }

  // -------------------------------------------------------------------------------------
  // count

  private count(): void {
    const labelsByKey = new Map<string, Set<string>>();
    for (const o of this.graph.objects) {
      const key = synonymKey(o.label);
      const set = labelsByKey.get(key);
      if (set) set.add(o.label);
      else labelsByKey.set(key, new Set([o.label]));
    }
    // Labels with more instances first: a count of one teaches little counting.
    const labels = [...this.graph.byLabel].sort((a, b) => b[1].length - a[1].length);
    for (const [label, objects] of labels) {
      if (this.full('count')) return;
      const salience = salienceProblem(label);
      if (salience) {
        this.refuse('count', salience);
        continue;
      }
      if (isPluralLabel(label)) {
        this.refuse('count', 'plural-label');
        continue;
      }
      if ((labelsByKey.get(synonymKey(label))?.size ?? 0) > 1) {
        this.refuse('count', 'count-synonyms');
        continue;
      }
      const n = objects.length;
      if (n < 1 || n > this.m.maxCount) {
        this.refuse('count', 'count-out-of-range');
        continue;
      }
      if (objects.some((o) => this.areaFraction(o) < this.m.minObjectArea)) {
        this.refuse('count', 'too-small');
        continue;
      }
      let overlapping = false;
      for (let i = 0; i < n && !overlapping; i++)
        for (let j = i + 1; j < n && !overlapping; j++)
          if (iou((objects[i] as GraphObject).box, (objects[j] as GraphObject).box) > this.m.countOverlap) overlapping = true;
      if (overlapping) {
        this.refuse('count', 'count-overlap');
        continue;
      }
      const rng = this.rng('count', label);
      const start = Math.max(1, n - randomInt(rng, 4));
      const options = [0, 1, 2, 3].map((k) => String(start + k));
      this.add({
        category: 'count',
        question: `How many ${pluralLabel(label)} are there in the image?`,
        options,
        answer: String(n),
        objects: objects.map((o) => o.index),
        basis: 'count',
        closeness: n <= 2 ? 0 : n <= 4 ? 1 : 2,
        objectPoints: 0,
        ratingBonus: Math.min(2, n - 1),
      });
    }
  }
}

const RATING_BASE: Readonly<Record<Category, number>> = {
  relation: 6,
  reach: 6,
  existence: 4,
  depth: 7,
  instance_location: 5,
  size: 5,
  distance: 7,
  orientation: 7,
  count: 5,
};

/** Relation closeness: contact/support/containment and vertical order are the easiest to see. */
const RELATION_CLOSENESS: Readonly<Record<PredicateGroup, number>> = {
  ON_SUPPORTING: 0,
  ABOVE_BELOW: 0,
  INSIDE_CONTAINING: 0,
  TOUCHING_ADJACENT: 0,
  FRONT_BEHIND: 1,
  LEFT_RIGHT: 1,
  NEAR_FAR: 1,
  SIZE: 1,
  BETWEEN: 2,
  ACROSS_ALONG: 2,
  MISC: 2,
  FACING_ORIENTATION: 2,
};

// ---------------------------------------------------------------------------------------
// geometry rules, exported so that reports (and tests) can name them

export function centreDistance(a: PixelBox, b: PixelBox): number {
  const [ax, ay] = centre(a);
  const [bx, by] = centre(b);
  return Math.hypot(ax - bx, ay - by);
}

/** The 3x3 cell of a point. */
export function gridCell(x: number, y: number, width: number, height: number): (typeof GRID_CELLS)[number] {
  const col = Math.min(2, Math.max(0, Math.floor((3 * x) / width)));
  const row = Math.min(2, Math.max(0, Math.floor((3 * y) / height)));
  return GRID_CELLS[row * 3 + col] as (typeof GRID_CELLS)[number];
}

/**
 * The nearer object by depth predicates between a and b ("behind", "at the back of",
 * "in front of", either direction), 'conflict' when they disagree, undefined when none.
 */
export function depthByPredicate(
  a: number,
  b: number,
  relations: readonly { subject: number; object: number; predicate: string }[],
): number | 'conflict' | undefined {
  let nearer: number | undefined;
  for (const r of relations) {
    if (!((r.subject === a && r.object === b) || (r.subject === b && r.object === a))) continue;
    const effect = DEPTH_PREDICATES.get(r.predicate);
    if (effect === undefined) continue;
    const vote = effect === 'subject-nearer' ? r.subject : r.object;
    if (nearer !== undefined && nearer !== vote) return 'conflict';
    nearer = vote;
  }
  return nearer;
}

/** Where a lies relative to b by left/right predicates (either direction), 'conflict', or undefined. */
export function leftRightByPredicate(
  a: number,
  b: number,
  relations: readonly { subject: number; object: number; predicate: string }[],
): 'left' | 'right' | 'conflict' | undefined {
  let side: 'left' | 'right' | undefined;
  for (const r of relations) {
    let s: 'left' | 'right' | undefined;
    const stated = LEFT_RIGHT_PREDICATES.get(r.predicate);
    if (stated === undefined) continue;
    if (r.subject === a && r.object === b) s = stated;
    else if (r.subject === b && r.object === a) s = stated === 'left' ? 'right' : 'left';
    else continue;
    if (side !== undefined && side !== s) return 'conflict';
    side = s;
  }
  return side;
}

/** Whether box a is to the left or right of box b as the camera sees it, or undefined when unclear. */
export function cameraSide(a: PixelBox, b: PixelBox, width: number, m: Pick<Margins, 'horizontalGap' | 'horizontalOverlap'>): 'left' | 'right' | undefined {
  const dx = centre(a)[0] - centre(b)[0];
  if (Math.abs(dx) < m.horizontalGap * width) return undefined;
  const overlap = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  if (overlap > m.horizontalOverlap * Math.min(a[2] - a[0], b[2] - b[0])) return undefined;
  return dx < 0 ? 'left' : 'right';
}

/**
 * A predicate of `group` that the boxes make false for "subject s ... object o", or
 * undefined when the geometry cannot rule the group out.
 */
export function falsePredicate(
  group: PredicateGroup,
  s: PixelBox,
  o: PixelBox,
  image: { width: number; height: number },
  m: Margins,
): string | undefined {
  const [sx, sy] = centre(s);
  const [ox, oy] = centre(o);
  const diagonal = Math.hypot(image.width, image.height);
  switch (group) {
    case 'LEFT_RIGHT': {
      const side = cameraSide(s, o, image.width, m);
      return side === undefined ? undefined : side === 'left' ? 'right of' : 'left of';
    }
    case 'ABOVE_BELOW': {
      const dy = sy - oy;
      if (Math.abs(dy) < m.verticalGap * image.height) return undefined;
      return dy < 0 ? 'below' : 'above';
    }
    case 'FRONT_BEHIND': {
      if (intersectionArea(s, o) > m.nestedOverlap * Math.min(boxArea(s), boxArea(o))) return undefined;
      const gap = s[3] - o[3];
      if (Math.abs(gap) < m.depthGap * image.height) return undefined;
      return gap > 0 ? 'behind' : 'in front of';
    }
    case 'INSIDE_CONTAINING':
      return intersectionArea(s, o) < m.insideFraction * boxArea(s) ? 'inside' : undefined;
    case 'ON_SUPPORTING':
      return boxGap(s, o) >= m.touchGap * diagonal ? 'on top of' : undefined;
    case 'TOUCHING_ADJACENT':
      return boxGap(s, o) >= m.touchGap * diagonal ? 'touching' : undefined;
    case 'NEAR_FAR':
      return intersectionArea(s, o) > 0 ? 'far from' : undefined;
    default:
      return undefined;
  }
}

