/**
 * A shapes-world layout as a scene graph in Visual Genome form (lib/synth/scene-graph.ts),
 * the input of the question synthesis.
 *
 * - Objects: name "<colour> <kind>" ("red cube"), attributes [colour, size word]. The label
 *   carries the colour so that most objects are single instances, which pair questions
 *   (relation, depth, size, distance, orientation) require; a repeated label (2-3 objects,
 *   see world.ts) makes a count question above one ("How many red cubes ...").
 * - Boxes: the whole silhouette's box, as Visual Genome annotators box an object even where
 *   something nearer hides part of it; the exact projected box rounded outwards to whole
 *   pixels (so it still contains the silhouette), inside the image by construction.
 * - Relationships from the true 3D layout (truth.ts), one per related pair and family, in a
 *   direction chosen at random per pair so that both predicates of a family occur:
 *   "left of" / "right of", "in front of" / "behind" (the generator's depth predicates) and
 *   "bigger" / "smaller" (true size; the generator never asks these, size questions are
 *   about apparent size in the image). No "above"/"below" or support predicates: every
 *   object stands on the ground and none touches another.
 */
import type { SceneGraph, SceneObject, SceneRelationship } from '../synth/scene-graph.js';
import { hash32 } from '../random.js';
import { DEFAULT_TRUTH_MARGINS, depthOf, sideOf, sizeOf, type TruthMargins } from './truth.js';
import type { PlacedShape, ShapesLayout } from './world.js';

export type RelationFamily = 'left-right' | 'front-behind' | 'size';

export const RELATION_FAMILIES: readonly RelationFamily[] = ['left-right', 'front-behind', 'size'];

/** The predicate pair of each family: [subject-first reading, the converse]. */
export const FAMILY_PREDICATES: Readonly<Record<RelationFamily, readonly [string, string]>> = {
  'left-right': ['left of', 'right of'],
  'front-behind': ['in front of', 'behind'],
  size: ['bigger', 'smaller'],
};

export interface ShapesGraphOptions {
  imageId: string;
  /** The image file, relative to the dataset folder. */
  file?: string;
  /** Families to annotate (default all). */
  relations?: readonly RelationFamily[];
  margins?: Partial<TruthMargins>;
}

/** The [x, y, w, h] box of an object rounded outwards to whole pixels. */
export function pixelBox(o: PlacedShape): [number, number, number, number] {
  const [x, y, w, h] = o.box;
  const x1 = Math.floor(x);
  const y1 = Math.floor(y);
  return [x1, y1, Math.ceil(x + w) - x1, Math.ceil(y + h) - y1];
}

/** Whether a is the first-reading subject of the family's relation with b ("a left of b"), or the converse, or neither. */
function relate(family: RelationFamily, a: PlacedShape, b: PlacedShape, layout: ShapesLayout, m: TruthMargins): boolean | undefined {
  switch (family) {
    case 'left-right': {
      const side = sideOf(a, b, layout, m);
      return side === undefined ? undefined : side === 'left';
    }
    case 'front-behind': {
      const depth = depthOf(a, b, m);
      return depth === undefined ? undefined : depth === 'nearer';
    }
    case 'size': {
      const size = sizeOf(a, b, m);
      return size === undefined ? undefined : size === 'bigger';
    }
  }
}

export function shapesSceneGraph(layout: ShapesLayout, options: ShapesGraphOptions): SceneGraph {
  const margins = { ...DEFAULT_TRUTH_MARGINS, ...options.margins };
  const families = options.relations ?? RELATION_FAMILIES;
  for (const f of families)
    if (!RELATION_FAMILIES.includes(f)) throw new RangeError(`unknown relation family "${String(f)}" (known: ${RELATION_FAMILIES.join(', ')})`);
  const id = (o: PlacedShape) => o.index + 1;
  const objects: SceneObject[] = layout.objects.map((o) => {
    const [x, y, w, h] = pixelBox(o);
    return { object_id: id(o), names: [o.label], attributes: [o.colour, o.size], x, y, w, h };
  });
  const relationships: SceneRelationship[] = [];
  const { objects: placed } = layout;
  for (let i = 0; i < placed.length; i++)
    for (let j = i + 1; j < placed.length; j++) {
      const a = placed[i] as PlacedShape;
      const b = placed[j] as PlacedShape;
      // The generator asks about a pair's first relation only: rotate the families per pair
      // so that each is first about equally often.
      const rotation = hash32(options.imageId, i, j, 'order') % families.length;
      for (let k = 0; k < families.length; k++) {
        const family = families[(k + rotation) % families.length] as RelationFamily;
        const aFirst = relate(family, a, b, layout, margins);
        if (aFirst === undefined) continue;
        // Which end is the subject: a coin per image, pair and family.
        const swap = (hash32(options.imageId, i, j, family) & 1) === 1;
        const [subject, object] = swap ? [b, a] : [a, b];
        const first = swap ? !aFirst : aFirst;
        const [p, converse] = FAMILY_PREDICATES[family];
        relationships.push({ subject_id: id(subject), object_id: id(object), predicate: first ? p : converse });
      }
    }
  return {
    image: {
      image_id: options.imageId,
      width: layout.width,
      height: layout.height,
      ...(options.file !== undefined ? { file: options.file } : {}),
    },
    objects,
    relationships,
  };
}
