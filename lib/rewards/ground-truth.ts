/**
 * The ground-truth string of a training row:
 * `<scene>{"objects": [...], "relationships": [...]}</scene>\n<answer>(B) behind</answer>`.
 * Unlike model output, a malformed ground truth is a data error and is
 * reported, never scored.
 */
import { boxOf, extractScene, isJsonObject, labelOf, listOr, type JsonObject } from './scene.js';
import { firstBlock, pyStrip } from './text.js';

export interface GroundTruthObject {
  id: string;
  label: string;
  box: [number, number, number, number];
}

export interface GroundTruth {
  /** The answer, stripped (compared lower-cased). */
  answer: string;
  /** The raw parsed scene, as the count reward reads it. */
  scene: JsonObject;
  objects: GroundTruthObject[];
  relationshipCount: number;
}

export class GroundTruthError extends Error {
  override name = 'GroundTruthError';
}

export function parseGroundTruth(text: string): GroundTruth {
  const answerBlock = firstBlock(text, 'answer');
  if (answerBlock === undefined) throw new GroundTruthError('ground truth has no <answer>...</answer>');
  if (firstBlock(text, 'scene') === undefined) throw new GroundTruthError('ground truth has no <scene>...</scene>');
  const scene = extractScene(text);
  if (Object.keys(scene).length === 0)
    throw new GroundTruthError('ground truth <scene> is not a non-empty JSON object with finite numbers');
  const rawObjects = listOr(scene, 'objects');
  const rawRelationships = listOr(scene, 'relationships');
  if (!rawObjects) throw new GroundTruthError('ground truth scene: "objects" is not a list');
  if (!rawRelationships) throw new GroundTruthError('ground truth scene: "relationships" is not a list');
  const objects = rawObjects.map((object, i): GroundTruthObject => {
    if (!isJsonObject(object)) throw new GroundTruthError(`ground truth object ${i} is not a JSON object`);
    const { id, bbox } = object;
    if (typeof id !== 'string') throw new GroundTruthError(`ground truth object ${i} has no string "id"`);
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every((v) => typeof v === 'number' || typeof v === 'boolean'))
      throw new GroundTruthError(`ground truth object ${i} ("${id}") has no "bbox" of 4 numbers`);
    return { id, label: labelOf(id), box: boxOf(bbox) };
  });
  return { answer: pyStrip(answerBlock), scene, objects, relationshipCount: rawRelationships.length };
}
