/**
 * The request of LLM question generation (method.md §4.3 step 1): instructions, a block of
 * running data statistics that steers the model towards under-represented categories and
 * levels, and the image's scene graph in the VG150 form the ground truth uses
 * (`{"objects": [{"id": "man.1", "bbox": [x1, y1, x2, y2]}], "relationships": [...]}`).
 *
 * The instructions follow the intent of the reference's prompt (categories, salience rules,
 * answer-content rules per category, the canonical relation table, worked examples, one flat
 * JSON object as the reply); the wording and the examples are this project's.
 */
import { GROUP_NAMES, PREDICATE_GROUPS } from './predicates.js';
import { LEVELS } from '../data/schema.js';
import { CATEGORIES, type Category, type Level } from './questions.js';
import type { NormalisedGraph } from './scene-graph.js';
import { idLabel, sceneJson, type Subgraph } from './subgraph.js';

/** What the model is told about the data so far. */
export interface GenerationBalance {
  /** Accepted questions so far, per category and per level. */
  categories: Readonly<Record<Category, number>>;
  levels: Readonly<Record<Level, number>>;
  /** The categories and levels of the last accepted questions, oldest first (at most 3 shown). */
  recentCategories: readonly Category[];
  recentLevels: readonly Level[];
  /** Wanted share of each category (sums to 1). */
  targetShares: Readonly<Record<Category, number>>;
  /** Wanted share of each level (sums to 1). */
  levelShares: Readonly<Record<Level, number>>;
}

/** The whole graph with the ids the ground truth uses: `label.N`, N counting per label from 1. */
export function wholeSceneGraph(graph: NormalisedGraph): Subgraph {
  const perLabel = new Map<string, number>();
  const ids: string[] = [];
  const objects = graph.objects.map((o) => {
    const n = (perLabel.get(o.label) ?? 0) + 1;
    perLabel.set(o.label, n);
    const id = `${idLabel(o.label)}.${n}`;
    ids[o.index] = id;
    return { id, bbox: [o.box[0], o.box[1], o.box[2], o.box[3]] as [number, number, number, number] };
  });
  const relationships = graph.relations.map((r) => ({
    subject: ids[r.subject] as string,
    predicate: r.predicate,
    object: ids[r.object] as string,
  }));
  return { objects, relationships };
}

const CATEGORY_GUIDE: Readonly<Record<Category, string>> = {
  relation: 'the spatial relation between two objects ("Where is the cup with respect to the table?"); the answer is the predicate or a synonym of it',
  reach: 'physical interaction between two objects (holding, touching, carrying, riding, wearing, leaning on); the answer is the interaction',
  existence: 'whether an object or a relation is present in the image; the options are exactly "yes" and "no"',
  depth: 'which of two objects is closer to (or farther from) the camera; the answer is an object name',
  instance_location: 'where one object is in the frame; the answer is a frame position (top-left, top, top-right, left, center, right, bottom-left, bottom, bottom-right)',
  size: 'the comparative size of two objects; the answer is a comparative (bigger, smaller, taller, shorter) or an object name',
  distance: 'which of two objects is closer to a third, reference object; the answer is an object name',
  orientation: 'a direction from an object\'s point of view or the camera\'s (left, right, in front, behind); the answer is a direction',
  count: 'how many instances of one object type there are; the answer is an integer written in digits',
};

const EXAMPLE_GRAPH =
  '{"objects": [{"id": "man.1", "bbox": [120, 80, 260, 420]}, {"id": "bench.1", "bbox": [60, 300, 420, 460]}, ' +
  '{"id": "dog.1", "bbox": [400, 330, 520, 450]}, {"id": "tree.1", "bbox": [450, 10, 630, 300]}], ' +
  '"relationships": [{"subject": "man.1", "predicate": "sitting on", "object": "bench.1"}, ' +
  '{"subject": "dog.1", "predicate": "near", "object": "bench.1"}]}';

