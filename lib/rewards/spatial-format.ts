/**
 * The format, count and accuracy components of the SpatialThinker reward
 * (shared/spec/rewards.md §3), for one completion. Never throws: every input
 * string gets a score.
 */
import {
  boxOf,
  extractScene,
  isValidObject,
  isValidRelationship,
  labelOf,
  listOr,
  type JsonObject,
} from './scene.js';
import { countOccurrences, firstBlock, pyStrip } from './text.js';

export const REASONING_TAGS = ['observe', 'think', 'scene', 'answer'] as const;

export interface PredictedObject {
  label: string;
  box: [number, number, number, number];
}

/** A completion that passed the format check: its scene, whose objects are all valid. */
export interface WellFormedCompletion {
  scene: JsonObject;
  objects: readonly { id: string; bbox: unknown[] }[];
}

/**
 * The labels and boxes of a well-formed completion's objects that the spatial
 * component matches. A box with x1 > x2 or y1 > y2, or a non-finite
 * coordinate, is left out, so it counts as no prediction at all: the
 * reference scores such a box with a negative area, which has no lower bound
 * (one inverted box scored spatial -260 in issue 19) and would blow up the
 * advantages of its whole group. Format and count still see every object.
 */
export function predictedObjects(completion: WellFormedCompletion): PredictedObject[] {
  const out: PredictedObject[] = [];
  for (const o of completion.objects) {
    const box = boxOf(o.bbox);
    if (isOrderedFiniteBox(box)) out.push({ label: labelOf(o.id), box });
  }
  return out;
}

/** Finite coordinates with x1 <= x2 and y1 <= y2: a box whose CIoU is bounded. */
export function isOrderedFiniteBox(box: readonly number[]): boolean {
  const [x1, y1, x2, y2] = box as [number, number, number, number];
  return Number.isFinite(x1) && Number.isFinite(y1) && Number.isFinite(x2) && Number.isFinite(y2) && x1 <= x2 && y1 <= y2;
}

/** The format check; the parsed completion when it passes, else undefined. */
export function checkFormat(completion: string): WellFormedCompletion | undefined {
  for (const tag of REASONING_TAGS) {
    if (firstBlock(completion, tag) === undefined) return undefined;
    if (countOccurrences(completion, `<${tag}>`) !== 1) return undefined;
  }
  const scene = extractScene(completion);
  if (Object.keys(scene).length === 0) return undefined;
  const objects = listOr(scene, 'objects');
  const relationships = listOr(scene, 'relationships');
  if (!objects || !relationships) return undefined;
  if (!objects.every(isValidObject) || !relationships.every(isValidRelationship)) return undefined;
  const valid = objects as { id: string; bbox: unknown[] }[];
  if (valid.length > 1) {
    const ids = new Set<string>();
    for (const object of valid) {
      if (ids.has(object.id)) return undefined;
      ids.add(object.id);
    }
  }
  return { scene, objects: valid };
}

/** Object (and, when the ground truth has relations, relationship) count agreement. */
export function countScore(predicted: JsonObject, groundTruth: JsonObject): number {
  const predObjects = Object.hasOwn(predicted, 'objects') ? predicted['objects'] : undefined;
  const gtObjects = Object.hasOwn(groundTruth, 'objects') ? groundTruth['objects'] : undefined;
  if (!Array.isArray(predObjects) || !Array.isArray(gtObjects)) return 0;
  const agreement = (p: number, g: number) => Math.max(0, 1 - Math.abs(p - g) / Math.max(g, 1));
  const objectScore = agreement(predObjects.length, gtObjects.length);
  const relationCount = (scene: JsonObject) => {
    const rels = Object.hasOwn(scene, 'relationships') ? scene['relationships'] : undefined;
    return Array.isArray(rels) ? rels.length : 0;
  };
  const gtRelations = relationCount(groundTruth);
  if (gtRelations === 0) return objectScore;
  return 0.7 * objectScore + 0.3 * agreement(relationCount(predicted), gtRelations);
}

/** The first `<answer>` block, stripped; empty when there is none. */
export function extractAnswer(text: string): string {
  const block = firstBlock(text, 'answer');
  return block === undefined ? '' : pyStrip(block);
}

/** Case-insensitive equality of the stripped answers. */
export function answersMatch(predicted: string, groundTruth: string): boolean {
  return pyStrip(predicted).toLowerCase() === pyStrip(groundTruth).toLowerCase();
}
