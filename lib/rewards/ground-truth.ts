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
    const box = boxOf(bbox);
    const problem = boxProblem(box);
    if (problem) throw new GroundTruthError(`ground truth object ${i} ("${id}") has bbox ${JSON.stringify(bbox)}: ${problem}`);
    return { id, label: labelOf(id), box };
  });
  return { answer: pyStrip(answerBlock), scene, objects, relationshipCount: rawRelationships.length };
}

// A ground-truth box is data, not model output: one the CIoU cannot score
// sensibly is reported instead of silently skewing every reward of its row.
function boxProblem(box: readonly number[]): string | undefined {
  const [x1, y1, x2, y2] = box as [number, number, number, number];
  if (!box.every(Number.isFinite)) return 'a coordinate is not finite';
  if (box.some((v) => v < 0)) return 'a coordinate is negative';
  if (x1 > x2) return 'x1 > x2';
  if (y1 > y2) return 'y1 > y2';
  return undefined;
}

/**
 * Why a ground truth's boxes cannot belong to an image of this size, or
 * undefined. Boxes may overshoot the image a little (rounding, padding); one
 * beyond twice its size is in another coordinate system (or 1e300).
 */
export function groundTruthOutsideImage(groundTruth: GroundTruth, width: number, height: number): string | undefined {
  for (const [i, o] of groundTruth.objects.entries()) {
    const [, , x2, y2] = o.box;
    if (x2 > 2 * width || y2 > 2 * height)
      return `ground truth object ${i} ("${o.id}") has bbox ${JSON.stringify(o.box)} outside the image (${width} x ${height})`;
  }
  return undefined;
}