const EXAMPLE_REPLIES = [
  '{"question": "Where is the man with respect to the bench?", "options": ["(A) under", "(B) sitting on", "(C) behind", "(D) far from"], "answer": "B", "category": "relation", "level": "easy", "rating": 7}',
  '{"question": "Which is closer to the camera, the tree or the dog?", "options": ["(A) the tree", "(B) the dog"], "answer": "B", "category": "depth", "level": "medium", "rating": 8}',
  '{"question": "From the camera\'s viewpoint, is the dog to the left or to the right of the man?", "options": ["(A) left", "(B) right"], "answer": "B", "category": "orientation", "level": "easy", "rating": 6}',
];

function percent(part: number, whole: number): string {
  return whole === 0 ? '0%' : `${((100 * part) / whole).toFixed(1)}%`;
}

/** The running statistics block: shares so far against their targets, and what came last. */
export function statisticsBlock(balance: GenerationBalance): string {
  const total = CATEGORIES.reduce((n, c) => n + balance.categories[c], 0);
  const lines = [`Data statistics (${total} questions accepted so far):`];
  lines.push(
    `- categories (so far / target): ${CATEGORIES.map((c) => `${c} ${percent(balance.categories[c], total)} / ${percent(balance.targetShares[c], 1)}`).join(', ')}`,
  );
  lines.push(
    `- levels (so far / target): ${LEVELS.map((l) => `${l} ${percent(balance.levels[l], total)} / ${percent(balance.levelShares[l], 1)}`).join(', ')}`,
  );
  const recentC = balance.recentCategories.slice(-3);
  const recentL = balance.recentLevels.slice(-3);
  if (recentC.length > 0) lines.push(`- last categories: ${recentC.join(', ')}; last levels: ${recentL.join(', ')}`);
  lines.push(
    'Prefer a category and a level that are furthest below their targets and differ from the last ones, as long as this image supports a good question of that kind.',
  );
  return lines.join('\n');
}

/** The full user message of a generation request for one image. */
export function generationPrompt(graph: NormalisedGraph, balance: GenerationBalance): string {
  const table = GROUP_NAMES.map((g) => `  ${g}: ${PREDICATE_GROUPS[g].join(', ')}`).join('\n');
  return [
    'You build a spatial visual question-answering dataset. Below is the scene graph of an image: its objects (id "label.N" and box [x1, y1, x2, y2] in pixels, origin at the top-left corner) and the relations between them.',
    '',
    'Write ONE multiple-choice question about the spatial layout of the image that the scene graph answers with certainty.',
    '',
    'Categories (choose one):',
    ...CATEGORIES.map((c) => `- ${c}: ${CATEGORY_GUIDE[c]}.`),
    '',
    'Rules:',
    '- Use only objects and relations that are in the scene graph. Name objects by their type ("the cup"), never by their id ("cup.1").',
    '- Ask about salient objects: never about parts, decorations, text, clothing or body parts, and never about trivially expected relations (a wheel on a car, a man wearing a shirt). Prefer relations between objects of different kinds, and the largest objects.',
    '- Do not ask about the location, depth, size or distance of a type that has several instances (or synonyms, such as man and person) in the graph: the question would be ambiguous. Ask count questions sparingly and not when instances overlap heavily.',
    '- Give 2 to 4 options, exactly one of them correct, no two alike, each prefixed "(A) ", "(B) ", ... in order. The answer is the letter of the correct option.',
    '- level is easy, medium or hard; rating (1-10) says how much the question would improve a model\'s spatial intelligence.',
    '- Relation predicates, by group (options of relation questions should come from different groups):',
    table,
    '',
    statisticsBlock(balance),
    '',
    'Example scene graph (image 640 x 480):',
    EXAMPLE_GRAPH,
    'Example replies (one of them would be the whole reply):',
    ...EXAMPLE_REPLIES,
    '',
    'Reply with one JSON object with the keys question, options, answer, category, level and rating.',
    '',
    `Image size: ${graph.width} x ${graph.height}`,
    'Scene graph:',
    sceneJson(wholeSceneGraph(graph)),
    '',
    'Only return the JSON object, no additional text.',
  ].join('\n');
}
