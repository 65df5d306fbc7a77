/**
 * Spatial truth of the shapes world: which of two objects is left of, in front of, or
 * bigger than the other, decided from the 3D layout. Each rule answers only when every
 * reasonable reading agrees, with a margin, and is undefined otherwise (as a Visual Genome
 * annotator would leave an unclear pair unannotated):
 *
 * - left/right, as the camera sees it: the centres are at least `lateral` apart along the
 *   camera's x axis, both ground extents along x are ordered the same way, the bearings
 *   from the camera (the horizontal angle atan(x / z)) too, and the box centres in the
 *   image are at least `lateralImage` of the width apart the same way. The camera looks
 *   down, so image columns and bearings can disagree (a far object can be seen left of a
 *   near one whose bearing is further left): such pairs have no left/right;
 * - front/behind (nearer to / farther from the camera): the centres are at least `depth`
 *   apart in depth z and the near and far ends of the two footprints are ordered the same
 *   way (a small object beside a large one at about the same depth has no order);
 * - bigger/smaller (true 3D size, not apparent size): both the extent and the volume ratios
 *   are at least `sizeRatio` the same way (a medium cone is taller than a small cube but
 *   holds less, so neither is bigger).
 */
import type { PlacedShape, ShapesLayout } from './world.js';

export interface TruthMargins {
  /** left/right: least gap between centres along x, world units. */
  lateral: number;
  /** left/right: least gap between box centres in the image, fraction of the width. */
  lateralImage: number;
  /** front/behind: least gap between centres in depth, world units. */
  depth: number;
  /** bigger/smaller: least ratio of extents and of volumes. */
  sizeRatio: number;
}

export const DEFAULT_TRUTH_MARGINS: Readonly<TruthMargins> = Object.freeze({
  lateral: 0.4,
  lateralImage: 0.04,
  depth: 0.4,
  sizeRatio: 1.3,
});

function boxCentreX(o: PlacedShape): number {
  return o.box[0] + o.box[2] / 2;
}

/** Whether every reading puts l left of r (see the module comment). */
function leftOf(l: PlacedShape, r: PlacedShape, imageGap: number, m: TruthMargins): boolean {
  return (
    l.x + m.lateral <= r.x &&
    l.xRange[0] < r.xRange[0] &&
    l.xRange[1] < r.xRange[1] &&
    Math.atan2(l.x, l.z) < Math.atan2(r.x, r.z) &&
    boxCentreX(l) + imageGap <= boxCentreX(r)
  );
}

/** Where a is relative to b as the camera sees it, or undefined when unclear. */
export function sideOf(a: PlacedShape, b: PlacedShape, layout: Pick<ShapesLayout, 'width'>, m: TruthMargins = DEFAULT_TRUTH_MARGINS): 'left' | 'right' | undefined {
  const imageGap = m.lateralImage * layout.width;
  if (leftOf(a, b, imageGap, m)) return 'left';
  if (leftOf(b, a, imageGap, m)) return 'right';
  return undefined;
}

/** Whether a is nearer to or farther from the camera than b, or undefined when unclear. */
export function depthOf(a: PlacedShape, b: PlacedShape, m: TruthMargins = DEFAULT_TRUTH_MARGINS): 'nearer' | 'farther' | undefined {
  if (a.z + m.depth <= b.z && a.zRange[0] < b.zRange[0] && a.zRange[1] < b.zRange[1]) return 'nearer';
  if (b.z + m.depth <= a.z && b.zRange[0] < a.zRange[0] && b.zRange[1] < a.zRange[1]) return 'farther';
  return undefined;
}

/** Whether a is bigger or smaller than b in true 3D size, or undefined when unclear. */
export function sizeOf(a: PlacedShape, b: PlacedShape, m: TruthMargins = DEFAULT_TRUTH_MARGINS): 'bigger' | 'smaller' | undefined {
  if (a.extent >= m.sizeRatio * b.extent && a.volume >= m.sizeRatio * b.volume) return 'bigger';
  if (b.extent >= m.sizeRatio * a.extent && b.volume >= m.sizeRatio * a.volume) return 'smaller';
  return undefined;
}
